"""Reading a checkpoint directory: ``config.json`` and safetensors, single file or sharded.

Tensors are streamed file by file with ``safetensors.safe_open`` (memory-mapped), so only
the tensor being placed is ever materialised on the host. A truncated or corrupt file, an
index that names a missing file, or a tensor listed in the index but absent from its file
raises a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

CONFIG_NAME = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with the file (and tensor) it concerns."""


@dataclass
class CheckpointFiles:
    """Where a checkpoint's tensors are: ``weight_map`` maps tensor name to its file."""

    directory: Path
    files: list[Path]
    weight_map: dict[str, Path] = field(default_factory=dict)
    index_file: Path | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} must hold a JSON object")
    return data


def read_config(path: str | os.PathLike) -> tuple[dict, Path]:
    """``config.json`` of a checkpoint directory as a dict, and its path."""
    directory = Path(path)
    if directory.is_file():
        directory = directory.parent
    config_path = directory / CONFIG_NAME
    return read_json(config_path, "model config"), config_path


def _keys_of(file: Path) -> list[str]:
    """The tensor names of one safetensors file; a truncated/corrupt file fails here."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            return list(handle.keys())
    except FileNotFoundError:
        raise CheckpointError(f"{file}: safetensors file not found") from None
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError)
        raise CheckpointError(f"{file}: not a readable safetensors file (truncated or corrupt?): {exc}") from None


def find_checkpoint_files(path: str | os.PathLike) -> CheckpointFiles:
    """Locate the safetensors of ``path``: a directory (single file or sharded with
    ``model.safetensors.index.json``) or one ``.safetensors`` file."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: expected a directory or a .safetensors file")
        weight_map = {k: path for k in _keys_of(path)}
        return CheckpointFiles(path.parent, [path], weight_map)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    index_path = path / INDEX_FILE
    if index_path.exists():
        index = read_json(index_path, "safetensors index")
        raw_map = index.get("weight_map")
        if not isinstance(raw_map, dict) or not raw_map:
            raise CheckpointError(f"{index_path}: 'weight_map' is missing or empty")
        weight_map = {str(k): path / str(v) for k, v in raw_map.items()}
        files = sorted(set(weight_map.values()))
        for file in files:
            if not file.exists():
                raise CheckpointError(f"{file}: listed in {index_path.name} but not found")
            present = set(_keys_of(file))
            listed = [k for k, f in weight_map.items() if f == file]
            missing = [k for k in listed if k not in present]
            if missing:
                raise CheckpointError(
                    f"{file}: {len(missing)} tensor(s) listed in {index_path.name} are not in the file: "
                    + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                )
        return CheckpointFiles(path, files, weight_map, index_path)
    single = path / SINGLE_FILE
    candidates = [single] if single.exists() else sorted(path.glob("*.safetensors"))
    if not candidates:
        raise CheckpointError(f"{path}: no {SINGLE_FILE}, {INDEX_FILE} or other .safetensors file found")
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates)
        raise CheckpointError(f"{path}: several .safetensors files ({names}) but no {INDEX_FILE} saying how they fit")
    weight_map = {k: candidates[0] for k in _keys_of(candidates[0])}
    return CheckpointFiles(path, candidates, weight_map)


def iter_tensors(files: CheckpointFiles, progress: bool = True) -> Iterator[tuple[str, torch.Tensor, Path]]:
    """Yield ``(name, tensor, file)`` file by file, with a tqdm bar over all tensors."""
    from safetensors import safe_open
    from tqdm.auto import tqdm

    by_file: dict[Path, list[str]] = {}
    for key, file in files.weight_map.items():
        by_file.setdefault(file, []).append(key)
    total = sum(len(v) for v in by_file.values())
    with tqdm(total=total, desc="Loading NVFP4 tensors", unit="tensor", disable=not progress) as bar:
        for file in files.files:
            keys = by_file.get(file, [])
            bar.set_postfix_str(file.name)
            try:
                handle_cm = safe_open(str(file), framework="pt", device="cpu")
            except Exception as exc:
                raise CheckpointError(f"{file}: not a readable safetensors file (truncated or corrupt?): {exc}") from None
            with handle_cm as handle:
                for key in keys:
                    try:
                        tensor = handle.get_tensor(key)
                    except Exception as exc:
                        raise CheckpointError(f"{file}: cannot read tensor {key!r}: {exc}") from None
                    yield key, tensor, file
                    bar.update(1)
