"""``nn.Module`` layers built on the NVFP4 schemes: one replicated layer and vLLM's
tensor-parallel family (column, merged column, QKV, row).

Each layer owns the *layer* half of loading (vLLM's ``weight_loader_v2``): it knows the
logical shards and its rank, computes where a checkpoint tensor goes, and calls the
parameter's load method (``parameters.py``), which narrows and copies. Typical use::

    layer = NVFP4Linear(4096, 4096, dtype=torch.bfloat16)
    for name, tensor in checkpoint_tensors:              # weight_packed, weight_scale, ...
        layer.weight_loader(getattr(layer, name), tensor)
    layer.process_weights_after_loading()
    y = layer(x)

or ``NVFP4Linear.from_linear(torch_linear, input_global_scale=...)`` to quantize a float layer.
"""

from __future__ import annotations

import torch
from torch import nn

from ..numerics import GROUP_SIZE, activation_global_scale, check_global_scale, quantize_weight
from .parameters import (
    GATE_UP_SHARD_IDS,
    QKV_SHARD_IDS,
    NVFP4Parameter,
    PerTensorScaleParameter,
    RowOnlyParameter,
)
from .scheme import CompressedTensorsW4A4Fp4, CompressedTensorsW4A16Fp4

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
SCHEMES = ("w4a4", "w4a16")


def make_scheme(scheme: str, *, weight_only: bool = False, backend=None, shard_scale_policy=None):
    """``"w4a4"`` (NVFP4) or ``"w4a16"`` (NVFP4A16); ``weight_only`` runs a W4A4 layer as W4A16."""
    if scheme == "w4a4":
        return CompressedTensorsW4A4Fp4(backend=backend, shard_scale_policy=shard_scale_policy, weight_only=weight_only)
    if scheme == "w4a16":
        return CompressedTensorsW4A16Fp4(backend=backend, shard_scale_policy=shard_scale_policy)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


