"""Parameters that know how to load themselves, after vLLM's ``parameter.py``.

A layer registers its tensors as these parameters; a *layer's* weight loader (see
``linear.py``) decides which method to call: a plain (replicated or column-parallel) load, a
row-parallel load, or a load of one shard of a fused layer (``q``/``k``/``v``, ``gate``/``up``
or an integer). The parameter then narrows the checkpoint tensor to this tensor-parallel
rank and copies it into place.

Unlike vLLM every load is checked: a tensor of the wrong dtype or shape, or one whose size
does not split across the ranks, raises a ``ValueError``/``TypeError`` that names the layer
and the parameter, instead of an assertion deep inside ``copy_``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import Parameter

QKV_SHARD_IDS = {"q": 0, "k": 1, "v": 2}
GATE_UP_SHARD_IDS = {"gate": 0, "up": 1}


class NVFP4Parameter(Parameter):
    """Base: a tensor loaded whole (the global scales of a non-fused layer, biases)."""

    def __new__(cls, data: torch.Tensor, **kwargs):
        return super().__new__(cls, data=data, requires_grad=False)

    def __init__(
        self,
        data: torch.Tensor,
        weight_loader: Callable | None = None,
        name: str = "",
        tp_rank: int = 0,
        tp_size: int = 1,
        allowed_dtypes: tuple[torch.dtype, ...] | None = None,
    ):
        self._weight_loader = weight_loader
        self.param_name = name
        self.layer_name = ""
        self.tp_rank = tp_rank
        self.tp_size = tp_size
        # Loaded tensors of these dtypes are accepted (and cast, losslessly); others are refused.
        self.allowed_dtypes = allowed_dtypes or (data.dtype,)

    # torch re-wraps parameters in some module operations (e.g. ``module.to``); keep our metadata.
    def __reduce_ex__(self, proto):  # pragma: no cover - pickling support only
        return Parameter.__reduce_ex__(self, proto)

    @property
    def weight_loader(self) -> Callable | None:
        return self._weight_loader

    def describe(self) -> str:
        return f"{self.layer_name}.{self.param_name}" if self.layer_name else self.param_name or "parameter"

    # -- checks shared by every load ---------------------------------------------------------
    def _check_dtype(self, loaded: torch.Tensor) -> torch.Tensor:
        # A lazy checkpoint slice (nvfp4.parallel.slices.LazyTensor) is accepted too: it has
        # shape/dtype/dim and its narrow() reads only the requested rows/columns from disk.
        if not isinstance(loaded, torch.Tensor) and not getattr(loaded, "is_lazy_checkpoint_tensor", False):
            raise TypeError(f"{self.describe()}: expected a torch.Tensor, got {type(loaded).__name__}")
        if loaded.dtype not in self.allowed_dtypes:
            raise TypeError(
                f"{self.describe()}: expected dtype {self.data.dtype}, got {loaded.dtype} "
                f"(shape {tuple(loaded.shape)})"
            )
        return loaded

    def _copy(self, target: torch.Tensor, loaded: torch.Tensor, what: str = "") -> None:
        if tuple(target.shape) != tuple(loaded.shape):
            raise ValueError(
                f"{self.describe()}{what}: expected shape {tuple(target.shape)}, got {tuple(loaded.shape)}"
            )
        target.copy_(loaded.to(device=target.device, dtype=target.dtype))

    # -- the load methods a layer's weight loader calls ---------------------------------------
    def load_whole(self, loaded: torch.Tensor) -> None:
        self._copy(self.data, self._check_dtype(loaded))

    def load_column_parallel_weight(self, loaded: torch.Tensor) -> None:
        self.load_whole(loaded)

    def load_row_parallel_weight(self, loaded: torch.Tensor) -> None:
        self.load_whole(loaded)

    def load_merged_column_weight(self, loaded: torch.Tensor, **kwargs) -> None:
        self.load_whole(loaded)

    def load_qkv_weight(self, loaded: torch.Tensor, **kwargs) -> None:
        self.load_whole(loaded)


class _PartitionedParameter(NVFP4Parameter):
    """A 2-D tensor split over ranks along its output dim (0) and/or input dim (1)."""

    output_dim = 0
    input_dim = 1

    def _narrow_rank(self, loaded: torch.Tensor, dim: int, size: int, index: int, parts: int, what: str):
        if loaded.dim() != self.data.dim():
            raise ValueError(
                f"{self.describe()}{what}: expected a {self.data.dim()}-D tensor, got shape {tuple(loaded.shape)}"
            )
        if loaded.shape[dim] != size * parts:
            raise ValueError(
                f"{self.describe()}{what}: dimension {dim} of the checkpoint tensor is {loaded.shape[dim]}, "
                f"expected {size * parts} ({parts} partition(s) of {size})"
            )
        # Check the other dimensions too before narrowing: a lazy checkpoint slice would
        # otherwise be read from disk only to be refused by _copy.
        expected = list(self.data.shape)
        expected[dim] = size * parts
        if any(loaded.shape[d] != expected[d] for d in range(len(expected)) if d != dim):
            raise ValueError(f"{self.describe()}{what}: expected shape {tuple(expected)}, got {tuple(loaded.shape)}")
        return loaded.narrow(dim, index * size, size)

    def load_column_parallel_weight(self, loaded: torch.Tensor) -> None:
        loaded = self._check_dtype(loaded)
        size = self.data.shape[self.output_dim]
        part = self._narrow_rank(loaded, self.output_dim, size, self.tp_rank, self.tp_size, "")
        self._copy(self.data, part)

    def load_row_parallel_weight(self, loaded: torch.Tensor) -> None:
        loaded = self._check_dtype(loaded)
        size = self.data.shape[self.input_dim]
        part = self._narrow_rank(loaded, self.input_dim, size, self.tp_rank, self.tp_size, "")
        self._copy(self.data, part)

    def load_merged_column_weight(
        self, loaded: torch.Tensor, shard_id: int = 0, shard_offset: int = 0, shard_size: int | None = None, **_
    ) -> None:
        loaded = self._check_dtype(loaded)
        what = f" (shard {shard_id})"
        part = self._narrow_rank(loaded, self.output_dim, shard_size, self.tp_rank, self.tp_size, what)
        self._copy(self.data.narrow(self.output_dim, shard_offset, shard_size), part, what)

    def load_qkv_weight(
        self,
        loaded: torch.Tensor,
        shard_id: str = "q",
        shard_offset: int = 0,
        shard_size: int | None = None,
        num_kv_head_replicas: int = 1,
        **_,
    ) -> None:
        loaded = self._check_dtype(loaded)
        what = f" (shard {shard_id!r})"
        # K/V heads are replicated when there are more ranks than KV heads: ranks
        # r*replicas .. (r+1)*replicas-1 all hold KV head group r.
        if shard_id == "q":
            index, parts = self.tp_rank, self.tp_size
        else:
            index, parts = self.tp_rank // num_kv_head_replicas, self.tp_size // num_kv_head_replicas
        part = self._narrow_rank(loaded, self.output_dim, shard_size, index, parts, what)
        self._copy(self.data.narrow(self.output_dim, shard_offset, shard_size), part, what)


class ModelWeightParameter(_PartitionedParameter):
    """``weight_packed`` (uint8 ``[N, K/2]``): dim 1 counts *bytes*, two FP4 codes each."""


class GroupQuantScaleParameter(_PartitionedParameter):
    """``weight_scale`` (float8_e4m3fn ``[N, K/16]``): dim 1 counts groups of 16 inputs."""


class RowOnlyParameter(_PartitionedParameter):
    """A 1-D tensor split along its only dim by column parallelism (a column-parallel bias)."""

    input_dim = None  # type: ignore[assignment]

    def load_row_parallel_weight(self, loaded: torch.Tensor) -> None:
        # A row-parallel layer's bias is not split: every rank holds it, one adds it.
        self.load_whole(loaded)


class PerTensorScaleParameter(NVFP4Parameter):
    """A global scale: float32, one slot per fused shard (q/k/v, gate/up), never split by TP.

    Slots start as NaN so that a slot the checkpoint never provided is caught when the layer
    is finalised, instead of running with garbage.
    """

    @staticmethod
    def shard_index(shard_id: int | str, num_slots: int, describe: str) -> int:
        if isinstance(shard_id, str):
            table = QKV_SHARD_IDS if shard_id in QKV_SHARD_IDS else GATE_UP_SHARD_IDS
            if shard_id not in table:
                raise ValueError(f"{describe}: unknown shard id {shard_id!r}")
            index = table[shard_id]
        elif isinstance(shard_id, int) and not isinstance(shard_id, bool):
            index = shard_id
        else:
            raise ValueError(f"{describe}: unknown shard id {shard_id!r}")
        if not 0 <= index < num_slots:
            raise ValueError(f"{describe}: shard id {shard_id!r} is out of range for {num_slots} shard(s)")
        return index

    def _scalar(self, loaded: torch.Tensor) -> torch.Tensor:
        loaded = self._check_dtype(loaded)
        if loaded.numel() != 1:
            raise ValueError(f"{self.describe()}: expected one value (shape [1] or []), got shape {tuple(loaded.shape)}")
        return loaded.reshape(())

    def load_whole(self, loaded: torch.Tensor) -> None:
        loaded = self._check_dtype(loaded)
        if loaded.numel() == 1:
            # A checkpoint whose fused tensor is already on disk: every slot takes its value.
            self.data.fill_(loaded.reshape(()).to(self.data.dtype).item())
        else:
            self._copy(self.data, loaded.reshape(self.data.shape) if loaded.numel() == self.data.numel() else loaded)

    def load_merged_column_weight(self, loaded: torch.Tensor, shard_id: int | str = 0, **_) -> None:
        index = self.shard_index(shard_id, self.data.numel(), self.describe())
        self.data[index].copy_(self._scalar(loaded).to(self.data.dtype))

    def load_qkv_weight(self, loaded: torch.Tensor, shard_id: int | str = "q", **_) -> None:
        self.load_merged_column_weight(loaded, shard_id=shard_id)
