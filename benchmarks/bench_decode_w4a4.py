"""Decode-sized (M <= 4) NVFP4 linears on the GPU: every path checked, then timed, beside bf16.

    PYTHONPATH=src python benchmarks/bench_decode_w4a4.py --out $OUT/decode.csv      # GPU, ~1-2 min
    python benchmarks/bench_linear.py report decode.csv --name bench_decode_<gpu>   # tables + plot

For the 8 Llama-3.1 shapes of ``bench_linear.py`` and M in ``--ms`` (default 1, 2, 4):

* ``bf16``: ``F.linear`` (cuBLAS) on bf16 weights, the baseline of every ratio;
* ``w4a4``: what ``torch.ops.nvfp4.linear_w4a4`` runs by default (the integer-dot kernel,
  ``kernels/gemv_dp4a.py``, with the tiles and variant the per-shape tuner picks among
  ``ops/launch_dp4a.CANDIDATES``; the tuning happens in the untimed warm-up call);
* ``w4a4_dp4a_fused`` / ``w4a4_dp4a_unfused``: that kernel with the quantization fused in /
  after a separate activation-quantization launch, on the first candidate's tiles, at every M;
* ``w4a4_float``: the tensor-core paths (``NVFP4_TRITON_DP4A=off``: activation kernel, then the
  small-M GEMM with its own tuned orientation and tiles);
* ``w4a16``: ``torch.ops.nvfp4.linear_w4a16`` (weight-only);
* at ``--sweep-ms``: the integer-dot kernel over tile / split-K candidates (``w4a4_cfg``).

Before anything of a path is timed, its output at that shape and M is compared with a
float64 computation of the exact result (``tests/triton_exactness.py``: fp32-summation bound);
a path that fails is reported and not timed. The activation-quantization kernel is checked
bit for bit against ``nvfp4.numerics`` (packed and int8 outputs, special values) and timed
alone (GB/s = bytes read + written). Method as ``bench_linear.py``: medians of
``triton.testing.do_bench`` over a CUDA graph replaying one call per weight copy, weights
rotated through > 3x the L2 so every call streams its weight from HBM. Rows are written as
they come (``.partial``), in ``bench_linear.py``'s CSV format (config and check in ``note``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # triton_exactness: the exactness bound
from bench_linear import SHAPES, _copies, _select_shapes, _time, finish_csv, write_csv  # noqa: E402

# BLOCK_N, num_warps, WAVES (programs per SM), FUSED_QUANT, BLOCK_K, NUM_STAGES (K-loop cp.async stages):
# a wider sweep than the tuner's candidates (raw/h200_decode_sweep_run2.csv: all 12 on the 8 shapes,
# M = 1 and 4, before the dp4a layout fix of the same day).
CANDIDATES = [
    (64, 4, 4, True, 256, 1), (64, 4, 4, True, 256, 3), (64, 4, 4, False, 256, 3), (32, 4, 8, True, 512, 1),
    (32, 4, 8, True, 256, 3), (64, 4, 8, True, 256, 1), (64, 4, 2, False, 256, 3), (64, 4, 4, False, 256, 1),
    (32, 4, 4, True, 256, 1), (128, 4, 2, True, 256, 1), (64, 4, 2, True, 256, 1), (64, 8, 4, True, 256, 1),
]


def _smoke_time(fns, m, torch, triton):
    """One call of each function, wall clock (``--smoke`` only: exercises the script on the CPU)."""
    start = time.perf_counter()
    for f in fns:
        f()
    return (time.perf_counter() - start) * 1e6 / len(fns)


def main(argv=None):
    import torch
    import torch.nn.functional as F
    import triton
    from triton_exactness import exact_and_bound

    import nvfp4.ops  # noqa: F401
    from nvfp4.numerics import quantize_activation, quantize_weight
    from nvfp4.numerics.activations import dequantize_activation_unscaled
    from nvfp4.numerics.formats import e2m1_decode, unpack_fp4
    from nvfp4.ops import launch, launch_dp4a

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="all")
    ap.add_argument("--ms", default="1,2,4")
    ap.add_argument("--sweep-ms", default="1")
    ap.add_argument("--budget-s", type=float, default=100.0, help="skip the sweep after this many seconds")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "decode.csv"))
    ap.add_argument("--smoke", action="store_true",
                    help="CPU check of this script (TRITON_INTERPRET=1, one tiny shape, no CUDA graphs): numbers meaningless")
    args = ap.parse_args(argv)
    t0 = time.time()
    dev = torch.device("cpu" if args.smoke else "cuda")
    ops = torch.ops.nvfp4
    shapes = {"smoke": (72, 256)} if args.smoke else {s: SHAPES[s] for s in _select_shapes(args.shapes)}
    act_sizes = ((32, 256),) if args.smoke else ((8192, 4096), (4096, 28672))
    timer = _smoke_time if args.smoke else _time
    meta = dict(gpu="cpu (smoke)" if args.smoke else torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    print(f"{meta['gpu']} torch {meta['torch']} triton {meta['triton']}", flush=True)
    rows, summary = [], {}

    def flush(path):
        write_csv(path, rows)

    def emit(shape, n, k, m, impl, us, base_us=None, note=""):
        row = dict(meta, shape=shape, n=n, k=k, m=m, impl=impl, time_us=f"{us:.2f}",
                   tflops=f"{2.0 * m * n * k / us / 1e6:.1f}",
                   weight_gbps=f"{n * k * (2 if impl == 'bf16' else 0.5625) / us / 1e3:.0f}",
                   speedup_vs_bf16=f"{base_us / us:.2f}" if base_us else "", speedup_vs_reference="", note=note)
        rows.append(row)
        if base_us:
            summary.setdefault((impl, m), []).append(base_us / us)
        print(f"{shape:12s} M={m} {impl:18s} {us:8.1f} us  {row['weight_gbps']:>5s} GB/s  "
              f"{row['speedup_vs_bf16'] or '-':>5s}x  {note}", flush=True)

    # --- activation quantization: bit-exact on this GPU, then its bandwidth ---------------
    x = (torch.randn(33, 256 if args.smoke else 4096, device=dev) * 4).to(torch.bfloat16)
    x[0, :16] = 0
    x[1, 16:32] = 1e-30
    x[2, :3] = torch.tensor([float("inf"), -0.0, float("-inf")])
    x[3, 40] = float("nan")
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0], device=dev)
    x[4, 64:80] = torch.cat([ties, -ties]).to(torch.bfloat16)
    for gx in (torch.tensor([1.0], device=dev), torch.tensor([448.0 * 6 / 16.0], device=dev)):
        rp, rs = quantize_activation(x, gx)
        p, s = ops.quantize_activation(x, gx)
        v8, s32 = launch.quantize_activation_int8(x, gx)
        ok_scale = torch.isnan(rs.float()).eq(torch.isnan(s32)).all() and torch.equal(
            s32.nan_to_num(-1.0), rs.float().nan_to_num(-1.0))
        keep = ~torch.isnan(rs.float()).repeat_interleave(16, dim=1)
        ok = (torch.equal(p, rp) and torch.equal(s.view(torch.uint8), rs.view(torch.uint8)) and bool(ok_scale)
              and torch.equal(v8[keep], (2 * e2m1_decode(unpack_fp4(rp))).to(torch.int8)[keep]))
        print(f"activation quantization bit-exact vs reference (Gx={gx.item():g}): {'ok' if ok else 'FAIL'}", flush=True)
        rows.append(dict(meta, shape="act_quant_check", n=0, k=x.shape[1], m=33, impl="check", time_us="", tflops="",
                         weight_gbps="", speedup_vs_bf16="", speedup_vs_reference="",
                         note=f"packed+int8 outputs bit-exact vs numerics: {'ok' if ok else 'FAIL'}"))
    for m, k in act_sizes:
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        gx = torch.tensor([448.0 * 6 / float(x.abs().max())], device=dev)
        for mode, fn, out_bytes in (
            ("dequant_bf16", lambda: launch.quantize_activation(x, gx, dequant_dtype=torch.bfloat16), 2 * m * k),
            ("packed", lambda: launch.quantize_activation(x, gx), m * k // 2 + m * k // 16),
            ("int8", lambda: launch.quantize_activation_int8(x, gx), m * k + 4 * m * k // 16),
        ):
            t = _smoke_time([fn], m, torch, triton) if args.smoke else \
                triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median") * 1e3
            moved = 2 * m * k + out_bytes
            rows.append(dict(meta, shape=f"act_quant_{m}x{k}", n=0, k=k, m=m, impl="act_quant", time_us=f"{t:.2f}",
                             tflops="", weight_gbps=f"{moved / t / 1e3:.0f}", speedup_vs_bf16="",
                             speedup_vs_reference="", note=f"{mode}; GB/s = bytes read + written"))
            print(f"act_quant {m}x{k} {mode:12s} {t:7.1f} us {moved / t / 1e3:6.0f} GB/s", flush=True)
        del x
    flush(args.out + ".partial")

    # --- the linears -------------------------------------------------------------------
    ms_list = [int(v) for v in args.ms.split(",")]
    sweep_ms = {int(v) for v in args.sweep_ms.split(",") if v}
    off = {launch_dp4a.DP4A_ENV: "off"}

    def with_env(env, fn):
        def call():
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                return fn()
            finally:
                for key, v in saved.items():
                    os.environ.pop(key) if v is None else os.environ.__setitem__(key, v)
        return call

    for shape, (n, k) in shapes.items():
        torch.manual_seed(0)
        wp, ws, gw = quantize_weight(torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02)
        copies = (lambda nbytes: 1) if args.smoke else _copies
        fp4_copies = [(wp.clone(), ws.clone()) for _ in range(copies(wp.numel() + ws.numel()))]
        bf16_copies = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02 for _ in range(copies(2 * n * k))]
        alpha16 = (1.0 / gw).expand(n).contiguous()
        for m in ms_list:
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            gx = torch.tensor([448.0 * 6 / float(x.abs().max())], device=dev)
            alpha = (1.0 / (gx * gw)).expand(n).contiguous()
            rp, rs = quantize_activation(x, gx)
            exact4, bound4 = exact_and_bound(dequantize_activation_unscaled(rp, rs), wp, ws, alpha, None, torch.bfloat16)
            exact16, bound16 = exact_and_bound(x.float(), wp, ws, alpha16, None, torch.bfloat16)

            def check(out, w4a4=True):
                exact, bound = (exact4, bound4) if w4a4 else (exact16, bound16)
                diff = (out.double() - exact).abs()
                bad = int((~(diff <= bound)).sum())
                return "exact-bound ok" if bad == 0 else f"FAIL: {bad} outputs outside the bound"

            t_bf16 = timer([lambda wb=wb: F.linear(x, wb) for wb in bf16_copies], m, torch, triton)
            emit(shape, n, k, m, "bf16", t_bf16)
            paths = [
                ("w4a4", True, lambda c: (lambda: ops.linear_w4a4(x, c[0], c[1], gx, alpha, None))),
                ("w4a4_dp4a_fused", True, lambda c: (lambda: launch_dp4a.linear_w4a4_dp4a(
                    x, c[0], c[1], gx, alpha, None, {"FUSED_QUANT": True}))),
                ("w4a4_dp4a_unfused", True, lambda c: (lambda: launch_dp4a.linear_w4a4_dp4a(
                    x, c[0], c[1], gx, alpha, None, {"FUSED_QUANT": False}))),
                ("w4a4_float", True, lambda c: with_env(off, lambda: ops.linear_w4a4(x, c[0], c[1], gx, alpha, None))),
                ("w4a16", False, lambda c: (lambda: ops.linear_w4a16(x, c[0], c[1], alpha16, None))),
            ]
            for impl, w4a4, make in paths:
                verdict = check(make((wp, ws))(), w4a4)
                if verdict.startswith("FAIL"):
                    print(f"{shape} M={m} {impl}: {verdict}; not timed", flush=True)
                    rows.append(dict(meta, shape=shape, n=n, k=k, m=m, impl=impl, time_us="", tflops="", weight_gbps="",
                                     speedup_vs_bf16="", speedup_vs_reference="", note=verdict))
                    continue
                emit(shape, n, k, m, impl, timer([make(c) for c in fp4_copies], m, torch, triton), t_bf16, verdict)
            if m in sweep_ms and time.time() - t0 < args.budget_s:
                for bn, warps, waves, fused, bk, stages in CANDIDATES:
                    cfg = dict(BLOCK_N=bn, num_warps=warps, WAVES=waves, FUSED_QUANT=fused, BLOCK_K=bk, NUM_STAGES=stages)
                    label = f"BN{bn} w{warps} waves{waves} {'fused' if fused else 'unfused'} BK{bk} stages{stages} " \
                            f"split{launch_dp4a.dp4a_config(m, n, k, dev, cfg)['SPLIT_K']}"
                    try:
                        verdict = check(launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, cfg))
                        if verdict.startswith("FAIL"):
                            print(f"{shape} M={m} {label}: {verdict}; not timed", flush=True)
                            continue
                        t = timer([lambda c=c: launch_dp4a.linear_w4a4_dp4a(x, c[0], c[1], gx, alpha, None, cfg)
                                   for c in fp4_copies], m, torch, triton)
                    except Exception as exc:  # e.g. out of resources: report and go on
                        print(f"{shape} M={m} {label}: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                        continue
                    emit(shape, n, k, m, "w4a4_cfg", t, t_bf16, f"{label}; {verdict}")
            del x, exact4, bound4, exact16, bound16
        del fp4_copies, bf16_copies, wp, ws
        torch.cuda.empty_cache()
        flush(args.out + ".partial")
        print(f"-- {shape} done at {time.time() - t0:.0f} s", flush=True)

    print("\nmedian speedup vs bf16 over the shapes (same run):")
    for (impl, m), v in sorted(summary.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if impl != "w4a4_cfg":
            print(f"  M={m} {impl:18s} {statistics.median(v):5.2f}x  (min {min(v):.2f}, max {max(v):.2f}, {len(v)} shapes)")
    finish_csv(args.out, rows)
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    main()
