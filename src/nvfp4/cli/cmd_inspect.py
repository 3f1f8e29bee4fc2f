"""``nvfp4 inspect CKPT``: what a checkpoint holds and what looks wrong, without building it."""

from __future__ import annotations

import json

from ..evaluation.memory import format_bytes
from .checkpoint_summary import summarize_checkpoint
from .common import CLIError, add_command, format_table

DESCRIPTION = """\
Describe a compressed-tensors NVFP4 checkpoint from its config.json and safetensors headers
(no model is built, nothing large is read): format and config groups, which layers are
quantized (W4A4 or W4A16) and which tensors are not, sizes against bf16, statistics of the
weight and input global scales, and warnings about what would give wrong numbers: non-finite
or zero scales, NaN block scales, missing tensors, fused q/k/v or gate/up shards quantized
with different global scales."""

EPILOG = """\
examples:
  nvfp4 inspect ./Llama-3.1-8B-Instruct-NVFP4
  nvfp4 inspect ./model --layers             # one line per quantized layer
  nvfp4 inspect ./model --json | jq .warnings
  nvfp4 inspect ./model --strict && echo ok  # exit 3 if there is any warning"""


def add_parser(subparsers):
    p = add_command(subparsers, "inspect", run, help="describe a checkpoint and warn about problems",
                    description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory (config.json + *.safetensors)")
    p.add_argument("--layers", action="store_true", help="list every quantized layer with its shape and scales")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-scan", action="store_true", help="skip reading the FP8 block scales to look for NaN")
    p.add_argument("--strict", action="store_true", help="exit with status 3 if there are warnings")
    return p


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.6g}"


def render(s) -> str:
    out = [f"checkpoint   {s.path}"]
    arch = ", ".join(s.architectures) or "?"
    out.append(f"model        {s.model_type or '?'} ({arch})")
    out.append(f"format       {s.format} ({s.quant_method}, status {s.status}, version {s.version})")
    for g in s.groups:
        out.append(f"group        {g['name']}: {g['scheme']} on {', '.join(g['targets'])}")
    out.append(f"ignore       {', '.join(s.ignore) if s.ignore else '(nothing)'}")
    schemes = ", ".join(f"{n} {k}" for k, n in sorted(s.schemes.items())) or "none"
    out.append(f"quantized    {len(s.layers)} layers ({schemes}); {len(s.unquantized)} other tensors")
    files = f"{len(s.files)} file" + ("s" if len(s.files) != 1 else "")
    out.append(f"size         {format_bytes(s.total_bytes)} in {files}: quantized layers {format_bytes(s.quantized_bytes)} "
               f"(bf16: {format_bytes(s.quantized_bf16_bytes)}, "
               f"{s.quantized_bf16_bytes / max(s.quantized_bytes, 1):.2f}x smaller), other {format_bytes(s.other_bytes)}")
    for label, st in (("weight Gw", s.weight_global_scales), ("input Gx", s.input_global_scales)):
        if st.count:
            extra = f", {st.non_finite} non-finite" if st.non_finite else ""
            extra += f", {st.zero} zero" if st.zero else ""
            out.append(f"{label:<12} {st.count} values: min {_fmt(st.minimum)}, median {_fmt(st.median)}, "
                       f"max {_fmt(st.maximum)}{extra}")
    big = [u for u in s.unquantized if len(u["shape"]) == 2]
    if big:
        shown = ", ".join(f"{u['name']} {u['dtype']}{u['shape']}" for u in big[:4])
        out.append(f"unquantized  {shown}" + (f" and {len(big) - 4} more 2-D tensors" if len(big) > 4 else ""))
    if not s.scanned_block_scales:
        out.append("note         FP8 block scales were not scanned for NaN (--no-scan)")
    return "\n".join(out)


def render_layers(s) -> str:
    rows = [[l.name, f"{l.out_features}x{l.in_features}", l.scheme, _fmt(l.weight_global_scale),
             _fmt(l.input_global_scale)] for l in s.layers]
    return format_table(["layer", "N x K", "scheme", "Gw", "Gx"], rows, "lrlrr")


def run(args) -> int:
    try:
        summary = summarize_checkpoint(args.checkpoint, scan_block_scales=not args.no_scan, progress=not args.json)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(render(summary))
        if args.layers:
            print()
            print(render_layers(summary))
        if summary.warnings:
            print()
            for w in summary.warnings:
                print(f"warning: {w}")
        else:
            print("\nno problems found")
    return 3 if (args.strict and summary.warnings) else 0
