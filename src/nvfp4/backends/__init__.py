"""NVFP4 GEMM backends and how one is chosen (see ``registry.py``)."""

from .base import Backend
from .emulation import EmulationBackend
from .reference import ReferenceBackend
from .registry import ENV_VAR, available_backends, backend_status, register_backend, select_backend
from .triton_backend import TritonBackend

register_backend(ReferenceBackend)
register_backend(EmulationBackend)
# Imports fine without a GPU or Triton; unavailable_reason() then says why it is skipped.
register_backend(TritonBackend)

__all__ = [
    "Backend",
    "ENV_VAR",
    "available_backends",
    "backend_status",
    "register_backend",
    "select_backend",
]
