"""Large-M W4A4 on cuBLAS: the weight dequantized whole or in N-chunks (``ops/launch_cublas.py``).
GPU needed.

    PYTHONPATH=src python benchmarks/bench_large_m_chunks.py --out results/raw/chunks.csv

Per Llama-3.1 shape and M: bf16 ``F.linear``, then ``torch.ops.nvfp4.linear_w4a4`` with every
chunk count (``NVFP4_TRITON_CUBLAS_CHUNKS``), timed as ``bench_linear.py`` times (CUDA graph over rotated weight
copies, median of ``do_bench``), each output first checked against the one-chunk output
(max |difference| in the note: cuBLAS may pick another kernel for a narrower N, which changes
the fp32 summation order only).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import SHAPES, _copies, _select_shapes, _time, write_csv  # noqa: E402

SETTINGS = [1, 2, 4, 8]
FIELDS = ["gpu", "torch", "triton", "date", "shape", "n", "k", "m", "impl", "chunks", "time_us",
          "speedup_vs_bf16", "note"]


def main(argv=None) -> None:
    import torch
    import torch.nn.functional as F
    import triton

    import nvfp4.ops  # noqa: F401
    from nvfp4.numerics import quantize_weight
    from nvfp4.ops import launch_cublas as launch

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="all")
    ap.add_argument("--ms", default="256,512,1024,2048,4096")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    meta = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    ops = torch.ops.nvfp4
    rows = []
    for shape in _select_shapes(args.shapes):
        n, k = SHAPES[shape]
        torch.manual_seed(0)
        wp, ws, gw = quantize_weight(torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02)
        gx = torch.tensor([2000.0], device="cuda")
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        a_s = float(alpha[0])
        fp4 = [(wp.clone(), ws.clone()) for _ in range(_copies(wp.numel() + ws.numel()))]
        bf16 = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(_copies(2 * n * k))]
        for m in (int(v) for v in args.ms.split(",")):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            t_bf16 = _time([lambda w=w: F.linear(x, w) for w in bf16], m, torch, triton)
            rows.append(dict(meta, shape=shape, n=n, k=k, m=m, impl="bf16", chunks="",
                             time_us=f"{t_bf16:.2f}", speedup_vs_bf16="1.00", note=""))
            print(f"{shape:12s} M={m:5d} bf16 {t_bf16:8.1f} us", flush=True)
            ref = None
            for chunks in SETTINGS:
                os.environ[launch.CUBLAS_CHUNKS_ENV] = str(chunks)
                out = ops.linear_w4a4(x, wp, ws, gx, alpha, None, a_s)
                torch.cuda.synchronize()
                if ref is None:
                    ref = out
                diff = (out.float() - ref.float()).abs().max().item()
                t = _time([lambda c=c: ops.linear_w4a4(x, c[0], c[1], gx, alpha, None, a_s) for c in fp4], m,
                          torch, triton)
                note = "identical to 1 chunk" if torch.equal(out, ref) else f"max |diff| vs 1 chunk {diff:.3g}"
                rows.append(dict(meta, shape=shape, n=n, k=k, m=m, impl="w4a4", chunks=chunks,
                                 time_us=f"{t:.2f}", speedup_vs_bf16=f"{t_bf16 / t:.3f}", note=note))
                print(f"{shape:12s} M={m:5d} w4a4 chunks={chunks} {t:8.1f} us "
                      f"{t_bf16 / t:5.2f}x  {note}", flush=True)
            del x
            write_csv(args.out, rows, FIELDS)
        del fp4, bf16
        torch.cuda.empty_cache()
    os.environ.pop(launch.CUBLAS_CHUNKS_ENV, None)
    # median over shapes per (M, setting)
    import statistics

    for m in sorted({r["m"] for r in rows}):
        for chunks in SETTINGS:
            v = [float(r["speedup_vs_bf16"]) for r in rows if r["m"] == m and r["impl"] == "w4a4" and r["chunks"] == chunks]
            if v:
                print(f"M={m:5d} chunks={chunks} median {statistics.median(v):.3f}x "
                      f"(min {min(v):.3f}, max {max(v):.3f})", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
