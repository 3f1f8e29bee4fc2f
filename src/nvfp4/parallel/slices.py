"""Read a rank's share of a checkpoint tensor, and nothing else.

``SliceReader`` wraps the checkpoint files found by ``nvfp4.checkpoint.find_checkpoint_files``
(single or sharded safetensors). ``reader.lazy(name)`` returns a ``LazyTensor``: it knows the
tensor's shape and dtype from the safetensors header, and its ``narrow(dim, start, length)``
reads only that range with ``safe_open(...).get_slice(name)[...]``. The layers' own loaders
(``nvfp4.layers.parameters``) accept a ``LazyTensor`` where they accept a tensor, and call
``narrow`` for this rank's rows or columns, so the slice that is read is exactly the slice the
layer's partitioning logic chooses (there is no second copy of that logic here).

Every read is recorded in ``reader.reads`` (tensor, ranges, bytes): the tests assert on it,
and ``reader.bytes_read`` tells a user how much of the checkpoint a rank touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, CheckpointFiles, find_checkpoint_files

# safetensors dtype names -> torch dtypes (those an NVFP4 checkpoint can hold).
_DTYPES = {
    "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
    "BOOL": torch.bool, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


@dataclass(frozen=True)
class SliceRead:
    """One read: ``ranges`` is ``((start, stop), ...)`` per dimension of tensor ``name``."""

    name: str
    ranges: tuple[tuple[int, int], ...]
    nbytes: int


class LazyTensor:
    """A checkpoint tensor not read yet: ``shape``, ``dtype``, ``dim()``, ``narrow()``, ``read()``."""

    is_lazy_checkpoint_tensor = True

    def __init__(self, reader: "SliceReader", name: str, shape: torch.Size, dtype: torch.dtype):
        self._reader, self.name, self.shape, self.dtype = reader, name, shape, dtype

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())

    def narrow(self, dim: int, start: int, length: int) -> torch.Tensor:
        if not 0 <= dim < self.dim():
            raise ValueError(f"{self.name}: cannot narrow dim {dim} of a {self.dim()}-D tensor")
        if start < 0 or length < 0 or start + length > self.shape[dim]:
            raise ValueError(
                f"{self.name}: rows/columns {start}..{start + length} are outside dimension {dim} of size {self.shape[dim]}"
            )
        ranges = [(0, s) for s in self.shape]
        ranges[dim] = (start, start + length)
        return self._reader.read(self.name, tuple(ranges))

    def read(self) -> torch.Tensor:
        """The whole tensor (for what every rank holds: norms, embeddings, global scales)."""
        return self._reader.read(self.name, tuple((0, s) for s in self.shape))

    def __repr__(self) -> str:
        return f"LazyTensor({self.name!r}, shape={tuple(self.shape)}, dtype={self.dtype})"


class SliceReader:
    """Open a checkpoint's safetensors lazily and serve whole tensors or slices, logging reads."""

    def __init__(self, path_or_files: "str | os.PathLike | CheckpointFiles"):
        self.files = path_or_files if isinstance(path_or_files, CheckpointFiles) else find_checkpoint_files(path_or_files)
        self._handles: dict[Path, object] = {}
        self._meta: dict[str, tuple[torch.Size, torch.dtype]] = {}
        self.reads: list[SliceRead] = []

    # -- headers --------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self.files.weight_map)

    def __contains__(self, name: str) -> bool:
        return name in self.files.weight_map

    def _handle(self, file: Path):
        handle = self._handles.get(file)
        if handle is None:
            from safetensors import safe_open

            try:
                handle = safe_open(str(file), framework="pt", device="cpu")
            except Exception as exc:  # SafetensorError, OSError
                raise CheckpointError(f"{file}: not a readable safetensors file (truncated or corrupt?): {exc}") from None
            self._handles[file] = handle
        return handle

    def _slice(self, name: str):
        file = self.files.weight_map.get(name)
        if file is None:
            raise CheckpointError(f"{self.files.directory}: tensor {name!r} is not in the checkpoint")
        try:
            return self._handle(file).get_slice(name), file
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{file}: cannot read tensor {name!r}: {exc}") from None

    def meta(self, name: str) -> tuple[torch.Size, torch.dtype]:
        if name not in self._meta:
            sl, file = self._slice(name)
            code = sl.get_dtype()
            if code not in _DTYPES:
                raise CheckpointError(f"{file}: tensor {name!r} has unsupported dtype {code}")
            self._meta[name] = (torch.Size(sl.get_shape()), _DTYPES[code])
        return self._meta[name]

    def lazy(self, name: str) -> LazyTensor:
        shape, dtype = self.meta(name)
        return LazyTensor(self, name, shape, dtype)

    # -- reads ----------------------------------------------------------------------------
    def read(self, name: str, ranges: tuple[tuple[int, int], ...]) -> torch.Tensor:
        shape, dtype = self.meta(name)
        sl, file = self._slice(name)
        try:
            if ranges:
                tensor = sl[tuple(slice(a, b) for a, b in ranges)]
            else:  # a 0-D tensor
                tensor = self._handle(file).get_tensor(name)
        except Exception as exc:
            raise CheckpointError(f"{file}: cannot read {name!r}{list(ranges)}: {exc}") from None
        self.reads.append(SliceRead(name, tuple(ranges), tensor.numel() * tensor.element_size()))
        return tensor

    def whole(self, name: str) -> torch.Tensor:
        return self.lazy(name).read()

    def is_whole(self, read: SliceRead) -> bool:
        shape, _ = self.meta(read.name)
        return all(a == 0 and b == s for (a, b), s in zip(read.ranges, shape))

    @property
    def bytes_read(self) -> int:
        return sum(r.nbytes for r in self.reads)

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
