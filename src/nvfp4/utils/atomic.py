"""Atomic writes: never leave a half-written file or directory under its final name.

Everything is written into a temporary sibling (same file system, so the final ``rename`` is
atomic) and published only once complete; on any exception the temporary is removed and the
target is untouched. Published entries get ordinary permissions (``0666``/``0777`` minus the
umask): ``mkdtemp``/``mkstemp`` and safetensors create private (0600) files, which would make
a saved checkpoint unreadable to other users.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

IF_EXISTS = ("error", "replace", "keep")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normalise_permissions(root: Path) -> None:
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~mask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~mask)


def _nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, if_exists: str = "error") -> Iterator[Path]:
    """Yield an empty temporary directory next to ``target``; on success it becomes ``target``.

    ``if_exists`` says what to do with a non-empty ``target`` (checked before and again at
    publication, in case another process wrote it meanwhile): ``"error"`` raises
    ``FileExistsError``; ``"replace"`` swaps the old directory out only once the new one is
    complete; ``"keep"`` keeps the existing one and discards ours (a cache filled by a
    concurrent run).
    """
    if if_exists not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}")
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target}: exists and is not a directory")
    if if_exists == "error" and _nonempty_dir(target):
        raise FileExistsError(f"{target}: directory exists and is not empty (pass overwrite=True, or --overwrite on the command line, to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _normalise_permissions(tmp)
        if _nonempty_dir(target):
            if if_exists == "error":
                raise FileExistsError(f"{target}: directory appeared and is not empty while writing")
            if if_exists == "keep":
                return  # the finally clause discards ours
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, backup / "old")
            os.rename(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
            return
        if target.exists():
            target.rmdir()  # an empty directory: nothing to lose
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_file(target: str | os.PathLike, write: Callable) -> None:
    """Write a file by calling ``write(binary_file_object)`` on a temporary, then rename it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
