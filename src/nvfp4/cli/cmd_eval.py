"""``nvfp4 eval CKPT --text FILE``: perplexity and speed, optionally next to the bf16 model."""

from __future__ import annotations

import json

from ..evaluation.calibration import read_text_file
from ..evaluation.memory import format_bytes, weight_memory
from .common import (
    require_hf,
    add_command, add_device_arguments, backend_argument, existing_dir, format_table, load_quantized_model,
    load_reference_model, load_tokenizer, model_backend, resolve_device, resolve_dtype,
)
from ..parallel.launch import add_tp_argument, tensor_parallel_session

DESCRIPTION = """\
Measure an NVFP4 checkpoint on your text: perplexity (non-overlapping windows of --seq-len
tokens, no context across windows), prefill tokens/s during that pass, greedy decode tokens/s
over --gen-tokens new tokens, and weight memory. With --reference, the same numbers for the
unquantized model (loaded with transformers alone), so the cost of NVFP4 is visible."""

EPILOG = """\
examples:
  nvfp4 eval ./SmolLM2-NVFP4 --text held_out.txt
  nvfp4 eval ./SmolLM2-NVFP4 --text held_out.txt --reference ./SmolLM2-bf16
  nvfp4 eval ./model --text data.jsonl --seq-len 1024 --max-tokens 65536 --device cuda
  nvfp4 eval ./model --text notes.txt --gen-tokens 0      # perplexity only
  torchrun --nproc-per-node 2 -m nvfp4 eval ./model --text notes.txt --tp 2   # tensor parallel

--text takes plain text, or .jsonl with a "text" field per line."""


def add_parser(subparsers):
    p = add_command(subparsers, "eval", run, help="perplexity and tokens/s of a checkpoint",
                    description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("checkpoint", metavar="CKPT", help="NVFP4 checkpoint directory (with its tokenizer)")
    p.add_argument("--text", required=True, metavar="FILE", help="text to measure perplexity on")
    p.add_argument("--reference", metavar="SRC", default=None, help="the unquantized model to compare with")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per perplexity window")
    p.add_argument("--max-tokens", type=int, default=8192, help="use at most this many tokens of the text")
    p.add_argument("--gen-tokens", type=int, default=32, help="new tokens to time greedy decoding over (0: skip)")
    p.add_argument("--weight-only", action="store_true", help="run the checkpoint as W4A16")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_device_arguments(p)
    add_tp_argument(p)
    return p


def measure(model, tokenizer, token_ids, *, seq_len: int, gen_tokens: int, label: str) -> dict:
    """Perplexity, speeds and memory of one model, as a dict (shared with the demo)."""
    from ..evaluation.generation import generate_timed
    from ..evaluation.perplexity import perplexity

    ppl = perplexity(model, token_ids, seq_len, desc=f"perplexity {label}", warmup=True)
    row = {
        "model": label,
        "perplexity": ppl.perplexity,
        "scored_tokens": ppl.scored_tokens,
        "windows": ppl.windows,
        "seq_len": ppl.seq_len,
        "prefill_tokens_per_s": ppl.tokens_per_second,
    }
    if gen_tokens > 0:
        prompt = token_ids[: min(32, token_ids.numel())].unsqueeze(0)
        gen = generate_timed(model, tokenizer, prompt, max_new_tokens=gen_tokens, min_new_tokens=gen_tokens,
                             warmup=True)
        row.update(decode_tokens_per_s=gen.decode_tokens_per_second, generated_tokens=gen.new_tokens)
    mem = weight_memory(model)
    row.update(weight_bytes=mem.total_bytes, bf16_equivalent_bytes=mem.bf16_equivalent_bytes,
               quantized_layers=mem.quantized_layers, backend=model_backend(model))
    return row


def rows_table(rows: list[dict]) -> str:
    headers = ["model", "perplexity", "weights", "prefill tok/s", "decode tok/s", "backend"]
    body = []
    for r in rows:
        body.append([
            r["model"], f"{r['perplexity']:.3f}", format_bytes(r["weight_bytes"]),
            f"{r['prefill_tokens_per_s']:.0f}",
            f"{r['decode_tokens_per_s']:.1f}" if "decode_tokens_per_s" in r else "-",
            r["backend"],
        ])
    return format_table(headers, body)


def run(args) -> int:
    require_hf()
    with tensor_parallel_session(args) as tp:  # None: one process
        return _run(args, tp)


def _run(args, tp) -> int:
    from ..evaluation.perplexity import tokenize_text

    if args.seq_len < 2:
        raise ValueError(f"--seq-len must be at least 2, got {args.seq_len}")
    if args.gen_tokens < 0:
        raise ValueError(f"--gen-tokens must be >= 0, got {args.gen_tokens}")
    path = existing_dir(args.checkpoint)
    reference = existing_dir(args.reference, "reference model") if args.reference else None
    device, dtype = (tp.device if tp else resolve_device(args.device)), resolve_dtype(args.dtype)
    text = "\n\n".join(read_text_file(args.text))
    tokenizer = load_tokenizer(path)
    token_ids = tokenize_text(tokenizer, text, args.max_tokens)
    if token_ids.numel() < 2:
        raise ValueError(f"{args.text}: fewer than 2 tokens of text")
    rows = []
    if reference is not None:
        ref_model = load_reference_model(reference, device, dtype)
        rows.append(measure(ref_model, tokenizer, token_ids, seq_len=args.seq_len, gen_tokens=args.gen_tokens,
                            label=f"{str(dtype).replace('torch.', '')} reference"))
        del ref_model
    if tp:
        model = tp.load(path, dtype=dtype, backend=backend_argument(args.backend), weight_only=args.weight_only)
    else:
        model = load_quantized_model(path, device, dtype, backend_argument(args.backend), weight_only=args.weight_only)
    label = "NVFP4 " + (getattr(model.nvfp4_report, "run_as", "") or "") + (f" tp={tp.group.size}" if tp else "")
    rows.append(measure(model, tokenizer, token_ids, seq_len=args.seq_len, gen_tokens=args.gen_tokens,
                        label=label.strip()))
    if args.json:
        print(json.dumps({"text": args.text, "device": str(device), "rows": rows}, indent=2))
        return 0
    print(rows_table(rows))
    r = rows[-1]
    print(f"\nperplexity: {r['scored_tokens']} tokens of {args.text} scored in {r['windows']} window(s) of up to "
          f"{r['seq_len']} tokens (no context across windows); prefill tok/s: tokens per second of those forward "
          f"passes (batch 1, after an untimed warm-up pass); decode tok/s: greedy generation of {args.gen_tokens} tokens after a 32-token prompt; "
          f"device {device}.")
    return 0
