"""Triton kernels under the CPU interpreter (run by tests/test_triton_interpreter.py).

This module is executed in a subprocess with ``TRITON_INTERPRET=1`` set before anything
imports Triton kernels (``triton.jit`` decides compiled vs interpreted at definition time),
so the rest of the test suite is unaffected. Small shapes, tiles of 64, few cases:

* activation quantization: codes and E4M3 scales identical to ``nvfp4.numerics``
  (random data, zeros, -0, subnormal-scale groups, +-Inf, NaN, values at every E2M1 tie);
* every GEMM variant (split-K tensor-core path with the activation dequantized by its own
  kernel, the fused-quantization variant, packed FP4 activations, W4A16, the CUDA-core
  path for M <= 4): within the fp32-summation bound of a float64 computation
  (``triton_exactness.py``); in practice the interpreter's results are bit-equal;
* M = 0, M = 1, M and N not multiples of the tile, K = 16, bias, fp16 and bf16, leading
  dims, a non-contiguous input, and the backend/custom-op entry points.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_triton_interpreter.py"
sys.path.insert(0, os.path.dirname(__file__))
from triton_exactness import activation_operand, assert_close_to_exact  # noqa: E402

import nvfp4.ops  # noqa: E402,F401  (defines the kernels in interpreter mode)
from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402
from nvfp4.ops import launch  # noqa: E402

OPS = torch.ops.nvfp4
DTYPES = [torch.bfloat16, torch.float16]


def _weights(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return quantize_weight(torch.randn(n, k, generator=g) * 0.1)


def _gx(x):
    return torch.tensor([448.0 * 6.0 / max(x.abs().max().float().item(), 1e-6)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_quant_identical(dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(5, 96, generator=g) * 3).to(dtype)
    x[0, :16] = 0
    x[1, 16:32] = -0.0
    x[1, 32:48] = 1e-6  # block scale underflows to an E4M3 subnormal / zero
    x[2, 0] = float("inf")
    x[2, 17] = float("-inf")
    x[3, 40] = float("nan")
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0])
    x[4, 48:64] = torch.cat([ties, -ties]).to(dtype)  # amax 6 and Gx = 1: codes see the exact ties
    for gx in (_gx(x[torch.isfinite(x)].reshape(1, -1)), torch.tensor([1.0])):
        p, s = OPS.quantize_activation(x, gx)
        rp, rs = quantize_activation(x, gx)
        assert torch.equal(p, rp)
        assert torch.equal(s.view(torch.uint8), rs.view(torch.uint8))
    empty_p, empty_s = OPS.quantize_activation(x[:0], gx)
    assert empty_p.shape == (0, 48) and empty_s.shape == (0, 6)


def test_activation_quant_bf16_as_words_and_as_bf16():
    """bf16 rows that start on 4-byte boundaries are read as int32 pairs (``BF16_WORDS``); an odd
    row stride or an odd start falls back to bf16 loads. Every output identical either way."""
    from nvfp4.ops import launch_act_quant

    g = torch.Generator().manual_seed(3)
    base = (torch.randn(4, 97, generator=g) * 3).to(torch.bfloat16)
    base[1, 5] = float("nan")
    base[2, 20:36] = -0.0
    flat = torch.zeros(4 * 96 + 1, dtype=torch.bfloat16)
    flat[1:] = base[:, :96].reshape(-1)
    views = {"contiguous": base[:, :96].contiguous(), "odd row stride": base[:, :96], "odd start": flat[1:].view(4, 96)}
    assert [launch_act_quant._bf16_words(v) for v in views.values()] == [True, False, False]
    gx = _gx(base[torch.isfinite(base)].reshape(1, -1))
    rp, rs = quantize_activation(views["contiguous"], gx)
    operand = activation_operand(rp, rs)
    for name, x in views.items():
        p, s = OPS.quantize_activation(x, gx)
        assert torch.equal(p, rp) and torch.equal(s.view(torch.uint8), rs.view(torch.uint8)), name
        got = launch.quantize_activation(x, gx, dequant_dtype=torch.float32)
        assert torch.equal(got.nan_to_num(7.0), operand.nan_to_num(7.0)), name


def test_dequantized_activation_operand_exact():
    x = (torch.randn(3, 64) * 2).to(torch.bfloat16)
    gx = _gx(x)
    rp, rs = quantize_activation(x, gx)
    got = launch.quantize_activation(x, gx, dequant_dtype=torch.float32)
    assert torch.equal(got, activation_operand(rp, rs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 72, 128), (3, 72, 128), (19, 80, 96), (70, 64, 16)])
def test_w4a4_linear(dtype, m, n, k):
    wp, ws, gw = _weights(n, k, seed=m + n)
    x = (torch.randn(m, k) * 2).to(dtype)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    alpha[: n // 2] *= 2.0  # per-row alpha
    bias = torch.randn(n).to(dtype) if m % 2 else None
    rp, rs = quantize_activation(x, gx)
    a = activation_operand(rp, rs)
    out = OPS.linear_w4a4(x, wp, ws, gx, alpha, bias)
    assert out.dtype == dtype and out.shape == (m, n)
    assert_close_to_exact(out, a, wp, ws, alpha, bias, f"w4a4 M={m}")
    fused = launch.linear_w4a4(x, wp, ws, gx, alpha, bias, config=dict(A_MODE=1))
    assert_close_to_exact(fused, a, wp, ws, alpha, bias, f"fused M={m}")
    packed = OPS.gemm_w4a4_packed(rp, rs, wp, ws, alpha, bias, dtype)
    assert_close_to_exact(packed, a, wp, ws, alpha, bias, f"packed M={m}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 72, 128), (4, 64, 64), (17, 80, 48)])
def test_w4a16_linear(dtype, m, n, k):
    wp, ws, gw = _weights(n, k, seed=7 * m)
    x = torch.randn(m, k).to(dtype)
    alpha = (1.0 / gw).expand(n).contiguous()
    bias = torch.randn(n).to(dtype)
    out = OPS.linear_w4a16(x, wp, ws, alpha, bias)
    assert_close_to_exact(out, x.float(), wp, ws, alpha, bias, f"w4a16 M={m}")


@pytest.mark.parametrize("w_as_b", [True, False])
@pytest.mark.parametrize("m,n,k,split", [(5, 72, 128, 1), (17, 80, 192, 3), (70, 64, 16, 1), (1, 40, 64, 1)])
def test_both_operand_orientations_of_the_tensor_core_gemm(w_as_b, m, n, k, split):
    """``W_AS_B`` (weight through shared memory as the right MMA operand) and swap-AB (weight
    as the left register operand), with and without split-K, W4A4 (fp16 operand) and W4A16."""
    wp, ws, gw = _weights(n, k, seed=m + k)
    x = (torch.randn(m, k) * 2).to(torch.bfloat16)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    bias = torch.randn(n).to(torch.bfloat16)
    cfg = dict(W_AS_B=w_as_b, SPLIT_K=split)
    rp, rs = quantize_activation(x, gx)
    out = launch.linear_w4a4(x, wp, ws, gx, alpha, bias, config=cfg)
    assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, bias, f"w4a4 W_AS_B={w_as_b} M={m}")
    out16 = launch.linear_w4a16(x, wp, ws, (1.0 / gw).expand(n).contiguous(), None, config=cfg)
    assert_close_to_exact(out16, x.float(), wp, ws, (1.0 / gw).expand(n), None, f"w4a16 W_AS_B={w_as_b} M={m}")


@pytest.mark.parametrize("w_as_b", [True, False])
@pytest.mark.parametrize("m,n,k,split,block_m", [(5, 72, 128, 2, 16), (17, 80, 192, 3, 32), (70, 130, 256, 4, 32)])
def test_splitk_reduced_in_the_gemm_gives_the_separate_launchs_bits(w_as_b, m, n, k, split, block_m, monkeypatch):
    """``NVFP4_TRITON_SPLITK_REDUCE=kernel``: the last program of each (N, M) tile sums the
    partials in split order, so W4A4 and W4A16 outputs equal the ``splitk_reduce`` launch's bit
    for bit (several N and M tiles, N and M off the tile, per-row alpha, bias); no reduction
    launch, and the ticket counters are back at 0."""
    from nvfp4.ops import splitk_counters

    wp, ws, gw = _weights(n, k, seed=m + k + split)
    x = (torch.randn(m, k) * 2).to(torch.bfloat16)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    alpha[: n // 3] *= 0.5
    bias = torch.randn(n).to(torch.bfloat16)
    cfg = dict(W_AS_B=w_as_b, SPLIT_K=split, BLOCK_M=block_m)
    outs = {}
    for mode in ("launch", "kernel"):
        monkeypatch.setenv(splitk_counters.SPLITK_REDUCE_ENV, mode)
        launch.KERNEL_LAUNCHES.clear()
        outs[mode] = (launch.linear_w4a4(x, wp, ws, gx, alpha, bias, config=cfg),
                      launch.linear_w4a16(x, wp, ws, alpha, None, config=cfg))
        assert launch.KERNEL_LAUNCHES["splitk_reduce"] == (2 if mode == "launch" else 0), mode
    for got, want in zip(outs["kernel"], outs["launch"]):
        assert torch.equal(got, want)
    assert all(int(buf.abs().sum()) == 0 for buf in splitk_counters._COUNTERS.values())
    rp, rs = quantize_activation(x, gx)
    assert_close_to_exact(outs["kernel"][0], activation_operand(rp, rs), wp, ws, alpha, bias, f"ticket M={m}")


@pytest.mark.parametrize("m,split", [(1, 1), (5, 2), (8, 3)])
def test_eight_row_swap_ab_tiles(m, split, monkeypatch):
    """The swap-AB tiles 8 activation rows wide (``launch.EIGHT_ROW_TILES``, offered at M <= 8):
    W4A4 (fp16 operand) and W4A16 through them, with and without split-K, paired decode."""
    assert not any(c.get("BLOCK_M") == 8 for c in launch.small_m_candidates(m, with_gemv=False))  # opt-in
    monkeypatch.setenv(launch.EIGHT_ROW_ENV, "on")
    n, k = 72, 192
    wp, ws, gw = _weights(n, k, seed=m + split)
    x = (torch.randn(m, k) * 2).to(torch.bfloat16)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    bias = torch.randn(n).to(torch.bfloat16)
    rp, rs = quantize_activation(x, gx)
    cands = [c for c in launch.small_m_candidates(m, with_gemv=False) if c.get("BLOCK_M") == 8]
    assert len(cands) == len(launch.EIGHT_ROW_TILES)
    for cand in cands:
        cfg = dict(cand, SPLIT_K=split)
        out = launch.linear_w4a4(x, wp, ws, gx, alpha, bias, config=cfg)
        assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, bias, f"w4a4 8-row M={m} {cand}")
        out16 = launch.linear_w4a16(x, wp, ws, (1.0 / gw).expand(n).contiguous(), bias, config=cfg)
        assert_close_to_exact(out16, x.float(), wp, ws, (1.0 / gw).expand(n), bias, f"w4a16 8-row M={m} {cand}")
    assert not any(c.get("BLOCK_M") == 8 for c in launch.small_m_candidates(9, with_gemv=False))


def test_small_m_candidates_put_the_shared_memory_orientation_first():
    for m in (5, 16, 17, 64, 100, 128):
        cands = launch.small_m_candidates(m, with_gemv=False)
        assert cands[0]["W_AS_B"] and any(c.get("W_AS_B") is False for c in cands)
        assert all(c["BLOCK_M"] >= min(m, 64) for c in cands if c.get("W_AS_B"))
    assert launch.small_m_candidates(3, with_gemv=True)[-1] == {"PATH": "gemv"}


def test_bad_gemv_setting_is_refused(monkeypatch):
    wp, ws, gw = _weights(64, 64, seed=4)
    monkeypatch.setenv("NVFP4_TRITON_GEMV", "sometimes")
    with pytest.raises(ValueError, match="NVFP4_TRITON_GEMV='sometimes'"):
        OPS.linear_w4a16(torch.randn(2, 64).to(torch.bfloat16), wp, ws, (1.0 / gw).expand(64).contiguous(), None)


def test_gemv_path_runs_for_tiny_m():
    wp, ws, gw = _weights(72, 128, seed=3)
    x = torch.randn(2, 128).to(torch.bfloat16)
    before = launch.KERNEL_LAUNCHES["gemv"]
    out = OPS.linear_w4a16(x, wp, ws, (1.0 / gw).expand(72).contiguous(), None)
    assert launch.KERNEL_LAUNCHES["gemv"] == before + 1
    assert_close_to_exact(out, x.float(), wp, ws, (1.0 / gw).expand(72), None, "gemv")


def test_weight_dequant_kernel_exact():
    from nvfp4.numerics.weights import dequantize_weight_unscaled

    wp, ws, _ = _weights(40, 96, seed=11)
    got = launch.dequantize_weight(wp, ws.view(torch.uint8), torch.float32)
    assert torch.equal(got, dequantize_weight_unscaled(wp, ws))


def test_bad_inputs_are_rejected_clearly():
    wp, ws, gw = _weights(64, 64, seed=2)
    alpha = (1.0 / gw).expand(64).contiguous()
    with pytest.raises(TypeError, match="bfloat16 or float16"):
        OPS.linear_w4a16(torch.randn(2, 64), wp, ws, alpha, None)
    with pytest.raises(ValueError, match="weight_packed"):
        OPS.linear_w4a16(torch.randn(2, 32).to(torch.bfloat16), wp, ws, alpha, None)
    with pytest.raises(ValueError, match="alpha"):
        OPS.linear_w4a16(torch.randn(2, 64).to(torch.bfloat16), wp, ws, alpha[:3], None)


def test_module_with_leading_dims_noncontiguous_and_empty():
    """NVFP4Linear end to end with the Triton ops (forced: the backend itself is GPU-only)."""
    from nvfp4 import NVFP4Linear
    from nvfp4.backends import registry
    from nvfp4.backends.triton_backend import TritonBackend

    lin = torch.nn.Linear(64, 40, bias=True).to(torch.bfloat16)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([500.0]), backend="reference")
    ref_out = layer(torch.zeros(1, 64, dtype=torch.bfloat16))  # builds the reference backend
    backend = TritonBackend()
    backend.prepare(layer)
    layer.__dict__["nvfp4_backends"] = {("cpu", None): backend}
    x = torch.randn(2, 3, 64).to(torch.bfloat16)
    before = sum(launch.KERNEL_LAUNCHES.values())
    out = layer(x)
    assert sum(launch.KERNEL_LAUNCHES.values()) > before
    assert out.shape == (2, 3, 40) and ref_out.shape == (1, 40)
    rp, rs = quantize_activation(x.reshape(-1, 64), layer.input_global_scale)
    assert_close_to_exact(
        out.reshape(-1, 40), activation_operand(rp, rs), layer.weight_packed, layer.weight_scale, layer.alpha,
        layer.bias, "module",
    )
    xt = torch.randn(64, 5).to(torch.bfloat16).t()
    assert torch.equal(layer(xt), layer(xt.contiguous()))
    assert layer(x[:, :0]).shape == (2, 0, 40)
    assert registry  # imported for its side effects only


def test_pdl_default_is_late_for_w4a4_and_off_for_w4a16(monkeypatch):
    """Unset, NVFP4_TRITON_PDL means "late" for every kernel of a W4A4 linear (activation
    quantization, integer-dot GEMV, GEMM, split-K reduction) and "off" for W4A16; when set, it
    applies to both. (The launch options themselves are empty off Hopper and in the interpreter.)"""
    monkeypatch.delenv(launch.PDL_ENV, raising=False)
    assert (launch.pdl_mode(True), launch.pdl_mode(False)) == ("late", "off")
    for setting in launch.PDL_MODES:
        monkeypatch.setenv(launch.PDL_ENV, setting)
        assert launch.pdl_mode(True) == launch.pdl_mode(False) == setting
    monkeypatch.delenv(launch.PDL_ENV)
    calls = []
    real = launch.pdl_options
    monkeypatch.setattr(launch, "pdl_options", lambda device, w4a4=False: calls.append(w4a4) or real(device, w4a4))
    wp, ws, gw = quantize_weight(torch.randn(64, 128) * 0.1)
    alpha = (1.0 / gw).expand(64).contiguous()
    for m in (1, 3, 9):  # integer-dot GEMV (+ int8 activation launch), then activation kernel + GEMM
        x = torch.randn(m, 128).to(torch.bfloat16)
        calls.clear()
        launch.linear_w4a4(x, wp, ws, _gx(x), alpha, None)
        assert calls and all(calls), (m, calls)
        calls.clear()
        launch.linear_w4a16(x, wp, ws, alpha, None)
        assert calls and not any(calls), (m, calls)
