"""English text that every machine already has, split into calibration and held-out parts.

No download: the demo must run offline. Sources, first one found wins:

1. CPython's ``pydoc_data/topics.py`` (the Python language reference topics, ~0.7 MB of
   English prose with code; part of the standard library);
2. Debian's ``/usr/share/common-licenses/*`` (license texts of the ``base-files`` package);
3. the docstrings of standard-library modules (always importable).

Documents (topics, files, modules) are split deterministically: every fifth one is held out
for evaluation and never used for calibration, so perplexity is measured on text the
quantizer did not see.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

HELD_OUT_EVERY = 5
_MIN_CHARS = 20_000  # a source with less text than this is not enough to calibrate on
_LICENSE_DIR = Path("/usr/share/common-licenses")


@dataclass
class TextSplit:
    source: str  # what the text is, in words
    calibration: list[str]  # documents for calibration
    heldout: list[str]  # documents for evaluation (disjoint from calibration)
    heldout_names: list[str] = field(default_factory=list)

    @property
    def heldout_text(self) -> str:
        return "\n\n".join(self.heldout)


def _pydoc_topics() -> list[tuple[str, str]]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    return [(f"pydoc topic {name!r}", text) for name, text in sorted(topics.items()) if text.strip()]


def _license_texts(directory: Path = _LICENSE_DIR) -> list[tuple[str, str]]:
    if not directory.is_dir():
        return []
    docs = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.is_symlink():
            try:
                docs.append((f"license {path.name}", path.read_text(encoding="utf-8", errors="replace")))
            except OSError:
                continue
    return docs


def _stdlib_docstrings() -> list[tuple[str, str]]:
    import sys

    docs = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - some stdlib modules do not import on every platform
            continue
        parts = [module.__doc__ or ""]
        for attr in sorted(dir(module)):
            obj = getattr(module, attr, None)
            doc = getattr(obj, "__doc__", None) if callable(obj) and not attr.startswith("_") else None
            if isinstance(doc, str):
                parts.append(doc)
        text = "\n\n".join(p.strip() for p in parts if p and p.strip())
        if text:
            docs.append((f"docstrings of {name}", text))
    return docs


SOURCES = (
    ("CPython pydoc_data/topics.py (Python language reference topics)", _pydoc_topics),
    ("Debian /usr/share/common-licenses texts", _license_texts),
    ("docstrings of the Python standard library", _stdlib_docstrings),
)


def split_documents(source: str, docs: list[tuple[str, str]]) -> TextSplit:
    """Every ``HELD_OUT_EVERY``-th document (starting from the third) is held out."""
    if len(docs) < HELD_OUT_EVERY:
        raise ValueError(f"{source}: {len(docs)} documents are too few to split into calibration and held-out text")
    calibration, heldout, names = [], [], []
    for i, (name, text) in enumerate(docs):
        if i % HELD_OUT_EVERY == 2:
            heldout.append(text)
            names.append(name)
        else:
            calibration.append(text)
    return TextSplit(source=source, calibration=calibration, heldout=heldout, heldout_names=names)


def offline_text_split() -> TextSplit:
    """The first offline source with enough text, split into calibration and held-out parts."""
    tried = []
    for source, read in SOURCES:
        docs = read()
        chars = sum(len(t) for _, t in docs)
        if chars >= _MIN_CHARS and len(docs) >= HELD_OUT_EVERY:
            return split_documents(source, docs)
        tried.append(f"{source}: {chars} characters")
    raise RuntimeError("no offline English text found for calibration (" + "; ".join(tried) + ")")
