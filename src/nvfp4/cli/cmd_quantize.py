"""``nvfp4 quantize SRC DST``: a float Hugging Face model -> a compressed-tensors NVFP4 checkpoint."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..utils.atomic import atomic_directory
from .common import (
    CLIError, add_command, existing_dir, library, load_tokenizer, require_hf, resolve_device, resolve_dtype,
)

DESCRIPTION = """\
Quantize a float (bf16/fp16/fp32) Hugging Face causal LM to NVFP4 and save it as a
compressed-tensors checkpoint that vLLM, compressed-tensors and nvfp4.load read. Weights are
quantized exactly as compressed-tensors does (q/k/v and gate/up share one weight global scale,
as llm-compressor does). For W4A4 (--scheme NVFP4) each layer's activation global scale comes
from calibration: static min-max over --samples windows of --seq-len tokens of --calib text
(default: English text every Python install has, see `nvfp4 demo`). NVFP4A16 (weight-only)
needs no calibration. The tokenizer, chat template and generation config are copied from SRC.
DST is written to a temporary directory first and renamed into place when complete."""

EPILOG = """\
examples:
  nvfp4 quantize ./SmolLM2-135M-Instruct ./SmolLM2-NVFP4
  nvfp4 quantize ./my-model ./my-model-NVFP4A16 --scheme NVFP4A16
  nvfp4 quantize ./my-model ./out --calib my_domain.txt --samples 128 --seq-len 1024 --device cuda
  nvfp4 quantize ./my-model ./out --ignore lm_head --ignore "re:.*mlp.gate$"
  nvfp4 inspect ./SmolLM2-NVFP4      # check what was written"""

# Files that make a checkpoint usable besides its weights and config.
SIDE_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json", "generation_config.json",
)


def add_parser(subparsers):
    p = add_command(subparsers, "quantize", run, help="make an NVFP4 checkpoint from a float model",
                    description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("source", metavar="SRC", help="float Hugging Face model directory")
    p.add_argument("destination", metavar="DST", help="directory to write (must not exist, unless --overwrite)")
    p.add_argument("--scheme", default="NVFP4", choices=("NVFP4", "NVFP4A16"),
                   help="NVFP4 = W4A4 (FP4 weights and activations), NVFP4A16 = FP4 weights only")
    p.add_argument("--calib", metavar="FILE", default=None,
                   help="calibration text (plain text, or .jsonl with a \"text\" field); default: built-in offline text")
    p.add_argument("--samples", type=int, default=64, help="calibration windows")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per calibration window")
    p.add_argument("--ignore", action="append", default=None, metavar="MODULE",
                   help="module to leave unquantized: exact name, class name or re:regex (repeatable; default lm_head)")
    p.add_argument("--device", default="auto", help="where to run calibration: cpu, cuda, cuda:N; auto = GPU if any")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                   help="dtype to load SRC in (weight global scales follow it, as in compressed-tensors)")
    p.add_argument("--max-shard-size", default=None, metavar="SIZE",
                   help="split the weights into files of at most SIZE (e.g. 5GB) with an index, as large models ship")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    return p


def _calibration_documents(calib: str | None) -> tuple[list[str], str]:
    from ..evaluation.calibration import read_text_file
    from ..evaluation.corpus import offline_text_split

    if calib:
        return read_text_file(calib), calib
    split = offline_text_split()
    return split.calibration, f"{split.source} (calibration part)"


def copy_side_files(source: Path, destination: Path) -> list[str]:
    """Copy tokenizer/chat-template/generation files that ``destination`` lacks."""
    copied = []
    for name in SIDE_FILES:
        src = source / name
        if src.is_file() and not (destination / name).exists():
            shutil.copy2(src, destination / name)
            copied.append(name)
    return copied


def quantize_checkpoint(
    source: Path, destination: Path, *, scheme: str, documents: list[str] | None, samples: int, seq_len: int,
    ignore: list[str], device, dtype, overwrite: bool = False, max_shard_size=None, log=print,
) -> Path:
    """Load SRC, quantize, save to DST atomically with SRC's tokenizer files; return DST.
    (Shared with the demo.)"""
    from transformers import AutoModelForCausalLM

    from ..evaluation.calibration import calibration_samples

    quantize_model, save = library("quantize_model"), library("save")
    config = json.loads((source / "config.json").read_text())
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise CLIError(f"{source}: already quantized ({method}); quantize from the float model")
    if destination.exists() and not overwrite:
        raise CLIError(f"{destination}: already exists (pass --overwrite to replace it)")
    tokenizer = load_tokenizer(source)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype).to(device).eval()
    calibration = None
    if scheme == "NVFP4":
        calibration = calibration_samples(tokenizer, documents, samples, seq_len)
        log(f"calibrating on {len(calibration)} window(s) of {calibration[0].shape[-1]} tokens")
    model = quantize_model(model, calibration, ignore=ignore, scheme=scheme)
    # Checkpoint and side files (tokenizer, generation config) appear together or not at all.
    with atomic_directory(destination, if_exists="replace" if overwrite else "error") as staging:
        save(model, staging, tokenizer=tokenizer, max_shard_size=max_shard_size, overwrite=True)
        copy_side_files(source, staging)
    log(f"wrote {destination} ({scheme}) in {time.perf_counter() - t0:.1f} s")
    return destination


def run(args) -> int:
    require_hf()
    if args.samples < 1 or args.seq_len < 2:
        raise ValueError(f"--samples must be >= 1 and --seq-len >= 2 (got {args.samples}, {args.seq_len})")
    source = existing_dir(args.source, "source model")
    destination = Path(args.destination).expanduser()
    if destination.resolve() == source.resolve():
        raise CLIError("DST must differ from SRC")
    if destination.exists() and not args.overwrite:
        raise CLIError(f"{destination}: already exists (pass --overwrite to replace it)")
    if args.calib and args.scheme == "NVFP4A16":
        print("note: NVFP4A16 is weight-only; --calib is not used")
    documents, what = (None, None) if args.scheme == "NVFP4A16" else _calibration_documents(args.calib)
    if what:
        print(f"calibration text: {what}")
    quantize_checkpoint(
        source, destination, scheme=args.scheme, documents=documents, samples=args.samples, seq_len=args.seq_len,
        ignore=args.ignore or ["lm_head"], device=resolve_device(args.device), dtype=resolve_dtype(args.dtype),
        overwrite=args.overwrite, max_shard_size=args.max_shard_size,
    )
    print(f"next: nvfp4 inspect {destination}   |   nvfp4 generate {destination} --prompt \"Hello\"")
    return 0
