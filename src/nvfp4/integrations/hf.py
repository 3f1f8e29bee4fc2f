"""Hugging Face models with NVFP4 layers: ``load`` a compressed-tensors checkpoint, or
``convert`` a model you already hold.

``load`` builds the model from ``config.json`` with its parameters on the meta device (no
memory), swaps every targeted ``nn.Linear`` for an empty ``NVFP4Linear`` on the target
device, then streams the safetensors file by file into place: quantized tensors go straight
into the layers' uint8/FP8 buffers, so no float copy of a quantized weight is ever made and
peak host memory stays near the size of one checkpoint tensor plus the model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..checkpoint.config import NVFP4Config, parse_quantization_config
from ..checkpoint.reader import CheckpointError, find_checkpoint_files, iter_tensors, read_config
from ..layers import NVFP4Linear
from .loading import TensorPlacer
from .report import NVFP4Report
from .swap import swap_linears

_MODEL_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _resolve_dtype(dtype, config) -> torch.dtype:
    if dtype is None or dtype == "auto":
        name = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "bfloat16")
        return _MODEL_DTYPES.get(name.replace("torch.", ""), torch.bfloat16)
    if isinstance(dtype, str):
        if dtype.replace("torch.", "") not in _MODEL_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_MODEL_DTYPES)} or 'auto', got {dtype!r}")
        return _MODEL_DTYPES[dtype.replace("torch.", "")]
    if dtype not in _MODEL_DTYPES.values():
        raise TypeError(f"dtype must be torch.bfloat16, torch.float16 or torch.float32, got {dtype}")
    return dtype


def _check_backend(backend: str | None, device: torch.device) -> None:
    """Fail before reading any tensor if the requested backend is unknown or cannot run here."""
    from ..backends import select_backend

    select_backend(backend, device)


def _as_config(quantization_config, source: str) -> NVFP4Config:
    if isinstance(quantization_config, NVFP4Config):
        return quantization_config
    return parse_quantization_config(quantization_config, source)


def build_report(model: nn.Module, layers: dict[str, NVFP4Linear], ignored: list[str], **fields) -> NVFP4Report:
    """Count what the NVFP4 layers of ``model`` hold; ``fields`` fill the rest of the report."""
    report = NVFP4Report(**fields)
    report.layers_swapped = list(layers)
    report.layers_ignored = list(ignored)
    backends, modes = set(), set()
    for layer in layers.values():
        scheme = "NVFP4A16" if layer.scheme_name == "w4a16" else "NVFP4"
        report.schemes[scheme] = report.schemes.get(scheme, 0) + 1
        modes.add("W4A16" if layer.scheme.weight_only else "W4A4")
        for b in (layer.__dict__.get("nvfp4_backends") or {}).values():
            backends.add(b.name)
        for pname in ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale"):
            t = getattr(layer, pname, None)
            if t is not None:
                report.quantized_weight_bytes += t.numel() * t.element_size()
        report.bf16_equivalent_bytes += layer.out_features * layer.in_features * 2
    report.run_as = "+".join(sorted(modes))
    report.backend = ",".join(sorted(backends))
    return report


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type != "meta":
            return t.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.bfloat16


def convert(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    quantization_config,
    backend: str | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    weight_only: bool = False,
    shard_scale_policy: str | None = None,
    strict: bool = True,
) -> nn.Module:
    """Swap ``model``'s targeted linears for ``NVFP4Linear`` and load ``state_dict`` (a
    compressed-tensors state dict: ``weight_packed``, ``weight_scale``, ... per layer).

    Every quantized tensor must be present, and no tensor may be left unused. Unquantized
    parameters missing from ``state_dict`` keep the model's own values unless ``strict``
    (the default) or they are on the meta device. Returns ``model`` (changed in place) with
    ``model.nvfp4_report``.
    """
    start = time.perf_counter()
    config = _as_config(quantization_config, "quantization_config")
    device = torch.device(device) if device is not None else _model_device(model)
    dtype = dtype or _model_dtype(model)
    _check_backend(backend, device)
    layers, ignored = swap_linears(
        model, config, dtype=dtype, device=device, backend=backend, weight_only=weight_only,
        shard_scale_policy=shard_scale_policy,
    )
    placer = TensorPlacer(model, layers, dtype=dtype, device=device, shard_scale_policy=shard_scale_policy,
                          require_all_unquantized=strict)
    for key, tensor in state_dict.items():
        placer.place(key, tensor, "state_dict")
    placer.finish("state_dict")
    model.nvfp4_config = config
    model.nvfp4_report = build_report(
        model, layers, ignored, source="state_dict", device=str(device), dtype=str(dtype).replace("torch.", ""),
        other_weight_bytes=placer.other_bytes, warnings=list(placer.warnings), seconds=time.perf_counter() - start,
    )
    return model


def _empty_model(hf_config, dtype: torch.dtype, model_cls=None):
    """The model with every parameter on the meta device: nothing is allocated for weights.

    Non-persistent buffers (rotary tables) are not in checkpoints; they are recomputed on the
    CPU by the model's own ``_init_weights``, as transformers does when it loads. Should
    that leave one unset (a model type it does not know), the model is built again with
    ``accelerate.init_empty_weights(include_buffers=False)``, which computes buffers at
    construction at the price of a transient, untouched allocation per layer.
    """
    from transformers import AutoModelForCausalLM

    factory = model_cls or AutoModelForCausalLM
    with torch.device("meta"):
        model = factory.from_config(hf_config, dtype=dtype)
    if not _recompute_buffers(model):
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = factory.from_config(hf_config, dtype=dtype)
    if hasattr(model, "tie_weights"):
        # transformers ties input/output embeddings when it loads weights; do it now so the
        # tied names share one parameter and the checkpoint needs to hold it only once.
        model.tie_weights()
    return model


def _recompute_buffers(model: nn.Module) -> bool:
    """Materialise meta non-persistent buffers on the CPU via ``model._init_weights``; False
    if that is not possible or leaves a value unset."""
    owners = [
        m for m in model.modules()
        if any(b is not None and b.device.type == "meta" and n in m._non_persistent_buffers_set for n, b in m._buffers.items())
    ]
    if not owners:
        return True
    init = getattr(model, "_init_weights", None)
    if init is None:
        return False
    for module in owners:
        for name in module._non_persistent_buffers_set:
            buf = module._buffers.get(name)
            if buf is not None and buf.device.type == "meta":
                fill = torch.full(buf.shape, float("nan"), dtype=buf.dtype) if buf.is_floating_point() else None
                if fill is None:
                    return False  # an integer buffer: no way to tell whether init set it
                module._buffers[name] = fill
        try:
            with torch.no_grad():
                init(module)
        except Exception:
            return False
        for name in module._non_persistent_buffers_set:
            buf = module._buffers.get(name)
            if buf is not None and bool(torch.isnan(buf).any()):
                return False
    return True


def load(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.bfloat16,
    backend: str | None = None,
    weight_only: bool = False,
    progress: bool = True,
    shard_scale_policy: str | None = None,
    *,
    model_cls=None,
    tp: int | None = None,
):
    """Load a compressed-tensors NVFP4 checkpoint directory as a transformers model whose
    targeted linear layers are ``NVFP4Linear``; ``model.nvfp4_report`` says what was done.

    ``weight_only=True`` runs W4A4 layers as W4A16 (activations not quantized).
    ``shard_scale_policy='max'`` reproduces vLLM's max() over q/k/v and gate/up global scales.
    ``model_cls`` (default ``AutoModelForCausalLM``) builds the model from its config.
    ``tp=N``: this process is one of N tensor-parallel ranks started by torchrun; it builds and
    reads only its share (``nvfp4.parallel.load_tp``; ``device="cuda"`` means cuda:LOCAL_RANK).
    """
    if tp is not None:
        from ..parallel import load_tp

        if model_cls is not None:
            raise ValueError("load: model_cls is not supported with tp= (Llama/Mistral/Qwen2/Qwen3 families)")
        return load_tp(path, tp=tp, device=device, dtype=dtype, backend=backend, weight_only=weight_only,
                       progress=progress, shard_scale_policy=shard_scale_policy)
    from transformers import AutoConfig

    start = time.perf_counter()
    path = Path(path)
    raw_config, config_path = read_config(path)
    qc = raw_config.get("quantization_config")
    if qc is None:
        raise CheckpointError(
            f"{config_path}: no quantization_config; this is not a compressed-tensors checkpoint "
            "(quantize a float model with nvfp4.quantize_model and nvfp4.save first)"
        )
    config = parse_quantization_config(qc, str(config_path))
    files = find_checkpoint_files(config_path.parent)
    hf_config = AutoConfig.from_pretrained(str(config_path.parent))
    if hasattr(hf_config, "quantization_config"):
        del hf_config.quantization_config  # we do the quantization; keep transformers' hands off
    dtype = _resolve_dtype(dtype, hf_config)
    device = torch.device(device)
    _check_backend(backend, device)
    model = _empty_model(hf_config, dtype, model_cls)
    layers, ignored = swap_linears(
        model, config, dtype=dtype, device=device, backend=backend, weight_only=weight_only,
        shard_scale_policy=shard_scale_policy,
    )
    if not layers:
        raise CheckpointError(f"{config_path}: the quantization_config targets no linear layer of this model")
    placer = TensorPlacer(model, layers, dtype=dtype, device=device, shard_scale_policy=shard_scale_policy)
    for key, tensor, file in iter_tensors(files, progress=progress):
        placer.place(key, tensor, str(file))
    placer.finish(str(files.index_file or files.directory))
    model.eval()
    _load_generation_config(model, config_path.parent)
    model.nvfp4_config = config
    model.nvfp4_report = build_report(
        model, layers, ignored, source=str(path), device=str(device), dtype=str(dtype).replace("torch.", ""),
        other_weight_bytes=placer.other_bytes, files_read=[f.name for f in files.files],
        warnings=list(placer.warnings), seconds=time.perf_counter() - start,
    )
    return model


def _load_generation_config(model, directory: Path) -> None:
    if not (directory / "generation_config.json").exists():
        return
    try:
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(directory))
    except Exception:  # a broken generation config must not block loading the weights
        pass
