"""Which decoders the kernels compile in: their ``USE_ASM`` level, per GPU.

``kernels/fp_bits.py`` defines the levels: the portable Triton decoders (the interpreter, or
when asked), the PTX decoders every sm_80+ GPU runs, and the same plus sm_89's conversion of
E4M3 byte pairs (``cvt.rn.f16x2.e4m3x2``), which decodes a block scale in one instruction
where the sm_80 bit placement takes 7-8 (Ada, Hopper and later). Every level computes the
same values. The sm_89 level is the default where the GPU has it: on an H100 (2026-12-08,
``benchmarks/results/raw/h100_bench_decode_splitk_eight_row_ab.csv``) it made W4A4 1-5% faster
at M = 4..16 (median 3%) and was within noise elsewhere, and its GPU tests passed.
"""

from __future__ import annotations

import functools

import torch

from ..kernels import fp_bits
from ..utils import env
from . import fast_launch

# "sm89" (the default: the PTX decoders plus sm_89's E4M3 conversions where the GPU has them,
# else the same as "asm"), "asm" (the PTX decoders every sm_80+ GPU runs) or "portable".
DECODE_ENV = "NVFP4_TRITON_DECODE"
DECODE_MODES = ("asm", "sm89", "portable")
DECODE_DEFAULT = "sm89"
# The kernels' USE_ASM levels as plain ints (Triton constexprs in kernels/fp_bits.py).
ASM_OFF, ASM_SM80, ASM_SM89 = (int(c.value) for c in (fp_bits.ASM_OFF, fp_bits.ASM_SM80, fp_bits.ASM_SM89))


@functools.lru_cache(maxsize=None)
def _has_e4m3_cvt(index: int) -> bool:
    return torch.cuda.get_device_capability(index) >= (8, 9)


def use_asm_decode(device: torch.device) -> int:
    """The kernels' ``USE_ASM`` for ``device``: ``ASM_OFF`` (the interpreter, a non-CUDA
    device, or ``NVFP4_TRITON_DECODE=portable``), ``ASM_SM89`` on GPUs of capability >= 8.9
    unless the setting is ``asm``, else ``ASM_SM80``."""
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