class NVFP4Linear(nn.Module):
    """An NVFP4 linear layer, replicated (not split across ranks).

    ``output_sizes`` makes it a fused layer (e.g. ``[q, k, v]``) whose shards are loaded one
    by one by shard id (``shard_names`` or integers) and may have their own global scales.
    """

    parallel = "replicated"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str | None = None,
        scheme: str = "w4a4",
        weight_only: bool = False,
        backend: str | None = None,
        shard_scale_policy: str | None = None,
        output_sizes: list[int] | None = None,
        shard_names: list[str] | None = None,
        tp_rank: int = 0,
        tp_size: int = 1,
        prefix: str = "",
    ):
        super().__init__()
        self.prefix = prefix
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.output_sizes = [int(s) for s in (output_sizes or [out_features])]
        if sum(self.output_sizes) != self.out_features:
            raise ValueError(f"{self._name()}: output_sizes {self.output_sizes} do not add up to {out_features}")
        if shard_names is not None and len(shard_names) != len(self.output_sizes):
            raise ValueError(f"{self._name()}: {len(shard_names)} shard names for {len(self.output_sizes)} shards")
        self.shard_names = list(shard_names) if shard_names is not None else list(range(len(self.output_sizes)))
        if not (isinstance(tp_size, int) and tp_size >= 1 and isinstance(tp_rank, int) and 0 <= tp_rank < tp_size):
            raise ValueError(f"{self._name()}: invalid tensor-parallel rank {tp_rank} of size {tp_size}")
        if self.parallel == "replicated" and tp_size != 1:
            raise ValueError(
                f"{self._name()}: NVFP4Linear is replicated; use the ColumnParallel/RowParallel layers for tp_size > 1"
            )
        self.tp_rank, self.tp_size = tp_rank, tp_size
        self.scheme_name = scheme
        self.scheme = make_scheme(scheme, weight_only=weight_only, backend=backend, shard_scale_policy=shard_scale_policy)
        self.output_partition_sizes, self.input_size_per_partition = self._partition()
        self.scheme.create_weights(
            self,
            output_partition_sizes=self.output_partition_sizes,
            input_size_per_partition=self.input_size_per_partition,
            params_dtype=dtype,
            weight_loader=self.weight_loader,
            tp_rank=self.tp_rank,
            tp_size=self.tp_size,
            device=device,
        )
        if bias:
            data = torch.zeros(self._bias_size(), dtype=dtype, device=device)
            self.register_parameter(
                "bias",
                RowOnlyParameter(
                    data, weight_loader=self.weight_loader, name="bias", tp_rank=tp_rank, tp_size=tp_size,
                    allowed_dtypes=_FLOAT_DTYPES,
                ),
            )
        else:
            self.register_parameter("bias", None)
        self.set_prefix(prefix)

    # -- partitioning (overridden by the parallel layers) -----------------------------------
    def _name(self) -> str:
        return self.prefix or type(self).__name__

    def _partition(self) -> tuple[list[int], int]:
        return list(self.output_sizes), self.in_features

    def _bias_size(self) -> int:
        return sum(self.output_partition_sizes)

    def _shard_location(self, index: int) -> tuple[int, int]:
        """(offset, size) of logical shard ``index`` in this rank's output rows."""
        sizes = self.output_partition_sizes
        return sum(sizes[:index]), sizes[index]

    def _shard_index(self, shard_id) -> int:
        # bool is an int subclass (True == 1): never a shard id.
        if not isinstance(shard_id, bool) and shard_id in self.shard_names:
            return self.shard_names.index(shard_id)
        if isinstance(shard_id, str) and any(isinstance(n, str) for n in self.shard_names):
            # A layer with named shards only takes its own names (or integers): "gate" must not
            # silently load into slot 0 of a q/k/v layer.
            raise ValueError(f"{self._name()}: unknown shard id {shard_id!r}; this layer's shards are {self.shard_names}")
        return PerTensorScaleParameter.shard_index(shard_id, len(self.output_sizes), self._name())

    def set_prefix(self, prefix: str) -> None:
        """Name the layer (e.g. ``model.layers.0.self_attn.qkv_proj``) for error messages."""
        self.prefix = prefix
        for name, p in self.named_parameters(recurse=False):
            if isinstance(p, NVFP4Parameter):
                p.layer_name = prefix

    # -- loading ----------------------------------------------------------------------------
    def weight_loader(self, param: nn.Parameter, loaded_weight: torch.Tensor, loaded_shard_id=None) -> None:
        """Load a checkpoint tensor into ``param`` (vLLM's ``weight_loader`` contract).

        ``loaded_shard_id``: ``None`` for a tensor stored whole (a fused tensor is split into
        its shards; a single global-scale value fills every slot), else a shard name of this
        layer (``shard_names``) or an integer index. A layer with named shards refuses other
        names (``"gate"`` on a q/k/v layer) instead of mapping them to a slot; bools are refused.
        """
        if not isinstance(param, NVFP4Parameter):
            raise TypeError(f"{self._name()}: {type(param).__name__} is not an NVFP4 loading parameter")
        if loaded_shard_id is None:
            if isinstance(param, PerTensorScaleParameter):
                param.load_whole(loaded_weight)  # one value on disk for a fused tensor: every slot
            elif len(self.output_sizes) > 1:
                self._load_fused_from_disk(param, loaded_weight)
            else:
                self._load_unsharded(param, loaded_weight)
            return
        index = self._shard_index(loaded_shard_id)
        offset, size = self._shard_location(index)
        self._load_shard(param, loaded_weight, index, offset, size)

    def _load_unsharded(self, param, loaded):
        param.load_column_parallel_weight(loaded)

    def _load_shard(self, param, loaded, index, offset, size):
        param.load_merged_column_weight(loaded, shard_id=index, shard_offset=offset, shard_size=size)

    def _load_fused_from_disk(self, param, loaded):
        """A fused tensor stored whole: split it into its logical shards and load each."""
        if loaded.dim() == 0 or loaded.shape[0] != sum(self._full_shard_sizes()):
            raise ValueError(
                f"{param.describe()}: a fused tensor must have {sum(self._full_shard_sizes())} rows "
                f"({self._full_shard_sizes()}), got shape {tuple(loaded.shape)}"
            )
        start = 0
        for index, full in enumerate(self._full_shard_sizes()):
            offset, size = self._shard_location(index)
            self._load_shard(param, loaded.narrow(0, start, full), index, offset, size)
            start += full

    def _full_shard_sizes(self) -> list[int]:
        return list(self.output_sizes)

    def process_weights_after_loading(self) -> None:
        self.scheme.process_weights_after_loading(self)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scheme.apply_weights(self, x, self.bias)

    def extra_repr(self) -> str:
        mode = "W4A16" if self.scheme.weight_only else "W4A4"
        if self.scheme_name == "w4a4" and self.scheme.weight_only:
            mode += " (W4A4 checkpoint run weight-only)"
        parts = [
            f"in_features={self.in_features}",
            f"out_features={self.out_features}",
            f"bias={self.bias is not None}",
            f"scheme={mode}",
            f"backend={self.scheme.backend_name_for(self)}",
        ]
        if len(self.output_sizes) > 1:
            parts.append("shards=" + ",".join(f"{n}:{s}" for n, s in zip(self.shard_names, self.output_sizes)))
        if self.tp_size > 1:
            parts.append(f"{self.parallel}, rank {self.tp_rank}/{self.tp_size}, local [{sum(self.output_partition_sizes)}x{self.input_size_per_partition}]")
        return ", ".join(parts)

    # -- construction from a float layer ----------------------------------------------------
    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        input_global_scale: torch.Tensor | float | None = None,
        calibration=None,
        *,
        weight_only: bool = False,
        backend: str | None = None,
        dtype: torch.dtype | None = None,
        weight_global_scale: torch.Tensor | float | None = None,
        prefix: str = "",
    ) -> "NVFP4Linear":
        """Quantize a float ``nn.Linear`` (bit-exact with compressed-tensors).

        W4A4 needs the activation global scale ``Gx``: give it directly, or give
        ``calibration`` (a tensor or an iterable of tensors of this layer's inputs) and it is
        computed by static min-max as llm-compressor does. ``weight_only=True`` makes an
        NVFP4A16 (W4A16) layer, which needs neither. ``weight_global_scale`` overrides ``Gw``
        (llm-compressor shares one between q/k/v and between gate/up); ``prefix`` names the layer.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects a torch.nn.Linear, got {type(linear).__name__}")
        weight = linear.weight.detach()
        dtype = dtype or weight.dtype
        if weight_only:
            gx = None
        elif input_global_scale is not None:
            gx = check_global_scale(input_global_scale, "input_global_scale")
        elif calibration is not None:
            gx = activation_global_scale(calibration)
        else:
            raise ValueError(
                "from_linear: W4A4 needs input_global_scale= or calibration= (activations of this layer); "
                "pass weight_only=True for a W4A16 (NVFP4A16) layer"
            )
        if weight.shape[1] % GROUP_SIZE:
            raise ValueError(
                f"from_linear: in_features = {weight.shape[1]} is not a multiple of the NVFP4 group size {GROUP_SIZE}"
            )
        layer = cls(
            weight.shape[1], weight.shape[0], bias=linear.bias is not None, dtype=dtype, device=weight.device,
            scheme="w4a16" if weight_only else "w4a4", backend=backend, prefix=prefix,
        )
        packed, scale, gw = quantize_weight(weight, weight_global_scale)
        layer.weight_loader(layer.weight_packed, packed)
        layer.weight_loader(layer.weight_scale, scale)
        layer.weight_loader(layer.weight_global_scale, gw)
        if gx is not None:
            layer.weight_loader(layer.input_global_scale, gx)
        if linear.bias is not None:
            layer.weight_loader(layer.bias, linear.bias.detach())
        layer.process_weights_after_loading()
        return layer


class ColumnParallelNVFP4Linear(NVFP4Linear):
    """Outputs split across ranks: each logical output (shard) is divided by ``tp_size``."""

    parallel = "column"

    def _partition(self):
        for name, size in zip(self.shard_names, self.output_sizes):
            if size % self.tp_size:
                raise ValueError(
                    f"{self._name()}: output size {size} of shard {name!r} cannot be split across {self.tp_size} ranks"
                )
        return [s // self.tp_size for s in self.output_sizes], self.in_features

    def _load_unsharded(self, param, loaded):
        param.load_column_parallel_weight(loaded)


class MergedColumnParallelNVFP4Linear(ColumnParallelNVFP4Linear):
    """gate_up_proj: ``[gate, up]`` concatenated along outputs, each split across ranks."""

    def __init__(self, in_features: int, output_sizes: list[int], bias: bool = False, **kw):
        kw.setdefault("shard_names", list(GATE_UP_SHARD_IDS) if len(output_sizes) == 2 else None)
        super().__init__(in_features, sum(output_sizes), bias, output_sizes=output_sizes, **kw)


class QKVParallelNVFP4Linear(ColumnParallelNVFP4Linear):
    """qkv_proj: query, key and value heads; KV heads are replicated when ranks > KV heads."""

    def __init__(
        self, hidden_size: int, head_size: int, total_num_heads: int, total_num_kv_heads: int | None = None,
        bias: bool = False, **kw,
    ):
        self.head_size = int(head_size)
        self.total_num_heads = int(total_num_heads)
        self.total_num_kv_heads = int(total_num_kv_heads or total_num_heads)
        sizes = [self.total_num_heads * head_size, self.total_num_kv_heads * head_size, self.total_num_kv_heads * head_size]
        kw.setdefault("shard_names", list(QKV_SHARD_IDS))
        super().__init__(hidden_size, sum(sizes), bias, output_sizes=sizes, **kw)

    def _partition(self):
        tp = self.tp_size
        if self.total_num_heads % tp:
            raise ValueError(f"{self._name()}: {self.total_num_heads} attention heads cannot be split across {tp} ranks")
        kv = self.total_num_kv_heads
        if tp >= kv:
            if tp % kv:
                raise ValueError(f"{self._name()}: {kv} KV heads cannot be replicated evenly across {tp} ranks")
            self.num_kv_heads, self.num_kv_head_replicas = 1, tp // kv
        else:
            if kv % tp:
                raise ValueError(f"{self._name()}: {kv} KV heads cannot be split across {tp} ranks")
            self.num_kv_heads, self.num_kv_head_replicas = kv // tp, 1
        self.num_heads = self.total_num_heads // tp
        hd = self.head_size
        return [self.num_heads * hd, self.num_kv_heads * hd, self.num_kv_heads * hd], self.in_features

    def _load_shard(self, param, loaded, index, offset, size):
        param.load_qkv_weight(
            loaded, shard_id=("q", "k", "v")[index], shard_offset=offset, shard_size=size,
            num_kv_head_replicas=self.num_kv_head_replicas,
        )


def exact_fp32_partials(backend) -> bool:
    """Can ``backend`` give a row-parallel rank its partial sum in float32, unrounded?"""
    return getattr(backend, "apply_partial_fp32", None) is not None or bool(
        getattr(backend, "exact_fp32_partials", backend.name == "reference")
    )


class RowParallelNVFP4Linear(NVFP4Linear):
    """Inputs split across ranks: each rank holds ``K/tp`` input columns and yields a partial sum.

    ``forward_partial`` is this rank's contribution (bias added on rank 0 only, so the sum
    over ranks adds it once); ``forward`` all-reduces the float32 partials over
    ``process_group`` when ``tp_size > 1``, rounds once and adds the bias once.
    """

    parallel = "row"

    def __init__(self, *args, process_group=None, **kw):
        self.process_group = process_group
        super().__init__(*args, **kw)

    def _partition(self):
        k, tp = self.in_features, self.tp_size
        if k % tp:
            raise ValueError(f"{self._name()}: in_features {k} cannot be split across {tp} ranks")
        if (k // tp) % GROUP_SIZE:
            raise ValueError(
                f"{self._name()}: each of {tp} ranks would hold {k // tp} input features, not a multiple of the "
                f"NVFP4 group size {GROUP_SIZE}; use a tensor-parallel size that keeps K/tp a multiple of 16"
            )
        return list(self.output_sizes), k // tp

    def _bias_size(self) -> int:
        return self.out_features

    def _load_unsharded(self, param, loaded):
        param.load_row_parallel_weight(loaded)

    def _load_shard(self, param, loaded, index, offset, size):
        raise ValueError(f"{param.describe()}: a row-parallel layer has no shards (got shard {index})")

    def forward_partial(self, x: torch.Tensor) -> torch.Tensor:
        return self.scheme.apply_weights(self, x, self.bias if self.tp_rank == 0 else None)

    def forward_partial_fp32(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's partial sum ``alpha * x_p @ W_p^T`` in float32, *without* bias.

        Exact (never rounded to ``x.dtype``) when the backend offers it:

        * a backend method ``apply_partial_fp32(layer, x2d) -> float32 [M, N]`` (``alpha *``
          GEMM, W4A4 or W4A16 as ``layer.scheme.weight_only`` says, no bias), or
        * a float32-input path that is exact (``exact_fp32_partials = True``; the reference
          backend): the input is widened to float32 (same FP4 codes, same products).

        Otherwise the partial is computed in ``x.dtype`` and widened (one rounding per rank,
        as vLLM, whose all-reduce runs in the activation dtype).
        """
        backend = self.scheme._backend_for(self, x.device)
        hook = getattr(backend, "apply_partial_fp32", None)
        if hook is not None and x.dtype != torch.float32:
            k, n = self.input_size_per_partition, self.output_size_per_partition
            if x.dim() == 0 or x.shape[-1] != k:
                raise ValueError(f"{self._name()}: input's last dimension must be {k}, got shape {tuple(x.shape)}")
            x2d = x.reshape(-1, k).contiguous()
            if x2d.shape[0] == 0:
                return x.new_zeros((*x.shape[:-1], n), dtype=torch.float32)
            return hook(self, x2d).reshape(*x.shape[:-1], n)
        if x.dtype != torch.float32 and exact_fp32_partials(backend):
            return self.scheme.apply_weights(self, x.float(), None)
        return self.scheme.apply_weights(self, x, None).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return self.scheme.apply_weights(self, x, self.bias)
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                f"{self._name()}: a row-parallel layer with tp_size={self.tp_size} needs an initialised "
                "torch.distributed process group (or call forward_partial)"
            )
        # Sum the partials in float32 and round once, then add the bias once: the same
        # operations as one process (``Y.to(dtype) + bias``) up to fp32 summation order.
        # (vLLM all-reduces in the activation dtype, rounding every partial.)
        out = self.forward_partial_fp32(x)
        dist.all_reduce(out, group=self.process_group)
        out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out
