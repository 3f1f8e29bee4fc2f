"""Cached direct launches of compiled Triton kernels: less host time per eager call.

``kernel[grid](*args, **constexprs)`` costs tens of microseconds of Python per launch
(Triton's argument binding, specialization, cache-key string, launch metadata), as much as
the GPU time of a decode-sized linear (``benchmarks/profile_eager.py``). ``launch(kernel,
grid, *args, **constexprs)`` does the same launch through the same compiled kernel: the
first call of a *specialization* goes through Triton (compiling if needed) and keeps the
``CompiledKernel`` it returns; later calls with the same specialization call its launcher
directly.

What makes two calls the same specialization, mirroring Triton 3.x's
``native_specialize_impl`` (checked against it by ``tests/test_fast_launch.py``):

* a tensor: its dtype and whether its data pointer is 16-byte aligned;
* an int: whether it is 1 (Triton makes it a compile-time constant), whether it is a multiple
  of 16, and its width (i32 / i64 / u64);
* anything else (floats, bools, ``None``): its type and value;
* the keyword arguments (constexprs and options such as ``num_warps``) by value, and the
  current CUDA device (a compiled function belongs to one device's context).

The key is at least as fine as Triton's, so a cached kernel is always the one Triton itself
would launch. The direct path is skipped (plain ``kernel[grid]``) under the interpreter, for
non-``JITFunction`` kernels (autotuners, heuristics), when a Triton launch hook is installed
(profilers need the launch metadata), when a runtime argument is passed by keyword, and when
``NVFP4_TRITON_FAST_LAUNCH=off`` was set at import (or ``ENABLED`` is set to False).
"""

from __future__ import annotations

import os

import torch
from triton import knobs
from triton.runtime.jit import JITFunction

from ..utils import env

ENV = "NVFP4_TRITON_FAST_LAUNCH"
ENABLED = env.switch(ENV, True)
# Read once: Triton decides at kernel definition (import) whether a kernel is interpreted, so
# the variable must be set before nvfp4.ops is imported anyway (launch.interpreting reads this).
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"
_I32_MIN, _I32_MAX, _I64_MAX = -(2**31), 2**31, 2**63
_NOT_CACHEABLE = object()
# Per kernel: {key: (CompiledKernel, tail of constexpr values) or _NOT_CACHEABLE}.
_CACHE: dict = {}
# Counters for tests and profiles: direct launches and launches that went through Triton.
STATS = {"direct": 0, "triton": 0}


def specialization_key(args) -> tuple:
    """What Triton specializes a kernel on, for positional runtime arguments (see module doc)."""
    tensor = torch.Tensor
    return tuple([
        (a.dtype, not a.data_ptr() & 15) if isinstance(a, tensor)
        else (a == 1, not a % 16, _I32_MIN <= a < _I32_MAX, a >= _I64_MAX) if a.__class__ is int
        else (a.__class__, a)
        for a in args
    ])


def _hooks_installed() -> bool:
    hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
    return any(h is not None and getattr(h, "calls", True) for h in hooks)


def _tail(kernel, n_args: int, kwargs: dict):
    """The values of the parameters after the ``n_args`` positional ones (constexprs, by keyword
    or default), in signature order; None when the call cannot be replayed directly."""
    params = kernel.params
    if n_args > len(params) or any(p.is_constexpr for p in params[:n_args]):
        return None
    tail = []
    for p in params[n_args:]:
        if not p.is_constexpr:
            return None  # a runtime argument by keyword: its value would be frozen in the key
        if p.name in kwargs:
            tail.append(kwargs[p.name])
        elif p.has_default:
            tail.append(p.default)
        else:
            return None
    return tuple(tail)


def launch(kernel, grid: tuple, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)``, replayed through the cached compiled kernel when the
    specialization was launched before. ``grid`` is a tuple of 1 to 3 ints."""
    if not ENABLED or INTERPRETING or not isinstance(kernel, JITFunction):
        kernel[grid](*args, **kwargs)
        return
    device = torch.cuda.current_device()
    key = (device, specialization_key(args), tuple(kwargs.items()))
    per_kernel = _CACHE.get(kernel)
    if per_kernel is None:
        per_kernel = _CACHE[kernel] = {}
    try:
        entry = per_kernel.get(key)
    except TypeError:  # an unhashable argument (a list constexpr, say): Triton's own launch
        kernel[grid](*args, **kwargs)
        STATS["triton"] += 1
        return
    if entry is not None and entry is not _NOT_CACHEABLE and not _hooks_installed():
        compiled, tail = entry
        g1 = grid[1] if len(grid) > 1 else 1
        g2 = grid[2] if len(grid) > 2 else 1
        # The same call as JITFunction.run's, without launch metadata (no hook is installed).
        compiled.run(grid[0], g1, g2, torch._C._cuda_getCurrentRawStream(device), compiled.function,
                     compiled.packed_metadata, None, None, None, *args, *tail)
        STATS["direct"] += 1
        return
    compiled = kernel[grid](*args, **kwargs)
    STATS["triton"] += 1
    if entry is None:
        tail = _tail(kernel, len(args), kwargs)
        ok = tail is not None and compiled is not None and not hasattr(compiled, "result") and compiled.function
        per_kernel[key] = (compiled, tail) if ok else _NOT_CACHEABLE


def clear() -> None:
    """Forget the cached kernels (tests; Triton's own cache keeps the compiled code)."""
    _CACHE.clear()
