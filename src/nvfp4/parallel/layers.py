"""Parallel layers that the HF module structure needs beyond ``nvfp4.layers.linear``.

HF Llama/Mistral/Qwen attention keeps ``q_proj``, ``k_proj`` and ``v_proj`` as separate
modules (and the MLP ``gate_proj``/``up_proj``), and a compressed-tensors checkpoint stores
them separately, each with its own global scales. We keep them separate on every rank: each
is a ``ColumnParallelNVFP4Linear``, numerically identical per rank to the single-process
layer (a fused QKV layer would quantize the input once with ``max(Gx)`` of the three, which
differs from the single-process model when the checkpoint's ``Gx`` differ).

* ``KVHeadParallelNVFP4Linear``: ``k_proj``/``v_proj``, split by KV head, or replicated when
  there are more ranks than KV heads (vLLM's rule: rank ``r`` holds head group
  ``r // replicas``). It reuses the parameters' QKV loader for the ``k`` shard.
* ``ColumnParallelFloatLinear`` / ``RowParallelFloatLinear``: the same split for projections
  the checkpoint leaves unquantized (``ignore``); the row-parallel one sums float32 partials.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.linear import ColumnParallelNVFP4Linear
from .plan import kv_head_partition


class KVHeadParallelNVFP4Linear(ColumnParallelNVFP4Linear):
    """``k_proj``/``v_proj`` of one attention block, split (or replicated) by KV head."""

    def __init__(self, in_features: int, head_size: int, total_num_kv_heads: int, bias: bool = False, **kw):
        self.head_size = int(head_size)
        self.total_num_kv_heads = int(total_num_kv_heads)
        super().__init__(in_features, self.total_num_kv_heads * self.head_size, bias, **kw)

    def _partition(self):
        self.num_kv_heads, self.num_kv_head_replicas = kv_head_partition(
            self.total_num_kv_heads, self.tp_size, self._name()
        )
        return [self.num_kv_heads * self.head_size], self.in_features

    def _load_unsharded(self, param, loaded):
        # The rows of this rank's KV head group; the parameters' QKV loader owns the rule.
        param.load_qkv_weight(
            loaded, shard_id="k", shard_offset=0, shard_size=self.output_partition_sizes[0],
            num_kv_head_replicas=self.num_kv_head_replicas,
        )

    def extra_repr(self) -> str:
        rep = f", KV heads replicated x{self.num_kv_head_replicas}" if self.num_kv_head_replicas > 1 else ""
        return super().extra_repr() + rep


def _check_float(name: str, what: str, loaded, expected_shape) -> None:
    if not (isinstance(loaded, torch.Tensor) or getattr(loaded, "is_lazy_checkpoint_tensor", False)):
        raise TypeError(f"{name}.{what}: expected a tensor, got {type(loaded).__name__}")
    if not loaded.dtype.is_floating_point or loaded.dtype.itemsize < 2:
        raise TypeError(f"{name}.{what}: expected a float16/bfloat16/float32 tensor, got {loaded.dtype}")
    if tuple(loaded.shape) != tuple(expected_shape):
        raise ValueError(f"{name}.{what}: expected shape {tuple(expected_shape)}, got {tuple(loaded.shape)}")


class _FloatParallelLinear(nn.Module):
    parallel = "?"

    def __init__(self, in_features, out_features, bias, *, local_shape, bias_size, dtype, device, tp_rank, tp_size, prefix):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.tp_rank, self.tp_size, self.prefix = tp_rank, tp_size, prefix
        self.weight = nn.Parameter(torch.empty(local_shape, dtype=dtype, device=device), requires_grad=False)
        self.bias = (
            nn.Parameter(torch.empty(bias_size, dtype=dtype, device=device), requires_grad=False) if bias else None
        )

    def _put(self, target: torch.Tensor, value: torch.Tensor) -> None:
        target.data.copy_(value.to(device=target.device, dtype=target.dtype))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"{self.parallel}, rank {self.tp_rank}/{self.tp_size}, local {list(self.weight.shape)}"
        )


class ColumnParallelFloatLinear(_FloatParallelLinear):
    """An unquantized projection with its outputs split (rank holds rows ``index*n .. +n``)."""

    parallel = "column"

    def __init__(self, in_features, out_features, bias=False, *, replicas=1, dtype=torch.bfloat16, device=None,
                 tp_rank=0, tp_size=1, prefix=""):
        parts = tp_size // replicas
        if tp_size % replicas or out_features % parts:
            raise ValueError(f"{prefix}: {out_features} outputs cannot be split across {parts} rank group(s)")
        self.index, self.n_local = tp_rank // replicas, out_features // parts
        super().__init__(in_features, out_features, bias, local_shape=(self.n_local, in_features),
                         bias_size=self.n_local, dtype=dtype, device=device, tp_rank=tp_rank, tp_size=tp_size,
                         prefix=prefix)

    def load(self, name: str, loaded) -> None:
        """``name`` is ``"weight"`` or ``"bias"``; ``loaded`` a tensor or a ``LazyTensor``."""
        shape = (self.out_features, self.in_features) if name == "weight" else (self.out_features,)
        _check_float(self.prefix, name, loaded, shape)
        self._put(getattr(self, name), loaded.narrow(0, self.index * self.n_local, self.n_local))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class RowParallelFloatLinear(_FloatParallelLinear):
    """An unquantized projection with its inputs split; float32 partial sums are all-reduced."""

    parallel = "row"

    def __init__(self, in_features, out_features, bias=False, *, dtype=torch.bfloat16, device=None,
                 tp_rank=0, tp_size=1, prefix="", process_group=None):
        if in_features % tp_size:
            raise ValueError(f"{prefix}: in_features {in_features} cannot be split across {tp_size} ranks")
        self.k_local = in_features // tp_size
        self.process_group = process_group
        super().__init__(in_features, out_features, bias, local_shape=(out_features, self.k_local),
                         bias_size=out_features, dtype=dtype, device=device, tp_rank=tp_rank, tp_size=tp_size,
                         prefix=prefix)

    def load(self, name: str, loaded) -> None:
        shape = (self.out_features, self.in_features) if name == "weight" else (self.out_features,)
        _check_float(self.prefix, name, loaded, shape)
        if name == "weight":
            loaded = loaded.narrow(1, self.tp_rank * self.k_local, self.k_local)
        elif not isinstance(loaded, torch.Tensor):
            loaded = loaded.read()  # the bias is whole on every rank and added once
        self._put(getattr(self, name), loaded)

    def forward(self, x):
        if self.tp_size == 1:
            return F.linear(x, self.weight, self.bias)
        import torch.distributed as dist

        partial = F.linear(x.float(), self.weight.float())
        dist.all_reduce(partial, group=self.process_group)
        out = partial.to(x.dtype)
        return out + self.bias.to(x.dtype) if self.bias is not None else out
