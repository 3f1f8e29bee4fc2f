"""Every Triton kernel variant the launchers can pick compiles for Hopper (sm_90) and Ampere
(sm_80), checked on the CPU.

The interpreter runs kernels as Python and misses compile-time errors (a constexpr assigned
twice inside an unrolled loop shipped that way and only failed on the H100). Triton's wheel
carries the whole NVIDIA toolchain, so compiling to a cubin needs no GPU.
"""

from __future__ import annotations

import itertools
import os

import pytest

triton = pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":  # pragma: no cover - the kernels would be interpreted
    pytest.skip("compile checks need the real compiler (TRITON_INTERPRET is set)", allow_module_level=True)

import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from nvfp4.kernels.activation_quant import activation_quant_kernel  # noqa: E402
from nvfp4.kernels.gemm import nvfp4_gemm_kernel  # noqa: E402
from nvfp4.kernels.gemv import gemv_kernel  # noqa: E402
from nvfp4.kernels.splitk_reduce import splitk_reduce_kernel  # noqa: E402
from nvfp4.kernels.weight_dequant import weight_dequant_kernel  # noqa: E402

HOPPER = GPUTarget("cuda", 90, 32)
AMPERE = GPUTarget("cuda", 80, 32)
OP = {"bf16": tl.bfloat16, "fp16": tl.float16}


def compile_for(target, kernel, pointers: dict[str, str], constexprs: dict, num_warps=4, num_stages=3):
    """Compile ``kernel`` with pointer element types ``pointers`` (e.g. ``{"x_ptr": "*bf16"}``),
    int32 for every other runtime argument, and the given constexpr values."""
    signature, values = {}, {}
    for i, p in enumerate(kernel.params):
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            values[(i,)] = constexprs[p.name]
        else:
            signature[p.name] = pointers.get(p.name, "i32")
    src = ASTSource(fn=kernel, signature=signature, constexprs=values)
    return triton.compile(src, target=target, options={"num_warps": num_warps, "num_stages": num_stages})


def _ptrs(**kw):
    base = dict(w_ptr="*u8", w_scale_ptr="*u8", alpha_ptr="*fp32", bias_ptr="*bf16", partial_ptr="*fp32")
    base.update(kw)
    return base


@pytest.mark.parametrize("rows,write_partial,op,out", [
    *[(r, wp, op, "*bf16") for r, wp, op in itertools.product((1, 2, 4), (False, True), ("bf16", "fp16"))],
    (4, False, "fp16", "*fp32"),  # tensor-parallel fp32 partials
    (2, False, "fp16", "*fp16"),
])
def test_gemv_compiles(rows, write_partial, op, out):
    compile_for(HOPPER, gemv_kernel, _ptrs(x_ptr="*" + op, out_ptr=out), dict(
        ROWS=rows, HAS_BIAS=not write_partial, WRITE_PARTIAL=write_partial, OP_DTYPE=OP[op], USE_ASM=True,
        INTERPRET=False, BLOCK_N=64, BLOCK_K=256,
    ))


@pytest.mark.parametrize("a_mode,write_partial,even_k,block_m", [
    (0, False, True, 16), (0, True, False, 16), (1, True, True, 16), (2, False, True, 32), (0, False, True, 128),
])
def test_gemm_compiles(a_mode, write_partial, even_k, block_m):
    a_ptr = "*u8" if a_mode == 2 else "*fp16"
    block_n, block_k, warps = (128, 128, 8) if block_m > 64 else (64, 256, 4)
    compile_for(HOPPER, nvfp4_gemm_kernel, _ptrs(a_ptr=a_ptr, a_scale_ptr="*u8", gx_ptr="*fp32", out_ptr="*bf16"), dict(
        A_MODE=a_mode, HAS_BIAS=True, WRITE_PARTIAL=write_partial, OP_DTYPE=tl.float16, USE_ASM=True,
        INTERPRET=False, EVEN_K=even_k, BLOCK_N=block_n, BLOCK_M=block_m, BLOCK_K=block_k,
    ), num_warps=warps)


@pytest.mark.parametrize("dequant_out", [False, True])
def test_activation_quant_compiles(dequant_out):
    compile_for(HOPPER, activation_quant_kernel, dict(
        x_ptr="*bf16", gx_ptr="*fp32", packed_ptr="*fp16" if dequant_out else "*u8", scale_ptr="*u8",
        dequant_ptr="*fp16" if dequant_out else "*u8",
    ), dict(DEQUANT_OUT=dequant_out, BLOCK_R=32, BLOCK_K=256))


@pytest.mark.parametrize("out", ["*bf16", "*fp16", "*fp32"])
def test_splitk_reduce_and_dequant_compile(out):
    compile_for(HOPPER, splitk_reduce_kernel, dict(partial_ptr="*fp32", alpha_ptr="*fp32", bias_ptr=out, out_ptr=out),
                dict(SPLIT_K=4, HAS_BIAS=True, INTERPRET=False, BLOCK=1024))
    op = {"*bf16": tl.bfloat16, "*fp16": tl.float16, "*fp32": tl.float32}[out]
    compile_for(HOPPER, weight_dequant_kernel, dict(w_ptr="*u8", w_scale_ptr="*u8", out_ptr=out),
                dict(OP_DTYPE=op, USE_ASM=True, BLOCK_N=32, BLOCK_K=256))


def test_portable_decode_compiles_for_ampere():
    """sm_80 (no inline PTX decode): the portable nibble decoder path."""
    compile_for(AMPERE, gemv_kernel, _ptrs(x_ptr="*bf16", out_ptr="*bf16"), dict(
        ROWS=4, HAS_BIAS=True, WRITE_PARTIAL=False, OP_DTYPE=tl.bfloat16, USE_ASM=False, INTERPRET=False,
        BLOCK_N=64, BLOCK_K=256,
    ))
