"""Reading the ``NVFP4_*`` environment settings: one parser, one error message style.

Each setting is read when it is used (tests and users may change it between calls), so these
are plain functions of the current environment; a value outside the allowed set raises a
``ValueError`` that names the variable and what it accepts.
"""

from __future__ import annotations

import os


def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    """The lower-cased, stripped value of ``name`` (``default`` when unset), one of ``allowed``."""
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected " + ", ".join(repr(a) for a in allowed))
    return value


def switch(name: str, default: bool) -> bool:
    """An ``on`` / ``off`` setting."""
    return choice(name, "on" if default else "off", ("on", "off")) == "on"


def whole_number(name: str, default: int, minimum: int) -> int:
    """An integer setting of at least ``minimum``."""
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: expected a whole number >= {minimum}")
    return value
