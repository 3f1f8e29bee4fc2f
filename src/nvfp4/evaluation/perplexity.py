"""Perplexity of a causal LM on a token stream, in non-overlapping windows.

Each window of ``seq_len`` tokens is one forward pass; every token after the window's first
is scored given the tokens before it in the same window (no context carried across windows,
so the number is comparable between models only at the same ``seq_len``). The loss is the
mean negative log-likelihood in float32 over all scored tokens; perplexity is ``exp`` of it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class PerplexityResult:
    perplexity: float
    mean_nll: float
    scored_tokens: int  # tokens whose probability was scored
    windows: int
    seq_len: int
    seconds: float  # wall time of the forward passes

    @property
    def tokens_per_second(self) -> float:
        """Prefill throughput: window tokens processed per second of forward passes."""
        processed = self.scored_tokens + self.windows
        return processed / self.seconds if self.seconds > 0 else float("nan")


def tokenize_text(tokenizer, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """The text as one 1-D tensor of token ids (no special tokens), cut to ``max_tokens``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("tokenize_text: the text is empty")
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    return ids[:max_tokens] if max_tokens is not None else ids


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


@torch.inference_mode()
def perplexity(
    model,
    token_ids: torch.Tensor,
    seq_len: int = 512,
    *,
    max_windows: int | None = None,
    progress: bool = True,
    desc: str = "perplexity",
    warmup: bool = False,
) -> PerplexityResult:
    """Perplexity of ``model`` (a Hugging Face causal LM, or anything whose output has
    ``.logits`` or is the logits tensor) on ``token_ids`` (1-D), in windows of ``seq_len``.

    A trailing piece shorter than 2 tokens is dropped (it has nothing to score).
    ``warmup=True`` runs the first window once, untimed, before measuring, so that one-time
    costs (kernel compilation, allocator growth) do not count against tokens/s.
    """
    if not isinstance(token_ids, torch.Tensor) or token_ids.dim() != 1:
        raise TypeError("perplexity: token_ids must be a 1-D tensor of token ids")
    if int(seq_len) < 2:
        raise ValueError(f"perplexity: seq_len must be at least 2, got {seq_len}")
    seq_len = int(seq_len)
    starts = [s for s in range(0, token_ids.numel(), seq_len) if token_ids.numel() - s >= 2]
    if max_windows is not None:
        starts = starts[: int(max_windows)]
    if not starts:
        raise ValueError(f"perplexity: need at least 2 tokens, got {token_ids.numel()}")
    device = _device_of(model)
    if warmup:
        model(token_ids[starts[0] : starts[0] + seq_len].to(device).unsqueeze(0))
    total_nll, scored, seconds = 0.0, 0, 0.0
    for start in tqdm(starts, desc=desc, unit="window", disable=not progress, leave=False):
        window = token_ids[start : start + seq_len].to(device).unsqueeze(0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = model(window)
        logits = out.logits if hasattr(out, "logits") else out
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        logits = logits[0, :-1].float()
        targets = window[0, 1:]
        total_nll += float(F.cross_entropy(logits, targets, reduction="sum"))
        scored += targets.numel()
    mean = total_nll / scored
    return PerplexityResult(
        perplexity=math.exp(mean) if mean < 700 else float("inf"),
        mean_nll=mean,
        scored_tokens=scored,
        windows=len(starts),
        seq_len=seq_len,
        seconds=seconds,
    )
