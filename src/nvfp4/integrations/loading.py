"""Placing checkpoint tensors into a model whose targeted linears are ``NVFP4Linear``.

``TensorPlacer`` receives ``(name, tensor, origin)`` one at a time (from a stream of
safetensors files or from a state dict), so the caller controls memory: a quantized tensor
is copied straight into the layer's preallocated buffer on the target device, an
unquantized one becomes the module's parameter on the device in the model dtype. At the
end ``finish`` checks that every expected tensor came and none was left over, applies the
fused-shard policy, and finalises the layers (``process_weights_after_loading``).

Errors name the file (origin) and the tensor.
"""

from __future__ import annotations

import math
import os
import re

import torch
from torch import nn

from ..layers import NVFP4Linear
from ..layers.scheme import SHARD_SCALE_ENV, SHARD_SCALE_POLICIES
from .swap import fused_sibling_groups

QUANT_PARAMS = ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale", "bias")
_GLOBAL_SCALES = ("weight_global_scale", "input_global_scale")


def _listing(names, limit: int = 20) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


class TensorPlacer:
    """Loads tensors into ``model`` (already swapped); see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        layers: dict[str, NVFP4Linear],
        *,
        dtype: torch.dtype,
        device: torch.device,
        shard_scale_policy: str | None = None,
        require_all_unquantized: bool = True,
    ):
        self.model = model
        self.layers = layers
        self.dtype = dtype
        self.device = device
        # The same resolution as the scheme's: argument, then $NVFP4_SHARD_SCALES, then exact.
        self.shard_scale_policy = shard_scale_policy or os.environ.get(SHARD_SCALE_ENV, "").strip() or "exact"
        if self.shard_scale_policy not in SHARD_SCALE_POLICIES:
            raise ValueError(f"shard_scale_policy must be one of {SHARD_SCALE_POLICIES}, got {self.shard_scale_policy!r}")
        self.warnings: list[str] = []
        self.loaded: set[str] = set()
        self.origin: dict[str, str] = {}
        self.other_bytes = 0
        keep_fp32 = getattr(model, "_keep_in_fp32_modules", None) or []
        self._keep_fp32 = [k for k in keep_fp32 if isinstance(k, str)]
        ignore_unexpected = list(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])
        # Old checkpoints saved rotary tables (now computed, non-persistent); transformers skips them too.
        ignore_unexpected.append(r"rotary_emb\.inv_freq$")
        self._ignore_unexpected = [re.compile(p) for p in ignore_unexpected if isinstance(p, str)]
        self.skipped: list[str] = []
        self.unexpected: list[tuple[str, str]] = []

        # Quantized tensors: "<layer>.<param>" -> (layer, param name).
        self.quant_targets: dict[str, tuple[NVFP4Linear, str]] = {}
        for name, layer in layers.items():
            for pname in QUANT_PARAMS:
                if getattr(layer, pname, None) is not None:
                    self.quant_targets[f"{name}.{pname}"] = (layer, pname)

        # Unquantized tensors: every name of a parameter or persistent buffer outside the NVFP4
        # layers; tied parameters (one object, several names) form one alias group.
        self.alias_of: dict[str, tuple[str, ...]] = {}
        self.plain_targets: dict[str, tuple[nn.Module, str, torch.Tensor]] = {}
        by_object: dict[int, list[str]] = {}
        for mname, module in model.named_modules(remove_duplicate=False):
            if isinstance(module, NVFP4Linear):
                continue
            for pname, p in list(module._parameters.items()) + [
                (b, t) for b, t in module._buffers.items() if b not in module._non_persistent_buffers_set
            ]:
                if p is None:
                    continue
                full = f"{mname}.{pname}" if mname else pname
                self.plain_targets[full] = (module, pname, p)
                by_object.setdefault(id(p), []).append(full)
        for names in by_object.values():
            for n in names:
                self.alias_of[n] = tuple(names)
        self.require_all_unquantized = require_all_unquantized

    # -- placing one tensor --------------------------------------------------------------------
    def place(self, key: str, tensor: torch.Tensor, origin: str) -> None:
        if key in self.quant_targets:
            self._place_quantized(key, tensor, origin)
        elif key in self.plain_targets:
            self._place_plain(key, tensor, origin)
        elif any(p.search(key) for p in self._ignore_unexpected):
            self.skipped.append(key)  # the model class says this key may be ignored
            return
        else:
            self.unexpected.append((key, origin))
            return
        self.loaded.add(key)
        self.origin[key] = origin

    def _place_quantized(self, key: str, tensor: torch.Tensor, origin: str) -> None:
        layer, pname = self.quant_targets[key]
        if pname in _GLOBAL_SCALES:
            if not tensor.is_floating_point():
                raise TypeError(f"{origin}: tensor {key!r}: a global scale must be float32, got {tensor.dtype}")
            bad = [v for v in tensor.detach().reshape(-1).to(torch.float32).tolist() if not (math.isfinite(v) and v > 0)]
            if bad:
                raise ValueError(f"{origin}: tensor {key!r}: global scale must be finite and > 0, got {bad[0]}")
        try:
            layer.weight_loader(getattr(layer, pname), tensor)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{origin}: tensor {key!r}: {exc}") from None
        # E4M3FN's only NaN codes are 0x7F and 0xFF: check the bits, without a float copy.
        if pname == "weight_scale" and bool(((getattr(layer, pname).view(torch.uint8) & 0x7F) == 0x7F).any()):
            raise ValueError(f"{origin}: tensor {key!r}: block scales contain NaN (E4M3 0x7F)")

    def _place_plain(self, key: str, tensor: torch.Tensor, origin: str) -> None:
        module, pname, current = self.plain_targets[key]
        if tuple(tensor.shape) != tuple(current.shape):
            raise ValueError(
                f"{origin}: tensor {key!r}: expected shape {tuple(current.shape)}, got {tuple(tensor.shape)}"
            )
        if current.is_floating_point() != tensor.is_floating_point():
            raise TypeError(f"{origin}: tensor {key!r}: expected a {current.dtype} tensor, got {tensor.dtype}")
        if current.is_floating_point():
            target_dtype = torch.float32 if any(k in key for k in self._keep_fp32) else self.dtype
        else:
            target_dtype = current.dtype
        value = tensor.to(device=self.device, dtype=target_dtype)
        self.other_bytes += value.numel() * value.element_size()
        # Tied names (one object under several names) get one new object, as the tie had it.
        as_param = nn.Parameter(value, requires_grad=False) if isinstance(current, nn.Parameter) else value
        for alias in self.alias_of.get(key, (key,)):
            amod, aname, _ = self.plain_targets[alias]
            if aname in amod._parameters:
                amod._parameters[aname] = as_param
            else:
                amod._buffers[aname] = value
            self.loaded.add(alias)

    # -- the end -------------------------------------------------------------------------------
    def finish(self, source: str) -> None:
        unexpected = self.unexpected
        missing = [k for k in self.quant_targets if k not in self.loaded]
        for k, (_, _, current) in self.plain_targets.items():
            if k in self.loaded:
                continue
            if self.require_all_unquantized or current.device.type == "meta":
                missing.append(k)
        problems = []
        if missing:
            problems.append(f"{len(missing)} expected tensor(s) missing: {_listing(missing)}")
        if unexpected:
            problems.append(
                f"{len(unexpected)} unexpected tensor(s) not used by the model: "
                + _listing(f"{k} (in {o})" for k, o in unexpected)
            )
        if problems:
            raise ValueError(f"{source}: " + "; ".join(problems))
        if self.skipped:
            self.warnings.append(
                f"{len(self.skipped)} checkpoint tensor(s) skipped, as the model class allows: {_listing(self.skipped, 5)}"
            )
        self._fused_shard_policy()
        for name, layer in self.layers.items():
            try:
                layer.process_weights_after_loading()
            except (ValueError, TypeError) as exc:
                origin = self.origin.get(f"{name}.weight_global_scale", source)
                raise type(exc)(f"{origin}: {exc}") from None
        # Buffers computed at construction (rotary frequencies) follow the weights.
        for module in self.model.modules():
            for bname, buf in list(module._buffers.items()):
                if buf is not None and buf.device != self.device and buf.device.type != "meta":
                    module._buffers[bname] = buf.to(self.device)

    def _fused_shard_policy(self) -> None:
        """q/k/v and gate/up are separate layers here (each keeps its own exact scales), but
        vLLM fuses them and keeps max(); report unequal scales, and apply max() on request."""
        for group in fused_sibling_groups(self.layers):
            members = [self.layers[n] for n in group]
            for attr in _GLOBAL_SCALES:
                if not all(hasattr(m, attr) for m in members):
                    continue
                values = [float(getattr(m, attr).detach().reshape(-1)[0]) for m in members]
                if len(set(values)) == 1:
                    continue
                short = "/".join(n.rpartition(".")[2] for n in group)
                parent = group[0].rpartition(".")[0]
                if self.shard_scale_policy == "max":
                    top = max(values)
                    for m in members:
                        getattr(m, attr).data.fill_(top)
                    self.warnings.append(
                        f"{parent}: {short} have different {attr} {values}; set to max() = {top} as vLLM does "
                        "(shard_scale_policy='max')"
                    )
                else:
                    self.warnings.append(
                        f"{parent}: {short} have different {attr} {values}; each keeps its own (exact). vLLM fuses "
                        "them and uses max(), so its numbers differ (shard_scale_policy='max' reproduces that)"
                    )
