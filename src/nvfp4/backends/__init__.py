"""NVFP4 GEMM backends and how one is chosen (see ``registry.py``)."""

from .base import Backend
from .emulation import EmulationBackend
from .reference import ReferenceBackend
from .registry import ENV_VAR, available_backends, backend_status, register_backend, select_backend

register_backend(ReferenceBackend)
register_backend(EmulationBackend)

try:  # the Triton backend registers itself when its module imports (GPU fast path)
    from . import triton_backend  # noqa: F401
except ImportError:  # pragma: no cover - the module is optional until it exists
    pass

__all__ = [
    "Backend",
    "ENV_VAR",
    "available_backends",
    "backend_status",
    "register_backend",
    "select_backend",
]
