"""FP4 E2M1 codes, nibble packing and FP8 E4M3 block-scale rounding (reference sheet §1)."""

import math

import pytest
import torch

from nvfp4.numerics import (
    E2M1_VALUES,
    FP8_DTYPE,
    e2m1_decode,
    e2m1_encode,
    e2m1_table,
    pack_fp4,
    round_to_fp8_e4m3,
    unpack_fp4,
)

EXPECTED_TABLE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def f32(*values):
    return torch.tensor(values, dtype=torch.float32)


def next_up(v: float) -> float:
    return torch.nextafter(f32(v), f32(math.inf)).item()


def next_down(v: float) -> float:
    return torch.nextafter(f32(v), f32(-math.inf)).item()


# -- the code table -------------------------------------------------------------------------
def test_e2m1_values_constant():
    assert list(E2M1_VALUES) == EXPECTED_TABLE[:8]


def test_decode_all_16_codes():
    codes = torch.arange(16, dtype=torch.uint8)
    decoded = e2m1_decode(codes)
    assert decoded.dtype == torch.float32
    assert decoded.tolist() == EXPECTED_TABLE
    # code 8 is -0: it decodes to (negative) zero, equal to 0
    assert decoded[8].item() == 0.0
    assert torch.equal(e2m1_table(), decoded)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_decode_is_exact_in_every_float_dtype(dtype):
    codes = torch.arange(16, dtype=torch.uint8)
    assert e2m1_decode(codes, dtype).to(torch.float64).tolist() == EXPECTED_TABLE


def test_decode_rejects_non_uint8_codes():
    with pytest.raises(TypeError, match="codes must be uint8"):
        e2m1_decode(torch.arange(16, dtype=torch.int64))


def test_encode_each_table_value_gives_its_code():
    values = f32(*EXPECTED_TABLE)
    codes = e2m1_encode(values)
    # -0.0 (code 8's value) encodes as +0 (torch.sign semantics), every other value to its own code
    assert codes.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12, 13, 14, 15]


# -- rounding: every tie and both neighbours of every threshold ------------------------------
# (threshold between magnitudes lo and hi, the magnitude code a tie rounds to: the even mantissa)
TIES = [
    (0.25, 0, 1, 0),  # 0 <-> 0.5, tie -> 0
    (0.75, 1, 2, 2),  # 0.5 <-> 1, tie -> 1
    (1.25, 2, 3, 2),  # 1 <-> 1.5, tie -> 1
    (1.75, 3, 4, 4),  # 1.5 <-> 2, tie -> 2
    (2.5, 4, 5, 4),  # 2 <-> 3, tie -> 2
    (3.5, 5, 6, 6),  # 3 <-> 4, tie -> 4
    (5.0, 6, 7, 6),  # 4 <-> 6, tie -> 4
]


@pytest.mark.parametrize("tie,lo,hi,at_tie", TIES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_encode_ties_and_neighbours(tie, lo, hi, at_tie, sign):
    below, above = next_down(tie), next_up(tie)
    codes = e2m1_encode(f32(sign * below, sign * tie, sign * above)).tolist()
    sign_bit = 8 if sign < 0 else 0
    assert codes == [lo | sign_bit, at_tie | sign_bit, hi | sign_bit]


def test_encode_ties_table_from_the_sheet():
    x = f32(0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
    assert e2m1_decode(e2m1_encode(x)).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]


def test_encode_matches_nearest_value_on_a_dense_sweep():
    # Off the ties, the code is the nearest table value; checked on 60001 points in [-7, 7].
    x = torch.linspace(-7.0, 7.0, 60001, dtype=torch.float32)
    mags = torch.tensor(E2M1_VALUES, dtype=torch.float64)
    dist = (x.abs().to(torch.float64).unsqueeze(-1) - mags).abs()
    best = dist.argmin(dim=-1)
    unique = (dist.sort(dim=-1).values[:, 1] - dist.min(dim=-1).values) > 0
    codes = e2m1_encode(x)
    assert torch.equal((codes & 7).long()[unique], best[unique])
    assert torch.equal(codes >= 8, x < 0)


def test_encode_saturates_above_six_and_inf():
    x = f32(6.0, next_up(6.0), 7.0, 1e30, math.inf, -6.0, -7.0, -1e30, -math.inf)
    assert e2m1_encode(x).tolist() == [7, 7, 7, 7, 7, 15, 15, 15, 15]


def test_encode_sign_of_zero():
    # exact -0.0 gives code 0 (torch.sign(-0.0) is 0), a small negative that rounds to 0 gives 0x8
    x = f32(0.0, -0.0, -1e-30, -0.25, -next_down(0.25), 1e-30)
    assert e2m1_encode(x).tolist() == [0, 0, 8, 8, 8, 0]


def test_encode_nan_gives_code_zero():
    # documented: callers carry NaN in the block scale (activations) or reject it (weights)
    assert e2m1_encode(f32(math.nan)).tolist() == [0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_encode_in_half_dtypes(dtype):
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -5.0, 5.5], dtype=dtype)
    assert e2m1_encode(x).tolist() == [0, 2, 2, 4, 4, 6, 6, 14, 7]


# -- packing ---------------------------------------------------------------------------------
def test_even_element_goes_to_the_low_nibble():
    codes = torch.tensor([[0x1, 0x2, 0xF, 0x8]], dtype=torch.uint8)
    assert pack_fp4(codes).tolist() == [[0x21, 0x8F]]


