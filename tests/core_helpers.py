"""Shared helpers for the core (issue 2) tests: compressed-tensors as the format authority,
an independently written activation-quantization reference, and the fp64 GEMM reference
with its fp32-summation-order error bound.

Nothing here imports ``nvfp4``'s numerics into the references: they are written from the
reference sheet (§2-§4) and vLLM's / compressed-tensors' published formulas.
"""

from __future__ import annotations

import torch

E2M1_MAGNITUDES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
U32 = 2.0**-24  # unit roundoff of float32


# -- compressed-tensors ------------------------------------------------------------------------
def ct_scheme():
    from compressed_tensors.quantization import preset_name_to_scheme

    return preset_name_to_scheme("NVFP4", ["Linear"])


def ct_global_scale(*weights: torch.Tensor) -> torch.Tensor:
    """llm-compressor's Gw: ``generate_gparam`` over the min/max of all given shards."""
    from compressed_tensors.quantization.utils.helpers import generate_gparam

    mins = torch.stack([w.amin() for w in weights]).amin()
    maxs = torch.stack([w.amax() for w in weights]).amax()
    return generate_gparam(mins, maxs)


def ct_compress(w: torch.Tensor, global_scale: torch.Tensor | None = None) -> dict:
    """``NVFP4PackedCompressor.compress`` of ``w`` with scales from ``compute_dynamic_scales_and_zp``."""
    from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
    from compressed_tensors.quantization.utils.helpers import compute_dynamic_scales_and_zp

    scheme = ct_scheme()
    gs = ct_global_scale(w) if global_scale is None else global_scale
    scale, _ = compute_dynamic_scales_and_zp(w, scheme.weights, module=None, global_scale=gs)
    return NVFP4PackedCompressor.compress({"weight": w, "weight_scale": scale, "weight_global_scale": gs}, scheme)


def ct_decompress(sd: dict) -> torch.Tensor:
    from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor

    return NVFP4PackedCompressor.decompress(dict(sd), ct_scheme())["weight"]


def ct_dequantize_fp32(sd: dict) -> torch.Tensor:
    """compressed-tensors' ``dequantize`` computed and returned in float32."""
    from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8
    from compressed_tensors.quantization.lifecycle.forward import dequantize

    packed = sd["weight_packed"]
    m, n = packed.shape
    values = unpack_fp4_from_uint8(packed, m, 2 * n, dtype=torch.float32)
    return dequantize(
        x_q=values, scale=sd["weight_scale"].to(torch.float32), args=ct_scheme().weights,
        global_scale=sd["weight_global_scale"], dtype=torch.float32,
    )


