"""Sweep tile configurations of the Triton NVFP4 GEMM on a GPU, beside what runs today.

    PYTHONPATH=src python benchmarks/tune_small_m.py [--shapes 8b_gate_up,8b_o] [--ms 128,256,2048]

Per (shape, M): bf16 ``F.linear``, the default W4A4 path (whatever ``launch.linear_w4a4``
picks: integer GEMV, tuned small-M GEMM or cuBLAS over a dequantized copy), then W4A4
(activation-quantization kernel + the GEMM) with each tile the small-M tuner offers and
those of ``CANDIDATES``, forced through ``config=``. GPU time over rotated weights in a
CUDA graph (``bench_linear._time``). The candidate lists of ``ops/launch.py`` come from
these sweeps; the results of a run are kept under ``benchmarks/results/raw/``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import SHAPES, _copies, _time  # noqa: E402

CANDIDATES = [
    # W_AS_B, BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages: tried besides the launcher's own list
    (True, 128, 128, 64, 8, 3), (True, 128, 256, 64, 8, 3), (True, 64, 128, 64, 4, 4),
]


def candidates_for(m: int, k: int, launch) -> list[dict]:
    """The small-M tuner's tiles for min(M, 128), then ``CANDIDATES`` not already in it."""
    out = [c for c in launch.small_m_candidates(min(m, 128), False) if "BLOCK_M" in c]
    for w_as_b, bm, bn, bk, warps, stages in CANDIDATES:
        c = dict(W_AS_B=w_as_b, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages)
        if c not in out:
            out.append(c)
    return out


def main(argv=None):
    import torch
    import torch.nn.functional as F
    import triton

    from nvfp4.numerics import quantize_weight
    from nvfp4.ops import launch

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="8b_o,8b_gate_up")
    ap.add_argument("--ms", default="128,256,2048")
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    for shape in args.shapes.split(","):
        n, k = SHAPES[shape]
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02
        wp, ws, gw = quantize_weight(w)
        copies = [(wp.clone(), ws.clone()) for _ in range(_copies(wp.numel() + ws.numel()))]
        bf16 = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) for _ in range(_copies(2 * n * k))]
        gx = torch.tensor([2000.0], device=dev)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        a_s = float(alpha[0])
        for m in (int(v) for v in args.ms.split(",")):
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            us_bf16 = _time([lambda wb=wb: F.linear(x, wb) for wb in bf16], m, torch, triton)
            us_def = _time([lambda cc=cc: launch.linear_w4a4(x, cc[0], cc[1], gx, alpha, None, a_s) for cc in copies],
                           m, torch, triton)
            print(f"{shape} M={m}: bf16 {us_bf16:.1f} us, default w4a4 {us_def:.1f} us ({us_bf16 / us_def:.2f}x)",
                  flush=True)
            results = []
            for c in candidates_for(m, k, launch):
                try:
                    us = _time([lambda cc=cc: launch.linear_w4a4(x, cc[0], cc[1], gx, alpha, None, config=c)
                                for cc in copies], m, torch, triton)
                except Exception as exc:  # a config that does not fit (shared memory) is reported and skipped
                    print(f"{shape} M={m} {c}: FAILED {type(exc).__name__}: {str(exc)[:100]}", flush=True)
                    continue
                results.append((us, c))
                print(f"{shape} M={m} {c}: w4a4 {us:.1f} us ({us_bf16 / us:.2f}x bf16)", flush=True)
            results.sort(key=lambda r: r[0])
            for us, c in results[:2]:
                print(f"BEST {shape} M={m}: w4a4 {us:.1f} us ({us_bf16 / us:.2f}x bf16, default {us_bf16 / us_def:.2f}x) {c}",
                      flush=True)


if __name__ == "__main__":
    main()
