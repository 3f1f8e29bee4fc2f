"""SASS of a decode kernel's K loop, counted on the CPU (no GPU needed).

Triton's wheel carries ptxas and nvdisasm, so a kernel compiles to an sm_90 cubin here; this
script compiles the CUDA-core GEMVs (``kernels/gemv.py``, ``kernels/gemv_half2.py``) for
the tiles their launchers use, finds the main loop in the SASS (the block that ends with the
backward branch carrying the most instructions) and prints its instruction mix, instructions
per thread per K step, and instructions per weight element (the number that bounds an
issue-bound decode kernel: 132 SMs x 4 schedulers issue one warp instruction per cycle
each, i.e. 128 thread-instructions per SM per cycle).

    python benchmarks/sass_loop_stats.py                  # both GEMVs at M = 1, 2, 4
    python benchmarks/sass_loop_stats.py --dump half2:1   # also print that loop's SASS
    python benchmarks/sass_loop_stats.py --gemm           # the small-M tensor-core GEMM's candidates,
                                                          # natural vs paired weight decode
    python benchmarks/sass_loop_stats.py --gemm --asm-level 1   # the same with the sm_80 scale decode
    python benchmarks/sass_loop_stats.py --act-quant      # the activation kernel (no loop: whole
                                                          # kernel per element) by output, rows, warps
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def _nvdisasm() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")


def sass_of(compiled) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        return subprocess.run([_nvdisasm(), "-c", f.name], capture_output=True, text=True, check=True).stdout


def main_loop(sass: str) -> list[str]:
    """The instructions of the longest block that branches backwards to its own label."""
    lines = sass.splitlines()
    labels = {}
    for i, line in enumerate(lines):
        m = re.match(r"\s*\.(L_x_\d+):", line)
        if m:
            labels[m.group(1)] = i
    best: list[str] = []
    for i, line in enumerate(lines):
        m = re.search(r"\bBRA\b.*`\(\.(L_x_\d+)\)", line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            body = [ln for ln in lines[labels[m.group(1)]:i + 1] if re.search(r"/\*[0-9a-f]{4}\*/", ln)]
            if len(body) > len(best):
                best = body
    return best


def opcode(line: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", line).strip().rstrip(";")
    text = re.sub(r"^@!?U?P\w+\s+", "", text)
    return text.split()[0] if text else "?"


def stats(name: str, compiled, weight_elements_per_step: int, threads: int, dump: bool) -> None:
    loop = main_loop(sass_of(compiled))
    mix = collections.Counter(opcode(ln) for ln in loop)
    per_elem = len(loop) * threads / weight_elements_per_step
    top = ", ".join(f"{op} {n}" for op, n in mix.most_common(12))
    print(f"{name:28s} loop {len(loop):4d} instr/thread/step  {per_elem:5.2f} per weight element  [{top}]")
    if dump:
        print("\n".join(loop))


def run(args) -> None:
    import triton.language as tl
    from test_triton_compile import HOPPER, _ptrs, compile_for

    from nvfp4.kernels.gemv import gemv_kernel
    from nvfp4.kernels.gemv_half2 import gemv_half2_kernel
    from nvfp4.ops import launch_gemv_half2

    dump = set(args.dump.split(",")) if args.dump else set()
    for rows in (1, 2, 4):
        k = compile_for(HOPPER, gemv_kernel, _ptrs(x_ptr="*bf16", out_ptr="*bf16"), dict(
            ROWS=rows, HAS_BIAS=False, WRITE_PARTIAL=True, OP_DTYPE=tl.bfloat16, USE_ASM=True, INTERPRET=False,
            BLOCK_N=64, BLOCK_K=256,
        ))
        stats(f"gemv rows={rows} 64x256", k, 64 * 256, 128, f"gemv:{rows}" in dump)
        for i, tile in enumerate(launch_gemv_half2.TILES):
            k = compile_for(HOPPER, gemv_half2_kernel, dict(
                x_ptr="*bf16", w_ptr="*u8", ws_ptr="*u8", alpha_ptr="*fp32", bias_ptr="*bf16", out_ptr="*bf16",
                partial_ptr="*fp32", counter_ptr="*i32",
            ), dict(ROWS=rows, HAS_BIAS=False, USE_ASM=True, INTERPRET=False, EVEN_K=True, BLOCK_N=tile["BLOCK_N"],
                    BLOCK_K=tile["BLOCK_K"], NUM_STAGES=tile["NUM_STAGES"]),
                num_warps=tile["num_warps"], num_stages=tile["NUM_STAGES"])
            label = f"half2 rows={rows} {tile['BLOCK_N']}x{tile['BLOCK_K']} s{tile['NUM_STAGES']}"
            stats(label, k, tile["BLOCK_N"] * tile["BLOCK_K"], 32 * tile["num_warps"],
                  f"half2:{rows}" in dump and i == 0)


def loop_instructions_per_weight_element(kernel, cfg: dict) -> float:
    """Thread-instructions of a tensor-core GEMM's compiled K loop per weight element of one K
    step (``BLOCK_N x BLOCK_K``), for ``cfg``'s tile and warps."""
    return len(main_loop(sass_of(kernel))) * 32 * cfg["num_warps"] / (cfg["BLOCK_N"] * cfg["BLOCK_K"])


