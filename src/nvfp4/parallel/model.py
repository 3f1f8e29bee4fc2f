"""``load_tp``: a compressed-tensors NVFP4 checkpoint as a Hugging Face model split across
tensor-parallel ranks, each rank reading only its own slices.

It is ``nvfp4.load`` (``integrations/hf.py``) with two steps replaced:

* **swap** (``swap_tensor_parallel``): in every attention block ``q_proj`` is column-parallel
  (query heads split), ``k_proj``/``v_proj`` are split by KV head or replicated when
  ``tp > num_kv_heads``, ``o_proj`` is row-parallel; in every MLP ``gate_proj``/``up_proj`` are
  column-parallel and ``down_proj`` row-parallel. NVFP4 layers where the checkpoint quantizes
  the projection, float ones where it ignores it. The attention modules' head bookkeeping
  (``num_key_value_groups``) is set to this rank's heads. Embeddings, norms and ``lm_head``
  stay whole on every rank (replicated, not vocab-parallel): logits need no gather and are
  bit-identical on every rank.
* **read** (``_load_slices``): instead of streaming whole tensors, each split tensor is handed
  to its layer as a ``LazyTensor`` and the layer's loader reads only this rank's rows or
  columns from the safetensors file (``get_slice``). Global scales and replicated tensors are
  read whole.

Config parsing, target/ignore matching, the empty model, the placement checks (every tensor
found, none left over, scales valid) and finalisation are ``nvfp4.load``'s own code.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from ..checkpoint.config import parse_quantization_config
from ..checkpoint.reader import CheckpointError, find_checkpoint_files, read_config
from ..distributed import TPGroup, agree, init_tensor_parallel
from ..integrations.hf import _empty_model, _load_generation_config, _resolve_dtype, build_report
from ..integrations.loading import TensorPlacer
from ..integrations.swap import set_submodule, targeted_linears
from ..layers import ColumnParallelNVFP4Linear, NVFP4Linear, RowParallelNVFP4Linear
from ..layers.parameters import PerTensorScaleParameter
from .layers import ColumnParallelFloatLinear, KVHeadParallelNVFP4Linear, RowParallelFloatLinear
from .plan import TPPlan, plan_tensor_parallel
from .slices import SliceReader

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
ROW_PARALLEL = ("o_proj", "down_proj")


def _blocks(model: nn.Module, projections: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    return [
        (name, m) for name, m in model.named_modules()
        if all(isinstance(getattr(m, p, None), nn.Linear) for p in projections)
    ]


def _quantized_row_layers(targeted: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in targeted:
        leaf = name.rpartition(".")[2]
        if leaf in ROW_PARALLEL:
            out.setdefault(leaf, []).append(name)
    return out


class _Swapper:
    """Builds this rank's layers (empty, on the target device) in place of ``nn.Linear``s."""

    def __init__(self, model, targeted, plan: TPPlan, tp: TPGroup, *, dtype, backend, weight_only, shard_scale_policy):
        self.model, self.targeted, self.plan, self.tp = model, targeted, plan, tp
        self.dtype, self.backend = dtype, backend
        self.weight_only, self.shard_scale_policy = weight_only, shard_scale_policy
        self.nvfp4: dict[str, NVFP4Linear] = {}
        self.floats: dict[str, nn.Module] = {}

    def _common(self, name):
        return dict(dtype=self.dtype, device=self.tp.device, tp_rank=self.tp.rank, tp_size=self.tp.size, prefix=name)

    def _nvfp4_kw(self, name):
        group = self.targeted[name][1]
        return dict(
            scheme="w4a16" if group.weight_only else "w4a4", weight_only=self.weight_only, backend=self.backend,
            shard_scale_policy=self.shard_scale_policy, **self._common(name),
        ), group

    def swap(self, name: str, linear: nn.Linear, kind: str) -> None:
        """``kind``: ``"column"``, ``"kv"`` (k/v by KV head) or ``"row"``."""
        bias = linear.bias is not None
        fin, fout = linear.in_features, linear.out_features
        if name in self.targeted:
            kw, group = self._nvfp4_kw(name)
            if kind == "row":
                layer = RowParallelNVFP4Linear(fin, fout, bias, process_group=self.tp.group, **kw)
            elif kind == "kv":
                layer = KVHeadParallelNVFP4Linear(fin, self.plan.head_dim, self.plan.num_kv_heads, bias, **kw)
            else:
                layer = ColumnParallelNVFP4Linear(fin, fout, bias, **kw)
            layer.nvfp4_group = group.name
            self.nvfp4[name] = layer
        else:
            if kind == "row":
                layer = RowParallelFloatLinear(fin, fout, bias, process_group=self.tp.group, **self._common(name))
            else:
                replicas = self.plan.kv_head_replicas if kind == "kv" else 1
                layer = ColumnParallelFloatLinear(fin, fout, bias, replicas=replicas, **self._common(name))
            self.floats[name] = layer
        set_submodule(self.model, name, layer)

    def replicate(self, name: str, linear: nn.Linear) -> None:
        """A targeted linear outside attention/MLP (e.g. a quantized lm_head): whole on every rank."""
        kw, group = self._nvfp4_kw(name)
        kw.update(tp_rank=0, tp_size=1)
        layer = NVFP4Linear(linear.in_features, linear.out_features, linear.bias is not None, **kw)
        layer.nvfp4_group = group.name
        self.nvfp4[name] = layer
        set_submodule(self.model, name, layer)


