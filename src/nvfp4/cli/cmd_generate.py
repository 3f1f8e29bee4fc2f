"""``nvfp4 generate CKPT --prompt ...``: load an NVFP4 checkpoint and answer a prompt."""

from __future__ import annotations

import sys

from .common import (
    require_hf,
    add_command, add_device_arguments, backend_argument, existing_dir, load_quantized_model, load_tokenizer,
    model_backend, resolve_device, resolve_dtype,
)
from ..parallel.launch import add_tp_argument, tensor_parallel_session

DESCRIPTION = """\
Load an NVFP4 checkpoint with nvfp4.load (our NVFP4 layers inside a transformers model) and
generate a reply. The prompt goes through the tokenizer's chat template when it has one
(--raw to send it as plain text). Decoding is greedy unless --temperature is given. The reply
goes to stdout; load time, tokens/s and the backend go to stderr."""

EPILOG = """\
examples:
  nvfp4 generate ./SmolLM2-NVFP4 --prompt "Name three primary colours."
  nvfp4 generate ./model --prompt "Once upon a time" --raw --max-new-tokens 100
  nvfp4 generate ./model --prompt "Hi" --device cuda --backend reference
  nvfp4 generate ./model --prompt "Hi" --weight-only   # run a W4A4 checkpoint as W4A16
  torchrun --nproc-per-node 2 -m nvfp4 generate ./model --prompt "Hi" --tp 2   # tensor parallel"""


def add_parser(subparsers):
    p = add_command(subparsers, "generate", run, help="answer a prompt with an NVFP4 checkpoint",
                    description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("checkpoint", metavar="CKPT", help="NVFP4 checkpoint directory (with its tokenizer)")
    p.add_argument("--prompt", required=True, help="the user message (or plain text with --raw)")
    p.add_argument("--system", default=None, help="a system message for the chat template")
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    p.add_argument("--max-new-tokens", type=int, default=64, help="at most this many new tokens")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    p.add_argument("--seed", type=int, default=0, help="random seed when sampling")
    p.add_argument("--weight-only", action="store_true", help="do not quantize activations (run as W4A16)")
    add_device_arguments(p)
    add_tp_argument(p)
    return p


def run(args) -> int:
    require_hf()
    with tensor_parallel_session(args) as tp:  # None: one process
        return _run(args, tp)


def _run(args, tp) -> int:
    from ..evaluation.generation import build_prompt, generate_timed

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    path = existing_dir(args.checkpoint)
    device, dtype = (tp.device if tp else resolve_device(args.device)), resolve_dtype(args.dtype)
    tokenizer = load_tokenizer(path)
    if tp:
        model = tp.load(path, dtype=dtype, backend=backend_argument(args.backend), weight_only=args.weight_only)
    else:
        model = load_quantized_model(path, device, dtype, backend_argument(args.backend), weight_only=args.weight_only)
    report = getattr(model, "nvfp4_report", None)
    ids = build_prompt(tokenizer, args.prompt, chat=not args.raw, system=args.system)
    result = generate_timed(model, tokenizer, ids, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, seed=args.seed)
    print(result.text.strip() if not args.raw else args.prompt + result.text)
    load_s = f"loaded in {report.seconds:.1f} s, " if report is not None and report.seconds else ""
    print(
        f"[{load_s}{result.prompt_tokens} prompt + {result.new_tokens} new tokens in {result.seconds:.2f} s: "
        f"{result.decode_tokens_per_second:.1f} tokens/s decode, first token after {result.first_token_seconds:.2f} s; "
        f"backend {model_backend(model)} on {device}]",
        file=sys.stderr,
    )
    return 0
