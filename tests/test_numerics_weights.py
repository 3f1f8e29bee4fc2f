"""Weight quantization bit-exact with compressed-tensors (reference sheet §2), and dequantization."""

import warnings

import pytest
import torch

from core_helpers import ct_compress, ct_decompress, ct_dequantize_fp32, ct_global_scale, dequant_unscaled_f64
from nvfp4 import dequantize_weight, quantize_weight, weight_global_scale
from nvfp4.numerics import FP8_DTYPE, dequantize_weight_unscaled

DTYPES = [torch.bfloat16, torch.float16, torch.float32]


def assert_same_as_ct(w: torch.Tensor, global_scale=None):
    sd = ct_compress(w, global_scale)
    packed, scale, gs = quantize_weight(w, global_scale)
    assert packed.dtype == torch.uint8 and packed.shape == (w.shape[0], w.shape[1] // 2)
    assert scale.dtype == FP8_DTYPE and scale.shape == (w.shape[0], w.shape[1] // 16)
    assert gs.dtype == torch.float32 and gs.shape == (1,)
    assert torch.equal(gs, sd["weight_global_scale"]), (gs, sd["weight_global_scale"])
    assert torch.equal(scale.view(torch.uint8), sd["weight_scale"].view(torch.uint8))
    assert torch.equal(packed, sd["weight_packed"])
    return sd, (packed, scale, gs)


def random_weight(shape, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float32) * scale).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 16), (7, 16), (33, 64), (5, 8192), (64, 48)])
def test_random_weights_bit_exact(dtype, shape):
    seed = shape[0] * 1000 + shape[1]
    w = random_weight(shape, dtype, seed, scale=0.02 if dtype != torch.float16 else 1.0)
    assert_same_as_ct(w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_heavy_tailed_and_mixed_magnitude_rows_bit_exact(dtype):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(24, 128, generator=g)
    # rows spanning 10 orders of magnitude, plus outliers: many scales hit subnormal E4M3
    w = w * torch.logspace(-5, 2, 24).unsqueeze(1)
    w[3, 17] = 300.0
    w[5, ::16] = -50.0
    assert_same_as_ct(w.to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_weight(dtype):
    w = torch.zeros(4, 32, dtype=dtype)
    sd, (packed, scale, gs) = assert_same_as_ct(w)
    assert gs.item() == 1.0  # amax = 0 -> Gw = 1
    assert torch.all(scale.float() == 0.125)  # s == 0 -> 0.125
    assert torch.all(packed == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_and_signed_constant_groups(dtype):
    w = torch.empty(6, 64, dtype=dtype)
    w[0] = 1.0
    w[1] = -1.0
    w[2] = 0.5
    w[3, :32] = 3.0
    w[3, 32:] = -3.0
    w[4] = 6.0
    w[5] = 1e-3
    sd, (packed, scale, gs) = assert_same_as_ct(w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_groups_underflow_to_the_0125_scale(dtype):
    w = torch.zeros(4, 64, dtype=dtype)
    w[0, 0] = 10.0  # sets Gw = 268.8
    w[1, :16] = 1e-7  # Gw * a/6 far below the smallest subnormal 2^-9 -> s = 0 -> 0.125
    w[2, 16:32] = -2e-6
    w[3, 32] = 1e-4
    sd, (packed, scale, gs) = assert_same_as_ct(w)
    assert scale[1, 0].float().item() == 0.125
    assert scale[2, 1].float().item() == 0.125
    # the tiny values are far below s/Gw: they round to zero, negatives to code 0x8
    assert packed[1, :8].tolist() == [0] * 8
    assert packed[2, 8:16].tolist() == [0x88] * 8


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_negative_zero_entries(dtype):
    w = random_weight((4, 32), torch.float32, 7).to(dtype)
    w[0, :16] = -0.0
    w[1, 3] = -0.0
    w[2, 16:] = -0.0
    w[2, 20] = -1e-3
    sd, (packed, scale, gs) = assert_same_as_ct(w)
    # -0.0 -> +0 code (torch.sign semantics)
    assert packed[0, :8].tolist() == [0] * 8


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_shards_with_shared_global_scale(dtype):
    shards = [random_weight((n, 32), dtype, 10 + i, scale=0.1 * (i + 1)) for i, n in enumerate((16, 8, 8))]
    ct_gs = ct_global_scale(*shards)
    ours = weight_global_scale(*shards)
    assert torch.equal(ours, ct_gs)
    for s in shards:
        assert_same_as_ct(s, ct_gs)


def test_bf16_global_scale_is_computed_in_bf16():
    # 2688 / 0.28 = 9600 (bf16) but 9600.000... in fp32; the quirk: Gw keeps bf16 rounding
    w = torch.zeros(1, 16, dtype=torch.bfloat16)
    w[0, 0] = 0.28
    gs = weight_global_scale(w)
    assert gs.dtype == torch.float32
    assert gs.item() == (torch.tensor(2688.0, dtype=torch.bfloat16) / w.abs().amax()).float().item()
    assert gs.item() != 2688.0 / w.float().abs().amax().item()
    assert_same_as_ct(w)


def test_fp16_global_scale_overflow_quirk_matches_ct_and_warns():
    # amax < 2688/65504 ~ 0.041: 2688/amax overflows fp16 -> Inf -> Gw = 1.0 (compressed-tensors)
    w = random_weight((8, 32), torch.float32, 11, scale=0.005).to(torch.float16)
    assert w.abs().amax().item() < 0.041
    with pytest.warns(UserWarning, match="overflowed torch.float16"):
        sd, (packed, scale, gs) = assert_same_as_ct(w)
    assert gs.item() == 1.0


def test_no_overflow_warning_for_zero_weight_or_normal_fp16():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_weight(torch.zeros(2, 16, dtype=torch.float16))
        quantize_weight(random_weight((2, 16), torch.float16, 1))


# -- dequantization ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantize_bf16_equals_ct_decompress(dtype):
    w = random_weight((12, 96), torch.float32, 21, scale=0.05).to(dtype)
    w[0, :16] = 0
    w[1, :16] = 1e-9
    sd, (packed, scale, gs) = assert_same_as_ct(w)
    ct_w = ct_decompress(sd)
    ours = dequantize_weight(packed, scale, gs, dtype=torch.bfloat16)
    assert ct_w.dtype == torch.bfloat16 and ours.dtype == torch.bfloat16
    assert torch.equal(ours, ct_w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantize_fp32_equals_ct_dequantize(dtype):
    w = random_weight((10, 64), torch.float32, 22, scale=3.0).to(dtype)
    sd, (packed, scale, gs) = assert_same_as_ct(w)
    ours = dequantize_weight(packed, scale, gs, dtype=torch.float32)
    assert torch.equal(ours, ct_dequantize_fp32(sd))


def test_dequantize_matches_fp64_formula_and_unscaled_operand():
    w = random_weight((9, 48), torch.bfloat16, 23)
    packed, scale, gs = quantize_weight(w)
    exact = dequant_unscaled_f64(packed, scale)
    # e2m1 * e4m3 is exact in fp32: the unscaled operand equals the fp64 value
    assert torch.equal(dequantize_weight_unscaled(packed, scale).double(), exact)
    # dequantize = e2m1 * fp32(s / Gw), one fp32 rounding of the multiplier and one of the product
    ref = exact / gs.double()
    got = dequantize_weight(packed, scale, gs, dtype=torch.float32).double()
    assert torch.all((got - ref).abs() <= 2 * 2.0**-24 * ref.abs())


def test_dequantize_accepts_python_float_global_scale():
    w = random_weight((2, 32), torch.float32, 24)
    packed, scale, gs = quantize_weight(w)
    assert torch.equal(dequantize_weight(packed, scale, gs.item()), dequantize_weight(packed, scale, gs))


def test_quantize_weight_with_given_global_scale():
    w = random_weight((4, 32), torch.bfloat16, 25)
    gs = torch.tensor([1234.0])
    assert_same_as_ct(w, gs)
    packed, scale, gs_out = quantize_weight(w, 1234.0)
    assert gs_out.item() == 1234.0


def test_weights_within_ulps_of_every_fp4_tie_bit_exact():
    """Values placed within a few fp32 ulps of every FP4 tie after scaling by s/Gw: any change
    in the operation order (e.g. W * (Gw/s) instead of W / (s/Gw)) flips some codes."""
    g = torch.Generator().manual_seed(31)
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=torch.float64)
    steps = torch.tensor([-3, -2, -1, 0, 1, 2, 3], dtype=torch.float64) * 2.0**-23
    near = (ties.unsqueeze(1) * (1 + steps)).flatten()  # 49 offsets, in FP4 units
    fp8_values = torch.arange(8, 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).to(torch.float64)
    for trial in range(4):
        gs = torch.empty(1).uniform_(50.0, 5000.0, generator=g)
        rows = []
        for _ in range(32):
            s = fp8_values[torch.randint(len(fp8_values), (1,), generator=g)].item()
            d = (torch.tensor(s, dtype=torch.float32) / gs).item()  # the divisor s/Gw, rounded as CT does
            signs = torch.where(torch.rand(near.numel(), generator=g) < 0.5, -1.0, 1.0).double()
            values = (near * d * signs).tolist()
            groups = [[6.0 * d] + values[i:i + 15] for i in range(0, 45, 15)] + [[6.0 * d] + values[45:] + [0.0] * 11]
            rows.append(sum(groups, []))
        w = torch.tensor(rows, dtype=torch.float32)
        # the test hits exact ties: some elements divide to exactly 0.25, 0.75, ... in fp32
        divisor = torch.tensor([(torch.tensor(1.0) * r[0] / 6.0) for r in rows]).unsqueeze(1)
        assert bool(torch.isin((w / divisor).abs(), ties.float()).any())
        assert_same_as_ct(w, gs)


@pytest.mark.parametrize(
    "dtype,magnitudes",
    [
        (torch.float16, (60000.0, 1.0, 1e-4, 6e-8)),  # up to the fp16 max, down to fp16 subnormals
        (torch.bfloat16, (1e30, 1e-10, 1e-30)),
        (torch.float32, (1e30, 1.0, 1e-30, 1e-40)),  # fp32 subnormal weights
    ],
)
def test_extreme_ranges_bit_exact(dtype, magnitudes):
    g = torch.Generator().manual_seed(41)
    rows = [(torch.rand(64, generator=g) * 2 - 1) * m for m in magnitudes]
    w = torch.stack(rows).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 Gw overflow may warn; compared to CT either way
        assert_same_as_ct(w)
        assert_same_as_ct(w[1:])  # without the largest row: a different Gw