def swap_tensor_parallel(model, qconfig, plan: TPPlan, tp: TPGroup, *, dtype, backend=None, weight_only=False,
                         shard_scale_policy=None):
    """Replace the projections of ``model`` by this rank's parallel layers (see module doc).

    Returns ``(nvfp4_layers, float_parallel_layers, ignored_names)``, each by module name.
    """
    targeted, ignored = targeted_linears(model, qconfig)
    swapper = _Swapper(model, targeted, plan, tp, dtype=dtype, backend=backend, weight_only=weight_only,
                       shard_scale_policy=shard_scale_policy)
    attention = _blocks(model, ATTENTION_PROJECTIONS)
    mlps = _blocks(model, MLP_PROJECTIONS)
    if len(attention) != plan.num_layers or len(mlps) != plan.num_layers:
        raise TypeError(
            f"expected {plan.num_layers} attention blocks with {ATTENTION_PROJECTIONS} and as many MLPs with "
            f"{MLP_PROJECTIONS}; found {len(attention)} and {len(mlps)} in {type(model).__name__}"
        )
    for prefix, block in attention:
        for proj, kind in (("q_proj", "column"), ("k_proj", "kv"), ("v_proj", "kv"), ("o_proj", "row")):
            swapper.swap(f"{prefix}.{proj}", getattr(block, proj), kind)
        # HF attention infers its head count from the projection width (view(..., -1, head_dim));
        # repeat_kv needs the ratio of this rank's query heads to its KV heads.
        block.num_key_value_groups = plan.kv_groups_per_rank
        block.num_heads = plan.heads_per_rank
        block.num_key_value_heads = plan.kv_heads_per_rank
        block.tp_rank, block.tp_size = tp.rank, tp.size
    for prefix, block in mlps:
        for proj, kind in (("gate_proj", "column"), ("up_proj", "column"), ("down_proj", "row")):
            swapper.swap(f"{prefix}.{proj}", getattr(block, proj), kind)
        block.tp_rank, block.tp_size = tp.rank, tp.size
    for name, (linear, _) in targeted.items():
        if name not in swapper.nvfp4:
            swapper.replicate(name, linear)
    ignored = [n for n in ignored if n not in swapper.floats]
    return swapper.nvfp4, swapper.floats, ignored


def _is_split(layer: NVFP4Linear, pname: str) -> bool:
    """Read through the layer's narrowing loader (a slice), or whole?"""
    param = getattr(layer, pname)
    if isinstance(param, PerTensorScaleParameter):
        return False  # global scales: one value, copied on every rank
    return not (layer.parallel == "row" and pname == "bias")  # a row bias is whole, added once


def _load_slices(reader: SliceReader, placer: TensorPlacer, floats: dict, progress: bool) -> None:
    from tqdm.auto import tqdm

    float_keys = {f"{name}.{p}": (layer, p) for name, layer in floats.items() for p in ("weight", "bias")
                  if getattr(layer, p) is not None}
    done_float = set()
    keys = sorted(reader.keys(), key=lambda k: (str(reader.files.weight_map[k]), k))
    for key in tqdm(keys, desc="Loading NVFP4 slices", unit="tensor", disable=not progress):
        origin = str(reader.files.weight_map[key])
        if key in placer.quant_targets:
            layer, pname = placer.quant_targets[key]
            value = reader.lazy(key) if _is_split(layer, pname) else reader.whole(key)
            placer.place(key, value, origin)
        elif key in float_keys:
            layer, pname = float_keys[key]
            try:
                layer.load(pname, reader.lazy(key))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{origin}: tensor {key!r}: {exc}") from None
            done_float.add(key)
        elif key in placer.plain_targets:
            placer.place(key, reader.whole(key), origin)
        else:
            placer.place(key, reader.lazy(key), origin)  # recorded as unexpected/ignored, not read
    missing = sorted(set(float_keys) - done_float)
    if missing:
        raise CheckpointError(f"{reader.files.directory}: {len(missing)} expected tensor(s) missing: {', '.join(missing[:20])}")


