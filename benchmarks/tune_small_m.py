"""Sweep tile configurations of the small-M (decode) GEMM on a GPU and print the best.

    PYTHONPATH=src python benchmarks/tune_small_m.py [--shapes 8b_gate_up,8b_o] [--ms 1,16,64]

Times W4A16 (the GEMM alone) and W4A4 (activation-quantization kernel + the same GEMM) per
(shape, M, config) over rotated weights in a CUDA graph, plus the variant with the
activation quantization fused into the GEMM. Used to pick the defaults in
``nvfp4/ops/launch.py::small_m_config``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import SHAPES, _copies, _time  # noqa: E402

CANDIDATES = [
    # BLOCK_N, BLOCK_K, num_warps, num_stages
    (64, 256, 4, 3), (64, 512, 4, 3), (128, 128, 4, 4), (128, 256, 4, 3), (128, 256, 4, 4),
    (128, 256, 8, 3), (128, 512, 8, 3), (256, 128, 8, 4), (256, 256, 8, 3), (64, 128, 4, 5),
]


def main():
    import torch
    import triton

    from nvfp4.numerics import quantize_weight
    from nvfp4.ops import launch

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="8b_o,8b_gate_up")
    ap.add_argument("--ms", default="1,16,64")
    args = ap.parse_args()
    dev = torch.device("cuda")
    for shape in args.shapes.split(","):
        n, k = SHAPES[shape]
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02
        wp, ws, gw = quantize_weight(w)
        copies = [(wp.clone(), ws.clone()) for _ in range(_copies(wp.numel() + ws.numel()))]
        gx = torch.tensor([2000.0], device=dev)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        for m in (int(v) for v in args.ms.split(",")):
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            results = []
            for bn, bk, warps, stages in CANDIDATES:
                cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages)
                auto = launch.small_m_config(m, n, k, dev, cfg)["SPLIT_K"]
                for split in sorted({auto, max(1, auto // 2), auto * 2}):
                    c = dict(cfg, SPLIT_K=split)
                    try:
                        us16 = _time([lambda cc=cc: launch.linear_w4a16(x, cc[0], cc[1], alpha, None, config=c) for cc in copies], m, torch, triton)
                        us4 = _time([lambda cc=cc: launch.linear_w4a4(x, cc[0], cc[1], gx, alpha, None, config=c) for cc in copies], m, torch, triton)
                    except Exception as exc:  # a config that does not fit (shared memory) is skipped
                        print(f"{shape} M={m} {c}: FAILED {type(exc).__name__}: {str(exc)[:100]}", flush=True)
                        continue
                    results.append((us16, us4, c))
                    print(f"{shape} M={m} {c}: w4a16 {us16:.1f} us ({n * k * 0.5625 / us16 / 1e3:.0f} GB/s) w4a4 {us4:.1f} us", flush=True)
            fused = dict(A_MODE=1)
            us_f = _time([lambda cc=cc: launch.linear_w4a4(x, cc[0], cc[1], gx, alpha, None, config=fused) for cc in copies], m, torch, triton)
            print(f"FUSED {shape} M={m}: w4a4 with quantization fused into the GEMM {us_f:.1f} us", flush=True)
            results.sort(key=lambda r: r[0])
            for us16, us4, c in results[:3]:
                print(f"BEST {shape} M={m}: w4a16 {us16:.1f} us w4a4 {us4:.1f} us {c}", flush=True)


if __name__ == "__main__":
    main()
