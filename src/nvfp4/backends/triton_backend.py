"""The ``triton`` backend: exact NVFP4 W4A4 / W4A16 on CUDA GPUs of capability >= 8.0.

It runs the Triton kernels of ``nvfp4.kernels`` through the custom ops of ``nvfp4.ops``
(``torch.ops.nvfp4.linear_w4a4`` / ``linear_w4a16``), so a model using it compiles with
``torch.compile(fullgraph=True)`` and can be captured in a CUDA graph. Numbers are the
reference backend's up to fp32 summation order (same FP4/FP8 operands, exact in fp16/bf16,
fp32 accumulation, ``alpha`` then cast then ``bias``).

Chosen automatically on such GPUs (priority above ``reference``). Below capability 8.0, on
CPUs, or without Triton, ``unavailable_reason`` says why and the registry falls back to the
reference backend (warning once on CUDA). fp32 activations are not a Triton path: they run on
the exact reference code with a one-time warning (cast the model to bf16/fp16 for speed).
The weight stays in its checkpoint layout (row-major packed codes and E4M3 scales): there is
nothing to convert, so ``prepare`` only checks it and makes it contiguous once.
"""

from __future__ import annotations

import warnings

import torch

from .base import Backend
from .reference import ReferenceBackend

try:  # Triton is an optional dependency (extra "triton"); the module must import without it.
    import triton  # noqa: F401

    _TRITON_IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - depends on the environment
    _TRITON_IMPORT_ERROR = f"triton is not installed ({exc}); pip install 'nvfp4[triton]'"

MIN_CAPABILITY = (8, 0)


_OPS = None


def _ops():
    # Imported lazily: defining the kernels must happen after the user had a chance to set
    # TRITON_INTERPRET, and CPU-only users never pay for it. Kept once imported (this runs on
    # every eager call).
    global _OPS
    if _OPS is None:
        from .. import ops

        _OPS = (torch.ops.nvfp4, ops)
    return _OPS