def test_pack_unpack_all_256_bytes_round_trip():
    every_byte = torch.arange(256, dtype=torch.uint8).reshape(16, 16)
    codes = unpack_fp4(every_byte)
    assert codes.shape == (16, 32) and codes.dtype == torch.uint8
    assert torch.equal(codes[:, 0::2], every_byte & 0x0F)
    assert torch.equal(codes[:, 1::2], every_byte >> 4)
    assert torch.equal(pack_fp4(codes), every_byte)


def test_pack_unpack_random_codes_round_trip():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (3, 5, 64), generator=g, dtype=torch.uint8)
    packed = pack_fp4(codes)
    assert packed.shape == (3, 5, 32)
    assert torch.equal(unpack_fp4(packed), codes)


def test_pack_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        pack_fp4(torch.zeros(4, dtype=torch.int32))
    with pytest.raises(ValueError, match="even"):
        pack_fp4(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        unpack_fp4(torch.zeros(4, dtype=torch.int8))


def test_pack_unpack_match_compressed_tensors():
    from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8, unpack_fp4_from_uint8

    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 16, (8, 64), generator=g, dtype=torch.uint8)
    codes[0, :16] = torch.arange(16, dtype=torch.uint8)  # every code, including -0 (8)
    values = e2m1_decode(codes)  # code 8 decodes to -0.0, which CT packs as 8 (signbit)
    assert torch.equal(pack_fp4_to_uint8(values), pack_fp4(codes))
    every_byte = torch.arange(256, dtype=torch.uint8).reshape(8, 32)
    ct_values = unpack_fp4_from_uint8(every_byte, 8, 64, dtype=torch.float32)
    ours = e2m1_decode(unpack_fp4(every_byte))
    assert torch.equal(ct_values, ours)
    assert torch.equal(torch.signbit(ct_values), torch.signbit(ours))


# -- FP8 E4M3 block-scale rounding --------------------------------------------------------------
def _positive_e4m3_values() -> list[float]:
    """All finite non-negative E4M3FN values in increasing order, built from the bit layout."""
    values = [k * 2.0**-9 for k in range(8)]  # subnormals (exponent field 0)
    for e in range(1, 16):
        for m in range(8):
            if e == 15 and m == 7:
                continue  # 0x7F is NaN
            values.append((1 + m / 8) * 2.0 ** (e - 7))
    return values


def test_e4m3_value_list_matches_torch():
    values = _positive_e4m3_values()
    assert len(values) == 127 and values[-1] == 448.0
    assert torch.arange(127, dtype=torch.uint8).view(FP8_DTYPE).float().tolist() == values


def test_fp8_rounding_at_every_midpoint_is_half_to_even():
    values = _positive_e4m3_values()
    lo = torch.tensor(values[:-1], dtype=torch.float64)
    hi = torch.tensor(values[1:], dtype=torch.float64)
    mid = ((lo + hi) / 2).to(torch.float32)  # exact: every midpoint fits in fp32
    assert torch.equal(mid.double(), (lo + hi) / 2)
    lo_code = torch.arange(126)
    even_wins = torch.where(lo_code % 2 == 0, lo, hi)
    for sign in (1.0, -1.0):
        got = round_to_fp8_e4m3(sign * mid)
        assert got.dtype == FP8_DTYPE
        assert torch.equal(got.double(), sign * even_wins)
        below = torch.nextafter(mid, torch.zeros_like(mid))
        above = torch.nextafter(mid, torch.full_like(mid, math.inf))
        assert torch.equal(round_to_fp8_e4m3(sign * below).double(), sign * lo)
        assert torch.equal(round_to_fp8_e4m3(sign * above).double(), sign * hi)


@pytest.mark.parametrize(
    "x,expected",
    [
        (2.0**-10, 0.0),  # half the smallest subnormal: tie to even (0)
        (3 * 2.0**-10, 2 * 2.0**-9),  # between subnormals 1 and 2 (x 2^-9): tie -> 2 (even)
        (5 * 2.0**-10, 2 * 2.0**-9),  # between 2 and 3: tie -> 2
        (15 * 2.0**-10, 2.0**-6),  # between the largest subnormal 7*2^-9 and 2^-6: tie -> 2^-6 (even)
        (2.0**-6 * (1 + 1 / 16), 2.0**-6),  # first normal midpoint -> even (mantissa 0)
        (2.0**-6 * (1 + 3 / 16), 2.0**-6 * (1 + 2 / 8)),
        (2.0**-7, 2.0**-7),  # exact subnormal
        (2.0**-9, 2.0**-9),
    ],
)
def test_fp8_rounding_subnormal_and_small_normal_points(x, expected):
    assert round_to_fp8_e4m3(f32(x)).item() == expected


@pytest.mark.parametrize(
    "x,expected",
    [(448.0, 448.0), (464.0, 448.0), (465.0, 448.0), (1e6, 448.0), (-1e6, -448.0), (math.inf, 448.0),
     (-math.inf, -448.0), (-464.0, -448.0), (432.0, 448.0), (431.0, 416.0)],
)
def test_fp8_clamp(x, expected):
    # the clamp happens before the cast, so the result never depends on the device's overflow rule
    assert round_to_fp8_e4m3(f32(x)).item() == expected


def test_fp8_nan_stays_nan():
    out = round_to_fp8_e4m3(f32(math.nan, 1.0))
    assert math.isnan(out[0].item()) and out[1].item() == 1.0
