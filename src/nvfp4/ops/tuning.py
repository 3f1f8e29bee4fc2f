"""Once-per-shape choice between kernel configurations, by timing them on this GPU.

The fastest tile / split-K setting of the decode and small-M kernels depends on the layer
shape in ways no simple rule captured (H200 sweeps in ``benchmarks/results/raw/``: the best
of a dozen candidates beat any single default by 0-35% per shape). So the launchers give a
short list of candidates, the first being the untuned default, and ``pick`` times them once
per key (the first eager call of that shape), keeps the fastest and reuses it.

* Timing: ``TUNE_REPS`` calls of each candidate, each after a write of twice the L2 size
  (the weight streams from HBM, as in a decode step), median of CUDA-event times. All of
  them are queued behind a GPU sleep longer than the host needs to enqueue them, so the
  events measure GPU time only: a decode-sized call takes less GPU time than Python takes
  to launch it, and timing it eagerly measured the launch overhead instead (the first H200
  run of the tuner picked one-launch candidates that are 25% slower on the GPU). What is
  optimised is what a CUDA graph replays.
* Inside a CUDA-graph capture nothing can be timed: the first candidate is used **and kept**
  for that key, so captured and eager calls of a shape always run the same configuration
  (same split-K, same fp32 summation order, bit-identical outputs).
* ``NVFP4_TRITON_TUNE=off`` always takes the first candidate: reproducible across processes.
  A different choice changes only the fp32 summation order, never the exactness bound.

Choices are logged at INFO level (``logging.getLogger("nvfp4")``) with every timing.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import torch

from ..utils import env

TUNE_ENV = "NVFP4_TRITON_TUNE"
TUNE_REPS = 10
logger = logging.getLogger("nvfp4")


def tune_mode() -> str:
    return env.choice(TUNE_ENV, "auto", ("auto", "off"))


def time_us(fn: Callable[[], object], flush: torch.Tensor, reps: int = TUNE_REPS) -> float:
    """Median GPU microseconds of ``reps`` calls of ``fn``, the L2 flushed by writing
    ``flush`` before each, launch overhead excluded (see the module docstring)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    flush.zero_()
    fn()
    torch.cuda.synchronize()
    host_s = time.perf_counter() - t0  # an upper bound of the time to enqueue one call
    # ~2e9 cycles per second; a slower clock only makes the sleep longer, which is harmless.
    torch.cuda._sleep(int(min(0.5, 2.0 * (reps + 1) * host_s) * 2e9))
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for start, end in events:
        flush.zero_()
        start.record()
        fn()
        end.record()
    events[-1][1].synchronize()
    timed = sorted(start.elapsed_time(end) * 1000.0 for start, end in events)
    return timed[len(timed) // 2]


def flush_buffer(device: torch.device) -> torch.Tensor:
    """A buffer twice the size of the GPU's L2: writing it evicts every weight line."""
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 50 * 2**20
    return torch.empty(2 * l2 // 4, dtype=torch.int32, device=device)


def cached(table: dict, key):
    """The choice ``pick`` made for ``key`` earlier, or None: lets a launcher skip building its
    candidate list on every call (host time of eager decode calls). None when tuning is off."""
    if tune_mode() == "off":
        return None
    return table.get(key)


def pick(table: dict, key, candidates: list, run: Callable[[object], object], device: torch.device, what: str):
    """The candidate to use for ``key`` (cached in ``table``); ``run(candidate)`` performs
    the whole operation with that candidate."""
    if not candidates:
        raise ValueError(f"{what}: no candidate configuration")
    if len(candidates) == 1 or tune_mode() == "off" or device.type != "cuda":
        return candidates[0]
    choice = table.get(key)
    if choice is not None:
        return choice
    if torch.cuda.is_current_stream_capturing():
        choice = candidates[0]
        logger.info("NVFP4 triton %s %s: first seen inside a CUDA-graph capture, untuned %s", what, key, choice)
    else:
        flush = flush_buffer(device)
        timings = []
        for cand in candidates:
            run(cand)  # compile / warm up outside the timing
            timings.append(time_us(lambda cand=cand: run(cand), flush))
        del flush
        best = min(range(len(candidates)), key=timings.__getitem__)
        choice = candidates[best]
        logger.info("NVFP4 triton %s %s: %s (timed %s us)", what, key, choice, ", ".join(f"{t:.1f}" for t in timings))
    table[key] = choice
    return choice
