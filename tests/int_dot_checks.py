"""Checks of the integer decode primitives (``nvfp4.kernels.int_dot``) and of the E2M1
rounding (``fp_bits.e2m1_round``) shared by the CPU interpreter cases (``USE_ASM=False``: the
emulations) and the GPU tests (``USE_ASM=True``: the real ``prmt`` / ``dp4a`` instructions). The expected values come from plain-Python models
written from the PTX ISA's definitions, independently of the kernels."""

from __future__ import annotations

import random

import torch
import triton
import triton.language as tl

from nvfp4.kernels.fp_bits import e2m1_code, e2m1_round
from nvfp4.kernels.int_dot import (
    LUT_HIGH, LUT_LOW, dp4a, e4m3_byte_to_f32_sm89, e4m3_byte_to_f32_times_2m8, fp4_word_to_int8, prmt, signed_int8_words,
)
from nvfp4.numerics.formats import E2M1_VALUES, e2m1_decode, e2m1_encode


def prmt_model(a: int, b: int, c: int) -> int:
    """PTX ``prmt.b32`` default mode: byte i of d is the source byte {b, a}[c.nibble_i & 7],
    or its sign replicated when bit 3 of the nibble is set."""
    src = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF for i in range(4)]
    d = 0
    for i in range(4):
        sel = (c >> (4 * i)) & 0xF
        byte = src[sel & 7]
        if sel & 8:
            byte = 0xFF if byte & 0x80 else 0x00
        d |= byte << (8 * i)
    return d


def dp4a_model(a: int, b: int, c: int) -> int:
    """PTX ``dp4a.s32.s32``: c + the dot product of the four signed bytes of a and b."""
    def sbytes(v):
        return [((v >> (8 * i)) & 0xFF) - (256 if (v >> (8 * i)) & 0x80 else 0) for i in range(4)]

    total = c + sum(x * y for x, y in zip(sbytes(a), sbytes(b)))
    return (total + 2**31) % 2**32 - 2**31


def to_i32(values) -> torch.Tensor:
    return torch.tensor([(v + 2**31) % 2**32 - 2**31 for v in values], dtype=torch.int32)


def u32(v: int) -> int:
    return v & 0xFFFFFFFF


