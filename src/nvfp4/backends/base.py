"""What a backend is: the object that runs a finalised NVFP4 layer's GEMM on some hardware.

The scheme (``layers/scheme.py``) owns the numbers every backend shares, prepared once in
``process_weights_after_loading``:

* ``layer.weight_packed`` uint8 ``[N, K/2]`` and ``layer.weight_scale`` e4m3 ``[N, K/16]``
  (row-major, as on disk),
* ``layer.input_global_scale`` float32 ``[1]`` (the divisor ``Gx``; W4A4 only),
* ``layer.alpha`` float32 ``[N]``: ``1/(Gx*Gw[shard])`` for W4A4, ``1/Gw[shard]`` for W4A16.

A backend may add its own layout in ``prepare`` (called once per device) and computes
``out[M, N] = alpha * GEMM + bias`` in ``apply``.
"""

from __future__ import annotations

import torch


class Backend:
    name: str = "?"
    # Higher wins when the backend is chosen automatically.
    priority: int = 0
    activation_dtypes: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16, torch.float32)

    @classmethod
    def unavailable_reason(cls, device: torch.device) -> str | None:
        """``None`` if this backend can run on ``device``, else a sentence saying why not."""
        return None

    def prepare(self, layer: torch.nn.Module) -> None:
        """Convert the layer's weights to this backend's layout (once per device)."""

    def apply_w4a4(self, layer, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def apply_w4a16(self, layer, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError
