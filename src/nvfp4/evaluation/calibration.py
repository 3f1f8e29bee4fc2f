"""Calibration samples: text cut into fixed-length windows of token ids.

W4A4 needs each layer's activation global scale ``Gx`` (static min-max over the calibration
set, as llm-compressor's ``static_minmax`` observer). Samples are windows of ``seq_len``
tokens taken evenly across the whole tokenized text, so they cover all of it rather than
only its beginning.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def read_text_file(path: str | Path) -> list[str]:
    """Documents from a file: plain text (one document), or ``.jsonl`` with a ``"text"`` field per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file")
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".jsonl":
        docs = []
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i}: not JSON ({err})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{i}: expected an object with a \"text\" string")
            docs.append(record["text"])
    else:
        docs = [raw]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"{path}: no text in the file")
    return docs


def calibration_samples(tokenizer, documents: list[str], samples: int, seq_len: int) -> list[torch.Tensor]:
    """``samples`` windows ``[1, seq_len]`` of token ids, evenly spaced over the documents.

    Documents are joined with the tokenizer's EOS token between them. When the text holds
    fewer than ``samples`` full windows, all of them are returned (and at least one, shorter).
    """
    if samples < 1 or seq_len < 1:
        raise ValueError(f"calibration needs samples >= 1 and seq_len >= 1 (got {samples}, {seq_len})")
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for doc in documents:
        ids += tokenizer(doc, add_special_tokens=False, return_attention_mask=False)["input_ids"] + sep
    if not ids:
        raise ValueError("calibration text tokenizes to nothing")
    stream = torch.tensor(ids, dtype=torch.long)
    windows = stream.numel() // seq_len
    if windows == 0:
        return [stream.unsqueeze(0)]
    count = min(samples, windows)
    # Evenly spaced window indices over [0, windows): covers the whole text.
    picks = sorted({int(i * windows / count) for i in range(count)})
    return [stream[i * seq_len : (i + 1) * seq_len].unsqueeze(0) for i in picks]
