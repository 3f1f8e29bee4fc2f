"""The demo's closing table and the sentence that says what was measured."""

from __future__ import annotations

import os
import textwrap

import torch

from ..cli.common import format_table
from ..evaluation.memory import format_bytes


def render_results(result) -> str:
    rows = result.rows
    base = rows[0]
    body = []
    for r in rows:
        delta = "" if r is base else f"{100 * (r.perplexity / base.perplexity - 1):+.1f}%"
        body.append([
            r.label, f"{r.perplexity:.2f}", delta, format_bytes(r.weight_bytes),
            f"{r.weight_bytes / base.weight_bytes:.2f}x", f"{r.prefill_tokens_per_s:.0f}",
            f"{r.decode_tokens_per_s:.1f}", r.backend,
        ])
    table = format_table(
        ["model", "perplexity", "vs bf16", "weights", "memory", "prefill tok/s", "decode tok/s", "NVFP4 backend"], body
    )
    s = result.settings
    names = ", ".join(n.replace("pydoc topic ", "") for n in result.heldout_names[:6])
    more = f" and {len(result.heldout_names) - 6} more" if len(result.heldout_names) > 6 else ""
    threads = f" with {torch.get_num_threads()} threads" if result.device.startswith("cpu") else ""
    notes = (
        f"Measured on {result.device}{threads}, batch 1. Perplexity: {base.scored_tokens} scored tokens of held-out "
        f"text ({result.text_source}: {names}{more}; never used for calibration) in {s.eval_windows} window(s) of "
        f"{s.eval_seq_len} tokens. W4A4 calibration: {s.calib_samples} windows of {s.calib_seq_len} tokens "
        f"(static min-max). Prefill tok/s: tokens per second of those perplexity forward passes (after an untimed "
        f"warm-up pass). Decode tok/s: greedy generation of the answers above (up to {s.max_new_tokens} new tokens), first token excluded. "
        f"Weights: all parameters and buffers in memory (the embedding, tied to lm_head, stays bf16). "
        f"Total time {result.seconds:.0f} s."
    )
    notes += _load_note(result.device)
    return table + "\n\n" + "\n".join(textwrap.wrap(notes, 100))


def _load_note(device: str) -> str:
    """On a busy CPU, timings mean little: say so (1-minute load average vs cores)."""
    if not device.startswith("cpu") or not hasattr(os, "getloadavg"):
        return ""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores + 0.5:
        return ""
    return (f" Note: the CPU was shared (1-minute load average {load:.1f} on {cores} cores), so tokens/s are "
            f"lower and noisier than on an idle machine; perplexities do not depend on it.")
