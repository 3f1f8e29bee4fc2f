"""Choosing a backend: by argument, then the ``NVFP4_BACKEND`` environment variable, then
automatically (the highest-priority backend that can run on the device).

An explicit request (argument or environment) names its source in every error: an unknown
name raises ``ValueError`` listing the registered choices; a known backend that cannot run on
the device raises ``RuntimeError`` with the backend's own reason (an environment problem, not
bad input). An automatic choice never picks a negative-priority backend (``emulation``) and,
on a GPU, warns once per skipped faster backend, saying why. The chosen backend is logged
once per (backend, device type).
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

from .base import Backend

logger = logging.getLogger("nvfp4")

ENV_VAR = "NVFP4_BACKEND"
_REGISTRY: dict[str, type[Backend]] = {}
_INSTANCES: dict[str, Backend] = {}
_ANNOUNCED: set[tuple[str, str]] = set()
_WARNED: set[tuple[str, str]] = set()


def register_backend(cls: type[Backend]) -> type[Backend]:
    _REGISTRY[cls.name] = cls
    return cls


def available_backends() -> list[str]:
    return sorted(_REGISTRY, key=lambda n: -_REGISTRY[n].priority)


def backend_status(device: torch.device | str) -> dict[str, str | None]:
    """``{name: None if usable on device else the reason}`` for every registered backend."""
    device = torch.device(device)
    return {name: _REGISTRY[name].unavailable_reason(device) for name in available_backends()}


def _instance(name: str) -> Backend:
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


def select_backend(requested: str | None, device: torch.device | str) -> Backend:
    device = torch.device(device)
    source = "argument"
    if requested is None or requested == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        requested, source = (env, f"${ENV_VAR}") if env and env != "auto" else (None, "auto")
    if requested is not None:
        if requested not in _REGISTRY:
            raise ValueError(
                f"unknown NVFP4 backend {requested!r} (from {source}); choose one of {available_backends()}"
            )
        reason = _REGISTRY[requested].unavailable_reason(device)
        if reason is not None:
            raise RuntimeError(f"NVFP4 backend {requested!r} (from {source}) cannot run on {device}: {reason}")
        chosen = requested
    else:
        chosen, skipped = None, []
        for name in available_backends():
            cls = _REGISTRY[name]
            if cls.priority < 0:
                continue
            reason = cls.unavailable_reason(device)
            if reason is None:
                chosen = name
                break
            skipped.append((name, reason))
        assert chosen is not None, "the reference backend runs everywhere"
        for name, reason in skipped:
            # Only a device where a faster backend was *expected* deserves a warning (a GPU).
            key = (name, device.type)
            if device.type == "cuda" and key not in _WARNED:
                _WARNED.add(key)
                warnings.warn(f"NVFP4: not using the {name!r} backend on {device}: {reason}; using {chosen!r}")
    key = (chosen, device.type)
    if key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        logger.info("NVFP4 backend %r chosen for %s (%s)", chosen, device, source)
    return _instance(chosen)
