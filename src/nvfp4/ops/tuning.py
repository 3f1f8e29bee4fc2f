"""Once-per-shape choice between kernel configurations, by timing them on this GPU.

The fastest tile / split-K setting of the decode and small-M kernels depends on the layer
shape in ways no simple rule captured (H200 sweeps in ``benchmarks/results/raw/``: the best
of a dozen candidates beat any single default by 0-35% per shape). So the launchers give a
short list of candidates, the first being the untuned default, and ``pick`` times them once
per key (the first eager call of that shape), keeps the fastest and reuses it.

* Timing: ``TUNE_REPS`` calls of each candidate, each after a write of twice the L2 size
  (the weight streams from HBM, as in a decode step), median of CUDA-event times.
* Inside a CUDA-graph capture nothing can be timed: the first candidate is used **and kept**
  for that key, so captured and eager calls of a shape always run the same configuration
  (same split-K, same fp32 summation order, bit-identical outputs).
* ``NVFP4_TRITON_TUNE=off`` always takes the first candidate: reproducible across processes.
  A different choice changes only the fp32 summation order, never the exactness bound.

Choices are logged at INFO level (``logging.getLogger("nvfp4")``) with every timing.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import torch

TUNE_ENV = "NVFP4_TRITON_TUNE"
TUNE_REPS = 10
logger = logging.getLogger("nvfp4")


def tune_mode() -> str:
    mode = os.environ.get(TUNE_ENV, "auto").strip().lower()
    if mode not in ("auto", "off"):
        raise ValueError(f"{TUNE_ENV}={mode!r}: expected 'auto' or 'off'")
    return mode


def time_us(fn: Callable[[], object], flush: torch.Tensor, reps: int = TUNE_REPS) -> float:
    """Median microseconds of ``reps`` calls of ``fn`` (after 2 untimed ones), the L2
    flushed by writing ``flush`` before each."""
    times = []
    for _ in range(reps + 2):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    timed = sorted(times[2:])
    return timed[len(timed) // 2]


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
        l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * 2**20) or 50 * 2**20
        flush = torch.empty(2 * l2 // 4, dtype=torch.int32, device=device)
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
