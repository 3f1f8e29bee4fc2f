"""Which decoders the kernels compile in: their ``USE_ASM`` level, per GPU.

``kernels/fp_bits.py`` defines the levels: the portable Triton decoders (the interpreter, or
when asked), the PTX decoders every sm_80+ GPU runs, and the same plus sm_89's conversion of
E4M3 byte pairs (``cvt.rn.f16x2.e4m3x2``), which decodes a block scale in one instruction
where the sm_80 bit placement takes 7-8 (Ada, Hopper and later). Every level computes the
same values. The sm_89 level is opt-in (``NVFP4_TRITON_DECODE=sm89``) until it has been
timed and its GPU tests run on a GPU: no device was lent in the session that wrote it
(docs/performance.md).
"""

from __future__ import annotations

import functools

import torch

from ..kernels import fp_bits
from ..utils import env
from . import fast_launch

# "asm" (the default: the PTX decoders every sm_80+ GPU runs), "sm89" (those plus sm_89's E4M3
# conversions where the GPU has them, else the same as "asm") or "portable" (plain Triton).
DECODE_ENV = "NVFP4_TRITON_DECODE"
DECODE_MODES = ("asm", "sm89", "portable")
DECODE_DEFAULT = "asm"
# The kernels' USE_ASM levels as plain ints (Triton constexprs in kernels/fp_bits.py).
ASM_OFF, ASM_SM80, ASM_SM89 = (int(c.value) for c in (fp_bits.ASM_OFF, fp_bits.ASM_SM80, fp_bits.ASM_SM89))


@functools.lru_cache(maxsize=None)
def _has_e4m3_cvt(index: int) -> bool:
    return torch.cuda.get_device_capability(index) >= (8, 9)


def use_asm_decode(device: torch.device) -> int:
    """The kernels' ``USE_ASM`` for ``device``: ``ASM_OFF`` (the interpreter, a non-CUDA
    device, or ``NVFP4_TRITON_DECODE=portable``), ``ASM_SM89`` with ``NVFP4_TRITON_DECODE=sm89``
    on GPUs of capability >= 8.9, else ``ASM_SM80``."""
    if fast_launch.INTERPRETING or device.type != "cuda":
        return ASM_OFF
    mode = env.choice(DECODE_ENV, DECODE_DEFAULT, DECODE_MODES)
    if mode == "portable":
        return ASM_OFF
    if mode == "sm89":
        index = device.index if device.index is not None else torch.cuda.current_device()
        if _has_e4m3_cvt(index):
            return ASM_SM89
    return ASM_SM80
