"""The collectives tensor parallelism needs, and agreement on failures.

``all_reduce_sum`` sums row-parallel partial outputs. ``agree`` is called by every rank at the
end of a step (validation, loading): if any rank failed, every rank raises, the failing rank
with its own exception and the others with a ``RankFailure`` that quotes it. This turns "rank 1
could not read its shard" into a clean stop on every rank instead of rank 0 waiting in the
next all-reduce until the timeout.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class RankFailure(RuntimeError):
    """Another rank failed; this rank stops too. ``failures`` maps rank -> message."""

    def __init__(self, step: str, failures: dict[int, str]):
        self.step = step
        self.failures = dict(failures)
        detail = "; ".join(f"rank {r}: {m}" for r, m in sorted(self.failures.items()))
        super().__init__(f"{step} failed on rank(s) {sorted(self.failures)}: {detail}")


def _group_of(tp):
    return getattr(tp, "group", None)


def _distributed(tp) -> bool:
    return tp is not None and getattr(tp, "size", 1) > 1 and dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor: torch.Tensor, tp=None, group=None) -> torch.Tensor:
    """Sum ``tensor`` in place over the ranks of ``tp`` (or ``group``); returns it."""
    if group is None and not _distributed(tp):
        return tensor
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group if group is not None else _group_of(tp))
    return tensor


def all_gather_objects(obj, tp) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` without a process group."""
    if not _distributed(tp):
        return [obj]
    out = [None] * tp.size
    dist.all_gather_object(out, obj, group=_group_of(tp))
    return out


def agree(tp, step: str, error: BaseException | None = None) -> None:
    """Called by every rank after ``step``; raises on every rank if any rank failed it."""
    if not _distributed(tp):
        if error is not None:
            raise error
        return
    message = None if error is None else f"{type(error).__name__}: {error}"
    messages = all_gather_objects(message, tp)
    failures = {r: m for r, m in enumerate(messages) if m is not None}
    if error is not None:
        raise error
    if failures:
        raise RankFailure(step, failures)
