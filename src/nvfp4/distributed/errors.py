"""How a rank fails: loudly, at once, and without leaving its peers waiting.

A rank that raises prints ``[rank r/N] <error>`` to stderr and leaves with ``os._exit``: a
normal interpreter exit would run ``destroy_process_group`` and other exit hooks, which can
block on a collective that the peers are waiting in. Its exit then ends the group for the
others:

* gloo: the peers' pending collective fails at once ("connection closed by peer"), they raise,
  print their own line and exit non-zero too;
* NCCL: torchrun sees a worker fail and terminates the other workers (its default), and the
  process group's timeout (``NVFP4_TP_TIMEOUT_S``) bounds the wait of any peer that is not
  under torchrun.

Errors every rank raises identically (a model that cannot be split N ways) set
``same_on_every_rank = True`` and are printed by rank 0 only.
"""

from __future__ import annotations

import os
import sys
import traceback

from .collectives import RankFailure
from .group import current_group

DEBUG_ENV = "NVFP4_DEBUG"


def _rank_and_size() -> tuple[int, int]:
    tp = current_group()
    if tp is not None:
        return tp.rank, tp.size
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def report_rank_error(error: BaseException) -> None:
    """Print ``error`` tagged with this rank (traceback too when ``NVFP4_DEBUG=1``)."""
    rank, size = _rank_and_size()
    if getattr(error, "same_on_every_rank", False) and rank != 0:
        return
    tag = f"[rank {rank}/{size}] " if size > 1 else ""
    if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    if isinstance(error, RankFailure):
        print(f"{tag}stopping because another rank failed: {error}", file=sys.stderr)
    else:
        print(f"{tag}error: {type(error).__name__}: {error}", file=sys.stderr)
    sys.stderr.flush()


def run_tensor_parallel_main(fn, *args, **kwargs) -> int:
    """Run ``fn(*args, **kwargs)`` as this rank's main; return its exit code (0 if None).

    On an exception: report it and, when several processes take part, ``os._exit(code)``
    immediately so the group is torn down (see the module docstring). With one process the
    code is returned and the caller exits normally.
    """
    try:
        code = fn(*args, **kwargs)
        return int(code or 0)
    except SystemExit as exc:  # argparse errors and explicit exits keep their code
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        if code == 0:
            return 0
        failure: BaseException | None = None
    except KeyboardInterrupt:
        code, failure = 130, None
    except BaseException as exc:  # noqa: BLE001 - every failure must end this rank
        code, failure = 1, exc
    if failure is not None:
        report_rank_error(failure)
    _, size = _rank_and_size()
    if size > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def finish_tensor_parallel_main(code: int) -> None:
    """End this rank's process after ``run_tensor_parallel_main`` returned ``code``.

    One process: leave the process group (if ours) and ``sys.exit(code)``. Several: meet the
    peers at a last barrier (a peer that is gone makes it fail: exit non-zero), flush, and
    ``os._exit(code)`` without tearing gloo/NCCL down in the interpreter's exit: that
    teardown raced with the peers' and once aborted a rank that had finished cleanly
    ("terminate called without an active exception", exit -6, in a CPU CI run of
    ``benchmarks/bench_tp.py --tp 2``). Every output has been written (atomically) by then.
    """
    from .group import destroy_tensor_parallel

    _, size = _rank_and_size()
    if size <= 1:
        destroy_tensor_parallel()
        sys.exit(code)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    except Exception as exc:  # noqa: BLE001 - a peer that died: this run failed
        report_rank_error(exc)
        code = code or 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
