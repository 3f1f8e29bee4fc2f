"""Micro-benchmark of the decode GEMM v2 (``kernels/gemm_decode.py``) against bf16 and v1.

    PYTHONPATH=src python benchmarks/bench_decode_v2.py --out $OUT/decode_v2.csv   # GPU, < 3 min

For the 8 Llama-3.1 shapes of ``bench_linear.py`` and M in {1, 4, 16, 64}: bf16 ``F.linear``
(cuBLAS), the current small-M W4A4/W4A16 path (v1: ``launch.linear_w4a4/_w4a16``), and v2.
v2's GEMM is swept over a few tile candidates (BLOCK_N, BLOCK_K, warps, stages, scale mode,
split-K) on W4A4's fp16 operand; the best is then timed end to end for W4A4 (activation
quantization + GEMM) and W4A16 (bf16 x). Method as in ``bench_linear.py``: medians of
``triton.testing.do_bench`` over a CUDA graph replaying one call per weight copy, weights
rotated through > 3x the 50 MB L2. Before timing, each v2 output is checked against v1's
(both are the exact GEMM up to fp32 summation order; a gross layout bug shows here).
Prints a table and medians over the shapes per M; writes the CSV atomically (and a
``.partial`` as it goes, so a run cut short keeps its rows).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import SHAPES, _copies, finish_csv, write_csv  # noqa: E402

MS = [1, 4, 16, 64]
# BLOCK_N, BLOCK_K, num_warps, num_stages, SCALE_GATHER, USE_ASM, PREFETCH_SCALES
# (the first is what the sweep always times, also when --budget-s runs out)
CANDIDATES = [
    (64, 256, 4, 3, False, True, True),
    (64, 256, 4, 3, False, True, False),
    (64, 256, 4, 3, False, False, False),  # portable decode (what the CPU interpreter verifies)
    (128, 256, 8, 3, False, True, True),
    (64, 512, 4, 2, False, True, True),
    (128, 128, 4, 4, False, True, True),
    (64, 256, 4, 3, True, False, False),
]
FIELDS = ["gpu", "shape", "n", "k", "m", "impl", "time_us", "weight_gbps", "speedup_vs_bf16", "config", "check"]


def _time(fns, torch, triton, rep):
    for f in fns:  # compile/warm up outside the capture
        f()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in fns:
            f()
    ms = triton.testing.do_bench(graph.replay, warmup=3, rep=rep, return_mode="median")
    return ms * 1000.0 / len(fns)


def main(argv=None):
    import torch
    import torch.nn.functional as F
    import triton

    import nvfp4.ops  # noqa: F401
    from nvfp4.numerics import quantize_weight
    from nvfp4.ops import launch, launch_decode_v2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="all")
    ap.add_argument("--ms", default=",".join(map(str, MS)))
    ap.add_argument("--rep", type=int, default=20, help="do_bench rep (ms) per timing")
    ap.add_argument("--budget-s", type=float, default=110.0, help="stop sweeping candidates after this many seconds")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "decode_v2.csv"))
    args = ap.parse_args(argv)
    t_start = time.time()
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name()
    print(f"{gpu} torch {torch.__version__} triton {triton.__version__}", flush=True)
    shapes = list(SHAPES) if args.shapes == "all" else args.shapes.split(",")
    ms_list = [int(v) for v in args.ms.split(",")]
    rows, summary = [], []
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def emit(shape, n, k, m, impl, us, base_us=None, config="", check=""):
        ok = us == us  # NaN: not timed
        row = dict(gpu=gpu, shape=shape, n=n, k=k, m=m, impl=impl, time_us=f"{us:.2f}" if ok else "",
                   weight_gbps=f"{n * k * (2 if impl == 'bf16' else 0.5625) / us / 1e3:.0f}" if ok else "",
                   speedup_vs_bf16=f"{base_us / us:.2f}" if base_us and ok else "", config=config, check=check)
        rows.append(row)
        return row

    def flush(path):
        write_csv(path, rows, FIELDS)

    for shape in shapes:
        n, k = SHAPES[shape]
        torch.manual_seed(0)
        wp, ws, gw = quantize_weight(torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02)
        pd, sd = launch_decode_v2.repack_weight_for_decode(wp, ws)
        gx = torch.tensor([2000.0], device=dev)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        alpha16 = (1.0 / gw).expand(n).contiguous()
        n_fp4 = _copies(wp.numel() + ws.numel())
        v1_copies = [(wp.clone(), ws.clone()) for _ in range(n_fp4)]
        v2_copies = [(pd.clone(), sd.clone()) for _ in range(n_fp4)]
        bf16_copies = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02 for _ in range(_copies(n * k * 2))]
        for m in ms_list:
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            x_hat = launch.quantize_activation(x, gx, dequant_dtype=torch.float16)
            t_bf16 = _time([lambda wb=wb: F.linear(x, wb) for wb in bf16_copies], torch, triton, args.rep)
            emit(shape, n, k, m, "bf16", t_bf16)
            t_v1_4 = _time([lambda c=c: launch.linear_w4a4(x, c[0], c[1], gx, alpha, None) for c in v1_copies], torch, triton, args.rep)
            t_v1_16 = _time([lambda c=c: launch.linear_w4a16(x, c[0], c[1], alpha16, None) for c in v1_copies], torch, triton, args.rep)
            ref4 = launch.linear_w4a4(x, wp, ws, gx, alpha, None).float()
            ref16 = launch.linear_w4a16(x, wp, ws, alpha16, None).float()
            # Sweep v2's GEMM (fp16 operand of W4A4) over the candidates and two split-K values.
            best = None
            ref_gemm = launch.gemm(x_hat, None, launch.A_DENSE, wp, ws.view(torch.uint8), alpha, None, None,
                                   torch.bfloat16, launch._op_dtype(torch.bfloat16, True)[0]).float()
            for bn, bk, warps, stages, gather, use_asm, prefetch in CANDIDATES:
                if best is not None and time.time() - t_start > args.budget_s:
                    break
                cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages, SCALE_GATHER=gather,
                           USE_ASM=use_asm, PREFETCH_SCALES=prefetch)
                auto = launch_decode_v2.decode_v2_config(m, n, k, dev, cfg)["SPLIT_K"]
                for split in sorted({auto, max(1, auto // 2)}):
                    c = dict(cfg, SPLIT_K=split)
                    try:
                        # Only a configuration whose output matches v1's (same exact operands,
                        # fp32 sums in another order) can be "best".
                        got = launch_decode_v2.gemm_decode_v2(x_hat, pd, sd, k, alpha, None, torch.bfloat16, c).float()
                        err = (got - ref_gemm).abs().max().item() / max(ref_gemm.abs().max().item(), 1e-30)
                        if not err < 1e-2:
                            print(f"  {shape} M={m} {c}: WRONG OUTPUT (max rel diff {err:.2e} vs v1); not timed", flush=True)
                            emit(shape, n, k, m, "v2_gemm_only", float("nan"), None, config=str(c), check=f"WRONG rel {err:.1e}")
                            continue
                        t = _time([lambda cc=cc: launch_decode_v2.gemm_decode_v2(x_hat, cc[0], cc[1], k, alpha, None, torch.bfloat16, c)
                                   for cc in v2_copies], torch, triton, args.rep)
                    except Exception as exc:  # e.g. out of shared memory: report and go on
                        print(f"  {shape} M={m} {c}: FAILED {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                        continue
                    emit(shape, n, k, m, "v2_gemm_only", t, t_bf16, config=str(c))
                    if best is None or t < best[0]:
                        best = (t, c)
            if best is None:
                print(f"{shape} M={m}: no v2 configuration ran", flush=True)
                continue
            cfg = best[1]
            out4 = launch_decode_v2.linear_w4a4_decode_v2(x, pd, sd, k, gx, alpha, None, cfg).float()
            out16 = launch_decode_v2.linear_w4a16_decode_v2(x, pd, sd, k, alpha16, None, cfg).float()

            def rel(a, b):
                return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)

            check = f"w4a4 rel {rel(out4, ref4):.1e}; w4a16 rel {rel(out16, ref16):.1e}"
            t_v2_4 = _time([lambda cc=cc: launch_decode_v2.linear_w4a4_decode_v2(x, cc[0], cc[1], k, gx, alpha, None, cfg)
                            for cc in v2_copies], torch, triton, args.rep)
            t_v2_16 = _time([lambda cc=cc: launch_decode_v2.linear_w4a16_decode_v2(x, cc[0], cc[1], k, alpha16, None, cfg)
                             for cc in v2_copies], torch, triton, args.rep)
            emit(shape, n, k, m, "v1_w4a4", t_v1_4, t_bf16)
            emit(shape, n, k, m, "v1_w4a16", t_v1_16, t_bf16)
            emit(shape, n, k, m, "v2_w4a4", t_v2_4, t_bf16, str(cfg), check)
            emit(shape, n, k, m, "v2_w4a16", t_v2_16, t_bf16, str(cfg), check)
            summary.append((shape, m, t_bf16, t_v1_4, t_v1_16, t_v2_4, t_v2_16, best[0], cfg, check))
            print(
                f"{shape:12s} M={m:3d} bf16 {t_bf16:7.1f} | v1 w4a4 {t_bf16 / t_v1_4:4.2f}x w4a16 {t_bf16 / t_v1_16:4.2f}x | "
                f"v2 w4a4 {t_v2_4:7.1f} us {t_bf16 / t_v2_4:4.2f}x w4a16 {t_v2_16:7.1f} us {t_bf16 / t_v2_16:4.2f}x | "
                f"v2 gemm {best[0]:7.1f} us {n * k * 0.5625 / best[0] / 1e3:5.0f} GB/s "
                f"BN{cfg['BLOCK_N']} BK{cfg['BLOCK_K']} w{cfg['num_warps']} s{cfg['num_stages']} "
                f"SK{cfg['SPLIT_K']} G{int(cfg['SCALE_GATHER'])} A{int(cfg['USE_ASM'])} P{int(cfg['PREFETCH_SCALES'])} | {check} | t={time.time() - t_start:.0f}s",
                flush=True,
            )
            del x, x_hat
        flush(args.out + ".partial")
        del v1_copies, v2_copies, bf16_copies
        torch.cuda.empty_cache()

    print("\nmedian speedup vs bf16 over the shapes measured:")
    print("   M | v1 w4a4 | v1 w4a16 | v2 w4a4 | v2 w4a16 | v2 gemm only")
    for m in ms_list:
        r = [s for s in summary if s[1] == m]
        if r:
            med = [statistics.median(s[2] / s[i] for s in r) for i in (3, 4, 5, 6, 7)]
            print(f"{m:4d} | " + " | ".join(f"{v:6.2f}x" for v in med) + f"   ({len(r)} shapes)")
    finish_csv(args.out, rows, FIELDS)
    print(f"wrote {args.out} ({time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
    main()
