"""Programmatic dependent launch (Hopper, ``griddepcontrol``): opt-in, ``NVFP4_TRITON_PDL``.

A decode-sized linear is a chain of short kernels (activation quantization -> GEMV or GEMM ->
split-K reduction), each a few microseconds, and in a CUDA graph a dependent kernel still
starts only after the previous one has drained: its launch latency and the previous
kernel's tail add up on every link. Launched with ``launch_pdl`` (``ops.dependent_launch.pdl_options``),
a kernel may be scheduled while its predecessor still runs; ``wait_for_previous_grid`` at the
very top of every kernel that takes part makes it wait, before any memory access, until the
previous grid has completed and its writes are visible, so the results are exactly those of
stream order (no access is moved before the wait: even a weight read could otherwise race
with nothing, but a write to a reused buffer could race with the previous kernel's reads).
When the next kernel may be scheduled is the ``PDL`` mode (a constexpr):

* ``PDL_EARLY`` (1, ``NVFP4_TRITON_PDL=on``): each kernel signals at its top. Measured on the
  H200: +2% at M = 1, up to 35% slower elsewhere, as the dependents' CTAs take SM slots and
  spin in their wait while the primary's later CTAs still need them.
* ``PDL_LATE`` (2, ``NVFP4_TRITON_PDL=late``): each kernel signals after its main loop
  (``allow_dependents``, before its epilogue stores), so the dependent grid is launched while
  the primary's last CTAs finish, and its CTAs wait only for that tail.
* 0 / False (the kernels' default): nothing is emitted (Ampere and the interpreter have no
  ``griddepcontrol``).

Where the signal sits never changes the results: the dependent's wait returns only once the
whole primary grid has completed and its memory is visible.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait


PDL_EARLY = tl.constexpr(1)
PDL_LATE = tl.constexpr(2)


@triton.jit
def wait_for_previous_grid(PDL: tl.constexpr):
    """At the very top of a kernel, before any memory access."""
    if PDL == PDL_EARLY:
        gdc_launch_dependents()  # the next kernel may be scheduled now (it waits in turn)
    if PDL:
        gdc_wait()  # the previous grid has completed and its memory is visible


@triton.jit
def allow_dependents(PDL: tl.constexpr):
    """``PDL_LATE``: after the kernel's main loop, the next kernel may be scheduled."""
    if PDL == PDL_LATE:
        gdc_launch_dependents()
