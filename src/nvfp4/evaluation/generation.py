"""Greedy generation with timing: time to first token and decode speed.

A streamer records when each new token arrives, so the prefill (prompt) and the decode
(one token per step) are timed separately: ``decode tokens/s`` is what a chat user feels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float  # whole generate() call
    first_token_seconds: float  # prompt prefill + the first new token

    @property
    def tokens_per_second(self) -> float:
        """New tokens per second over the whole call (prefill included)."""
        return self.new_tokens / self.seconds if self.seconds > 0 else float("nan")

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens per second after the first one (one forward pass per token)."""
        steps = self.new_tokens - 1
        span = self.seconds - self.first_token_seconds
        return steps / span if steps > 0 and span > 0 else float("nan")


class _TokenClock:
    """A transformers streamer that only notes when tokens arrive (first ``put`` = prompt)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []

    def put(self, value):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter())

    def end(self):
        pass


def build_prompt(tokenizer, prompt: str, *, chat: bool = True, system: str | None = None) -> torch.Tensor:
    """Token ids ``[1, T]`` for ``prompt``: through the chat template when the tokenizer has one
    and ``chat`` is true, else the raw text (with the tokenizer's usual special tokens)."""
    if chat and getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        return ids
    return tokenizer(prompt, return_tensors="pt")["input_ids"]


@torch.inference_mode()
def generate_timed(
    model,
    tokenizer,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int = 32,
    min_new_tokens: int | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    warmup: bool = False,
) -> GenerationResult:
    """Generate from ``input_ids`` ``[1, T]`` (greedy unless ``temperature > 0``) and time it.

    ``min_new_tokens`` forces a length (useful to measure speed on a fixed number of steps).
    ``warmup=True`` first generates 2 tokens untimed (kernel compilation and the like).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    clock = _TokenClock(device)
    kwargs = dict(max_new_tokens=int(max_new_tokens), streamer=clock, attention_mask=torch.ones_like(input_ids))
    if min_new_tokens:
        kwargs["min_new_tokens"] = int(min(min_new_tokens, max_new_tokens))
    if temperature and temperature > 0:
        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=float(temperature))
    else:
        kwargs.update(do_sample=False)
        # Greedy: silence the model's own sampling defaults (top_p etc. in generation_config).
        kwargs.update(temperature=None, top_p=None, top_k=None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is not None:
        kwargs["pad_token_id"] = pad
    if warmup:
        model.generate(input_ids, **{**kwargs, "streamer": None, "max_new_tokens": 2, "min_new_tokens": None,
                                     "do_sample": False, "temperature": None, "top_p": None, "top_k": None})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = model.generate(input_ids, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t1 = time.perf_counter()
    new = out[0, input_ids.shape[1] :]
    token_times = clock.times[1:]  # the first put() is the prompt itself
    first = (token_times[0] - t0) if token_times else (t1 - t0)
    return GenerationResult(
        text=tokenizer.decode(new, skip_special_tokens=True),
        prompt_tokens=int(input_ids.shape[1]),
        new_tokens=int(new.numel()),
        seconds=t1 - t0,
        first_token_seconds=first,
    )