# -- independent FP4 helpers (from the reference sheet, not from nvfp4) -------------------------
def unpack_codes(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [..., K/2] -> int64 codes [..., K], even element from the low nibble."""
    p = packed.to(torch.int64)
    return torch.stack((p & 0xF, p >> 4), dim=-1).flatten(-2)


def decode_codes(codes: torch.Tensor) -> torch.Tensor:
    """int codes -> float64 values (code 8 is -0 -> 0)."""
    codes = codes.to(torch.int64)
    mag = E2M1_MAGNITUDES.to(codes.device)[codes & 7]
    return torch.where(codes >= 8, -mag, mag)


def dequant_unscaled_f64(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``e2m1(q) * s`` in float64 (exact), ``[R, K]``."""
    values = decode_codes(unpack_codes(packed))
    s = scale.to(torch.float64).repeat_interleave(16, dim=-1)
    return values * s


def vllm_cast_to_fp4(x: torch.Tensor) -> torch.Tensor:
    """vLLM's ``cast_to_fp4`` (threshold form, sign from ``torch.sign``), on a copy."""
    sign = torch.sign(x)
    x = x.abs().clone()
    out = torch.zeros_like(x)
    out = torch.where((x > 0.25) & (x < 0.75), 0.5, out)
    out = torch.where((x >= 0.75) & (x <= 1.25), 1.0, out)
    out = torch.where((x > 1.25) & (x < 1.75), 1.5, out)
    out = torch.where((x >= 1.75) & (x <= 2.5), 2.0, out)
    out = torch.where((x > 2.5) & (x < 3.5), 3.0, out)
    out = torch.where((x >= 3.5) & (x <= 5.0), 4.0, out)
    out = torch.where(x > 5.0, 6.0, out)
    out = torch.where(torch.isnan(x), x, out)
    return out * sign


def values_to_codes(v: torch.Tensor) -> torch.Tensor:
    """E2M1 float values (with signed zeros) -> uint8 codes; sign bit from ``signbit``."""
    mag = v.abs().to(torch.float64)
    idx = torch.zeros(v.shape, dtype=torch.int64)
    for i, m in enumerate(E2M1_MAGNITUDES.tolist()):
        idx = torch.where(mag == m, i, idx)
    return (idx | (torch.signbit(v).to(torch.int64) << 3)).to(torch.uint8)


def ref_activation_quant(x: torch.Tensor, gx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM ``ref_nvfp4_quant`` (reference sheet §3), written independently.

    Returns ``(codes uint8 [M, K], scale float32 [M, K/16])`` (scale as fp32 values of the E4M3
    bytes; NaN stays NaN).
    """
    m, k = x.shape
    g = gx.to(torch.float32).reshape(1)
    xg = x.reshape(m, k // 16, 16)
    vec_max = xg.abs().amax(dim=-1, keepdim=True).to(torch.float32)
    scale = g * (vec_max * (1 / 6.0))
    scale = scale.clamp(min=-448, max=448).to(torch.float8_e4m3fn).to(torch.float32)

    def recip(t):
        return 1.0 / (t + (t == 0) * 1e8)

    output_scale = recip(scale * recip(g))
    scaled = (xg.to(torch.float32) * output_scale).clamp(-6.0, 6.0).reshape(m, k)
    return values_to_codes(vllm_cast_to_fp4(scaled)), scale.squeeze(-1)


# -- the fp64 GEMM reference and its fp32 bound ----------------------------------------------
def half_ulp(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Half a unit in the last place of ``dtype`` at magnitude ``v`` (float64; subnormals floored)."""
    fi = torch.finfo(dtype)
    mant_bits = {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10}[dtype]
    v = v.abs().clamp(min=fi.tiny)
    e = torch.floor(torch.log2(v))
    return torch.exp2(e - mant_bits - 1).to(torch.float64)


def gemm_bound(a64: torch.Tensor, w64: torch.Tensor, alpha64: torch.Tensor, out_dtype, extra_products: bool = False):
    """Reference ``Y = alpha * a @ w.T`` in float64 and the largest |out - Y| an fp32 GEMM may give.

    Each product of an ``e2m1 x e4m3`` operand with another such operand (or a bf16/fp16
    activation) is exact in fp32, so only the K-1 additions round: |sum32 - sum| <= (K-1) u
    sum|terms| (with u = 2^-24, first order; the bound holds for any summation order and for
    FMA). ``* alpha`` rounds once more (u |Y|), and the cast to ``out_dtype`` adds at most half
    an ulp of the output dtype. ``extra_products`` adds one rounding per product (fp32 inputs
    in W4A16, whose products need more than 24 bits).
    """
    k = a64.shape[-1]
    y = (a64 @ w64.t()) * alpha64
    terms = (a64.abs() @ w64.abs().t()) * alpha64.abs()
    rel = (k + (1 if extra_products else 0) + 1) * U32 * 1.01
    err32 = rel * terms + U32 * y.abs()
    return y, err32 + half_ulp(y.abs() + err32, out_dtype)


def assert_within(out: torch.Tensor, y: torch.Tensor, bound: torch.Tensor, what: str = "output") -> None:
    diff = (out.to(torch.float64) - y).abs()
    bad = ~(diff <= bound)  # NaN counts as a failure
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.numel()} elements exceed the fp32-order bound; first at flat "
            f"index {i}: out={out.flatten()[i].item()!r} ref={y.flatten()[i].item()!r} "
            f"diff={diff.flatten()[i].item():.3g} bound={bound.flatten()[i].item():.3g}"
        )
