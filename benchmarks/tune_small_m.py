"""Sweep tile configurations of the small-M (decode) path on a GPU and print the best.

    PYTHONPATH=src python benchmarks/tune_small_m.py [--shapes 8b_gate_up,8b_o] [--ms 1,16,64]

Prints one line per (shape, M, config): median us over rotated weights in a CUDA graph,
and the achieved weight bandwidth. Used to pick the defaults in ``nvfp4/ops/launch.py``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import SHAPES, _copies, _time  # noqa: E402


def main():
    import torch
    import triton

    from nvfp4.numerics import quantize_weight
    from nvfp4.ops import launch

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="8b_o,8b_gate_up,70b_down")
    ap.add_argument("--ms", default="1,16,64")
    args = ap.parse_args()
    dev = torch.device("cuda")
    grid = [
        dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s)
        for bn, bk, w, s in itertools.product((64, 128), (256, 512), (4,), (3, 5))
    ]
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
            for decode in ("asm", "portable"):
                os.environ[launch.DECODE_ENV] = decode
                cands = grid if decode == "asm" else grid[:2]
                for cfg in cands:
                    for split_scale in (1.0, 2.0):
                        base = launch.small_m_config(m, n, k, dev, cfg)
                        split = max(1, int(base["SPLIT_K"] * split_scale))
                        c = dict(cfg, SPLIT_K=split)
                        try:
                            us = _time([lambda cc=cc: launch.linear_w4a4(x, cc[0], cc[1], gx, alpha, None, config=c) for cc in copies], m, torch, triton)
                        except Exception as exc:  # a config that does not fit (shared memory) is skipped
                            print(f"{shape} M={m} {decode} {c}: FAILED {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                            continue
                        gbps = n * k * 0.5625 / us / 1e3
                        results.append((us, decode, c))
                        print(f"{shape} M={m} {decode} {c}: {us:.1f} us {gbps:.0f} GB/s", flush=True)
            results.sort(key=lambda r: r[0])
            for us, decode, c in results[:3]:
                print(f"BEST {shape} M={m}: {us:.1f} us {decode} {c}", flush=True)
        os.environ[launch.DECODE_ENV] = "asm"


if __name__ == "__main__":
    main()
