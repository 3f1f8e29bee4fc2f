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

from nvfp4.kernels.activation_quant import OUT_DEQUANT, OUT_INT8, OUT_PACKED, activation_quant_kernel  # noqa: E402
from nvfp4.kernels.gemm import nvfp4_gemm_kernel  # noqa: E402
from nvfp4.kernels.gemv import gemv_kernel  # noqa: E402
from nvfp4.kernels.gemv_dp4a import gemv_dp4a_kernel  # noqa: E402
from nvfp4.kernels.gemv_half2 import gemv_half2_kernel  # noqa: E402
from nvfp4.kernels.grid_dependency import PDL_EARLY, PDL_LATE  # noqa: E402
from nvfp4.kernels.splitk_reduce import splitk_reduce_kernel  # noqa: E402
from nvfp4.kernels.weight_dequant import weight_dequant_kernel  # noqa: E402

HOPPER = GPUTarget("cuda", 90, 32)
AMPERE = GPUTarget("cuda", 80, 32)
# The highest USE_ASM level each target can run (ops.launch.use_asm_decode): Hopper has sm_89's
# E4M3 conversions (level 2, with NVFP4_TRITON_DECODE=sm89), Ampere the sm_80 PTX only. Level 1,
# the default launch on every GPU, is compiled for both targets by the W_AS_B and dp4a
# every-candidate tests below; the paired-decode, ticket and dp4a-variant tests take ASM_LEVEL.
ASM_LEVEL = {HOPPER: 2, AMPERE: 1}
OP = {"bf16": tl.bfloat16, "fp16": tl.float16}


# Integer arguments that real launches pass as multiples of 16 (Llama shapes): Triton
# specialises those, and its pipeliner and vectoriser depend on it.
DIV16_INTS = ("N", "K", "stride_am", "stride_xm", "stride_wn", "stride_ws")


def compile_for(target, kernel, pointers: dict[str, str], constexprs: dict, num_warps=4, num_stages=3, aligned=True):
    """Compile ``kernel`` with pointer element types ``pointers`` (e.g. ``{"x_ptr": "*bf16"}``),
    int32 for every other runtime argument, and the given constexpr values.

    ``aligned`` mirrors what a launch with 16-byte-aligned tensors and Llama-sized K/N gets
    from Triton's specialisation (``tt.divisibility = 16``): the cp.async-pipelined and
    vectorised code that actually runs on the GPU. Without it only the unaligned fallback
    would be compiled."""
    signature, values, attrs = {}, {}, {}
    for i, p in enumerate(kernel.params):
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            values[(i,)] = constexprs[p.name] if p.name in constexprs or not p.has_default else p.default
        else:
            signature[p.name] = pointers.get(p.name, "i32")
            if aligned and (signature[p.name].startswith("*") or p.name in DIV16_INTS):
                attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=kernel, signature=signature, constexprs=values, attrs=attrs)
    options = triton.compiler.make_backend(target).parse_options({"num_warps": num_warps, "num_stages": num_stages})
    return triton.compile(src, target=target, options=options.__dict__)


def _ptrs(**kw):
    base = dict(w_ptr="*u8", w_scale_ptr="*u8", alpha_ptr="*fp32", bias_ptr="*bf16", partial_ptr="*fp32",
                counter_ptr="*i32")
    base.update(kw)
    return base


@pytest.mark.parametrize("rows,write_partial,op,out", [
    *[(r, wp, op, "*bf16") for r, wp, op in itertools.product((1, 2, 4), (False, True), ("bf16", "fp16"))],
    (4, False, "fp16", "*fp32"),  # tensor-parallel fp32 partials
    (2, False, "fp16", "*fp16"),
])
def test_gemv_compiles(rows, write_partial, op, out):
    compile_for(HOPPER, gemv_kernel, _ptrs(x_ptr="*" + op, out_ptr=out), dict(
        ROWS=rows, HAS_BIAS=not write_partial, WRITE_PARTIAL=write_partial, OP_DTYPE=OP[op], USE_ASM=2,
        INTERPRET=False, BLOCK_N=64, BLOCK_K=256,
    ))


@pytest.mark.parametrize("a_mode,write_partial,even_k,block_m", [
    (0, False, True, 16), (0, True, False, 16), (1, True, True, 16), (2, False, True, 32), (0, False, True, 128),
])
def test_gemm_compiles(a_mode, write_partial, even_k, block_m):
    a_ptr = "*u8" if a_mode == 2 else "*fp16"
    block_n, block_k, warps = (128, 128, 8) if block_m > 64 else (64, 256, 4)
    compile_for(HOPPER, nvfp4_gemm_kernel, _ptrs(a_ptr=a_ptr, a_scale_ptr="*u8", gx_ptr="*fp32", out_ptr="*bf16"), dict(
        A_MODE=a_mode, HAS_BIAS=True, WRITE_PARTIAL=write_partial, OP_DTYPE=tl.float16, USE_ASM=2,
        INTERPRET=False, EVEN_K=even_k, BLOCK_N=block_n, BLOCK_M=block_m, BLOCK_K=block_k, W_AS_B=False,
    ), num_warps=warps)


@pytest.mark.parametrize("target", [HOPPER, AMPERE], ids=["sm90", "sm80"])
@pytest.mark.parametrize("m", [5, 32, 64, 128])
@pytest.mark.parametrize("op", ["fp16", "bf16"])
def test_gemm_weight_as_right_operand_compiles(target, m, op):
    """Every ``W_AS_B`` tile the small-M tuner can pick (launch.small_m_candidates), split-K
    partials and fused epilogue (bf16 output; float32 for the second tile: tensor-parallel
    partial sums); on sm_90 the K loop must be one asynchronous wgmma over the
    weight in shared memory (the point of this orientation), with no layout conversion of
    the weight or activation tiles."""
    from nvfp4.ops.launch import small_m_candidates

    for i, cand in enumerate(c for c in small_m_candidates(m, False) if c.get("W_AS_B") and "WAVES" not in c):
        out = "*fp32" if i == 1 else "*bf16"
        kernel = compile_for(target, nvfp4_gemm_kernel, _ptrs(a_ptr="*" + op, a_scale_ptr="*u8", gx_ptr="*fp32", out_ptr=out), dict(
            A_MODE=0, HAS_BIAS=True, WRITE_PARTIAL=i == 0, OP_DTYPE=OP[op], USE_ASM=1, INTERPRET=False,
            EVEN_K=True, BLOCK_N=cand["BLOCK_N"], BLOCK_M=cand["BLOCK_M"], BLOCK_K=cand["BLOCK_K"], W_AS_B=True,
        ), num_warps=cand["num_warps"], num_stages=cand["num_stages"])
        ttgir = kernel.asm["ttgir"]
        loop = ttgir[ttgir.index("scf.for"):ttgir.index("scf.yield")]
        # No conversion of the weight or activation tiles. At 64-wide K steps the [BLOCK_N, 4]
        # scale-byte tile is relaid once per step (512 bytes; the measured-faster tile anyway).
        scale_tile = f"x{cand['BLOCK_K'] // 16}xi8"
        converts = [line for line in loop.splitlines() if "convert_layout" in line]
        assert all(scale_tile in line.split("->")[0] for line in converts), (cand, converts)
        assert len(converts) <= (1 if cand["BLOCK_K"] == 64 else 0), (cand, converts)
        if target is HOPPER and cand["BLOCK_M"] >= 64:
            assert loop.count("ttng.warp_group_dot ") == 1 and "isAsync = true" in loop, cand


@pytest.mark.parametrize("target", [HOPPER, AMPERE], ids=["sm90", "sm80"])
def test_gemm_with_the_split_k_ticket_compiles(target):
    """``SPLITK_TICKET`` (``NVFP4_TRITON_SPLITK_REDUCE=kernel``) on the first tiles of each M
    bucket: one acquire-release ticket per program after its partial stores, and the K loop
    at most 5% longer than without (register allocation moves: 2026-12-08, 16 rows 4.27 -> 4.20
    instructions per weight element, 128 rows 4.66 -> 4.84)."""
    import torch

    from nvfp4.ops.launch import PAIRED_IN_KERNEL, PAIRED_OPERAND, small_m_candidates, small_m_config

    for m, paired in ((5, PAIRED_IN_KERNEL), (64, PAIRED_OPERAND), (128, PAIRED_OPERAND)):
        cand = small_m_candidates(m, False)[0]
        cfg = small_m_config(m, 4096, 4096, torch.device("cpu"), cand)
        loops = {}
        for ticket in (False, True):
            kernel = compile_for(target, nvfp4_gemm_kernel, _ptrs(a_ptr="*fp16", a_scale_ptr="*u8", gx_ptr="*fp32", out_ptr="*bf16"), dict(
                A_MODE=0, HAS_BIAS=True, WRITE_PARTIAL=True, OP_DTYPE=tl.float16, USE_ASM=ASM_LEVEL[target],
                INTERPRET=False, EVEN_K=True, BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"], BLOCK_K=cfg["BLOCK_K"],
                W_AS_B=True, PAIRED_K=paired, SPLITK_TICKET=ticket,
            ), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
            ptx = kernel.asm["ptx"]
            assert ("atom.global.gpu.acq_rel.add" in ptx) == ticket, (m, ticket)
            if target is HOPPER:
                loops[ticket] = _loop_instructions_per_weight_element(kernel, cfg)
        if target is HOPPER:
            assert loops[True] <= 1.05 * loops[False], (m, loops)


def _loop_instructions_per_weight_element(kernel, cfg) -> float:
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from sass_loop_stats import loop_instructions_per_weight_element

    return loop_instructions_per_weight_element(kernel, cfg)


@pytest.mark.parametrize("target", [HOPPER, AMPERE], ids=["sm90", "sm80"])
@pytest.mark.parametrize("m,op,quantized", [
    *[(m, "fp16", True) for m in (5, 32, 64, 128)],  # W4A4: in-kernel permutation up to 32 rows, then the operand's
    (1, "bf16", False), (32, "bf16", False), (16, "fp16", False),  # W4A16: paired up to 32 rows only
])
def test_paired_decode_gemm_compiles_and_takes_fewer_instructions(target, m, op, quantized, monkeypatch):
    """Every small-M tensor-core candidate compiles in the ``PAIRED_K`` mode ``paired_mode``
    gives it (W4A4: fp16 operand; W4A16: x's dtype), with split-K partials and the fused
    epilogue; on sm_90 its K loop has no layout conversion of the weight tile and fewer SASS
    instructions per weight element than the natural-order decode of the same tile
    (kernels/paired_decode.py: 4.2-7.0 against 6.1-13.2)."""
    import torch

    from nvfp4.ops.launch import PAIRED_K_ENV, paired_mode, small_m_candidates, small_m_config

    monkeypatch.setenv(PAIRED_K_ENV, "on")
    monkeypatch.setenv("NVFP4_TRITON_EIGHT_ROW_TILES", "on")  # the opt-in 8-row tiles too (M <= 8)
    mode = paired_mode(m, quantized)
    assert mode, "a paired case"
    # (the WAVES variants launch the same kernels with more splits: nothing new to compile)
    for i, cand in enumerate(c for c in small_m_candidates(m, False) if "W_AS_B" in c and "WAVES" not in c):
        cfg = small_m_config(m, 4096, 4096, torch.device("cpu"), cand)
        per_elem = {}
        for paired in (mode, 0) if target is HOPPER else (mode,):
            kernel = compile_for(target, nvfp4_gemm_kernel, _ptrs(a_ptr="*" + op, a_scale_ptr="*u8", gx_ptr="*fp32", out_ptr="*bf16"), dict(
                A_MODE=0, HAS_BIAS=i % 2 == 1, WRITE_PARTIAL=i % 2 == 0, OP_DTYPE=OP[op], USE_ASM=ASM_LEVEL[target],
                INTERPRET=False,
                EVEN_K=True, BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"], BLOCK_K=cfg["BLOCK_K"], W_AS_B=cfg["W_AS_B"],
                PAIRED_K=paired,
            ), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
            if target is HOPPER:
                per_elem[paired] = _loop_instructions_per_weight_element(kernel, cfg)
            if paired and cfg["W_AS_B"]:
                ttgir = kernel.asm["ttgir"]
                loop = ttgir[ttgir.index("scf.for"):ttgir.index("scf.yield")]
                weight_tile = f"{cfg['BLOCK_N']}x{cfg['BLOCK_K']}x{'bf16' if op == 'bf16' else 'f16'}"
                assert not [ln for ln in loop.splitlines() if "convert_layout" in ln and weight_tile in ln], cand
        if target is HOPPER:
            assert per_elem[mode] < per_elem[0], (cand, per_elem)


@pytest.mark.parametrize("op", ["fp16", "bf16"])
def test_sm89_scale_conversion_shortens_the_paired_loop(op):
    """``ASM_SM89`` (what a Hopper launch gets): the block scales of the paired decode are
    converted by ``cvt.rn.f16x2.e4m3x2`` (SASS ``F2FP...E4M3``) and the 16-row K loops are
    shorter than with the sm_80 bit placement (sm_90 SASS, 2026-12-08: fp16 4.41 -> 3.84
    instructions per weight element at 16 x 128 x 128, bf16 4.53 -> 4.21)."""
    import torch

    from nvfp4.ops.launch import PAIRED_IN_KERNEL, small_m_candidates, small_m_config

    for cand in (c for c in small_m_candidates(5, False) if c.get("W_AS_B") and "WAVES" not in c):
        cfg = small_m_config(5, 4096, 4096, torch.device("cpu"), cand)
        per_elem, conversions = {}, {}
        for level in (1, 2):
            kernel = compile_for(HOPPER, nvfp4_gemm_kernel, _ptrs(a_ptr="*" + op, a_scale_ptr="*u8", gx_ptr="*fp32", out_ptr="*bf16"), dict(
                A_MODE=0, HAS_BIAS=False, WRITE_PARTIAL=True, OP_DTYPE=OP[op], USE_ASM=level, INTERPRET=False,
                EVEN_K=True, BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"], BLOCK_K=cfg["BLOCK_K"], W_AS_B=True,
                PAIRED_K=PAIRED_IN_KERNEL,
            ), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
            per_elem[level] = _loop_instructions_per_weight_element(kernel, cfg)
            conversions[level] = kernel.asm["ptx"].count("cvt.rn.f16x2.e4m3x2")
        assert conversions[1] == 0 and conversions[2] > 0, (cand, conversions)
        assert per_elem[2] < 0.95 * per_elem[1], (cand, per_elem)


@pytest.mark.parametrize("rows", [1, 2])
def test_sm89_scale_conversion_shortens_the_dp4a_loop(rows):
    """The integer-dot GEMV's first tuner candidate: at ``ASM_SM89`` its weight scales take one
    E4M3 conversion each and the K loop is shorter (sm_90 SASS, 2026-12-08: 2.73 -> 2.42
    instructions per weight element at M = 1, 4.25 -> 3.50 at M = 2)."""
    from nvfp4.ops.launch_dp4a import CANDIDATES

    cand = CANDIDATES[rows][0]
    per_elem = {}
    for level in (1, 2):
        kernel = compile_for(HOPPER, gemv_dp4a_kernel, dict(DP4A_PTRS, x_ptr="*i8", bias_ptr="*bf16", out_ptr="*bf16"), dict(
            ROWS=rows, FUSED_QUANT=False, HAS_BIAS=True, USE_ASM=level, INTERPRET=False, EVEN_K=True,
            BLOCK_N=cand["BLOCK_N"], BLOCK_K=cand["BLOCK_K"], NUM_STAGES=cand["NUM_STAGES"]),
            num_warps=cand["num_warps"], num_stages=cand["NUM_STAGES"])
        assert (kernel.asm["ptx"].count("cvt.rn.f16x2.e4m3x2") > 0) == (level == 2)
        per_elem[level] = _loop_instructions_per_weight_element(kernel, cand)
    assert per_elem[2] < 0.95 * per_elem[1], per_elem


def test_paired_activation_operand_is_a_register_permutation():
    """``PAIRED_K`` in the activation kernel permutes within groups of 8 that a thread holds
    whole: the same SASS instruction count as natural order, and no shared memory."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from sass_loop_stats import sass_of

    counts = []
    for paired in (False, True):
        kernel = compile_for(HOPPER, activation_quant_kernel, dict(x_ptr="*bf16", gx_ptr="*fp32", values_ptr="*fp16", scale_ptr="*fp16"),
                             dict(OUT_MODE=OUT_DEQUANT, BLOCK_R=16, BLOCK_K=256, PAIRED_K=paired))
        sass = [ln for ln in sass_of(kernel).splitlines() if "/*0" in ln]
        assert not any(" STS" in ln or " LDS" in ln for ln in sass), paired
        counts.append(len(sass))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("out_mode,values,scale", [
    (OUT_PACKED, "*u8", "*u8"), (OUT_DEQUANT, "*fp16", "*fp16"), (OUT_DEQUANT, "*bf16", "*bf16"), (OUT_INT8, "*i8", "*fp32"),
])
def test_activation_quant_compiles(out_mode, values, scale):
    compile_for(HOPPER, activation_quant_kernel, dict(x_ptr="*bf16", gx_ptr="*fp32", values_ptr=values, scale_ptr=scale),
                dict(OUT_MODE=out_mode, BLOCK_R=16, BLOCK_K=256))


DP4A_PTRS = dict(xs_ptr="*fp32", gx_ptr="*fp32", w_ptr="*u8", ws_ptr="*u8", alpha_ptr="*fp32", partial_ptr="*fp32",
                 counter_ptr="*i32", lut_ptr="*i32")


@pytest.mark.parametrize("target", [HOPPER, AMPERE], ids=["sm90", "sm80"])
@pytest.mark.parametrize("rows,fused,even_k,out,block_n,stages", [
    (1, True, True, "*bf16", 64, 1), (2, True, False, "*fp16", 64, 1), (4, True, True, "*bf16", 64, 1),
    (1, False, True, "*bf16", 64, 1), (4, False, False, "*fp32", 32, 1), (1, True, True, "*bf16", 128, 1),
    (1, True, True, "*bf16", 64, 3), (2, False, False, "*bf16", 64, 2),  # cp.async-pipelined K loop
])
def test_gemv_dp4a_compiles(target, rows, fused, even_k, out, block_n, stages):
    """The integer-dot decode kernel (inline prmt/dp4a PTX, in-kernel split-K reduction)."""
    x = ("*bf16" if out == "*bf16" else "*fp16") if fused else "*i8"
    compile_for(target, gemv_dp4a_kernel, dict(DP4A_PTRS, x_ptr=x, bias_ptr=out, out_ptr=out), dict(
        ROWS=rows, FUSED_QUANT=fused, HAS_BIAS=True, USE_ASM=ASM_LEVEL[target], INTERPRET=False, EVEN_K=even_k,
        BLOCK_N=block_n, BLOCK_K=256, NUM_STAGES=stages,
    ))


@pytest.mark.parametrize("target", [HOPPER, AMPERE], ids=["sm90", "sm80"])
@pytest.mark.parametrize("rows", [1, 2, 4])
def test_every_dp4a_tuner_candidate_compiles(target, rows):
    """Each tile the dp4a tuner can pick (``launch_dp4a.CANDIDATES``), with the compile-time
    settings a real launch gives it."""
    from nvfp4.ops.launch_dp4a import CANDIDATES

    for cand in CANDIDATES[rows]:
        x = "*bf16" if cand["FUSED_QUANT"] else "*i8"
        compile_for(target, gemv_dp4a_kernel, dict(DP4A_PTRS, x_ptr=x, bias_ptr="*bf16", out_ptr="*bf16"), dict(
            ROWS=rows, FUSED_QUANT=cand["FUSED_QUANT"], HAS_BIAS=True, USE_ASM=1, INTERPRET=False, EVEN_K=True,
            BLOCK_N=cand["BLOCK_N"], BLOCK_K=cand["BLOCK_K"], NUM_STAGES=cand["NUM_STAGES"],
        ), num_warps=cand["num_warps"])


HALF2_PTRS = dict(w_ptr="*u8", ws_ptr="*u8", alpha_ptr="*fp32", partial_ptr="*fp32", counter_ptr="*i32")


@pytest.mark.parametrize("target", [HOPPER, AMPERE], ids=["sm90", "sm80"])
@pytest.mark.parametrize("rows", [1, 2, 4])
def test_every_gemv_half2_tile_compiles(target, rows):
    """Each tile of the half2-decode GEMV the small-M tuner can pick (``launch_gemv_half2.TILES``):
    bf16 and fp16 operands, masked K, the PTX decoder on both targets (plain sm_53+ PTX), the
    portable one too, float32 output (tensor-parallel partials)."""
    from nvfp4.ops.launch_gemv_half2 import TILES

    for i, tile in enumerate(TILES):
        x, out = [("*bf16", "*bf16"), ("*fp16", "*fp16"), ("*bf16", "*fp32"), ("*fp16", "*bf16")][i % 4]
        compile_for(target, gemv_half2_kernel, dict(HALF2_PTRS, x_ptr=x, bias_ptr=out, out_ptr=out), dict(
            ROWS=rows, HAS_BIAS=i % 2 == 0, USE_ASM=i != 3 or target is HOPPER, INTERPRET=False, EVEN_K=i != 1,
            BLOCK_N=tile["BLOCK_N"], BLOCK_K=tile["BLOCK_K"], NUM_STAGES=tile["NUM_STAGES"],
        ), num_warps=tile["num_warps"], num_stages=tile["NUM_STAGES"])


def test_unaligned_launch_compiles():
    """Tensors that are not 16-byte aligned get Triton's unspecialised variant."""
    compile_for(HOPPER, gemv_dp4a_kernel, dict(DP4A_PTRS, x_ptr="*bf16", bias_ptr="*bf16", out_ptr="*bf16"), dict(
        ROWS=1, FUSED_QUANT=True, HAS_BIAS=False, USE_ASM=2, INTERPRET=False, EVEN_K=False, BLOCK_N=64, BLOCK_K=256,
        NUM_STAGES=1,
    ), aligned=False)


@pytest.mark.parametrize("out", ["*bf16", "*fp16", "*fp32"])
def test_splitk_reduce_and_dequant_compile(out):
    compile_for(HOPPER, splitk_reduce_kernel, dict(partial_ptr="*fp32", alpha_ptr="*fp32", bias_ptr=out, out_ptr=out),
                dict(SPLIT_K=4, HAS_BIAS=True, INTERPRET=False, BLOCK=1024))
    op = {"*bf16": tl.bfloat16, "*fp16": tl.float16, "*fp32": tl.float32}[out]
    compile_for(HOPPER, weight_dequant_kernel, dict(w_ptr="*u8", w_scale_ptr="*u8", out_ptr=out),
                dict(OP_DTYPE=op, USE_ASM=2, BLOCK_N=32, BLOCK_K=256))


def test_portable_decode_compiles_for_ampere():
    """sm_80 (no inline PTX decode): the portable nibble decoder path."""
    compile_for(AMPERE, gemv_kernel, _ptrs(x_ptr="*bf16", out_ptr="*bf16"), dict(
        ROWS=4, HAS_BIAS=True, WRITE_PARTIAL=False, OP_DTYPE=tl.bfloat16, USE_ASM=False, INTERPRET=False,
        BLOCK_N=64, BLOCK_K=256,
    ))


PDL_CASES = {
    "activation_quant": (activation_quant_kernel, dict(x_ptr="*bf16", gx_ptr="*fp32", values_ptr="*i8", scale_ptr="*fp32"),
                         dict(OUT_MODE=OUT_INT8, BLOCK_R=16, BLOCK_K=256), 4),
    "gemv_dp4a": (gemv_dp4a_kernel, dict(DP4A_PTRS, x_ptr="*i8", bias_ptr="*bf16", out_ptr="*bf16"), dict(
        ROWS=1, FUSED_QUANT=False, HAS_BIAS=True, USE_ASM=2, INTERPRET=False, EVEN_K=True, BLOCK_N=32, BLOCK_K=512,
        NUM_STAGES=1), 4),
    "gemm": (nvfp4_gemm_kernel, _ptrs(a_ptr="*fp16", a_scale_ptr="*u8", gx_ptr="*fp32", out_ptr="*bf16"), dict(
        A_MODE=0, HAS_BIAS=True, WRITE_PARTIAL=True, OP_DTYPE=tl.float16, USE_ASM=2, INTERPRET=False, EVEN_K=True,
        BLOCK_N=64, BLOCK_M=16, BLOCK_K=256, W_AS_B=True), 4),
    "gemv": (gemv_kernel, _ptrs(x_ptr="*bf16", out_ptr="*bf16"), dict(
        ROWS=1, HAS_BIAS=False, WRITE_PARTIAL=True, OP_DTYPE=tl.bfloat16, USE_ASM=2, INTERPRET=False, BLOCK_N=64,
        BLOCK_K=256), 4),
    "gemv_half2": (gemv_half2_kernel, dict(HALF2_PTRS, x_ptr="*bf16", bias_ptr="*bf16", out_ptr="*bf16"), dict(
        ROWS=1, HAS_BIAS=True, USE_ASM=2, INTERPRET=False, EVEN_K=True, BLOCK_N=64, BLOCK_K=256, NUM_STAGES=1), 4),
    "splitk_reduce": (splitk_reduce_kernel, dict(partial_ptr="*fp32", alpha_ptr="*fp32", bias_ptr="*bf16", out_ptr="*bf16"),
                      dict(SPLIT_K=4, HAS_BIAS=True, INTERPRET=False, BLOCK=1024), 4),
}


def _first_global_access(body: str) -> int:
    return min(i for i in (body.find("ld.global"), body.find("cp.async"), body.find("st.global")) if i >= 0)


@pytest.mark.parametrize("name", sorted(PDL_CASES))
@pytest.mark.parametrize("mode", ["early", "late"])
def test_programmatic_dependent_launch_only_when_asked(name, mode):
    """``PDL=1`` (``NVFP4_TRITON_PDL=on``): the kernel signals its dependents and waits for the
    previous grid before anything else (``kernels/grid_dependency.py``); ``PDL=2`` (``late``):
    it waits before anything else and signals once, after it has read its inputs (after the
    main loop); the default emits no ``griddepcontrol`` at all (it does not exist before
    sm_90), and Ampere still compiles."""
    kernel, ptrs, constexprs, warps = PDL_CASES[name]
    pdl = int((PDL_EARLY if mode == "early" else PDL_LATE).value)
    ptx = compile_for(HOPPER, kernel, ptrs, dict(constexprs, PDL=pdl), num_warps=warps).asm["ptx"]
    body = ptx[ptx.index("{", ptx.index(".entry")):]
    wait = body.index("griddepcontrol.wait")
    signal = body.index("griddepcontrol.launch_dependents")
    assert body.count("griddepcontrol.wait") == 1 and body.count("griddepcontrol.launch_dependents") == 1
    assert _first_global_access(body) > wait, "a global memory access before the wait"
    if mode == "early":
        assert signal < wait
    else:
        assert signal > _first_global_access(body), "the late signal comes before the kernel reads its inputs"
    assert "griddepcontrol" not in compile_for(HOPPER, kernel, ptrs, constexprs, num_warps=warps).asm["ptx"]
    sm80 = dict(constexprs, USE_ASM=ASM_LEVEL[AMPERE]) if "USE_ASM" in constexprs else constexprs
    assert "griddepcontrol" not in compile_for(AMPERE, kernel, ptrs, sm80, num_warps=warps).asm["ptx"]


def test_act_quant_sass_counts_by_output_and_rows():
    """``benchmarks/sass_loop_stats.py --act-quant`` (the numbers docs/performance.md quotes):
    the packed output costs more per element than the dense operand (code extraction and
    nibble packing), more rows per program amortize the per-program part, and the int32-words
    read of bf16 x takes fewer than the bf16 read."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from sass_loop_stats import act_quant_instructions_per_element

    packed = act_quant_instructions_per_element(OUT_PACKED, 16, 4)
    assert act_quant_instructions_per_element(OUT_DEQUANT, 16, 4) < packed
    assert act_quant_instructions_per_element(OUT_PACKED, 32, 4) < packed
    # the int32-words read (the default for bf16 x): a whole group per thread, ~5 fewer per element
    assert act_quant_instructions_per_element(OUT_PACKED, 16, 4, words=True) < packed - 3
