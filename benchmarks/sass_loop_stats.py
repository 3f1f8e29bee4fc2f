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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", default="", help="comma-separated kernel:rows whose loop SASS to print (gemv:1, half2:1)")
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
