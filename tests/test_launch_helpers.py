"""Host-side helpers of the launchers (``nvfp4.ops.launch``): the same integers as Triton's
``cdiv`` / ``next_power_of_2`` without their per-call overhead (those are Triton constexpr
functions, ~5 us per host call, and the launchers call them several times per linear)."""

from __future__ import annotations

import os

import pytest

triton = pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":  # pragma: no cover
    pytest.skip("imports the compiled kernels", allow_module_level=True)

from nvfp4.ops.launch import cdiv, next_power_of_2  # noqa: E402


def test_cdiv_matches_triton():
    for a in range(0, 1200):
        for b in (1, 2, 3, 7, 16, 64, 132, 256, 512):
            assert cdiv(a, b) == triton.cdiv(a, b), (a, b)
    assert cdiv(57344, 64) == 896 and cdiv(1, 4096) == 1


def test_next_power_of_2_matches_triton():
    for v in range(1, 70000):
        assert next_power_of_2(v) == triton.next_power_of_2(v), v
    assert next_power_of_2(0) == 1  # "smallest power of two >= v" (Triton returns 0 here; no caller passes 0)


def test_direct_call_only_for_plain_eager_cuda_tensors():
    """The triton backend skips the dispatcher only for a plain CUDA tensor outside any
    tracing; CPU, meta and fake tensors go through ``torch.ops.nvfp4`` (compiled code too:
    the GPU tests compile NVFP4Linear with ``fullgraph=True``, which a direct call into the
    launcher would break)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from nvfp4.ops.library import direct_call_ok

    assert not direct_call_ok(torch.empty(2, 16))
    assert not direct_call_ok(torch.empty(2, 16, device="meta"))
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(torch.empty(2, 16))
        assert not direct_call_ok(fake)
