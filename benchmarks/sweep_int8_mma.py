"""Sweep the int8 tensor-core W4A4 GEMM (``ops/launch_int8_mma.py``) against what runs today.

    PYTHONPATH=src python benchmarks/sweep_int8_mma.py [--shapes all] [--ms 2,4,8,16,32,64]

Per (shape, M): bf16 ``F.linear``, the default W4A4 path (``launch.linear_w4a4``), then the
int8 MMA path with each of its tile candidates, every one first checked to give the default
path's output within the exact bound's slack (both are exact up to fp32 summation order),
then timed: GPU time over rotated weights in a CUDA graph (``bench_linear._time``).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import SHAPES, _copies, _select_shapes, _time  # noqa: E402


def main(argv=None):
    import torch
    import torch.nn.functional as F
    import triton

    from nvfp4.numerics import quantize_weight
    from nvfp4.ops import launch, launch_int8_mma

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="all")
    ap.add_argument("--ms", default="2,4,8,16,32,64")
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    for shape in _select_shapes(args.shapes):
        n, k = SHAPES[shape]
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02
        wp, ws, gw = quantize_weight(w)
        copies = [(wp.clone(), ws.clone()) for _ in range(_copies(wp.numel() + ws.numel()))]
        bf16 = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) for _ in range(_copies(2 * n * k))]
        gx = torch.tensor([2000.0], device=dev)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        for m in (int(v) for v in args.ms.split(",")):
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            ref = launch.linear_w4a4(x, wp, ws, gx, alpha, None).float()
            us_bf16 = _time([lambda wb=wb: F.linear(x, wb) for wb in bf16], m, torch, triton)
            us_def = _time([lambda cc=cc: launch.linear_w4a4(x, cc[0], cc[1], gx, alpha, None) for cc in copies],
                           m, torch, triton)
            print(f"{shape} M={m}: bf16 {us_bf16:.1f} us, default w4a4 {us_def:.1f} us ({us_bf16 / us_def:.2f}x)",
                  flush=True)
            best = None
            for c in launch_int8_mma.candidates(m):
                try:
                    out = launch_int8_mma.linear_w4a4_int8_mma(x, wp, ws, gx, alpha, None, c).float()
                    diff = (out - ref).abs().max().item()
                    tol = 2 * 2.0**-7 * ref.abs().max().item()
                    status = "ok" if diff <= tol else f"MISMATCH {diff:.3e} > {tol:.3e}"
                    us = _time([lambda cc=cc: launch_int8_mma.linear_w4a4_int8_mma(x, cc[0], cc[1], gx, alpha, None, c)
                                for cc in copies], m, torch, triton)
                except Exception as exc:  # a tile that does not fit is reported and skipped
                    print(f"{shape} M={m} {c}: FAILED {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                    continue
                print(f"{shape} M={m} int8 {c}: {us:.1f} us ({us_bf16 / us:.2f}x bf16) {status}", flush=True)
                if best is None or us < best[0]:
                    best = (us, c)
            if best:
                print(f"BEST {shape} M={m}: int8 {best[0]:.1f} us ({us_bf16 / best[0]:.2f}x) vs default "
                      f"{us_bf16 / us_def:.2f}x {best[1]}", flush=True)


if __name__ == "__main__":
    main()