@triton.jit
def _primitives_kernel(a_ptr, b_ptr, c_ptr, prmt_ptr, dp4a_ptr, USE_ASM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    a = tl.load(a_ptr + offs)
    b = tl.load(b_ptr + offs)
    c = tl.load(c_ptr + offs)
    tl.store(prmt_ptr + offs, prmt(a, b, c, USE_ASM))
    tl.store(dp4a_ptr + offs, dp4a(a, b, c, USE_ASM))


@triton.jit
def _decode_kernel(w_ptr, lut_ptr, out_ptr, USE_ASM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    w = tl.load(w_ptr + offs)
    p_lo, p_hi, n_lo, n_hi = fp4_word_to_int8(w, tl.load(lut_ptr), tl.load(lut_ptr + 1), USE_ASM)
    tl.store(out_ptr + offs * 4, p_lo)
    tl.store(out_ptr + offs * 4 + 1, p_hi)
    tl.store(out_ptr + offs * 4 + 2, n_lo)
    tl.store(out_ptr + offs * 4 + 3, n_hi)


@triton.jit
def _signed_kernel(w_ptr, lut_ptr, out_ptr, USE_ASM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    w = tl.load(w_ptr + offs)
    p_lo, p_hi, n_lo, n_hi = fp4_word_to_int8(w, tl.load(lut_ptr), tl.load(lut_ptr + 1), USE_ASM)
    tl.store(out_ptr + offs * 2, signed_int8_words(p_lo, n_lo))
    tl.store(out_ptr + offs * 2 + 1, signed_int8_words(p_hi, n_hi))


@triton.jit
def _scale_kernel(b_ptr, out_ptr, SM89: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    if SM89:
        tl.store(out_ptr + offs, e4m3_byte_to_f32_sm89(tl.load(b_ptr + offs)))
    else:
        tl.store(out_ptr + offs, e4m3_byte_to_f32_times_2m8(tl.load(b_ptr + offs)))


def check_primitives(device, use_asm: bool, count: int = 512, seed: int = 0):
    """prmt and dp4a on random words and on selectors exercising the sign mode."""
    rng = random.Random(seed)
    a = [rng.getrandbits(32) for _ in range(count)]
    b = [rng.getrandbits(32) for _ in range(count)]
    c = [rng.getrandbits(32) for _ in range(count)]
    c[:16] = [0x3210, 0x7654, 0xBA98, 0xFEDC] * 4  # identity, upper bytes, both sign modes
    a[:8] = [0x80FF7F01] * 8
    ta, tb, tc = to_i32(a).to(device), to_i32(b).to(device), to_i32(c).to(device)
    got_prmt = torch.empty_like(ta)
    got_dp4a = torch.empty_like(ta)
    _primitives_kernel[(1,)](ta, tb, tc, got_prmt, got_dp4a, USE_ASM=use_asm, BLOCK=count)
    want_prmt = to_i32([prmt_model(x, y, z) for x, y, z in zip(a, b, c)])
    want_dp4a = to_i32([dp4a_model(x, y, (z + 2**31) % 2**32 - 2**31) for x, y, z in zip(a, b, c)])
    assert torch.equal(got_prmt.cpu(), want_prmt)
    assert torch.equal(got_dp4a.cpu(), want_dp4a)


def check_fp4_words_all_codes(device, use_asm: bool):
    """Every FP4 code in every nibble position of a word -> 2 * e2m1 split by sign."""
    codes = torch.tensor([[(v + j) % 16 for j in range(8)] for v in range(16)] + [[8] * 8, [0] * 8, [7, 15] * 4])
    words = to_i32([sum(int(c) << (4 * j) for j, c in enumerate(row)) for row in codes.tolist()]).to(device)
    lut = torch.tensor([LUT_LOW.value, LUT_HIGH.value], dtype=torch.int32, device=device)
    n = words.numel()
    block = triton.next_power_of_2(n)
    padded = torch.zeros(block, dtype=torch.int32, device=device)
    padded[:n] = words
    out = torch.empty(block * 4, dtype=torch.int32, device=device)
    _decode_kernel[(1,)](padded, lut, out, USE_ASM=use_asm, BLOCK=block)
    out = out.view(block, 4)[:n].cpu()
    for r, row in enumerate(codes.tolist()):
        pos = [int(2 * E2M1_VALUES[c]) if c < 8 else 0 for c in row]
        neg = [int(2 * E2M1_VALUES[c & 7]) if c >= 8 else 0 for c in row]
        got = [[(u32(int(out[r, q])) >> (8 * i)) & 0xFF for i in range(4)] for q in range(4)]
        assert got[0] + got[1] == pos, (row, got)
        assert got[2] + got[3] == neg, (row, got)


def check_signed_words_all_codes(device, use_asm: bool):
    """``signed_int8_words``: every FP4 code in every byte position -> the signed int8
    ``2 * e2m1(code)`` (two's complement; -0 codes give 0)."""
    codes = [[(v + j) % 16 for j in range(8)] for v in range(16)] + [[8] * 8, [15] * 8, [7, 15] * 4, [15, 0] * 4]
    words = to_i32([sum(c << (4 * j) for j, c in enumerate(row)) for row in codes])
    n = len(codes)
    block = triton.next_power_of_2(n)
    padded = torch.zeros(block, dtype=torch.int32)
    padded[:n] = words
    lut = torch.tensor([LUT_LOW.value, LUT_HIGH.value], dtype=torch.int32, device=device)
    out = torch.empty(block * 2, dtype=torch.int32, device=device)
    _signed_kernel[(1,)](padded.to(device), lut, out, USE_ASM=use_asm, BLOCK=block)
    out = out.view(block, 2)[:n].cpu()
    for r, row in enumerate(codes):
        want = [int(2 * E2M1_VALUES[c & 7]) * (-1 if c >= 8 else 1) for c in row]
        got = [(((u32(int(out[r, q])) >> (8 * i)) & 0xFF) ^ 0x80) - 0x80 for q in range(2) for i in range(4)]
        assert got == want, (row, got, want)


def check_scale_decode_all_bytes(device, sm89: bool = False):
    """All 256 E4M3 bytes -> fp32 value * 2^-8 exactly (``sm89``: the value itself, by sm_89's
    conversion; GPU only), NaN bytes -> NaN."""
    b = torch.arange(256, dtype=torch.int32, device=device)
    out = torch.empty(256, dtype=torch.float32, device=device)
    _scale_kernel[(1,)](b, out, SM89=sm89, BLOCK=256)
    want = b.to(torch.uint8).view(torch.float8_e4m3fn).to(torch.float32).cpu() * (1.0 if sm89 else 2.0**-8)
    got = out.cpu()
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(got[~nan], want[~nan])


@triton.jit
def _round_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, e2m1_round(tl.load(x_ptr + offs)))


@triton.jit
def _code_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr, INTERPRET: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, e2m1_code(tl.load(x_ptr + offs), INTERPRET))


def _rounding_inputs():
    """Every E2M1 tie, its fp32 neighbours, both signs, a dense sweep of [-7, 7] and values
    past the range."""
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 0.0])
    up = torch.nextafter(ties, torch.full_like(ties, 10.0))
    down = torch.nextafter(ties, torch.full_like(ties, -10.0))
    sweep = torch.linspace(-7.0, 7.0, 4001)
    extra = torch.tensor([6.5, -100.0, 1e30, float("inf"), float("-inf"), 1e-40])
    return torch.cat([ties, up, down, -ties, -up, -down, sweep, extra])


def check_e2m1_round(device):
    """``fp_bits.e2m1_round`` on ``_rounding_inputs`` against ``numerics.e2m1_encode`` /
    ``e2m1_decode`` of the clamped value."""
    values = _rounding_inputs()
    block = triton.next_power_of_2(values.numel())
    x = torch.zeros(block)
    x[: values.numel()] = values
    x = x.to(device)
    out = torch.empty(block, device=device)
    _round_kernel[(1,)](x, out, BLOCK=block)
    want = e2m1_decode(e2m1_encode(values.clamp(-6.0, 6.0)))
    assert torch.equal(out[: values.numel()].cpu(), want)  # -0.0 == 0.0: a zero's sign never matters here


def check_e2m1_code(device):
    """``fp_bits.e2m1_code`` (the packed activation codes) against ``numerics.e2m1_encode``
    code for code, including -0.0 (-> 0), small negatives (-> 0x8), NaN (-> 0) and +-Inf (+-6):
    on the GPU through its NaN-dropping max, in the interpreter through its explicit NaN test."""
    special = torch.tensor([-0.0, 0.0, float("nan"), -1e-30, -0.25, 0.25, -0.2])
    values = torch.cat([_rounding_inputs(), special])
    block = triton.next_power_of_2(values.numel())
    x = torch.zeros(block)
    x[: values.numel()] = values
    x = x.to(device)
    out = torch.empty(block, dtype=torch.int32, device=device)
    _code_kernel[(1,)](x, out, BLOCK=block, INTERPRET=device == "cpu")
    want = e2m1_encode(values).to(torch.int32)
    assert torch.equal(out[: values.numel()].cpu(), want)
    assert want[-7:].tolist() == [0, 0, 0, 8, 8, 0, 8]  # the reference's own sign/NaN/tie behaviour
