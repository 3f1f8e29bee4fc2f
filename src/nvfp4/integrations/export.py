"""``save``: write a model with NVFP4 layers as a compressed-tensors checkpoint directory.

Per NVFP4 layer ``<prefix>``: ``weight_packed`` (uint8 ``[N, K/2]``), ``weight_scale``
(e4m3 ``[N, K/16]``), ``weight_global_scale`` (fp32 ``[1]``), ``input_global_scale`` (fp32
``[1]``, W4A4 only) and ``bias``; every other parameter and persistent buffer as it is in
the model (model dtype), tied parameters once (under their first name, as transformers
does). ``config.json`` carries the ``quantization_config``. The directory is written
atomically (``checkpoint/writer.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..checkpoint.config import build_quantization_config
from ..checkpoint.reader import CONFIG_NAME
from ..checkpoint.writer import atomic_directory, write_json, write_safetensors
from ..layers import NVFP4Linear
from ..numerics import FP8_DTYPE, GROUP_SIZE


def _layer_tensors(name: str, layer: NVFP4Linear) -> dict[str, torch.Tensor]:
    if len(layer.output_sizes) > 1 or layer.tp_size > 1:
        raise ValueError(
            f"{name}: fused or tensor-parallel NVFP4 layers cannot be saved in the compressed-tensors layout "
            "(save the unfused, unsplit model)"
        )
    n, k = layer.out_features, layer.in_features
    out = {
        "weight_packed": layer.weight_packed.detach(),
        "weight_scale": layer.weight_scale.detach(),
        "weight_global_scale": layer.weight_global_scale.detach().to(torch.float32).reshape(1),
    }
    if out["weight_packed"].dtype != torch.uint8 or tuple(out["weight_packed"].shape) != (n, k // 2):
        raise ValueError(f"{name}.weight_packed: expected uint8 [{n}, {k // 2}], got "
                         f"{out['weight_packed'].dtype} {tuple(out['weight_packed'].shape)}")
    if out["weight_scale"].dtype != FP8_DTYPE or tuple(out["weight_scale"].shape) != (n, k // GROUP_SIZE):
        raise ValueError(f"{name}.weight_scale: expected float8_e4m3fn [{n}, {k // GROUP_SIZE}], got "
                         f"{out['weight_scale'].dtype} {tuple(out['weight_scale'].shape)}")
    if layer.scheme_name == "w4a4":
        out["input_global_scale"] = layer.input_global_scale.detach().to(torch.float32).reshape(1)
    if layer.bias is not None:
        out["bias"] = layer.bias.detach().to(layer.params_dtype)
    return {f"{name}.{k}": v for k, v in out.items()}


def model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The compressed-tensors state dict of ``model``, on the CPU, in module order."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    nvfp4_prefixes: list[str] = []
    for mname, module in model.named_modules():
        if any(mname.startswith(p) for p in nvfp4_prefixes):
            continue
        if isinstance(module, NVFP4Linear):
            nvfp4_prefixes.append(f"{mname}.")
            tensors.update(_layer_tensors(mname, module))
            continue
        entries = list(module._parameters.items()) + [
            (b, t) for b, t in module._buffers.items() if b not in module._non_persistent_buffers_set
        ]
        for pname, t in entries:
            if t is None or id(t) in seen:
                continue  # a tied parameter is written once
            seen.add(id(t))
            if t.device.type == "meta":
                raise ValueError(f"{mname}.{pname}: is on the meta device (never loaded); cannot save it")
            tensors[f"{mname}.{pname}" if mname else pname] = t.detach()
    return {k: v.to("cpu") for k, v in tensors.items()}


def _quantization_config(model: nn.Module) -> dict:
    config = getattr(model, "nvfp4_config", None)
    if config is not None:
        return config.to_dict()
    # A model assembled by hand: name every NVFP4 layer exactly.
    layers = {n: m for n, m in model.named_modules() if isinstance(m, NVFP4Linear)}
    schemes = {m.scheme_name for m in layers.values()}
    if len(schemes) != 1:
        raise ValueError("save: the model has no nvfp4_config and mixes NVFP4 and NVFP4A16 layers")
    ignore = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return build_quantization_config("NVFP4A16" if schemes == {"w4a16"} else "NVFP4", ignore=ignore, targets=sorted(layers))


def save(
    model: nn.Module,
    directory: str | os.PathLike,
    tokenizer=None,
    *,
    max_shard_size: int | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (from ``quantize_model``, ``load`` or ``convert``) as a compressed-tensors
    NVFP4 checkpoint in ``directory``; returns its path.

    ``max_shard_size`` (bytes or e.g. ``"2GB"``) splits the weights into
    ``model-0000k-of-0000n.safetensors`` with ``model.safetensors.index.json``. An existing
    non-empty ``directory`` is replaced only with ``overwrite=True``.
    """
    if not any(isinstance(m, NVFP4Linear) for m in model.modules()):
        raise ValueError("save: the model has no NVFP4 layers; quantize it with nvfp4.quantize_model first")
    quantization_config = _quantization_config(model)
    tensors = model_state_dict(model)
    target = Path(directory)
    with atomic_directory(target, overwrite=overwrite) as tmp:
        write_safetensors(tmp, tensors, max_shard_size)
        hf_config = getattr(model, "config", None)
        config = hf_config.to_dict() if hasattr(hf_config, "to_dict") else {}
        config["quantization_config"] = quantization_config
        write_json(tmp / CONFIG_NAME, config)
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None and hasattr(generation_config, "save_pretrained"):
            generation_config.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return target
