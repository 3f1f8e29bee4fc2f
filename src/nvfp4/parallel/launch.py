"""Tensor parallelism for the command line: ``--tp N`` under torchrun.

    torchrun --nproc-per-node 2 -m nvfp4 generate CKPT --tp 2 --prompt "..."

``tensor_parallel_session(args)`` is what a command wraps its work in. Without ``--tp`` (or
with ``--tp 1``) outside torchrun it yields ``None`` and the command runs as one process.
Otherwise it joins the group (``cuda:LOCAL_RANK`` + NCCL on GPUs, gloo on the CPU) and

* silences ranks other than 0 (their stdout/stderr go to /dev/null: rank 0 prints the
  answer, the tables and the progress bars);
* on an error on any rank, shows it on that rank's real stderr tagged ``[rank r/N]`` (an error
  every rank raises identically is shown once, by rank 0) and ends the process at once with
  a non-zero status, which takes the group down (``nvfp4.distributed.errors``);
* on success, leaves the process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass

from ..distributed import (
    TPGroup,
    destroy_tensor_parallel,
    init_tensor_parallel,
    launched_by_torchrun,
)
from ..distributed.errors import report_rank_error

TP_HELP = (
    "split the model across N tensor-parallel ranks, one process each: launch with "
    "`torchrun --nproc-per-node N -m nvfp4 ... --tp N` (default: the number of torchrun processes, else 1)"
)


def add_tp_argument(parser) -> None:
    parser.add_argument("--tp", type=int, default=None, metavar="N", help=TP_HELP)


@dataclass
class TensorParallelSession:
    group: TPGroup

    @property
    def device(self):
        return self.group.device

    @property
    def is_first(self) -> bool:
        return self.group.is_first

    def load(self, path, *, dtype, backend=None, weight_only=False):
        from .model import load_tp

        return load_tp(path, group=self.group, dtype=dtype, backend=backend, weight_only=weight_only)


def _tp_device(name):
    """``--device`` under TP: auto/cuda -> cuda:LOCAL_RANK; an explicit cuda:N is refused."""
    if name in (None, "", "auto"):
        return None
    if str(name).startswith("cuda:"):
        raise ValueError(
            f"--device {name}: with --tp every rank uses its own GPU (cuda:LOCAL_RANK); pass --device cuda "
            "and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    return name


def requested_tp(args) -> int:
    tp = getattr(args, "tp", None)
    if tp is None:
        return int(os.environ.get("WORLD_SIZE", 1)) if launched_by_torchrun() else 1
    if tp < 1:
        raise ValueError(f"--tp must be at least 1, got {tp}")
    return tp


@contextlib.contextmanager
def tensor_parallel_session(args):
    tp = requested_tp(args)
    if tp == 1 and not launched_by_torchrun():
        yield None
        return
    group = init_tensor_parallel(tp, device=_tp_device(getattr(args, "device", None)))
    quiet = contextlib.ExitStack()
    if not group.is_first:
        devnull = quiet.enter_context(open(os.devnull, "w"))
        quiet.enter_context(contextlib.redirect_stdout(devnull))
        quiet.enter_context(contextlib.redirect_stderr(devnull))
        logging.disable(logging.CRITICAL)  # handlers made before the redirect still hold the real stderr
        quiet.callback(logging.disable, logging.NOTSET)
    try:
        with quiet:
            yield TensorParallelSession(group)
    except BaseException as exc:  # noqa: BLE001 - a rank that fails must end, loudly
        if group.size == 1:
            destroy_tensor_parallel(group)
            raise
        if not isinstance(exc, KeyboardInterrupt):
            report_rank_error(exc)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130 if isinstance(exc, KeyboardInterrupt) else 1)
    destroy_tensor_parallel(group)
