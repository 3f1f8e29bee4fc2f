"""Run-time activation quantization against an independently written vLLM ``ref_nvfp4_quant``
(``core_helpers.ref_activation_quant``, reference sheet §3)."""

import math

import pytest
import torch

from core_helpers import decode_codes, ref_activation_quant, unpack_codes
from nvfp4 import dequantize_activation, quantize_activation
from nvfp4.numerics import FP8_DTYPE, dequantize_activation_unscaled


def assert_matches_reference(x, gx):
    packed, scale = quantize_activation(x, gx)
    codes_ref, scale_ref = ref_activation_quant(x, gx)
    m, k = x.shape
    assert packed.dtype == torch.uint8 and packed.shape == (m, k // 2)
    assert scale.dtype == FP8_DTYPE and scale.shape == (m, k // 16)
    assert torch.equal(unpack_codes(packed).to(torch.uint8), codes_ref)
    # identical scale bytes (NaN compared as NaN: equal_nan on the float values, then bytes for the rest)
    ours = scale.float()
    assert torch.equal(torch.isnan(ours), torch.isnan(scale_ref))
    finite = ~torch.isnan(ours)
    assert torch.equal(ours[finite], scale_ref[finite])
    assert torch.equal(scale.view(torch.uint8)[finite], scale_ref[finite].to(FP8_DTYPE).view(torch.uint8))
    return packed, scale


def gx_for(x):
    return (448 * 6 / x.abs().amax().float()).reshape(1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 30.0])
@pytest.mark.parametrize("shape", [(1, 16), (5, 64), (33, 256)])
def test_random_activations(dtype, magnitude, shape):
    g = torch.Generator().manual_seed(shape[0] + shape[1])
    x = (torch.randn(shape, generator=g) * magnitude).to(dtype)
    assert_matches_reference(x, gx_for(x))
    # a calibrated Gx that is too small or too large for this batch (saturation, underflow)
    assert_matches_reference(x, gx_for(x) * 0.01)
    assert_matches_reference(x, gx_for(x) * 300.0)


def test_heavy_tails_and_per_group_magnitudes():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 512, generator=g) * torch.logspace(-6, 3, 32).repeat_interleave(16)
    x = x.to(torch.bfloat16)
    assert_matches_reference(x, torch.tensor([2.0]))
    assert_matches_reference(x, torch.tensor([1e4]))


def test_crafted_fp4_ties_after_scaling():
    # Gx = 1 and a group max of 6 give s = 1 exactly, so x itself is the FP4-unit value: every tie
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    row = torch.tensor([6.0] + ties + [-t for t in ties] + [0.0], dtype=torch.float32)
    x = row.reshape(1, 16)
    packed, scale = assert_matches_reference(x, torch.tensor([1.0]))
    assert scale.float().item() == 1.0
    expected = [6.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -0.0, -1.0, -1.0, -2.0, -2.0, -4.0, -4.0, 0.0]
    assert decode_codes(unpack_codes(packed)).flatten().tolist() == expected
    # -0.25 rounds to zero but keeps its sign (code 8); the exact 0.0 gives code 0
    assert unpack_codes(packed)[0, 8].item() == 8 and unpack_codes(packed)[0, 15].item() == 0


def test_crafted_ties_with_non_unit_scales():
    # group max 12 with Gx = 1 -> s = 2; x = 2 * tie is an exact FP4 tie after scaling
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    for s, gx in ((2.0, 1.0), (0.5, 1.0), (1.0, 8.0), (0.25, 64.0)):
        row = torch.cat([torch.tensor([6.0]), ties, -ties, torch.tensor([1.0])]) * s / gx
        x = row.reshape(1, 16).float()
        packed, scale = assert_matches_reference(x, torch.tensor([gx]))
        assert scale.float().item() == s
        assert decode_codes(unpack_codes(packed))[0, 1:8].tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]


def _amax_hitting(target: float) -> float:
    """An fp32 ``a`` with fp32(a * fp32(1/6)) == target exactly (vLLM multiplies by 1/6)."""
    r6 = torch.tensor(1 / 6.0, dtype=torch.float32)
    a = torch.tensor(target * 6.0, dtype=torch.float32)
    for _ in range(8):
        for cand in (a, torch.nextafter(a, torch.tensor(math.inf)), torch.nextafter(a, torch.tensor(0.0))):
            if (cand * r6).item() == target:
                return cand.item()
        a = torch.nextafter(a, torch.tensor(math.inf))
    raise AssertionError(f"no fp32 amax maps to {target}")


# (midpoint, the E4M3 value half-to-even picks): subnormal (k * 2^-9) and normal neighbours
FP8_TIES = [
    (2.0**-10, 0.0),
    (3 * 2.0**-10, 2 * 2.0**-9),
    (5 * 2.0**-10, 2 * 2.0**-9),
    (7 * 2.0**-10, 4 * 2.0**-9),
    (15 * 2.0**-10, 2.0**-6),
    (2.0**-6 * (1 + 1 / 16), 2.0**-6),
    (2.0**-6 * (1 + 3 / 16), 2.0**-6 * (1 + 2 / 8)),
    (1.0625, 1.0),
    (17.0, 16.0),
    (432.0, 448.0),
]


