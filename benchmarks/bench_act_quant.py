"""Tile sweep of the activation-quantization kernel (``kernels/activation_quant.py``) alone.

    PYTHONPATH=src python benchmarks/bench_act_quant.py --out $OUT/act_quant.csv      # GPU, < 1 min
    python benchmarks/bench_act_quant.py --smoke --out /tmp/aq.csv                    # CPU check of the script

Why: the activation kernel's speed does not follow its instruction count alone. Its sm_90 SASS
(``sass_loop_stats.py --act-quant``) has 29 instructions per element for the packed output
with the bf16 read at 16 rows x 256 columns on 4 warps (26.4 at 32 rows, 24.9 at 64). On the
H100 a version with 14% fewer but less coalesced loads ran 15% slower, while the int32-words
read of bf16 x (23.3 per element) ran 11-12% faster: 2.58-2.79 TB/s, where the issue asks
for 2.4 (docs/performance.md, 2026-12-08; raw/h100_act_quant_sweep_bf16_words.csv). So the
tile and the read are settled on the GPU: this script times every ``(BLOCK_R, num_warps)`` of
``TILES`` with bf16 ``x`` read as int32 pairs and as bf16 (``WORDS``; the int8 output always
reads bf16), in each output mode, after checking that each gives bytes identical to the
default (and the default packed output identical to ``nvfp4.numerics``).

GB/s = bytes read (bf16 x) + written (the mode's outputs) / median GPU time of one call
(``triton.testing.do_bench`` over a CUDA graph of ``CALLS`` calls). The decode-sized inputs
(M = 16, 128) stay in L2; the large ones (>= 64 MB) stream from HBM.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_linear import _time, finish_csv, write_csv  # noqa: E402

SIZES = ((16, 4096), (128, 8192), (8192, 4096), (16384, 8192), (4096, 28672))
TILES = ((16, 4), (32, 4), (32, 8), (64, 8))  # (BLOCK_R, num_warps); the first is the default
WORDS = (True, False)  # launch_act_quant.ACT_QUANT_BF16_WORDS: bf16 x read as int32 pairs, or as bf16
CALLS = 10
FIELDS = ["gpu", "torch", "triton", "date", "m", "k", "mode", "block_r", "num_warps", "bf16_words", "time_us", "gbps",
          "identical", "note"]


def _outputs(mode, x, gx, torch, launch):
    if mode == "packed":
        p, s = launch.quantize_activation(x, gx)
        return (p, s.view(torch.uint8)), x.numel() // 2 + x.numel() // 16
    if mode == "operand":
        return (launch.quantize_activation(x, gx, dequant_dtype=torch.bfloat16),), 2 * x.numel()
    v, s = launch.quantize_activation_int8(x, gx)
    return (v, s), x.numel() + 4 * x.numel() // 16


def _same(a, b, torch):
    """Byte-identical (NaN scales compare equal to themselves)."""
    return all(torch.equal(u.view(torch.uint8), v.view(torch.uint8)) for u, v in zip(a, b))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true",
                        help="CPU check of this script (TRITON_INTERPRET=1, one tiny size, the interpreter's fixed "
                             "tiles): numbers meaningless")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"
    import torch
    import triton

    from nvfp4.numerics import quantize_activation as reference_quantize
    from nvfp4.ops import launch, launch_act_quant

    dev = torch.device("cpu" if args.smoke else "cuda")
    meta = dict(gpu="CPU (smoke)" if args.smoke else torch.cuda.get_device_name(), torch=torch.__version__,
                triton=triton.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    sizes = ((16, 64),) if args.smoke else SIZES
    tiles = TILES[:2] if args.smoke else TILES
    defaults = (launch_act_quant.ACT_QUANT_BLOCK_R, launch_act_quant.ACT_QUANT_WARPS, launch_act_quant.ACT_QUANT_BF16_WORDS)
    rows = []
    try:
        for m, k in sizes:
            torch.manual_seed(0)
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16) * 3
            x[0, :16] = 0.0  # a zero group
            x[min(1, m - 1), 16:32] *= 1e-30  # subnormal scales
            gx = torch.tensor([448.0 * 6 / float(x.float().abs().max())], device=dev)
            for mode in ("packed", "operand", "int8"):
                launch_act_quant.ACT_QUANT_BLOCK_R, launch_act_quant.ACT_QUANT_WARPS = TILES[0]
                launch_act_quant.ACT_QUANT_BF16_WORDS = WORDS[0]
                base, out_bytes = _outputs(mode, x, gx, torch, launch)
                note = ""
                if mode == "packed":
                    rp, rs = reference_quantize(x, gx)
                    ok = _same(base, (rp, rs.view(torch.uint8)), torch)
                    note = f"default tiles vs nvfp4.numerics: {'identical' if ok else 'DIFFERENT'}"
                for (block_r, warps), words in itertools.product(tiles, WORDS):
                    launch_act_quant.ACT_QUANT_BLOCK_R, launch_act_quant.ACT_QUANT_WARPS = block_r, warps
                    launch_act_quant.ACT_QUANT_BF16_WORDS = words
                    out, _ = _outputs(mode, x, gx, torch, launch)
                    identical = _same(out, base, torch)
                    fn = lambda: _outputs(mode, x, gx, torch, launch)  # noqa: E731
                    if args.smoke:
                        start = time.perf_counter()
                        fn()
                        us = (time.perf_counter() - start) * 1e6
                    else:  # bench_linear's timing: one CUDA graph of the CALLS calls, per-call median
                        us = _time([fn] * CALLS, 1, torch, triton)
                    gbps = (2 * m * k + out_bytes) / us / 1e3
                    rows.append(dict(meta, m=m, k=k, mode=mode, block_r=block_r, num_warps=warps, bf16_words=words,
                                     time_us=f"{us:.2f}",
                                     gbps=f"{gbps:.0f}", identical="yes" if identical else "NO", note=note))
                    print(f"act_quant {m:6d}x{k:<6d} {mode:8s} rows {block_r:4d} warps {warps} words {words:d}: {us:9.2f} us "
                          f"{gbps:7.0f} GB/s {'' if identical else 'OUTPUT DIFFERS'} {note}", flush=True)
                    write_csv(args.out + ".partial", rows, FIELDS)
            del x
    finally:
        (launch_act_quant.ACT_QUANT_BLOCK_R, launch_act_quant.ACT_QUANT_WARPS,
         launch_act_quant.ACT_QUANT_BF16_WORDS) = defaults
    finish_csv(args.out, rows, FIELDS)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