def run_gemm(asm_level: int = 2) -> None:
    """Every tensor-core candidate of ``launch.small_m_candidates`` at M = 5, 32, 64, 128 (tiles
    as ``small_m_config`` sizes them for 4096 x 4096), compiled with the natural-order decode
    (``PAIRED_K`` 0) and both paired modes (1: permuted operand, 2: permuted in the kernel),
    fp16 (W4A4's operand) and bf16 (W4A16 with bf16 x), at the decoders' ``asm_level``
    (``launch.use_asm_decode``: 2 = sm_89's E4M3 conversions, what a Hopper launch gets; 1 =
    the sm_80 PTX)."""
    import torch
    import triton.language as tl
    from test_triton_compile import HOPPER, _ptrs, compile_for

    from nvfp4.kernels.gemm import nvfp4_gemm_kernel
    from nvfp4.ops.launch import small_m_candidates, small_m_config

    print(f"instructions per weight element of the K loop; PAIRED_K = 0 (natural) / 1 (operand) / 2 (in kernel); "
          f"USE_ASM = {asm_level}")
    for op in ("fp16", "bf16"):
        for m in (5, 32, 64, 128):
            for cand in (c for c in small_m_candidates(m, False) if "WAVES" not in c):  # WAVES: same kernel
                cfg = small_m_config(m, 4096, 4096, torch.device("cpu"), cand)
                per_elem = []
                for paired in (0, 1, 2):
                    kernel = compile_for(HOPPER, nvfp4_gemm_kernel, _ptrs(a_ptr="*" + op, a_scale_ptr="*u8", gx_ptr="*fp32",
                                                                          out_ptr="*bf16"), dict(
                        A_MODE=0, HAS_BIAS=False, WRITE_PARTIAL=True, OP_DTYPE=tl.float16 if op == "fp16" else tl.bfloat16,
                        USE_ASM=asm_level, INTERPRET=False, EVEN_K=True, BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"],
                        BLOCK_K=cfg["BLOCK_K"], W_AS_B=cfg["W_AS_B"], PAIRED_K=paired,
                    ), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
                    per_elem.append(loop_instructions_per_weight_element(kernel, cfg))
                tile = (f"{'W_AS_B' if cfg['W_AS_B'] else 'swapAB'} {cfg['BLOCK_M']}x{cfg['BLOCK_N']}x{cfg['BLOCK_K']} "
                        f"w{cfg['num_warps']} s{cfg['num_stages']}")
                print(f"{op} M={m:3d} {tile:30s} " + " / ".join(f"{v:5.2f}" for v in per_elem), flush=True)


def kernel_instructions_per_element(compiled, elements_per_thread: float) -> float:
    """All SASS instructions of a loop-free kernel (one tile per program) per element a thread handles."""
    return sum(1 for ln in sass_of(compiled).splitlines() if re.search(r"/\*[0-9a-f]{4}\*/", ln)) / elements_per_thread


def act_quant_instructions_per_element(out_mode: int, rows: int, warps: int, paired: bool = False,
                                       block_k: int = 256, words: bool = False) -> float:
    """sm_90 SASS instructions per element of ``activation_quant_kernel`` for bf16 ``x`` (the
    packed output writes u8 codes + bytes, the operand fp16, int8 values + fp32 scales), ``x``
    read as bf16 or (``words``) as int32 pairs."""
    from test_triton_compile import HOPPER, compile_for

    from nvfp4.kernels.activation_quant import OUT_DEQUANT, OUT_INT8, activation_quant_kernel

    values, scale = {OUT_DEQUANT: ("*fp16", "*fp16"), OUT_INT8: ("*i8", "*fp32")}.get(out_mode, ("*u8", "*u8"))
    kernel = compile_for(HOPPER, activation_quant_kernel, dict(x_ptr="*bf16", gx_ptr="*fp32", values_ptr=values,
                                                               scale_ptr=scale),
                         dict(OUT_MODE=out_mode, BLOCK_R=rows, BLOCK_K=block_k, PAIRED_K=paired, BF16_WORDS=words),
                         num_warps=warps)
    return kernel_instructions_per_element(kernel, rows * block_k / (32 * warps))


def run_act_quant() -> None:
    from nvfp4.kernels.activation_quant import OUT_DEQUANT, OUT_INT8, OUT_PACKED

    print("activation_quant_kernel, bf16 x, 256 columns: SASS instructions per element (whole kernel), "
          "x read as bf16 / as int32 words (the launcher's choice for packed and operand)")
    for name, mode in (("packed", OUT_PACKED), ("operand", OUT_DEQUANT), ("int8", OUT_INT8)):
        for rows, warps in ((16, 4), (32, 4), (64, 4), (32, 8), (64, 8)):
            counts = [act_quant_instructions_per_element(mode, rows, warps, words=w) for w in (False, True)]
            print(f"{name:8s} {rows:3d} rows x {warps} warps  {counts[0]:6.2f} / {counts[1]:6.2f}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", default="", help="comma-separated kernel:rows whose loop SASS to print (gemv:1, half2:1)")
    p.add_argument("--gemm", action="store_true", help="the small-M GEMM candidates, natural vs paired decode")
    p.add_argument("--act-quant", action="store_true", help="the activation kernel by output, rows and warps")
    p.add_argument("--asm-level", type=int, default=2, choices=(1, 2),
                   help="--gemm: the decoders' USE_ASM level (2: sm_89 E4M3 conversions, as on Hopper; 1: sm_80 PTX)")
    args = p.parse_args(argv)
    run_gemm(args.asm_level) if args.gemm else run_act_quant() if args.act_quant else run(args)


if __name__ == "__main__":
    main()
