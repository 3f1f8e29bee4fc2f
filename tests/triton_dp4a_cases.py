"""The integer-dot W4A4 decode path under the CPU interpreter (run by
tests/test_triton_interpreter.py with ``TRITON_INTERPRET=1``):

* the primitives (``prmt``/``dp4a`` emulations against plain-Python models of the PTX
  definitions; every FP4 code in every nibble position; all 256 E4M3 scale bytes);
* the magic-number E2M1 rounding at every tie, its fp32 neighbours and across the range;
* the activation kernel's int8 output (``2 * e2m1`` and fp32 scales equal to the reference);
* the GEMV (``kernels/gemv_dp4a.py``): M = 1..4, N not a tile multiple, K = 16 and several
  K tiles, split-K reduced in the kernel (forced 1..3 splits, uneven splits), fused and
  unfused activation quantization, bf16/fp16, bias, per-row alpha, special values (Inf and
  NaN activations, zero rows, subnormal and 448 block scales, +-6*448 weights), within the
  fp32-summation bound of a float64 computation; deterministic, counters reset;
* routing: ``torch.ops.nvfp4.linear_w4a4`` takes this path for M <= 4 unless
  ``NVFP4_TRITON_DP4A=off``; bad settings and M > 4 are refused clearly.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_triton_interpreter.py"
sys.path.insert(0, os.path.dirname(__file__))
import int_dot_checks  # noqa: E402
from triton_exactness import activation_operand, assert_close_to_exact  # noqa: E402

import nvfp4.ops  # noqa: E402,F401
from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402
from nvfp4.numerics.formats import e2m1_decode, unpack_fp4  # noqa: E402
from nvfp4.ops import launch, launch_dp4a, splitk_counters  # noqa: E402

OPS = torch.ops.nvfp4


def test_primitives_match_the_ptx_models():
    int_dot_checks.check_primitives("cpu", use_asm=False)


def test_every_fp4_code_in_every_nibble():
    int_dot_checks.check_fp4_words_all_codes("cpu", use_asm=False)


def test_every_e4m3_scale_byte():
    int_dot_checks.check_scale_decode_all_bytes("cpu")


def test_signed_weight_words_every_code():
    int_dot_checks.check_signed_words_all_codes("cpu", use_asm=False)


def test_e2m1_round_at_every_tie_and_neighbour():
    int_dot_checks.check_e2m1_round("cpu")


def test_e2m1_code_at_every_tie_and_special_value():
    int_dot_checks.check_e2m1_code("cpu")


def _special_activations(m, k, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=g) * 3).to(dtype)
    x[0, :16] = 0
    if k >= 48:
        x[0, 16:32] = -0.0
        x[0, 32:48] = 1e-6  # a block scale that underflows to an E4M3 subnormal or zero
    return x


def _gx(x):
    finite = x[torch.isfinite(x)]
    return torch.tensor([448.0 * 6.0 / max(finite.abs().max().float().item(), 1e-6)])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_activation_int8_output_matches_the_reference(dtype):
    x = _special_activations(4, 96, dtype, seed=1)
    x[1, 5] = float("inf")
    x[2, 40] = float("nan")
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0])
    x[3, 48:64] = torch.cat([ties, -ties]).to(dtype)
    for gx in (_gx(x), torch.tensor([1.0])):
        values, scale = launch.quantize_activation_int8(x, gx)
        rp, rs = quantize_activation(x, gx)
        want_scale = rs.to(torch.float32)
        nan_groups = torch.isnan(want_scale)
        assert torch.equal(torch.isnan(scale), nan_groups)
        assert torch.equal(scale[~nan_groups], want_scale[~nan_groups])
        want_values = (2 * e2m1_decode(unpack_fp4(rp))).to(torch.int8)
        keep = ~nan_groups.repeat_interleave(16, dim=1)  # NaN groups: values are irrelevant (scale NaN)
        assert torch.equal(values[keep], want_values[keep])


def _case(m, n, k, dtype, seed, per_row_alpha=True, bias=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.1
    # A group of +-amax: block scale 448 and codes +-6, i.e. +-6*448 in FP4 units.
    w[0, :16] = w.abs().max() * torch.tensor([1.0, -1.0]).repeat(8)
    if k >= 32:
        w[1, 16:32] *= 0.1  # amax ~0.03 at Gw = 1: a subnormal E4M3 block scale
    wp, ws, gw = quantize_weight(w)
    x = _special_activations(m, k, dtype, seed + 1)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    if per_row_alpha:
        alpha = alpha.clone()
        alpha[: n // 2] *= 2.0
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    return x, wp, ws, gx, alpha, b


def _check(out, x, wp, ws, gx, alpha, b, label):
    rp, rs = quantize_activation(x, gx)
    assert out.dtype == x.dtype and out.shape == (x.shape[0], wp.shape[0])
    assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, b, label)


BF16, FP16 = torch.bfloat16, torch.float16


@pytest.mark.parametrize("m,n,k,split,fused,dtype", [
    (1, 72, 128, None, True, BF16), (1, 72, 128, None, False, FP16),
    (2, 40, 320, 3, True, FP16), (2, 40, 320, 3, False, BF16),  # uneven splits (5 tiles in 3)
    (3, 33, 192, 2, True, BF16), (3, 33, 192, 2, False, FP16),  # M = 3 runs as ROWS = 4
    (4, 64, 16, None, True, FP16), (4, 64, 16, None, False, BF16),  # K = 16: one masked tile
    (1, 96, 512, 1, True, BF16),  # no split: the epilogue without the counter
    (4, 50, 448, 4, True, BF16), (4, 50, 448, 4, False, FP16),
])
def test_dp4a_linear_within_the_bound(fused, dtype, m, n, k, split):
    x, wp, ws, gx, alpha, b = _case(m, n, k, dtype, seed=m * 100 + n, bias=bool(m % 2))
    cfg = {"FUSED_QUANT": fused}
    if split:
        cfg["SPLIT_K"] = split
    out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, b, cfg)
    _check(out, x, wp, ws, gx, alpha, b, f"dp4a M={m} N={n} K={k} split={split} fused={fused}")


def test_non_finite_activations():
    """+-Inf saturates (finite outputs); NaN poisons only its own token's outputs."""
    x, wp, ws, _, alpha, b = _case(3, 40, 128, torch.bfloat16, seed=5, bias=False)
    x[0, 3] = float("inf")
    x[1, 70] = float("-inf")
    x[2, 100] = float("nan")
    gx = torch.tensor([50.0])
    alpha = alpha / 50.0
    out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, {"SPLIT_K": 2})
    assert torch.isfinite(out[:2]).all()
    assert torch.isnan(out[2]).all()
    _check(out[:2], x[:2], wp, ws, gx, alpha, None, "Inf rows")


