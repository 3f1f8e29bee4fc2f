"""Benchmark the NVFP4 linear (Triton backend) against bf16 ``F.linear`` and the reference.

    python benchmarks/bench_linear.py run --shapes 8b --out results/part.csv     # on a GPU
    python benchmarks/bench_linear.py report results/*.csv --out-dir benchmarks/results

``run`` times, per Llama-3.1 linear shape and M: bf16 ``F.linear`` (cuBLAS), the Triton
W4A4 and W4A16 paths, the reference backend (on a subset of M: it is very slow at large
shapes, see ``--ref-ms``), and the activation-quantization kernel alone. Medians of
``triton.testing.do_bench`` over a CUDA graph of one call per weight copy, at every M
(GPU time: launch overhead out, as in a serving loop; see ``--eager-shape`` for what an eager
caller pays per call); the weights are rotated through enough copies
(> 3x the 50 MB L2) that every call streams its weight from HBM. ``report`` merges CSVs into
a markdown table and a PNG plot (speedup vs M per shape) with GPU, versions and date.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import statistics
import sys

SHAPES = {
    "8b_qkv": (6144, 4096),
    "8b_o": (4096, 4096),
    "8b_gate_up": (28672, 4096),
    "8b_down": (4096, 14336),
    "70b_qkv": (10240, 8192),
    "70b_o": (8192, 8192),
    "70b_gate_up": (57344, 8192),
    "70b_down": (8192, 28672),
}
MS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
QUICK_MS = [1, 16, 128, 2048]
REF_MS = [1, 16, 128]
L2_BYTES = 50 * 2**20
GRAPH_MAX_M = 1 << 30  # every M: see _time
FIELDS = [
    "gpu", "torch", "triton", "date", "shape", "n", "k", "m", "impl", "time_us", "tflops", "weight_gbps",
    "speedup_vs_bf16", "speedup_vs_reference", "note",
]


def write_csv(path: str, rows: list[dict], fields=FIELDS) -> None:
    """Write ``rows`` as CSV atomically (nvfp4's ``atomic_file``: never a half-written file)."""
    import io

    from nvfp4.utils.atomic import atomic_file

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_file(path, lambda fh: fh.write(text.getvalue().encode()))


def finish_csv(path: str, rows: list[dict], fields=FIELDS) -> None:
    """The final CSV of a run; its ``.partial`` (rows written as they came) is then removed."""
    write_csv(path, rows, fields)
    if os.path.exists(path + ".partial"):
        os.remove(path + ".partial")


def _select_shapes(spec: str) -> list[str]:
    if spec in ("all", ""):
        return list(SHAPES)
    out = []
    for part in spec.split(","):
        out += [s for s in SHAPES if s.startswith(part)] if part in ("8b", "70b") else [part]
    unknown = [s for s in out if s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; choose from {list(SHAPES)} or 8b/70b/all")
    return out


def _copies(bytes_per_copy: int) -> int:
    return max(2, min(64, math.ceil(3 * L2_BYTES / max(bytes_per_copy, 1)) + 1))


def _time(fns, m, torch, triton):
    """Median microseconds per call, rotating through ``fns`` (one per weight copy)."""
    if m <= GRAPH_MAX_M:
        for f in fns:  # warm-up (compilation, autotuning) outside the capture
            f()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for f in fns:
                f()
        ms = triton.testing.do_bench(graph.replay, warmup=5, rep=40, return_mode="median")
        return ms * 1000.0 / len(fns)
    state = {"i": 0}

    def step():
        fns[state["i"] % len(fns)]()
        state["i"] += 1

    step()
    torch.cuda.synchronize()
    ms = triton.testing.do_bench(step, warmup=5, rep=50, return_mode="median")
    return ms * 1000.0


def run(args) -> None:
    import torch
    import torch.nn.functional as F
    import triton

    import nvfp4.ops  # noqa: F401  (registers torch.ops.nvfp4)
    from nvfp4.backends.reference import ReferenceBackend
    from nvfp4.numerics import quantize_weight
    from nvfp4.ops.decode_level import DECODE_DEFAULT
    from nvfp4.ops.launch import PAIRED_K_DEFAULT, PAIRED_K_ENV, SPLITK_M_MAX

    print(f"nvfp4 package: {os.path.dirname(nvfp4.ops.__file__)}", flush=True)  # which copy was timed

    device = torch.device("cuda")
    meta = dict(
        gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    ms_list = [int(v) for v in args.ms.split(",")] if args.ms else (QUICK_MS if args.quick else MS)
    ref_ms = [int(v) for v in args.ref_ms.split(",")] if args.ref_ms else REF_MS
    ops = torch.ops.nvfp4
    reference = ReferenceBackend()
    rows = []
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def flush():  # rows so far, so that a run cut short still leaves its numbers
        write_csv(args.out + ".partial", rows)

    def emit(shape, n, k, m, impl, us, note=""):
        flops = 2.0 * m * n * k
        wbytes = n * k * (2 if impl == "bf16" else 0.5625)
        row = dict(meta, shape=shape, n=n, k=k, m=m, impl=impl, time_us=f"{us:.2f}",
                   tflops=f"{flops / us / 1e6:.1f}", weight_gbps=f"{wbytes / us / 1e3:.0f}",
                   speedup_vs_bf16="", speedup_vs_reference="", note=note)
        rows.append(row)
        print(f"{shape:12s} M={m:6d} {impl:10s} {us:10.1f} us {flops / us / 1e6:8.1f} TF/s {note}", flush=True)
        return row

    # The activation-quantization kernel alone: bytes read (bf16) + written (codes + scales).
    for m, k in ((8192, 4096), (16384, 8192), (4096, 28672)):
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        gx = torch.tensor([2000.0], device=device)
        ms_q = _time([lambda: ops.quantize_activation(x, gx)], 1, torch, triton) / 1e3  # CUDA graph: GPU time
        moved = m * k * 2 + m * k // 2 + m * k // 16
        rows.append(dict(meta, shape=f"act_quant_{m}x{k}", n=0, k=k, m=m, impl="act_quant", time_us=f"{ms_q * 1e3:.2f}",
                         tflops="", weight_gbps=f"{moved / ms_q / 1e6:.0f}", speedup_vs_bf16="",
                         speedup_vs_reference="", note="CUDA graph; packed codes + E4M3 bytes; GB/s = bytes read + written"))
        print(f"act_quant {m}x{k}: {ms_q * 1e3:.1f} us, {moved / ms_q / 1e6:.0f} GB/s", flush=True)
        del x

    for shape in _select_shapes(args.shapes):
        n, k = SHAPES[shape]
        torch.manual_seed(0)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16) * 0.02
        wp, ws, gw = quantize_weight(w)
        del w
        gx = torch.tensor([2000.0], device=device)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        alpha16 = (1.0 / gw).expand(n).contiguous()
        # What the backend passes for a layer whose rows share one alpha (enables cuBLAS at large M).
        alpha_s, alpha16_s = float(alpha[0]), float(alpha16[0])
        n_fp4 = _copies(wp.numel() + ws.numel())
        n_bf16 = _copies(n * k * 2)
        fp4_copies = [(wp.clone(), ws.clone()) for _ in range(n_fp4)]
        bf16_copies = [torch.randn(n, k, device=device, dtype=torch.bfloat16) * 0.02 for _ in range(n_bf16)]
        for m in ms_list:
            x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
            base = emit(shape, n, k, m, "bf16", _time([lambda wb=wb: F.linear(x, wb) for wb in bf16_copies], m, torch, triton))
            t4 = _time([lambda c=c: ops.linear_w4a4(x, c[0], c[1], gx, alpha, None, alpha_s) for c in fp4_copies], m, torch, triton)
            r4 = emit(shape, n, k, m, "w4a4", t4)
            t16 = _time([lambda c=c: ops.linear_w4a16(x, c[0], c[1], alpha16, None, alpha16_s) for c in fp4_copies], m, torch, triton)
            r16 = emit(shape, n, k, m, "w4a16", t16)
            bf16_us = float(base["time_us"])
            extra = []

            def variant(env_name, suffix, impls, value="on"):  # the same ops with one setting changed
                os.environ[env_name] = value
                try:
                    for impl, fn in impls:
                        try:
                            t = _time([lambda c=c, fn=fn: fn(c) for c in fp4_copies], m, torch, triton)
                        except Exception as exc:  # an opt-in experiment must not cost the run
                            print(f"{shape} M={m} {impl}{suffix} failed: {exc}", flush=True)
                            torch.cuda.synchronize()
                            continue
                        extra.append(emit(shape, n, k, m, impl + suffix, t, note=f"{env_name}={value}"))
                finally:
                    os.environ.pop(env_name, None)

            w4a4_fn = ("w4a4", lambda c: ops.linear_w4a4(x, c[0], c[1], gx, alpha, None, alpha_s))
            w4a16_fn = ("w4a16", lambda c: ops.linear_w4a16(x, c[0], c[1], alpha16, None, alpha16_s))
            if args.pdl and m <= args.pdl_max_m:
                for mode in args.pdl.split(","):  # "on" -> rows w4a4_pdl, "late" -> w4a4_pdl_late
                    variant("NVFP4_TRITON_PDL", "_pdl" if mode == "on" else f"_pdl_{mode}", (w4a4_fn, w4a16_fn), mode)
            if args.paired_ab and m <= SPLITK_M_MAX:  # the paired decode's setting flipped
                if PAIRED_K_DEFAULT:
                    variant(PAIRED_K_ENV, "_natural", (w4a4_fn, w4a16_fn), "off")
                else:
                    variant(PAIRED_K_ENV, "_paired", (w4a4_fn, w4a16_fn))
            if args.splitk_ab and m <= SPLITK_M_MAX:  # the small-M GEMM reducing its own split-K
                variant("NVFP4_TRITON_SPLITK_REDUCE", "_splitk_in_kernel", (w4a4_fn, w4a16_fn), "kernel")
            if args.eight_row_ab and m <= 8:  # the opt-in 8-row swap-AB tiles among the tuner's candidates
                variant("NVFP4_TRITON_EIGHT_ROW_TILES", "_eight_row", (w4a4_fn, w4a16_fn), "on")
            if args.decode_ab:  # the decoder level other than the default (sm_89's E4M3 conversions or not)
                if DECODE_DEFAULT == "sm89":
                    variant("NVFP4_TRITON_DECODE", "_sm80", (w4a4_fn, w4a16_fn), "asm")
                else:
                    variant("NVFP4_TRITON_DECODE", "_sm89", (w4a4_fn, w4a16_fn), "sm89")
            for r in (r4, r16, *extra):
                r["speedup_vs_bf16"] = f"{bf16_us / float(r['time_us']):.2f}"
            if m in ref_ms and not args.no_ref:
                layer = type("L", (), {})()
                layer.weight_packed, layer.weight_scale, layer.alpha, layer.input_global_scale = wp, ws, alpha, gx
                t_ref = _time([lambda: reference.apply_w4a4(layer, x, None)], max(m, GRAPH_MAX_M + 1), torch, triton)
                rr = emit(shape, n, k, m, "reference", t_ref, note="reference backend, W4A4")
                rr["speedup_vs_bf16"] = f"{bf16_us / t_ref:.3f}"
                r4["speedup_vs_reference"] = f"{t_ref / float(r4['time_us']):.1f}"
            else:
                r4["note"] = "reference not measured at this M (too slow; see --ref-ms)"
            del x
        del fp4_copies, bf16_copies
        torch.cuda.empty_cache()
        flush()

    if args.eager_shape:
        rows += _eager_overhead(args.eager_shape, meta, torch, F, ops, quantize_weight)
        flush()
    from nvfp4.ops import launch, launch_dp4a

    for key, choice in sorted(launch_dp4a._CHOICE.items(), key=str):
        print(f"dp4a tiles chosen for (M, N, K, ...) = {key[:3]}: {choice}", flush=True)
    for key, choice in sorted(launch._SMALL_PATH_CHOICE.items(), key=str):
        print(f"small-M path chosen for (M, N, K, ...) = {key[:3]}: {choice}", flush=True)
    finish_csv(args.out, rows)
    print(f"wrote {args.out}")


def eager_per_call_us(fn, calls, torch) -> float:
    """Wall-clock microseconds per call of ``calls`` back-to-back eager calls (after 5 warm-up
    calls): host overhead included, which is the point."""
    import time

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e6 / calls


def _eager_overhead(shape, meta, torch, F, ops, quantize_weight, calls=200):
    """Wall-clock microseconds per call of back-to-back *eager* calls (no graph, one weight,
    L2-warm): when this exceeds the GPU time of the table, an eager caller is bound by
    Python/launch overhead, not by the kernels. Rows ``<impl>_eager``; the ratio is against
    ``bf16_eager`` (cuBLAS through ``F.linear``: one launch)."""

    n, k = SHAPES[shape]
    wp, ws, gw = quantize_weight(torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02)
    wb = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    gx = torch.tensor([2000.0], device="cuda")
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    alpha16 = (1.0 / gw).expand(n).contiguous()
    from nvfp4 import NVFP4Linear

    lin = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
    layer4 = NVFP4Linear.from_linear(lin, input_global_scale=2000.0, backend="triton").cuda()
    layer16 = NVFP4Linear.from_linear(lin, weight_only=True, backend="triton").cuda()
    out = []
    for m in (1, 2048):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        fns = {
            "bf16_eager": lambda: F.linear(x, wb),
            "w4a4_eager": lambda: ops.linear_w4a4(x, wp, ws, gx, alpha, None, float(alpha[0])),
            "w4a16_eager": lambda: ops.linear_w4a16(x, wp, ws, alpha16, None, float(alpha16[0])),
            # what a model's eager forward pays: NVFP4Linear skips the dispatcher (library.direct_call_ok)
            "w4a4_layer_eager": lambda: layer4(x),
            "w4a16_layer_eager": lambda: layer16(x),
        }
        times = {name: eager_per_call_us(fn, calls, torch) for name, fn in fns.items()}
        for name, us in times.items():
            out.append(dict(meta, shape=shape, n=n, k=k, m=m, impl=name, time_us=f"{us:.2f}", tflops="", weight_gbps="",
                            speedup_vs_bf16=f"{times['bf16_eager'] / us:.2f}", speedup_vs_reference="",
                            note="eager back-to-back wall clock per call (launch overhead included)"))
            print(f"{shape:12s} M={m:6d} {name:12s} {us:10.1f} us per eager call", flush=True)
    return out


def _bucket(m: int) -> str:
    return "M<=16" if m <= 16 else ("M=32..64" if m <= 64 else ("M=128" if m == 128 else ("M=256..1024" if m < 2048 else "M>=2048")))


def promote_variant(rows: list[dict], spec: str) -> str:
    """``--promote _paired=_natural``: the A/B rows ``w4a4_paired`` / ``w4a16_paired`` become the
    headline ``w4a4`` / ``w4a16`` rows (a setting made the default after the run), and the rows
    the run timed as its default are renamed ``w4a4_natural`` / ``w4a16_natural`` (only where both
    exist, shape by shape and M by M). The CSV keeps each row's note (the setting it ran with),
    and the speedup over the reference is recomputed for the promoted rows. Returns the line the
    report prints about it."""
    variant, sep, demoted = spec.partition("=")
    if not (sep and variant and demoted):
        raise SystemExit(f"--promote: expected VARIANT=DEMOTED such as _paired=_natural, got {spec!r}")
    index = {(r["shape"], r["m"], r["impl"]): r for r in rows}
    swapped = 0
    for base in ("w4a4", "w4a16"):
        for (shape, m, impl), row in list(index.items()):
            if impl != base + variant or (shape, m, base) not in index:
                continue
            index[(shape, m, base)]["impl"] = base + demoted
            row["impl"] = base
            ref = index.get((shape, m, "reference"))
            if base == "w4a4":
                for r in (row, index[(shape, m, base)]):
                    r["speedup_vs_reference"] = f"{float(ref['time_us']) / float(r['time_us']):.2f}" if ref else ""
            swapped += 1
    if not swapped:
        raise SystemExit(f"--promote {spec}: no rows named w4a4{variant} / w4a16{variant} beside their defaults")
    return (f"Rows timed as `w4a4{variant}` / `w4a16{variant}` (see each CSV row's note for the setting) are shown "
            f"as W4A4 / W4A16, the setting being the default now; the run's own default rows are listed as "
            f"`w4a4{demoted}` / `w4a16{demoted}` ({swapped} pairs).")


def report(args) -> None:
    rows = []
    for path in args.csv:
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    if not rows:
        raise SystemExit("no rows")
    promoted = promote_variant(rows, args.promote) if args.promote else ""
    meta = rows[0]
    by = {(r["shape"], int(r["m"]), r["impl"]): r for r in rows}
    shapes = [s for s in SHAPES if any(k[0] == s for k in by)]
    ms_all = sorted({int(r["m"]) for r in rows if r["impl"] == "bf16"})
    lines = [
        "# NVFP4 linear benchmark",
        "",
        f"GPU: {meta['gpu']}; torch {meta['torch']}; triton {meta['triton']}; {meta['date']}.",
        "Medians of `triton.testing.do_bench` over CUDA graphs (GPU time); weights rotated out of L2.",
        "Speedup = bf16 `F.linear` time / NVFP4 time (same run). `ref x` = reference backend time / Triton W4A4",
        "time (reference measured only at some M; blank = not measured, it is far slower).",
        *([promoted] if promoted else []),
        "",
        "## Median speedup vs bf16 over the shapes, per M",
        "",
        "| M | W4A4 | W4A16 | W4A4 TFLOP/s (median) | bf16 TFLOP/s (median) |",
        "|---|---|---|---|---|",
    ]
    for m in ms_all:
        s4 = [float(by[(s, m, "w4a4")]["speedup_vs_bf16"]) for s in shapes if (s, m, "w4a4") in by]
        s16 = [float(by[(s, m, "w4a16")]["speedup_vs_bf16"]) for s in shapes if (s, m, "w4a16") in by]
        tf4 = [float(by[(s, m, "w4a4")]["tflops"]) for s in shapes if (s, m, "w4a4") in by]
        tfb = [float(by[(s, m, "bf16")]["tflops"]) for s in shapes if (s, m, "bf16") in by]
        if s4:
            lines.append(
                f"| {m} | {statistics.median(s4):.2f}x | {statistics.median(s16):.2f}x | "
                f"{statistics.median(tf4):.0f} | {statistics.median(tfb):.0f} |"
            )
    lines += ["", "## All measurements", "",
              "| shape (NxK) | M | bf16 us | W4A4 us | W4A4 x bf16 | W4A4 TFLOP/s | W4A4 weight GB/s | W4A16 us | W4A16 x bf16 | reference us | ref x |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in shapes:
        for m in ms_all:
            b, a4, a16 = by.get((s, m, "bf16")), by.get((s, m, "w4a4")), by.get((s, m, "w4a16"))
            if not (b and a4 and a16):
                continue
            ref = by.get((s, m, "reference"))
            lines.append(
                f"| {s} {a4['n']}x{a4['k']} | {m} | {b['time_us']} | {a4['time_us']} | {a4['speedup_vs_bf16']} | "
                f"{a4['tflops']} | {a4['weight_gbps']} | {a16['time_us']} | {a16['speedup_vs_bf16']} | "
                f"{ref['time_us'] if ref else ''} | {a4['speedup_vs_reference']} |"
            )
    known = {"bf16", "w4a4", "w4a16", "reference", "act_quant", "check"}
    extra = sorted({r["impl"] for r in rows if r["impl"] not in known and r["speedup_vs_bf16"]})
    if extra:  # alternatives timed in the same run (bench_decode_w4a4.py: the paths and configurations compared)
        lines += ["", "## Other implementations timed in the same run (median speedup vs bf16 over the shapes)", "",
                  "| impl | " + " | ".join(f"M={m}" for m in ms_all) + " |", "|---|" + "---|" * len(ms_all)]
        for impl in extra:
            cells = []
            for m in ms_all:
                v = [float(r["speedup_vs_bf16"]) for r in rows if r["impl"] == impl and int(r["m"]) == m and r["speedup_vs_bf16"]]
                cells.append(f"{statistics.median(v):.2f}x ({len(v)})" if v else "")
            lines.append(f"| {impl} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("(n) = number of measurements in the median (shapes, or shapes x configurations).")
    checks = [r for r in rows if r["impl"] == "check"]
    if checks:
        lines += ["", "## Checks in the run", ""] + [f"* {r['shape']} (M={r['m']}, K={r['k']}): {r['note']}" for r in checks]
    aq = [r for r in rows if r["impl"] == "act_quant"]
    if aq:
        lines += ["", "## Activation quantization kernel alone", "", "| x (MxK, bf16) | us | GB/s (read + written) | output |", "|---|---|---|---|"]
        lines += [f"| {r['m']}x{r['k']} | {r['time_us']} | {r['weight_gbps']} | {r['note']} |" for r in aq]
        if any("CUDA graph" not in r["note"] for r in aq):
            lines += ["", "These rows were timed on eager calls (runs before CUDA-graph timing of this kernel): where the",
                      "time is close to the ~0.1 ms launch overhead of an eager call (the smallest size), they measure",
                      "that overhead, not the kernel. `bench_decode_*.md` has CUDA-graph timings of the same kernel."]
    os.makedirs(args.out_dir, exist_ok=True)
    md = os.path.join(args.out_dir, args.name + ".md")
    with open(md + ".tmp", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(md + ".tmp", md)
    merged = os.path.join(args.out_dir, args.name + ".csv")
    write_csv(merged, rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 8), sharex=True)
    for ax, s in zip(axes.flat, SHAPES):
        for impl, style in (("w4a4", "o-"), ("w4a16", "s--")):
            pts = [(m, float(by[(s, m, impl)]["speedup_vs_bf16"])) for m in ms_all if (s, m, impl) in by]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=impl.upper())
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.axhline(16 / 4.5, color="gray", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        n, k = SHAPES[s]
        ax.set_title(f"{s} ({n}x{k})")
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("speedup vs bf16 F.linear")
        if ax.get_lines()[2:]:  # a shape with measurements (beyond the two reference lines)
            ax.legend()
    fig.suptitle(f"NVFP4 Triton backend vs bf16 cuBLAS - {meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}, {meta['date']}")
    fig.tight_layout()
    png = os.path.join(args.out_dir, args.name + ".png")
    fig.savefig(png + ".tmp.png", dpi=90)
    os.replace(png + ".tmp.png", png)
    print(f"wrote {md}, {merged}, {png}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time on the GPU, write one CSV")
    r.add_argument("--shapes", default="all", help="all, 8b, 70b, or comma-separated names: " + ",".join(SHAPES))
    r.add_argument("--ms", default="", help="comma-separated M values (default: the issue's list)")
    r.add_argument("--quick", action="store_true", help=f"M in {QUICK_MS}")
    r.add_argument("--ref-ms", default="", help=f"M values at which the slow reference backend is timed (default {REF_MS})")
    r.add_argument("--no-ref", action="store_true")
    r.add_argument("--eager-shape", default="8b_o", help="shape whose eager per-call wall time is measured ('' to skip)")
    r.add_argument("--pdl", nargs="?", const="on", default="", metavar="MODES",
                   help="also time W4A4/W4A16 with NVFP4_TRITON_PDL set to each of MODES (comma-separated, "
                        "default 'on'; 'on,late' for both, 'off' for W4A4 without its default 'late'): rows "
                        "w4a4_pdl / w4a4_pdl_late / w4a4_pdl_off ...; M <= --pdl-max-m")
    r.add_argument("--pdl-max-m", type=int, default=128)
    r.add_argument("--paired-ab", action="store_true",
                   help="also time W4A4 and W4A16 with NVFP4_TRITON_PAIRED_K flipped from its default (rows "
                        "w4a4_natural / w4a16_natural, or ..._paired; M <= 128)")
    r.add_argument("--decode-ab", action="store_true",
                   help="also time W4A4 and W4A16 at the decoder level other than the default (NVFP4_TRITON_DECODE=asm: "
                        "the sm_80 PTX, rows w4a4_sm80 / w4a16_sm80, or sm89 while that is not the default; every M: "
                        "the weight dequantization of the large-M path changes too)")
    r.add_argument("--splitk-ab", action="store_true",
                   help="also time W4A4 and W4A16 with NVFP4_TRITON_SPLITK_REDUCE=kernel (the small-M GEMM reduces "
                        "its own split-K: one launch fewer; rows w4a4_splitk_in_kernel / w4a16_splitk_in_kernel; "
                        "M <= 128)")
    r.add_argument("--eight-row-ab", action="store_true",
                   help="also time W4A4 and W4A16 with NVFP4_TRITON_EIGHT_ROW_TILES=on (swap-AB tiles 8 activation rows "
                        "wide among the tuner's candidates; rows w4a4_eight_row / w4a16_eight_row; M <= 8)")
    r.add_argument("--log-tuner", action="store_true", help="log every tuner decision with each candidate's time")
    r.add_argument("--out", required=True)
    p = sub.add_parser("report", help="merge CSVs into markdown + PNG")
    p.add_argument("csv", nargs="+")
    p.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--name", default="bench_linear")
    p.add_argument("--promote", default="", metavar="VARIANT=DEMOTED",
                   help="show the A/B rows w4a4VARIANT / w4a16VARIANT as W4A4 / W4A16 and the run's default rows as "
                        "w4a4DEMOTED / w4a16DEMOTED (e.g. _paired=_natural: a setting made default after the run)")
    args = parser.parse_args(argv)
    if getattr(args, "log_tuner", False):
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logging.getLogger("nvfp4").setLevel(logging.INFO)
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
    main()
