"""Process-group set-up and tear-down for tensor parallelism.

One process per rank, started by the launcher everyone knows::

    torchrun --nproc-per-node N -m nvfp4 generate CKPT --tp N ...

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
``init_tensor_parallel`` reads them, picks the device (``cuda:LOCAL_RANK`` on GPUs) and the
backend (NCCL on GPUs, gloo on CPUs) and joins the default process group. Every process is a
tensor-parallel rank: there is no data parallelism, so ``--tp`` must equal the number of
processes (checked, with a message that says how to launch).

A single process without torchrun and ``tp == 1`` gets a ``TPGroup`` of size 1 without any
process group (no communication at all). Under ``torchrun --nproc-per-node 1`` a real group
of one is made, which is how the NCCL path is exercised on one GPU.

Collectives time out after ``NVFP4_TP_TIMEOUT_S`` seconds (default 600), so a rank whose peer
died never waits forever; see ``errors.py`` for how a failing rank takes the group down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT_ENV = "NVFP4_TP_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

_CURRENT: "TPGroup | None" = None


@dataclass(frozen=True)
class TPGroup:
    """This process's place in the tensor-parallel group."""

    rank: int
    size: int
    device: torch.device
    backend: str | None = None  # "nccl" / "gloo"; None: one process, no process group
    group: Any = None  # the torch ProcessGroup (None = the default group)
    owns_process_group: bool = False

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        how = f"{self.backend} process group" if self.backend else "no process group"
        return f"tensor-parallel rank {self.rank} of {self.size} on {self.device} ({how})"


def launched_by_torchrun() -> bool:
    """True when the launcher's rendezvous variables are set (torchrun, or a test harness)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def _timeout_seconds(timeout_s: float | None) -> float:
    if timeout_s is not None:
        value, source = timeout_s, "timeout_s"
    else:
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_TIMEOUT_S
        source = f"${TIMEOUT_ENV}"
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{source} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{source} must be > 0 seconds, got {value}")
    return float(value)


def _resolve_device(device: torch.device | str | None, local_rank: int) -> torch.device:
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' was requested but no CUDA GPU is visible to this process")
        count = torch.cuda.device_count()
        if device.index is None:
            if local_rank >= count:
                raise ValueError(
                    f"LOCAL_RANK {local_rank} has no GPU: only {count} visible (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --nproc-per-node <= {count}"
                )
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_tensor_parallel(
    tp: int | None = None,
    *,
    device: torch.device | str | None = None,
    backend: str | None = None,
    timeout_s: float | None = None,
) -> TPGroup:
    """Join (or create) the tensor-parallel group of ``tp`` ranks and return this rank's place.

    ``tp=None`` means "every launched process". ``device`` None/"auto" picks ``cuda:LOCAL_RANK``
    when GPUs are visible, else the CPU. ``backend`` defaults to NCCL for CUDA, gloo otherwise.
    """
    global _CURRENT
    if tp is not None and (not isinstance(tp, int) or isinstance(tp, bool) or tp < 1):
        raise ValueError(f"tp must be a positive integer, got {tp!r}")
    if dist.is_available() and dist.is_initialized():
        rank, world, owns = dist.get_rank(), dist.get_world_size(), False
    elif launched_by_torchrun():
        rank, world, owns = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), True
    else:
        if tp not in (None, 1):
            raise ValueError(
                f"tp={tp} needs {tp} processes, one per rank: launch with "
                f"`torchrun --nproc-per-node {tp} -m nvfp4 ... --tp {tp}`"
            )
        _CURRENT = TPGroup(rank=0, size=1, device=_resolve_device(device, 0))
        return _CURRENT
    tp = world if tp is None else tp
    if tp != world:
        raise ValueError(
            f"--tp {tp} but {world} process(es) were launched (WORLD_SIZE={world}); every process is a "
            f"tensor-parallel rank, so launch with `torchrun --nproc-per-node {tp} ... --tp {tp}`"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = _resolve_device(device, local_rank)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"the NCCL backend needs CUDA tensors, but the device is {device}")
    if owns:
        if not dist.is_available():
            raise RuntimeError("this PyTorch build has no torch.distributed support")
        if backend == "nccl":
            # NVLink SHARP (multicast) can take a host's GPUs out of service on some machines;
            # it only speeds up very large all-reduces, so it stays off unless asked for.
            os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(
            backend=backend, timeout=timedelta(seconds=_timeout_seconds(timeout_s)), **kwargs
        )
    else:
        backend = dist.get_backend()
    _CURRENT = TPGroup(rank=rank, size=world, device=device, backend=backend, owns_process_group=owns)
    return _CURRENT


def current_group() -> TPGroup | None:
    """The group made by the last ``init_tensor_parallel`` in this process (None before)."""
    return _CURRENT


def destroy_tensor_parallel(tp: TPGroup | None = None) -> None:
    """Leave the process group, if this package created it (a no-op otherwise)."""
    global _CURRENT
    tp = tp or _CURRENT
    if tp is not None and tp.owns_process_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if tp is _CURRENT:
        _CURRENT = None
