"""The Triton backend's ``apply_partial_fp32`` (row-parallel partial sums in float32), run by the
Triton CPU interpreter in a subprocess (``TRITON_INTERPRET`` must be set before the kernels are
defined): W4A4 at M = 7 (float paths) equal to the reference backend's float32 partial; W4A4 at
M = 3 (the integer-dot decode kernel, float32 output) and W4A16 within the fp32
summation-order bound ``2 (K + 2) 2^-24 alpha |x| @ |W|^T``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import torch
    from nvfp4 import RowParallelNVFP4Linear, quantize_weight
    from nvfp4.backends.triton_backend import TritonBackend
    from nvfp4.numerics import dequantize_weight_unscaled
    from nvfp4.ops.launch import KERNEL_LAUNCHES

    from nvfp4.numerics import quantize_activation, dequantize_activation_unscaled

    torch.manual_seed(0)
    for scheme, m in (("w4a4", 7), ("w4a4", 3), ("w4a16", 7)):
        p, s, g = quantize_weight(torch.randn(80, 256, dtype=torch.bfloat16))
        layer = RowParallelNVFP4Linear(256, 80, False, dtype=torch.bfloat16, tp_rank=1, tp_size=2, scheme=scheme,
                                       backend="reference")
        for name, t in (("weight_packed", p), ("weight_scale", s), ("weight_global_scale", g)):
            layer.weight_loader(getattr(layer, name), t)
        if scheme == "w4a4":
            layer.weight_loader(layer.input_global_scale, torch.tensor([200.0]))
        layer.process_weights_after_loading()
        x = torch.randn(m, 128).to(torch.bfloat16)
        ref = layer.forward_partial_fp32(x)          # reference backend: exact float32 partial
        before = sum(KERNEL_LAUNCHES.values())
        dp4a_before = KERNEL_LAUNCHES["gemv_dp4a"]
        out = TritonBackend().apply_partial_fp32(layer, x)
        assert sum(KERNEL_LAUNCHES.values()) > before, "the Triton kernels did not run"
        assert out.dtype == torch.float32 and out.shape == (m, 80), (out.dtype, out.shape)
        assert (KERNEL_LAUNCHES["gemv_dp4a"] > dp4a_before) == (scheme == "w4a4" and m <= 4)
        if scheme == "w4a4" and m > 4:
            assert torch.equal(out, ref), (out - ref).abs().max()
        else:
            a = x.float()
            if scheme == "w4a4":
                a = dequantize_activation_unscaled(*quantize_activation(x, layer.input_global_scale))
            w = dequantize_weight_unscaled(layer.weight_packed, layer.weight_scale).abs()
            bound = 2 * (128 + 2) * 2.0 ** -24 * (a.abs() @ w.t()) * layer.alpha
            assert bool(((out - ref).abs() <= bound).all()), (out - ref).abs().max()
    print("ok")
""")


def test_triton_partial_fp32_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