@pytest.mark.parametrize("mid,expected", FP8_TIES)
def test_crafted_fp8_scale_ties(mid, expected):
    a = _amax_hitting(mid)
    x = torch.zeros(2, 16)
    x[0, 0] = a
    x[0, 1] = -a / 3
    x[1, 7] = -a  # the sign of the max does not matter
    packed, scale = assert_matches_reference(x, torch.tensor([1.0]))
    assert scale.float()[:, 0].tolist() == [expected, expected]
    # just below / above the midpoint the neighbours win
    lo = torch.nextafter(torch.tensor(a), torch.tensor(0.0)).item()
    hi = torch.nextafter(torch.tensor(a), torch.tensor(math.inf)).item()
    x2 = torch.zeros(2, 16)
    x2[0, 0], x2[1, 0] = lo, hi
    assert_matches_reference(x2, torch.tensor([1.0]))


def test_zero_groups_give_scale_zero_and_code_zero():
    x = torch.zeros(3, 48, dtype=torch.bfloat16)
    x[1, 16:32] = torch.linspace(-1, 1, 16)
    packed, scale = assert_matches_reference(x, torch.tensor([100.0]))
    assert scale.float()[0].tolist() == [0.0, 0.0, 0.0]
    assert scale.float()[1, 0].item() == 0.0 and scale.float()[1, 1].item() > 0
    assert torch.all(unpack_codes(packed)[0] == 0)
    # dequantized zero groups are exactly zero (not NaN from 0 * 1/0)
    deq = dequantize_activation(packed, scale, torch.tensor([100.0]))
    assert torch.all(deq[0] == 0) and torch.all(torch.isfinite(deq))


def test_groups_below_the_smallest_scale_are_zero():
    # Gx * amax / 6 < 2^-10: the E4M3 scale rounds to 0 and the whole group is 0 (no 0.125 here)
    x = torch.full((1, 16), 1e-6)
    packed, scale = assert_matches_reference(x, torch.tensor([1.0]))
    assert scale.float().item() == 0.0 and torch.all(packed == 0)


def test_inf_saturates():
    x = torch.randn(2, 32)
    x[0, 3] = math.inf
    x[1, 20] = -math.inf
    packed, scale = assert_matches_reference(x, torch.tensor([10.0]))
    assert scale.float()[0, 0].item() == 448.0 and scale.float()[1, 1].item() == 448.0
    codes = unpack_codes(packed)
    assert codes[0, 3].item() == 7 and codes[1, 20].item() == 15
    # the other groups are untouched
    assert scale.float()[0, 1].item() < 448.0


def test_nan_poisons_its_group_only():
    x = torch.randn(2, 32)
    x[0, 5] = math.nan
    packed, scale = assert_matches_reference(x, torch.tensor([10.0]))
    s = scale.float()
    assert math.isnan(s[0, 0].item())
    assert not torch.isnan(s[0, 1]) and not torch.isnan(s[1]).any()
    deq = dequantize_activation(packed, scale, torch.tensor([10.0]))
    assert torch.all(torch.isnan(deq[0, :16])) and torch.all(torch.isfinite(deq[0, 16:]))
    assert torch.all(torch.isnan(dequantize_activation_unscaled(packed, scale)[0, :16]))


def test_dequantize_activation_values():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(4, 64, generator=g).to(torch.bfloat16)
    gx = gx_for(x)
    packed, scale = quantize_activation(x, gx)
    codes_ref, scale_ref = ref_activation_quant(x, gx)
    v = decode_codes(codes_ref.to(torch.int64)).reshape(4, 4, 16)
    exact_unscaled = (v * scale_ref.double().unsqueeze(-1)).reshape(4, 64)
    assert torch.equal(dequantize_activation_unscaled(packed, scale).double(), exact_unscaled)
    # vLLM's x_dq = e2m1 * fp32(s / Gx), cast to the activation dtype
    vllm_dq = (v.float() * (scale_ref.unsqueeze(-1) / gx)).reshape(4, 64).to(torch.bfloat16)
    assert torch.equal(dequantize_activation(packed, scale, gx, torch.bfloat16), vllm_dq)


def test_empty_batch():
    packed, scale = quantize_activation(torch.empty(0, 32, dtype=torch.bfloat16), torch.tensor([1.0]))
    assert packed.shape == (0, 16) and scale.shape == (0, 2)


def test_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        quantize_activation(torch.zeros(2, 2, 16), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="multiple of the group size"):
        quantize_activation(torch.zeros(2, 24), torch.tensor([1.0]))


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got torch.int32"):
        quantize_activation(torch.ones(2, 16, dtype=torch.int32), torch.tensor([1.0]))
