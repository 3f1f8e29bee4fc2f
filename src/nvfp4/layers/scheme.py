"""The compressed-tensors NVFP4 linear schemes, with the contract of vLLM's classes.

``CompressedTensorsW4A4Fp4`` (W4A4: FP4 weights and activations) and
``CompressedTensorsW4A16Fp4`` (NVFP4A16: FP4 weights, activations left in bf16/fp16):

* ``create_weights(layer, output_partition_sizes, input_size_per_partition, params_dtype,
  weight_loader, **kw)`` registers ``weight_packed``, ``weight_scale``, ``weight_global_scale``
  (and ``input_global_scale`` for W4A4) with one global-scale slot per fused shard;
* ``process_weights_after_loading(layer)`` validates the loaded scales, turns the stored
  divisors into ``alpha`` (one value per output row) and lets the backend convert layouts;
* ``apply_weights(layer, x, bias)`` runs the layer on ``x[..., K]``.

Fused shards whose weight global scales differ are handled exactly: each output row gets
the alpha of its own shard. ``shard_scale_policy="max"`` (or ``NVFP4_SHARD_SCALES=max``)
instead reproduces vLLM, which keeps only ``max(Gw)`` for the whole layer.
"""

from __future__ import annotations

import logging
import math
import os
import warnings

import torch

from ..backends import select_backend
from ..numerics import FP8_DTYPE, GROUP_SIZE
from .parameters import GroupQuantScaleParameter, ModelWeightParameter, PerTensorScaleParameter

logger = logging.getLogger("nvfp4")

ACTIVATION_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
SHARD_SCALE_POLICIES = ("exact", "max")
SHARD_SCALE_ENV = "NVFP4_SHARD_SCALES"


def _layer_name(layer) -> str:
    return getattr(layer, "prefix", "") or type(layer).__name__


