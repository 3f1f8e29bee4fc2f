"""Programmatic dependent launch (Hopper, ``griddepcontrol``): opt-in, ``NVFP4_TRITON_PDL``.

A decode-sized linear is a chain of short kernels (activation quantization -> GEMV or GEMM ->
split-K reduction), each a few microseconds, and in a CUDA graph a dependent kernel still
starts only after the previous one has drained: its launch latency and the previous
kernel's tail add up on every link. Launched with ``launch_pdl`` (``ops.launch.pdl_options``),
a kernel may be scheduled while its predecessor still runs; ``wait_for_previous_grid`` at the
very top of every kernel that takes part makes it wait, before any memory access, until the
previous grid has completed and its writes are visible, so the results are exactly those of
stream order (no access is moved before the wait: even a weight read could otherwise race
with nothing, but a write to a reused buffer could race with the previous kernel's reads).
Each kernel also signals at its top that the next one may be scheduled.

``PDL`` is a constexpr: off, nothing is emitted (Ampere and the interpreter have no
``griddepcontrol``).
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait


@triton.jit
def wait_for_previous_grid(PDL: tl.constexpr):
    if PDL:
        gdc_launch_dependents()  # the next kernel may be scheduled now (it waits in turn)
        gdc_wait()  # the previous grid has completed and its memory is visible