def test_deterministic_and_counters_reset():
    x, wp, ws, gx, alpha, b = _case(1, 40, 256, torch.bfloat16, seed=9)
    first = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, b, {"SPLIT_K": 4})
    for _ in range(2):
        assert torch.equal(launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, b, {"SPLIT_K": 4}), first)
    for buf in splitk_counters._COUNTERS.values():
        assert int(buf.abs().sum()) == 0, "split-K counters must be back to 0 after every launch"


def test_custom_op_routes_small_m_here(monkeypatch):
    x, wp, ws, gx, alpha, b = _case(3, 72, 128, torch.float16, seed=2)
    before = launch.KERNEL_LAUNCHES["gemv_dp4a"]
    out = OPS.linear_w4a4(x, wp, ws, gx, alpha, b)
    assert launch.KERNEL_LAUNCHES["gemv_dp4a"] == before + 1
    _check(out, x, wp, ws, gx, alpha, b, "custom op M=3")
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "off")
    OPS.linear_w4a4(x, wp, ws, gx, alpha, b)
    assert launch.KERNEL_LAUNCHES["gemv_dp4a"] == before + 1
    x5 = torch.randn(5, 128).to(torch.float16)
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "auto")
    OPS.linear_w4a4(x5, wp, ws, gx, alpha, b)  # M = 5: the tensor-core path
    assert launch.KERNEL_LAUNCHES["gemv_dp4a"] == before + 1