class TritonBackend(Backend):
    name = "triton"
    priority = 10
    activation_dtypes = (torch.bfloat16, torch.float16, torch.float32)

    def __init__(self):
        self._fp32_warned = False
        self._reference = ReferenceBackend()

    @classmethod
    def unavailable_reason(cls, device: torch.device) -> str | None:
        device = torch.device(device)
        if _TRITON_IMPORT_ERROR is not None:
            return _TRITON_IMPORT_ERROR
        if device.type != "cuda":
            return f"the Triton kernels run on CUDA GPUs, not on {device.type}"
        if not torch.cuda.is_available():
            return "CUDA is not available"
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        if (major, minor) < MIN_CAPABILITY:
            return (
                f"{torch.cuda.get_device_name(index)} has compute capability {major}.{minor}; the Triton kernels "
                f"need >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} (bf16 tensor cores)"
            )
        return None

    def prepare(self, layer: torch.nn.Module) -> None:
        _ops()  # registers the custom ops before anything traces the layer
        for attr in ("weight_packed", "weight_scale", "alpha"):
            t = getattr(layer, attr)
            if not t.is_contiguous():
                t.data = t.data.contiguous()
        gx = getattr(layer, "input_global_scale", None)
        if gx is not None and gx.dtype != torch.float32:
            raise TypeError(f"{type(layer).__name__}.input_global_scale must be float32, got {gx.dtype}")
        # One alpha for every row (the usual case: fused shards share Gw) lets large-M calls
        # use cuBLAS with the alpha in its epilogue; read once here, never in the forward.
        alpha = layer.alpha.detach()
        uniform = alpha.numel() > 0 and bool((alpha == alpha[0]).all())
        layer.nvfp4_alpha_scalar = float(alpha[0].item()) if uniform else None
        # Opt-in decode GEMM v2 (NVFP4_TRITON_SMALL_M=v2, see ops/decode_v2.py): the weight is
        # repacked once into its layout here, kept next to the checkpoint layout.
        from ..ops import launch_decode_v2

        if launch_decode_v2.decode_v2_enabled():
            from ..ops import decode_v2  # noqa: F401  (registers torch.ops.nvfp4.linear_decode_v2)

            layer.weight_packed_decode, layer.weight_scale_decode = launch_decode_v2.repack_weight_for_decode(
                layer.weight_packed.detach(), layer.weight_scale.detach()
            )
        else:
            layer.weight_packed_decode = layer.weight_scale_decode = None

    def _fp32(self, x: torch.Tensor) -> bool:
        if x.dtype != torch.float32:
            return False
        if not self._fp32_warned:
            self._fp32_warned = True
            warnings.warn(
                "NVFP4 triton backend: float32 activations run on the exact reference path (slow); "
                "cast the model to bfloat16 or float16 to use the Triton kernels",
                stacklevel=3,
            )
        return True

    def apply_w4a4(self, layer, x, bias):
        if self._fp32(x):
            return self._reference.apply_w4a4(layer, x, bias)
        ops, mod = _ops()
        if getattr(layer, "weight_packed_decode", None) is not None:
            return ops.linear_decode_v2(
                x, layer.weight_packed, layer.weight_scale, layer.weight_packed_decode, layer.weight_scale_decode,
                layer.input_global_scale, layer.alpha, bias, getattr(layer, "nvfp4_alpha_scalar", None),
            )
        # Eager calls skip the dispatcher (same function, ~50 us less host time per call);
        # anything that traces goes through the custom op (library.direct_call_ok).
        direct = mod.library.direct_call_ok(x)
        run = mod.library.linear_w4a4_impl if direct else ops.linear_w4a4
        if direct and mod.eager_graphs.enabled():  # opt-in: replayed from the layer's CUDA graphs
            def call(t):
                return run(t, layer.weight_packed, layer.weight_scale, layer.input_global_scale, layer.alpha, bias,
                           getattr(layer, "nvfp4_alpha_scalar", None))

            return mod.eager_graphs.call(layer, "w4a4", call, x, bias)
        return run(
            x, layer.weight_packed, layer.weight_scale, layer.input_global_scale, layer.alpha, bias,
            getattr(layer, "nvfp4_alpha_scalar", None),
        )

    def apply_w4a16(self, layer, x, bias):
        if self._fp32(x):
            return self._reference.apply_w4a16(layer, x, bias)
        ops, mod = _ops()
        if getattr(layer, "weight_packed_decode", None) is not None:
            return ops.linear_decode_v2(
                x, layer.weight_packed, layer.weight_scale, layer.weight_packed_decode, layer.weight_scale_decode,
                None, layer.alpha, bias, getattr(layer, "nvfp4_alpha_scalar", None),
            )
        direct = mod.library.direct_call_ok(x)
        run = mod.library.linear_w4a16_impl if direct else ops.linear_w4a16
        if direct and mod.eager_graphs.enabled():
            def call(t):
                return run(t, layer.weight_packed, layer.weight_scale, layer.alpha, bias,
                           getattr(layer, "nvfp4_alpha_scalar", None))

            return mod.eager_graphs.call(layer, "w4a16", call, x, bias)
        return run(
            x, layer.weight_packed, layer.weight_scale, layer.alpha, bias, getattr(layer, "nvfp4_alpha_scalar", None)
        )

    # Tensor parallelism (added by the TP work, see RowParallelNVFP4Linear.forward_partial_fp32):
    # a row-parallel rank's partial sum ``alpha * GEMM`` kept in float32 (no bias), so the
    # all-reduce adds unrounded partials and the result equals one GPU's up to fp32 summation
    # order. Same kernels, float32 output.
    def apply_partial_fp32(self, layer, x):
        if self._fp32(x):
            run = self._reference.apply_w4a16 if layer.scheme.weight_only else self._reference.apply_w4a4
            return run(layer, x, None)
        _ops()
        from ..ops import launch

        # The same routing as the forward (integer decode at M <= 4, tuned small-M GEMM, ...),
        # only with a float32 output; the cuBLAS path is not taken (it rounds to x's dtype).
        if layer.scheme.weight_only:
            return launch.linear_w4a16(x, layer.weight_packed, layer.weight_scale, layer.alpha, None,
                                       out_dtype=torch.float32)
        return launch.linear_w4a4(x, layer.weight_packed, layer.weight_scale, layer.input_global_scale, layer.alpha,
                                  None, out_dtype=torch.float32)