class _NVFP4Scheme:
    group_size = GROUP_SIZE
    has_input_scale = True

    def __init__(self, backend: str | None = None, shard_scale_policy: str | None = None):
        policy = shard_scale_policy or os.environ.get(SHARD_SCALE_ENV, "").strip() or "exact"
        if policy not in SHARD_SCALE_POLICIES:
            raise ValueError(f"shard_scale_policy must be one of {SHARD_SCALE_POLICIES}, got {policy!r}")
        self.backend_name = backend
        self.shard_scale_policy = policy

    @classmethod
    def get_min_capability(cls) -> int:
        # As vLLM's scheme: offered from Turing (7.5) up. Below 8.0 our Triton kernels do not
        # run and the reference backend is used; on the CPU the reference backend always runs.
        return 75

    @property
    def weight_only(self) -> bool:
        return not self.has_input_scale

    # -- create ---------------------------------------------------------------------------
    def create_weights(
        self,
        layer: torch.nn.Module,
        output_partition_sizes: list[int],
        input_size_per_partition: int,
        params_dtype: torch.dtype,
        weight_loader,
        **kwargs,
    ) -> None:
        name = _layer_name(layer)
        if not output_partition_sizes or any(int(s) <= 0 for s in output_partition_sizes):
            raise ValueError(f"{name}: output_partition_sizes must be positive, got {output_partition_sizes}")
        if input_size_per_partition <= 0 or input_size_per_partition % self.group_size:
            raise ValueError(
                f"{name}: input_size_per_partition = {input_size_per_partition} is not a positive multiple "
                f"of the NVFP4 group size {self.group_size}"
            )
        if params_dtype not in ACTIVATION_DTYPES:
            raise TypeError(f"{name}: params_dtype must be one of {ACTIVATION_DTYPES}, got {params_dtype}")
        tp_rank = int(kwargs.get("tp_rank", getattr(layer, "tp_rank", 0)))
        tp_size = int(kwargs.get("tp_size", getattr(layer, "tp_size", 1)))
        device = kwargs.get("device")
        n = sum(int(s) for s in output_partition_sizes)
        k = input_size_per_partition
        layer.logical_widths = [int(s) for s in output_partition_sizes]
        layer.input_size_per_partition = k
        layer.output_size_per_partition = n
        layer.params_dtype = params_dtype
        common = dict(weight_loader=weight_loader, tp_rank=tp_rank, tp_size=tp_size)

        layer.register_parameter(
            "weight_packed",
            ModelWeightParameter(torch.zeros(n, k // 2, dtype=torch.uint8, device=device), name="weight_packed", **common),
        )
        layer.register_parameter(
            "weight_scale",
            GroupQuantScaleParameter(
                torch.zeros(n, k // self.group_size, dtype=FP8_DTYPE, device=device), name="weight_scale", **common
            ),
        )
        float_scales = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
        slots = len(output_partition_sizes)
        layer.register_parameter(
            "weight_global_scale",
            PerTensorScaleParameter(
                torch.full((slots,), math.nan, dtype=torch.float32, device=device),
                name="weight_global_scale",
                allowed_dtypes=float_scales,
                **common,
            ),
        )
        if self.has_input_scale:
            layer.register_parameter(
                "input_global_scale",
                PerTensorScaleParameter(
                    torch.full((slots,), math.nan, dtype=torch.float32, device=device),
                    name="input_global_scale",
                    allowed_dtypes=float_scales,
                    **common,
                ),
            )

    # -- after loading --------------------------------------------------------------------
    def _checked_scales(self, layer, attr: str) -> torch.Tensor:
        values = getattr(layer, attr).detach().to(torch.float32).reshape(-1)
        bad = [i for i, v in enumerate(values.tolist()) if not (math.isfinite(v) and v > 0)]
        if bad:
            shards = getattr(layer, "shard_names", None) or list(range(values.numel()))
            detail = ", ".join(f"shard {shards[i]!r} = {values[i].item()}" for i in bad)
            raise ValueError(
                f"{_layer_name(layer)}.{attr}: global scales must be finite and > 0 ({detail}); "
                "NaN means the checkpoint never provided it"
            )
        return values

    def _row_multipliers(self, layer, per_shard: torch.Tensor) -> torch.Tensor:
        """Expand one value per shard to one value per output row."""
        widths = torch.tensor(layer.logical_widths, device=per_shard.device)
        return torch.repeat_interleave(per_shard, widths)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        name = _layer_name(layer)
        gw = self._checked_scales(layer, "weight_global_scale")
        if gw.numel() > 1 and not bool((gw == gw[0]).all()):
            if self.shard_scale_policy == "max":
                warnings.warn(
                    f"{name}: fused shards have different weight global scales {gw.tolist()}; using max() as vLLM "
                    "does, which rescales the other shards (shard_scale_policy='max')",
                    stacklevel=2,
                )
                gw = gw.max().expand_as(gw).clone()
            else:
                warnings.warn(
                    f"{name}: fused shards have different weight global scales {gw.tolist()}; each shard keeps "
                    "its own (exact). Set shard_scale_policy='max' to reproduce vLLM's numbers.",
                    stacklevel=2,
                )
        if self.has_input_scale:
            gx_all = self._checked_scales(layer, "input_global_scale")
            if gx_all.numel() > 1 and not bool((gx_all == gx_all[0]).all()):
                # The shards share one input, quantized once: one Gx must serve all of them.
                warnings.warn(
                    f"{name}: fused shards have different input global scales {gx_all.tolist()}; the shared "
                    "input is quantized once with max() of them, as vLLM does",
                    stacklevel=2,
                )
            gx = gx_all.max().reshape(1)
        else:
            gx = None
        # alpha = 1/(Gx*Gw) (vLLM's order: product first, then the reciprocal), or 1/Gw when the
        # activations are not quantized.
        alpha_shard = 1.0 / gw if self.weight_only else 1.0 / (gx * gw)
        device = layer.weight_packed.device
        # Replace the loading parameters by plain finalised tensors (vLLM does the same).
        layer.weight_global_scale = torch.nn.Parameter(gw.to(device), requires_grad=False)
        if gx is not None:
            layer.input_global_scale = torch.nn.Parameter(gx.to(device), requires_grad=False)
        layer.register_buffer("alpha", self._row_multipliers(layer, alpha_shard).to(device), persistent=False)
        # For the emulation backend and for users: 1/Gw per output row.
        layer.register_buffer(
            "weight_global_scale_inv_per_row", self._row_multipliers(layer, 1.0 / gw).to(device), persistent=False
        )
        layer.nvfp4_backends = {}
        self._backend_for(layer, device)

    def _backend_for(self, layer, device: torch.device):
        # Plain attribute access (not __dict__.setdefault): torch.compile (dynamo, torch 2.11)
        # cannot trace a module's __dict__ methods and would break the graph here.
        cache = getattr(layer, "nvfp4_backends", None)
        if cache is None:
            cache = {}
            layer.nvfp4_backends = cache
        key = (device.type, device.index)
        backend = cache.get(key)
        if backend is None:
            backend = select_backend(self.backend_name, device)
            backend.prepare(layer)
            cache[key] = backend
        return backend

    def backend_name_for(self, layer) -> str:
        cache = layer.__dict__.get("nvfp4_backends") or {}
        names = sorted({b.name for b in cache.values()})
        return ",".join(names) if names else (self.backend_name or "auto")

    # -- forward --------------------------------------------------------------------------
    def apply_weights(self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        name = _layer_name(layer)
        if not hasattr(layer, "alpha"):
            raise RuntimeError(f"{name}: call process_weights_after_loading() before running the layer")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in ACTIVATION_DTYPES:
            raise TypeError(f"{name}: input dtype must be bfloat16, float16 or float32, got {x.dtype}")
        k = layer.input_size_per_partition
        if x.dim() == 0 or x.shape[-1] != k:
            raise ValueError(f"{name}: input's last dimension must be {k}, got shape {tuple(x.shape)}")
        if x.device != layer.weight_packed.device:
            raise ValueError(
                f"{name}: input is on {x.device} but the layer's weights are on {layer.weight_packed.device}"
            )
        backend = self._backend_for(layer, x.device)
        if x.dtype not in backend.activation_dtypes:
            raise TypeError(
                f"{name}: the {backend.name!r} backend takes inputs of {backend.activation_dtypes}, got {x.dtype}"
            )
        lead = x.shape[:-1]
        n = layer.output_size_per_partition
        flat = x.dim() == 2  # already [M, K]: no reshape on the way in or out (host time of eager calls)
        x2d = x if flat else x.reshape(-1, k)
        if x2d.shape[0] == 0:
            out = x.new_empty((0, n))
        else:
            if not x2d.is_contiguous():
                x2d = x2d.contiguous()
            if bias is not None and bias.dtype != x.dtype:
                bias = bias.to(x.dtype)
            if self.weight_only:
                out = backend.apply_w4a16(layer, x2d, bias)
            else:
                out = backend.apply_w4a4(layer, x2d, bias)
        return out if flat else out.reshape(*lead, n)


class CompressedTensorsW4A4Fp4(_NVFP4Scheme):
    """NVFP4 W4A4: FP4 weights and run-time FP4 activations (per-16 FP8 scales, static ``Gx``).

    ``weight_only=True`` runs a W4A4 checkpoint as W4A16 (activations stay bf16/fp16; the
    checkpoint's ``input_global_scale`` is loaded but ignored). That is *not* the
    checkpoint's W4A4 numerics: it is usually a little more accurate and sometimes faster.
    The ignored ``input_global_scale`` must still be loaded and valid (finite, > 0), so the
    same checkpoint check applies in both modes.

    Non-finite activations (W4A4): ``+-Inf`` saturates (block scale 448, code +-6) and the
    output stays finite; ``NaN`` makes its group's scale NaN, so every output of that token
    is NaN and other tokens are unaffected (see ``numerics/activations.py``). In W4A16 the
    activations are not quantized and Inf/NaN propagate as in any float matmul.
    """

    def __init__(self, backend: str | None = None, shard_scale_policy: str | None = None, weight_only: bool = False):
        super().__init__(backend, shard_scale_policy)
        self._run_weight_only = weight_only

    @property
    def weight_only(self) -> bool:
        return self._run_weight_only


class CompressedTensorsW4A16Fp4(_NVFP4Scheme):
    """NVFP4A16: FP4 weights, activations stay in their float dtype (no ``input_global_scale``)."""

    has_input_scale = False