def test_untuned_default_quantizes_in_a_separate_launch(monkeypatch):
    dev = torch.device("cpu")
    assert not any(launch_dp4a.dp4a_config(m, 4096, 4096, dev)["FUSED_QUANT"] for m in (1, 2, 3, 4))
    assert any(c["FUSED_QUANT"] for c in launch_dp4a.candidates(1))  # the fused variant stays a candidate
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "fused")
    assert launch_dp4a.dp4a_config(4, 4096, 4096, dev)["FUSED_QUANT"]
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "unfused")
    assert not launch_dp4a.dp4a_config(1, 4096, 4096, dev)["FUSED_QUANT"]
    assert launch_dp4a.dp4a_config(1, 4096, 4096, dev, {"FUSED_QUANT": True})["FUSED_QUANT"]


@pytest.mark.parametrize("m,dtype,bias", [(2, BF16, True), (3, FP16, False), (4, BF16, False)])
def test_float_path_candidate_within_the_bound(m, dtype, bias):
    """``FLOAT_PATH``, the candidate timed beside the GEMV tiles at M = 2..4, runs the float
    kernels (activation operand + small-M GEMM), within the same bound."""
    x, wp, ws, gx, alpha, b = _case(m, 40, 192, dtype, seed=m + 7, bias=bias)
    before = dict(launch.KERNEL_LAUNCHES)
    out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, b, dict(launch_dp4a.FLOAT_PATH))
    _check(out, x, wp, ws, gx, alpha, b, f"float path M={m}")
    assert launch.KERNEL_LAUNCHES["gemv_dp4a"] == before.get("gemv_dp4a", 0)
    assert launch.KERNEL_LAUNCHES["activation_quant"] == before.get("activation_quant", 0) + 1
    # float32 output (tensor-parallel partials): the same sums, unrounded; rounded once they
    # are the x-dtype output of the same path without bias.
    fp32 = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, dict(launch_dp4a.FLOAT_PATH), out_dtype=torch.float32)
    rounded = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, dict(launch_dp4a.FLOAT_PATH))
    assert fp32.dtype == torch.float32 and torch.equal(fp32.to(dtype), rounded)


def test_float_path_is_a_candidate_only_when_tuning_freely(monkeypatch):
    assert launch_dp4a.FLOAT_PATH not in launch_dp4a.candidates(1)
    assert all(launch_dp4a.candidates(m)[-1] == launch_dp4a.FLOAT_PATH for m in (2, 3, 4))
    assert launch_dp4a.candidates(2)[0] != launch_dp4a.FLOAT_PATH  # the untuned default stays the GEMV
    for forced in ("fused", "unfused"):
        monkeypatch.setenv("NVFP4_TRITON_DP4A", forced)
        assert launch_dp4a.FLOAT_PATH not in launch_dp4a.candidates(4)


def test_tile_candidates_follow_the_variant_switch(monkeypatch):
    assert not launch_dp4a.candidates(1)[0]["FUSED_QUANT"] and not launch_dp4a.candidates(4)[0]["FUSED_QUANT"]
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "unfused")
    for m in (1, 2, 3, 4):
        cands = launch_dp4a.candidates(m)
        assert cands and not any(c["FUSED_QUANT"] for c in cands)
        assert len(cands) == len({tuple(sorted(c.items())) for c in cands})  # forced variant: no duplicates
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "fused")
    assert all(c["FUSED_QUANT"] for c in launch_dp4a.candidates(2))
    from nvfp4.ops import tuning

    monkeypatch.setenv("NVFP4_TRITON_TUNE", "always")
    with pytest.raises(ValueError, match="NVFP4_TRITON_TUNE"):
        tuning.tune_mode()
    monkeypatch.setenv("NVFP4_TRITON_TUNE", "off")
    assert tuning.tune_mode() == "off"


def test_bad_settings_and_shapes_are_refused(monkeypatch):
    x, wp, ws, gx, alpha, b = _case(1, 40, 64, torch.bfloat16, seed=3)
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "sometimes")
    with pytest.raises(ValueError, match="NVFP4_TRITON_DP4A"):
        OPS.linear_w4a4(x, wp, ws, gx, alpha, b)
    monkeypatch.delenv("NVFP4_TRITON_DP4A")
    with pytest.raises(ValueError, match="M = 5"):
        launch_dp4a.linear_w4a4_dp4a(torch.randn(5, 64).to(torch.bfloat16), wp, ws, gx, alpha, b)
    empty = OPS.linear_w4a4(x[:0], wp, ws, gx, alpha, b)
    assert empty.shape == (0, 40)
