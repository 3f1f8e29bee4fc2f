"""Decode GEMM v2 (``kernels/gemm_decode.py``) under the CPU interpreter.

Run by tests/test_triton_decode_v2.py in a subprocess with ``TRITON_INTERPRET=1`` (the
interpreter must be chosen before the kernels are defined). Checks:

* the bit-placement decode: for all 16 E2M1 codes x all 256 E4M3 scale bytes, the fp16
  ``e2m1 * 2^-14`` times the fp16 scale is exactly ``e2m1 * s * 2^-14`` (torch.equal against
  float64), also after conversion to bf16 and ``* 2^14``; NaN scale bytes give NaN;
* the repacked weight layout round-trips to the checkpoint's codes (K = 16, 32, 48, 96);
* the GEMM (W4A4 and W4A16, fp16 and bf16, bias, per-row alpha, split-K, both scale modes,
  M = 0, 1, 3, 16, 17, N not a tile multiple, K = 16, 32, 48 (a trailing 16-group), random
  codes with every E4M3 scale including subnormals and 448) within the fp32-summation bound
  of ``triton_exactness.py`` against a float64 computation.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_triton_decode_v2.py"
sys.path.insert(0, os.path.dirname(__file__))
from triton_exactness import activation_operand, assert_close_to_exact  # noqa: E402

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import nvfp4.ops  # noqa: E402,F401
from nvfp4.kernels.gemm_decode import fp16_e2m1_times_2m14, fp16_from_e4m3_byte  # noqa: E402
from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402
from nvfp4.numerics.formats import e2m1_decode  # noqa: E402
from nvfp4.ops import launch, launch_decode_v2  # noqa: E402

E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


@triton.jit
def _decode_products_kernel(codes_ptr, scales_ptr, out_ptr, out_bf16_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    codes = tl.load(codes_ptr + offs)
    scales = tl.load(scales_ptr + offs)
    w = fp16_e2m1_times_2m14(codes) * fp16_from_e4m3_byte(scales)
    tl.store(out_ptr + offs, w)
    tl.store(out_bf16_ptr + offs, w.to(tl.float32) * 16384.0)


def _e2m1_f64(codes: torch.Tensor) -> torch.Tensor:
    value = E2M1_VALUES[(codes & 7).long()]
    return torch.where((codes & 8) != 0, -value, value)


def test_bit_placement_decode_is_exact_for_every_code_and_scale():
    codes = torch.arange(16, dtype=torch.int32).repeat_interleave(256)
    scale_bytes = torch.arange(256, dtype=torch.int32).repeat(16)
    out = torch.empty(codes.numel(), dtype=torch.float16)
    out_bf16 = torch.empty(codes.numel(), dtype=torch.float32)
    _decode_products_kernel[(1,)](codes, scale_bytes, out, out_bf16, BLOCK=codes.numel())
    scale = scale_bytes.to(torch.uint8).view(torch.float8_e4m3fn).to(torch.float64)
    exact = _e2m1_f64(codes) * scale * 2.0**-14
    nan_scale = (scale_bytes & 0x7F) == 0x7F
    assert bool(out[nan_scale].isnan().all())
    finite = ~nan_scale
    assert int(finite.sum()) == 16 * 254
    got = out[finite].to(torch.float64)
    assert torch.equal(got, exact[finite])
    # Exact in fp16 in the first place (the claim the kernel relies on), and signs of zero kept.
    assert torch.equal(exact[finite].to(torch.float16).to(torch.float64), exact[finite])
    assert torch.equal(torch.signbit(got), torch.signbit(exact[finite]))
    # The bf16 route (W4A16 with bf16 x): fp16 -> bf16 is exact, times 2^14 exact in bf16.
    bf16 = got.to(torch.bfloat16)
    assert torch.equal(bf16.to(torch.float64), got)
    assert torch.equal((bf16 * 16384.0).to(torch.float64), exact[finite] * 16384.0)
    assert torch.equal(out_bf16[finite].to(torch.float64), exact[finite] * 16384.0)
    # The codes agree with the library's own E2M1 decoder.
    assert torch.equal(_e2m1_f64(torch.arange(16)), e2m1_decode(torch.arange(16, dtype=torch.uint8)).to(torch.float64))


@pytest.mark.parametrize("k", [16, 32, 48, 96])
def test_repack_round_trips(k):
    g = torch.Generator().manual_seed(k)
    wp = torch.randint(0, 256, (5, k // 2), generator=g, dtype=torch.uint8)
    ws = torch.randint(0, 0x7F, (5, k // 16), generator=g, dtype=torch.uint8).view(torch.float8_e4m3fn)
    pd, sd = launch_decode_v2.repack_weight_for_decode(wp, ws)
    kp = (k + 31) // 32 * 32
    assert pd.shape == (5, kp // 2) and sd.shape == (5, kp // 16) and sd.dtype == torch.uint8
    codes = torch.stack((wp & 0xF, wp >> 4), dim=-1).reshape(5, k)
    assert torch.equal(launch_decode_v2.unpack_decode_layout(pd, k), codes)
    assert torch.equal(sd[:, : k // 16], ws.view(torch.uint8))
    assert not bool(sd[:, k // 16:].any()) and not bool(launch_decode_v2.unpack_decode_layout(pd, kp)[:, k:].any())
    # Byte j of block b: element 32b + j low, 32b + 16 + j high.
    assert int(pd[0, 0]) == int(codes[0, 0]) | (int(codes[0, 16]) << 4) if k >= 32 else int(pd[0, 0]) == int(codes[0, 0])
    with pytest.raises(ValueError, match="weight_scale"):
        launch_decode_v2.repack_weight_for_decode(wp, ws[:, :1] if k > 16 else ws[:1])


def _weights(n, k, seed, raw=False):
    g = torch.Generator().manual_seed(seed)
    if not raw:
        return quantize_weight(torch.randn(n, k, generator=g) * 0.1)
    # Every code (zeros and -0 included) and every finite E4M3 scale (subnormals, 448).
    wp = torch.randint(0, 256, (n, k // 2), generator=g, dtype=torch.uint8)
    ws = torch.randint(0, 0x7F, (n, k // 16), generator=g, dtype=torch.uint8)
    ws[0, 0], ws[-1, -1] = 0x7E, 0x01  # 448 and the smallest subnormal 2^-9
    return wp, ws.view(torch.float8_e4m3fn), torch.tensor([1.0])


CASES = [
    # m, n, k, config
    (1, 72, 128, dict(BLOCK_K=64, SPLIT_K=2)),
    (3, 72, 48, None),
    (16, 64, 32, dict(SCALE_GATHER=True)),
    (17, 80, 96, dict(BLOCK_K=64, SPLIT_K=1)),
    (5, 40, 16, dict(SCALE_GATHER=True, BLOCK_K=64)),
    (2, 72, 160, dict(BLOCK_K=64, SPLIT_K=2, PREFETCH_SCALES=True)),  # 3 K tiles (padded 160): 2 + 1 masked
    (16, 64, 48, dict(PREFETCH_SCALES=True)),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,n,k,cfg", CASES)
def test_decode_v2_matches_exact(dtype, m, n, k, cfg):
    raw = m in (2, 5, 16)
    wp, ws, gw = _weights(n, k, seed=m * n + k, raw=raw)
    pd, sd = launch_decode_v2.repack_weight_for_decode(wp, ws)
    x = (torch.randn(m, k, generator=torch.Generator().manual_seed(m)) * 2).to(dtype)
    gx = torch.tensor([448.0 * 6.0 / max(x.abs().max().float().item(), 1e-6)])
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    alpha[: n // 2] *= 0.5  # per-row alpha
    bias = torch.randn(n).to(dtype) if m % 2 else None
    before = launch.KERNEL_LAUNCHES["gemm_decode_v2"]
    out = launch_decode_v2.linear_w4a4_decode_v2(x, pd, sd, k, gx, alpha, bias, cfg)
    assert out.dtype == dtype and out.shape == (m, n)
    rp, rs = quantize_activation(x, gx)
    assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, bias, f"v2 w4a4 M={m} K={k}")
    alpha16 = (1.0 / gw).expand(n).contiguous()
    out16 = launch_decode_v2.linear_w4a16_decode_v2(x, pd, sd, k, alpha16, bias, cfg)
    assert_close_to_exact(out16, x.float(), wp, ws, alpha16, bias, f"v2 w4a16 M={m} K={k}")
    assert launch.KERNEL_LAUNCHES["gemm_decode_v2"] == before + 2
    # Same numbers as the v1 path (both exact up to fp32 order; in practice bit-equal).
    ref16 = launch.linear_w4a16(x, wp, ws, alpha16, bias)
    assert_close_to_exact(ref16, x.float(), wp, ws, alpha16, bias, "v1 w4a16")


def test_decode_v2_empty_and_bad_shapes():
    wp, ws, gw = _weights(64, 64, seed=1)
    pd, sd = launch_decode_v2.repack_weight_for_decode(wp, ws)
    alpha = (1.0 / gw).expand(64).contiguous()
    out = launch_decode_v2.linear_w4a16_decode_v2(torch.zeros(0, 64, dtype=torch.bfloat16), pd, sd, 64, alpha, None)
    assert out.shape == (0, 64)
    with pytest.raises(ValueError, match="do not fit"):
        launch_decode_v2.linear_w4a16_decode_v2(torch.zeros(2, 32, dtype=torch.bfloat16), pd, sd, 32, alpha, None)


@pytest.mark.parametrize("weight_only", [False, True])
def test_backend_custom_op_uses_v2_when_selected(monkeypatch, weight_only):
    """NVFP4Linear -> TritonBackend (forced onto the CPU interpreter) -> nvfp4::linear_decode_v2."""
    from nvfp4 import NVFP4Linear
    from nvfp4.backends.triton_backend import TritonBackend

    monkeypatch.setenv("NVFP4_TRITON_SMALL_M", "v2")
    lin = torch.nn.Linear(48, 40, bias=True).to(torch.bfloat16)
    kwargs = dict(weight_only=True) if weight_only else dict(input_global_scale=torch.tensor([500.0]))
    layer = NVFP4Linear.from_linear(lin, backend="reference", **kwargs)
    layer(torch.zeros(1, 48, dtype=torch.bfloat16))  # builds the reference backend
    backend = TritonBackend()
    backend.prepare(layer)
    assert layer.weight_packed_decode is not None and layer.weight_packed_decode.shape == (40, 32)
    layer.__dict__["nvfp4_backends"] = {("cpu", None): backend}
    x = torch.randn(2, 3, 48).to(torch.bfloat16)
    before = launch.KERNEL_LAUNCHES["gemm_decode_v2"]
    out = layer(x)
    assert launch.KERNEL_LAUNCHES["gemm_decode_v2"] == before + 1
    assert out.shape == (2, 3, 40)
    x2 = x.reshape(-1, 48)
    if weight_only:
        a = x2.float()
    else:
        rp, rs = quantize_activation(x2, layer.input_global_scale)
        a = activation_operand(rp, rs)
    assert_close_to_exact(out.reshape(-1, 40), a, layer.weight_packed, layer.weight_scale, layer.alpha, layer.bias, "backend v2")
    # M above the v2 range goes to the v1 kernels through the same op.
    big = torch.randn(launch_decode_v2.DECODE_V2_M_MAX + 1, 48).to(torch.bfloat16)
    before = launch.KERNEL_LAUNCHES["gemm_decode_v2"]
    layer(big)
    assert launch.KERNEL_LAUNCHES["gemm_decode_v2"] == before
    monkeypatch.delenv("NVFP4_TRITON_SMALL_M")
    backend.prepare(layer)
    assert layer.weight_packed_decode is None
