"""Launchers and ``torch.library`` custom ops for the Triton kernels (``nvfp4.kernels``).

Importing this package defines the Triton kernels, so set ``TRITON_INTERPRET=1`` *before*
importing it if you want the CPU interpreter. ``nvfp4.backends.triton_backend`` imports it
lazily, the first time a layer is prepared on a GPU.
"""

from . import eager_graphs, library  # noqa: F401  (library registers torch.ops.nvfp4.*)
from .launch import KERNEL_LAUNCHES

__all__ = ["KERNEL_LAUNCHES", "eager_graphs", "library"]
