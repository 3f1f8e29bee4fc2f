"""Where the host time of an *eager* NVFP4 linear call goes (GPU needed).

    PYTHONPATH=src python benchmarks/profile_eager.py [--shape 8b_o] [--ms 1,2048] [--calls 300]

Decode-sized calls take a few microseconds of GPU time but an eager caller pays Python,
custom-op dispatch and Triton's launcher on every call (``bench_linear.py --eager-shape``).
This prints, per scheme and M: wall microseconds per back-to-back call (median of
``--repeats`` runs), with the kernels launched directly (``ops.fast_launch``, the default),
through Triton's ``kernel[grid]``, and (layers only) replayed from the layer's CUDA graphs
(``NVFP4_TRITON_EAGER_GRAPHS=on``, ``ops.eager_graphs``), of an ``NVFP4Linear``
(eager: the op's function without the dispatcher, ``ops.library.direct_call_ok``), through
``torch.ops.nvfp4.*`` (what compiled graphs call), through the launcher directly, and for
bf16 ``F.linear``; then the top functions of a cProfile of the
eager ``NVFP4Linear`` calls by own time, so the next optimisation targets what is measured.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import SHAPES, _time, eager_per_call_us  # noqa: E402


def main(argv=None) -> None:
    import torch
    import torch.nn.functional as F
    import triton

    from nvfp4 import ops  # noqa: F401  (registers torch.ops.nvfp4)
    from nvfp4.numerics import quantize_weight
    from nvfp4.ops import eager_graphs, fast_launch, launch

    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="8b_o", choices=sorted(SHAPES))
    ap.add_argument("--ms", default="1,2048")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of --calls calls per case (median printed)")
    args = ap.parse_args(argv)
    n, k = SHAPES[args.shape]
    wp, ws, gw = quantize_weight(torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02)
    wb = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    gx = torch.tensor([2000.0], device="cuda")
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    a_s = float(alpha[0])
    nv = torch.ops.nvfp4
    from nvfp4 import NVFP4Linear

    lin = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
    layer4 = NVFP4Linear.from_linear(lin, input_global_scale=2000.0, backend="triton").cuda()
    layer16 = NVFP4Linear.from_linear(lin, weight_only=True, backend="triton").cuda()
    for m in (int(v) for v in args.ms.split(",")):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        cases = {
            "bf16 F.linear": lambda: F.linear(x, wb),
            "w4a4 NVFP4Linear": lambda: layer4(x),
            "w4a16 NVFP4Linear": lambda: layer16(x),
            "w4a4 torch.ops": lambda: nv.linear_w4a4(x, wp, ws, gx, alpha, None, a_s),
            "w4a4 launcher": lambda: launch.linear_w4a4(x, wp, ws, gx, alpha, None, a_s),
            "w4a16 torch.ops": lambda: nv.linear_w4a16(x, wp, ws, alpha, None, a_s),
            "w4a16 launcher": lambda: launch.linear_w4a16(x, wp, ws, alpha, None, a_s),
        }
        def modes(name):
            if name == "bf16 F.linear":
                return ("direct",)
            return ("direct", "grid", "graphs") if "NVFP4Linear" in name else ("direct", "grid")

        combos = [(name, mode) for name in cases for mode in modes(name)]
        timings = {c: [] for c in combos}
        for _ in range(args.repeats):  # interleaved, so that a drift of the host's speed hits every case alike
            for name, mode in combos:
                fast_launch.ENABLED = mode != "grid"
                os.environ[eager_graphs.ENV] = "on" if mode == "graphs" else "off"
                try:
                    timings[(name, mode)].append(eager_per_call_us(cases[name], args.calls, torch))
                finally:
                    fast_launch.ENABLED = True
                    os.environ.pop(eager_graphs.ENV, None)
        gpu_us = {name: _time([fn], 1, torch, triton) for name, fn in cases.items()}  # CUDA graph, L2-warm
        labels = {"direct": "direct launches", "grid": "kernel[grid]", "graphs": "eager graphs"}
        for (name, mode), us in timings.items():
            us.sort()
            label = name if name == "bf16 F.linear" else f"{name}, {labels[mode]}"
            print(f"{args.shape} M={m:5d} {label:45s} {us[len(us) // 2]:8.1f} us per eager call "
                  f"(median of {args.repeats} x {args.calls}; min {us[0]:.1f}, max {us[-1]:.1f}; "
                  f"GPU time {gpu_us[name]:.1f} us)", flush=True)
        for name in ("w4a4 NVFP4Linear", "w4a16 NVFP4Linear"):
            fn = cases[name]
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.calls):
                fn()
            prof.disable()
            torch.cuda.synchronize()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.top)
            print(f"--- cProfile {args.shape} M={m} {name}, {args.calls} calls, by own time")
            print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:6000], flush=True)


if __name__ == "__main__":
    main()