def _prepare(path: Path, tp_size: int, dtype):
    raw_config, config_path = read_config(path)
    qc = raw_config.get("quantization_config")
    if qc is None:
        raise CheckpointError(f"{config_path}: no quantization_config; this is not a compressed-tensors checkpoint")
    qconfig = parse_quantization_config(qc, str(config_path))
    files = find_checkpoint_files(config_path.parent)
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(str(config_path.parent))
    if hasattr(hf_config, "quantization_config"):
        del hf_config.quantization_config
    dtype = _resolve_dtype(dtype, hf_config)
    model = _empty_model(hf_config, dtype)
    targeted, _ = targeted_linears(model, qconfig)
    plan = plan_tensor_parallel(hf_config, tp_size, _quantized_row_layers(targeted))
    return config_path, qconfig, files, dtype, model, plan


def load_tp(
    path,
    tp: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.bfloat16,
    backend: str | None = None,
    weight_only: bool = False,
    progress: bool | None = None,
    shard_scale_policy: str | None = None,
    group: TPGroup | None = None,
    timeout_s: float | None = None,
):
    """Load ``path`` split across ``tp`` ranks (this process is one of them).

    Launch one process per rank with torchrun (``tp`` defaults to their number). ``group`` is an
    already made ``TPGroup``; otherwise one is made from torchrun's environment. ``device``
    None picks ``cuda:LOCAL_RANK`` (NCCL) on GPUs, else the CPU (gloo). Every check (model
    splits ``tp`` ways, checkpoint readable) runs before any weight is read, and a failure on
    any rank stops every rank (``nvfp4.distributed.agree``). The model has ``nvfp4_tp`` (the
    group), ``nvfp4_tp_plan``, ``nvfp4_report`` and ``nvfp4_slice_reader`` (its ``reads``).
    """
    start = time.perf_counter()
    tpg = group or init_tensor_parallel(tp, device=device, timeout_s=timeout_s)
    if tp is not None and tp != tpg.size:
        raise ValueError(f"tp={tp} but the group has {tpg.size} ranks")
    progress = tpg.is_first if progress is None else (progress and tpg.is_first)
    error = prepared = None
    try:
        prepared = _prepare(Path(path), tpg.size, dtype)
    except Exception as exc:  # every rank learns of it before anyone reads weights
        error = exc
    agree(tpg, "checking the checkpoint and the split", error)
    config_path, qconfig, files, dtype, model, plan = prepared
    try:
        nvfp4, floats, ignored = swap_tensor_parallel(
            model, qconfig, plan, tpg, dtype=dtype, backend=backend, weight_only=weight_only,
            shard_scale_policy=shard_scale_policy,
        )
        reader = SliceReader(files)
        placer = TensorPlacer(model, nvfp4, dtype=dtype, device=tpg.device, shard_scale_policy=shard_scale_policy,
                              require_all_unquantized=False)
        _load_slices(reader, placer, floats, progress)
        placer.finish(str(files.index_file or files.directory))
        reader.close()
    except Exception as exc:
        error = exc
    agree(tpg, "loading this rank's slices", error)
    model.eval()
    _load_generation_config(model, config_path.parent)
    model.nvfp4_config = qconfig
    model.nvfp4_tp = tpg
    model.nvfp4_tp_plan = plan
    model.nvfp4_slice_reader = reader
    report = build_report(
        model, nvfp4, ignored, source=str(path), device=str(tpg.device), dtype=str(dtype).replace("torch.", ""),
        other_weight_bytes=placer.other_bytes, files_read=[f.name for f in files.files],
        warnings=list(placer.warnings), seconds=time.perf_counter() - start,
    )
    # This rank's share of the quantized weights, in bf16 terms (the report counts local buffers).
    report.bf16_equivalent_bytes = sum(
        layer.output_size_per_partition * layer.input_size_per_partition * 2 for layer in nvfp4.values()
    )
    model.nvfp4_report = report
    model.nvfp4_tp_summary = (
        f"{plan.describe()}; rank {tpg.rank} of {tpg.size} on {tpg.device} read {reader.bytes_read} of "
        f"{files.total_bytes} checkpoint bytes"
    )
    return model
