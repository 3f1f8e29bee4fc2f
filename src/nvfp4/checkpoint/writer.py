"""Writing a checkpoint directory atomically: safetensors (single or sharded + index) and JSON.

Everything is written into a temporary directory next to the target and renamed into place
at the end, so a crash or an error never leaves a half-written checkpoint under the target
name. An existing non-empty target is refused unless ``overwrite=True``; then it is swapped
out only after the new directory is complete.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from ..utils.atomic import atomic_directory as _atomic_directory
from .reader import INDEX_FILE, SINGLE_FILE

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: int | str | None) -> int | None:
    """``"2GB"``, ``"500MiB"`` or an int number of bytes (``None``: no sharding)."""
    if size is None or isinstance(size, int):
        if isinstance(size, int) and size <= 0:
            raise ValueError(f"max_shard_size must be > 0, got {size}")
        return size
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?I?B?)\s*", str(size).upper())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"max_shard_size: cannot parse {size!r} (use bytes or e.g. '2GB', '500MiB')")
    value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value <= 0:
        raise ValueError(f"max_shard_size must be > 0, got {size!r}")
    return value


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def plan_shards(tensors: dict[str, torch.Tensor], max_shard_size: int | None) -> list[list[str]]:
    """Split tensor names into shards of at most ``max_shard_size`` bytes, in order
    (a tensor larger than the limit gets a shard of its own)."""
    if max_shard_size is None:
        return [list(tensors)]
    shards, current, size = [], [], 0
    for name, t in tensors.items():
        n = _nbytes(t)
        if current and size + n > max_shard_size:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += n
    if current or not shards:
        shards.append(current)
    return shards


def write_safetensors(directory: Path, tensors: dict[str, torch.Tensor], max_shard_size: int | str | None) -> list[str]:
    """Write ``tensors`` as ``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` +
    index; returns the file names written."""
    from safetensors.torch import save_file

    limit = parse_size(max_shard_size)
    shards = plan_shards(tensors, limit)
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file({k: tensors[k].contiguous() for k in shards[0]}, str(directory / SINGLE_FILE), metadata=metadata)
        return [SINGLE_FILE]
    names, weight_map = [], {}
    for i, keys in enumerate(shards, start=1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in keys}, str(directory / fname), metadata=metadata)
        names.append(fname)
        weight_map.update({k: fname for k in keys})
    index = {"metadata": {"total_size": sum(_nbytes(t) for t in tensors.values())}, "weight_map": weight_map}
    write_json(directory / INDEX_FILE, index)
    return names + [INDEX_FILE]


def write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")


def atomic_directory(target: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary directory that replaces ``target`` when complete (see ``utils.atomic``);
    a non-empty ``target`` is refused unless ``overwrite=True``."""
    return _atomic_directory(target, if_exists="replace" if overwrite else "error")
