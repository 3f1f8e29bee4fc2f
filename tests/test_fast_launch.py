"""The cached direct launch (``nvfp4.ops.fast_launch``), on the CPU.

Its safety rests on one property: two calls with the same key are the same Triton
specialization, so the kernel compiled for one is the kernel Triton would launch for the
other. Checked here against Triton's own ``native_specialize_impl`` over every pair of a set
of awkward arguments; the direct launches themselves (bit-identical to ``kernel[grid]``,
CUDA graphs) are checked on the GPU (``tests/gpu/test_triton_gpu.py``).
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("the direct launch is off under the interpreter", allow_module_level=True)
triton = pytest.importorskip("triton")

from triton._C.libtriton import native_specialize_impl  # noqa: E402
from triton.backends.nvidia.compiler import CUDABackend  # noqa: E402

from nvfp4.ops import fast_launch  # noqa: E402


def _triton_spec(arg):
    # is_const=False, specialize=True, align=True: how our kernels' parameters are declared.
    return native_specialize_impl(CUDABackend, arg, False, True, True)


def _awkward_args():
    buf = torch.empty(64, dtype=torch.uint8)
    base = buf.data_ptr() % 16
    aligned = buf[(16 - base) % 16:]  # 16-byte aligned view
    ints = [0, 1, 2, 3, 15, 16, 17, 32, 48, 4096, 14336, -1, -16, -17, 2**31 - 16, 2**31 - 1, 2**31, 2**31 + 16,
            2**32, 2**63 - 16, 2**63, 2**63 + 16, 2**64 - 16]
    tensors = [
        aligned[:16], aligned[1:17], aligned[8:24], aligned[16:32],
        aligned[:16].view(torch.float8_e4m3fn), aligned[1:17].view(torch.float8_e4m3fn),
        aligned[:32].view(torch.bfloat16), aligned[2:34].view(torch.bfloat16), aligned[:32].view(torch.float16),
        aligned[:32].view(torch.int32), aligned[4:36].view(torch.int32), aligned[:32].view(torch.float32),
        aligned[:16].view(torch.int8),
    ]
    return ints + tensors + [0.5, 1.0, -2.0, True, False, None]


def test_key_is_at_least_as_fine_as_tritons_specialization():
    args = _awkward_args()
    keys = [fast_launch.specialization_key([a]) for a in args]
    specs = [_triton_spec(a) for a in args]
    for i, j in itertools.combinations(range(len(args)), 2):
        if keys[i] == keys[j]:
            assert specs[i] == specs[j], (args[i], args[j], specs[i], specs[j])
    # and it is not trivially fine: equal values of the same class share a key
    assert fast_launch.specialization_key([4096]) == fast_launch.specialization_key([14336 + 16 * 5])
    a, b = torch.empty(8, dtype=torch.bfloat16), torch.empty(8, dtype=torch.bfloat16)
    if a.data_ptr() % 16 == 0 and b.data_ptr() % 16 == 0:
        assert fast_launch.specialization_key([a]) == fast_launch.specialization_key([b])


def test_alignment_and_width_change_the_key():
    x = torch.empty(64, dtype=torch.bfloat16)
    assert fast_launch.specialization_key([x]) != fast_launch.specialization_key([x[1:]])
    assert fast_launch.specialization_key([x]) != fast_launch.specialization_key([x.view(torch.float16)])
    assert fast_launch.specialization_key([16]) != fast_launch.specialization_key([17])
    assert fast_launch.specialization_key([1]) != fast_launch.specialization_key([3])
    assert fast_launch.specialization_key([2**31 - 16]) != fast_launch.specialization_key([2**31])
    assert fast_launch.specialization_key([2**63 - 16]) != fast_launch.specialization_key([2**63])
    assert fast_launch.specialization_key([True]) != fast_launch.specialization_key([1])


def test_tail_lists_the_constexprs_in_signature_order():
    from nvfp4.kernels.splitk_reduce import splitk_reduce_kernel as k

    names = [p.name for p in k.params]
    runtime = [p.name for p in k.params if not p.is_constexpr]
    constexprs = [p for p in k.params if p.is_constexpr]
    assert names[: len(runtime)] == runtime, "runtime parameters come first in this kernel"
    kwargs = {p.name: 1000 + i for i, p in enumerate(constexprs) if not p.has_default}
    tail = fast_launch._tail(k, len(runtime), kwargs)
    assert tail == tuple(kwargs.get(p.name, p.default) for p in constexprs)
    # a missing constexpr without default, or a runtime argument by keyword: not replayable
    if kwargs:
        missing = dict(kwargs)
        missing.pop(next(iter(missing)))
        assert fast_launch._tail(k, len(runtime), missing) is None
    assert fast_launch._tail(k, len(runtime) - 1, kwargs) is None


def test_cpu_and_off_switch_take_tritons_own_launch(monkeypatch):
    calls = []

    class FakeKernel:  # not a JITFunction: always launched the normal way
        def __getitem__(self, grid):
            return lambda *a, **kw: calls.append((grid, a, kw))

    fast_launch.launch(FakeKernel(), (3,), 1, 2, BLOCK=4)
    assert calls == [((3,), (1, 2), {"BLOCK": 4})]
    monkeypatch.setattr(fast_launch, "ENABLED", False)
    fast_launch.launch(FakeKernel(), (1, 2), 5)
    assert calls[-1] == ((1, 2), (5,), {})


@triton.jit
def _toy_kernel(x_ptr, n, BLOCK: triton.language.constexpr, FLAG: triton.language.constexpr = True):
    pass


def test_replay_passes_every_parameter_in_signature_order(monkeypatch):
    """The cache logic with Triton's launch and the CUDA calls replaced by recorders: the first
    call of a specialization goes through ``kernel[grid]``, a repeat calls the compiled
    kernel's launcher with the grid padded to 3-D, the current stream, no launch metadata or
    hooks, then every argument (runtime, then constexprs by keyword or default)."""
    triton_calls, direct_calls = [], []

    class Compiled:
        function, packed_metadata = "function-handle", "packed-metadata"

        def run(self, *a):
            direct_calls.append(a)

    def jit_run(*args, grid, warmup, **kwargs):
        triton_calls.append((grid, args, kwargs))
        return Compiled()

    monkeypatch.setattr(_toy_kernel, "run", jit_run)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 1234, raising=False)
    monkeypatch.setattr(fast_launch, "ENABLED", True)
    fast_launch.clear()
    buf = torch.empty(64, dtype=torch.uint8)
    x = buf[(16 - buf.data_ptr() % 16) % 16:][:32]  # 16-byte aligned

    fast_launch.launch(_toy_kernel, (3,), x, 64, BLOCK=128)
    assert len(triton_calls) == 1 and not direct_calls
    fast_launch.launch(_toy_kernel, (5, 2), x, 80, BLOCK=128)  # 80: also a multiple of 16, same key
    assert len(triton_calls) == 1
    assert direct_calls == [(5, 2, 1, 1234, "function-handle", "packed-metadata", None, None, None, x, 80, 128, True)]
    # a new specialization goes through Triton again: misaligned pointer, int class, constexpr
    fast_launch.launch(_toy_kernel, (1,), x[1:], 64, BLOCK=128)
    fast_launch.launch(_toy_kernel, (1,), x, 65, BLOCK=128)
    fast_launch.launch(_toy_kernel, (1,), x, 64, BLOCK=256)
    fast_launch.launch(_toy_kernel, (1,), x, 64, BLOCK=128, FLAG=False)
    assert len(triton_calls) == 5 and len(direct_calls) == 1
    # a runtime argument by keyword is never replayed directly
    for _ in range(2):
        fast_launch.launch(_toy_kernel, (1,), x, n=64, BLOCK=128)
    assert len(triton_calls) == 7 and len(direct_calls) == 1
    # nor while a launch hook (a profiler) is installed
    from triton import knobs

    hook = lambda *a, **k: None  # noqa: E731
    knobs.runtime.launch_enter_hook.add(hook)
    try:
        fast_launch.launch(_toy_kernel, (1,), x, 64, BLOCK=128)
    finally:
        knobs.runtime.launch_enter_hook.remove(hook)
    assert len(triton_calls) == 8 and len(direct_calls) == 1
    fast_launch.launch(_toy_kernel, (1,), x, 64, BLOCK=128)
    assert len(direct_calls) == 2
    # an unhashable argument cannot be a key: Triton's launch, every time
    for _ in range(2):
        fast_launch.launch(_toy_kernel, (1,), [x], 64, BLOCK=128)
    assert len(triton_calls) == 10 and len(direct_calls) == 2
    fast_launch.clear()
