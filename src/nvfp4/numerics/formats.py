"""The two number formats of NVFP4 and their bit-level encodings.

* FP4 E2M1 ("e2m1"): 1 sign bit, 2 exponent bits, 1 mantissa bit. Bit 3 is the sign, bits
  2..0 index the magnitudes ``[0, 0.5, 1, 1.5, 2, 3, 4, 6]``. Code 0x8 is -0 and decodes to 0.
* FP8 E4M3FN ("e4m3"): the per-16-element block scales. Max 448, no Inf, NaN = 0x7F.

Packing (compressed-tensors ``pack_fp4_to_uint8``, vLLM ``break_fp4_bytes``, ModelOpt): two
codes per byte, the even (first) element of each pair in the **low** nibble.

Everything here is plain PyTorch and device-agnostic: it is the reference every kernel is
tested against, written for clarity rather than speed.
"""

from __future__ import annotations

import torch

GROUP_SIZE = 16
FP4_MAX = 6.0
FP8_MAX = 448.0
# 448 * 6: the largest magnitude one group can represent at unit global scale.
FP4_FP8_RANGE = FP8_MAX * FP4_MAX
FP8_DTYPE = torch.float8_e4m3fn

# Magnitudes of the 8 non-negative E2M1 codes, in code order.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)

_E2M1_SIGNED_TABLE = torch.tensor(
    list(E2M1_VALUES) + [-v for v in E2M1_VALUES], dtype=torch.float32
)


def e2m1_table(device: torch.device | str | None = None) -> torch.Tensor:
    """The 16 FP4 codes decoded to float32 (index = code; code 8 decodes to -0.0)."""
    return _E2M1_SIGNED_TABLE.to(device) if device is not None else _E2M1_SIGNED_TABLE


def e2m1_encode(x: torch.Tensor) -> torch.Tensor:
    """Round values (in FP4 units) to the nearest E2M1 code, ties to even; uint8 codes 0..15.

    The magnitude thresholds are the midpoints between neighbouring E2M1 values; at a tie the
    value with an even mantissa wins (0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4,
    5->4). Values beyond 6 (and +-Inf) become +-6: callers clamp first anyway.

    The sign bit is set only for ``x < 0``, i.e. ``torch.sign`` semantics as compressed-tensors
    uses them: an exact -0.0 gives code 0 while a small negative that rounds to zero gives
    0x8. NaN encodes as code 0; callers that can see NaN carry it in the block scale instead
    (see ``quantize_activation``) or reject it (see ``quantize_weight``).
    """
    a = x.abs()
    magnitude = (
        (a > 0.25).to(torch.uint8)
        + (a >= 0.75).to(torch.uint8)
        + (a > 1.25).to(torch.uint8)
        + (a >= 1.75).to(torch.uint8)
        + (a > 2.5).to(torch.uint8)
        + (a >= 3.5).to(torch.uint8)
        + (a > 5.0).to(torch.uint8)
    )
    sign = (x < 0).to(torch.uint8) << 3
    return magnitude | sign


def e2m1_decode(codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decode uint8 FP4 codes (0..15, one per element) to values of ``dtype`` (exact)."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"e2m1_decode: codes must be uint8, got {codes.dtype}")
    return e2m1_table(codes.device)[codes.long()].to(dtype)


def pack_fp4(codes: torch.Tensor) -> torch.Tensor:
    """Pack uint8 codes ``[..., K]`` (K even) into bytes ``[..., K/2]``: even element low."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"pack_fp4: codes must be uint8, got {codes.dtype}")
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_fp4: last dimension must be even, got {codes.shape[-1]}")
    return (codes[..., 0::2] & 0x0F) | ((codes[..., 1::2] & 0x0F) << 4)


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """Unpack bytes ``[..., K/2]`` into uint8 codes ``[..., K]`` (inverse of ``pack_fp4``)."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"unpack_fp4: packed must be uint8, got {packed.dtype}")
    low = packed & 0x0F
    high = packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)


def round_to_fp8_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Round float32 values to E4M3FN, half to even, after clamping to +-448.

    The clamp matters: on CUDA an out-of-range value (>464) becomes NaN, while the CPU build
    saturates to 448. Clamping first gives the same answer everywhere. NaN stays NaN.
    """
    return x.clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)


def group_view(t: torch.Tensor, group_size: int = GROUP_SIZE) -> torch.Tensor:
    """View ``[..., K]`` as ``[..., K/16, 16]`` (K must be a multiple of the group size)."""
    if t.shape[-1] % group_size:
        raise ValueError(
            f"the last dimension ({t.shape[-1]}) must be a multiple of the group size {group_size}"
        )
    return t.unflatten(-1, (t.shape[-1] // group_size, group_size))
