"""Programmatic dependent launch (PDL) of the decode-path kernels on Hopper and newer.

A decode-sized linear is a chain of 2-3 kernels of a few microseconds each (activation
quantization -> GEMV/GEMM -> split-K reduction). With PDL each kernel may be scheduled while
its predecessor still runs; it waits for it (``griddepcontrol.wait``) before any memory access,
so the results are those of stream order (``kernels/grid_dependency.py``). ``on`` lets the
next kernel be scheduled from the top of each kernel, ``late`` only after its main loop.
"""

from __future__ import annotations

import functools

import torch

from ..kernels import grid_dependency
from ..utils import env
from . import fast_launch

PDL_ENV = "NVFP4_TRITON_PDL"  # "off", "on" (early signal) or "late"; unset: the defaults below
PDL_MODES = ("off", "on", "late")
# Unset, the W4A4 chain runs with "late" and W4A16 with "off". H100
# (benchmarks/results/raw/h100_bench_pdl_on_late.csv, M = 1, 4, 16, 8 shapes): "late" made W4A4
# 1.00-1.16x as fast at every point (median 1.03x), W4A16 0.72-1.10x; "on" lost up to 35%.
PDL_DEFAULT_W4A4 = "late"
PDL_DEFAULT_W4A16 = "off"
_NO_OPTIONS: dict = {}
# The kernels' PDL constexpr per setting, as a plain int.
_PDL_OPTIONS = {setting: {"PDL": int(mode.value), "launch_pdl": True}
                for setting, mode in (("on", grid_dependency.PDL_EARLY), ("late", grid_dependency.PDL_LATE))}


@functools.lru_cache(maxsize=None)
def _has_pdl(index: int) -> bool:
    return torch.cuda.get_device_capability(index) >= (9, 0)


def pdl_mode(w4a4: bool) -> str:
    """``NVFP4_TRITON_PDL`` if set, else the default of the linear's kind."""
    return env.choice(PDL_ENV, PDL_DEFAULT_W4A4 if w4a4 else PDL_DEFAULT_W4A16, PDL_MODES)


def pdl_options(device: torch.device, w4a4: bool = False) -> dict:
    """Launch keywords of a decode-path kernel (``PDL`` constexpr and Triton's ``launch_pdl``)
    for a W4A4 linear (``w4a4``) or any other launch; empty where PDL is off, on the CPU, in
    the interpreter or below Hopper."""
    mode = pdl_mode(w4a4)
    if mode == "off" or fast_launch.INTERPRETING or device.type != "cuda":
        return _NO_OPTIONS
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _PDL_OPTIONS[mode] if _has_pdl(index) else _NO_OPTIONS
