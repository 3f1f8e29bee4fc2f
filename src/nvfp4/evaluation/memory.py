"""How many bytes a model's weights take, and what the same model would take in bf16.

Counts every parameter and buffer once (tied embeddings share storage and count once).
Weights of NVFP4 layers (packed FP4, FP8 block scales, global scales, alpha) are counted as
they sit in memory, including anything a backend added in ``prepare``; the bf16 equivalent
counts those layers as ``N*K`` bf16 values and everything else at 2 bytes per element.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class WeightMemory:
    total_bytes: int  # everything the model holds (parameters and buffers)
    quantized_bytes: int  # the NVFP4 layers' tensors
    other_bytes: int  # embeddings, norms, unquantized layers
    quantized_layers: int
    bf16_equivalent_bytes: int  # the same model with every weight in bf16

    @property
    def ratio(self) -> float:
        return self.total_bytes / self.bf16_equivalent_bytes if self.bf16_equivalent_bytes else float("nan")


def _is_nvfp4_layer(module) -> bool:
    return hasattr(module, "weight_packed") and hasattr(module, "weight_scale") and hasattr(module, "in_features")


def _key(t: torch.Tensor):
    # Storage identity: a tied weight is the same storage seen from two modules.
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)


def weight_memory(model: torch.nn.Module) -> WeightMemory:
    seen: set = set()
    quantized_bytes = other_bytes = bf16_bytes = 0
    layers = 0
    quantized_tensor_ids: set = set()
    for module in model.modules():
        if not _is_nvfp4_layer(module):
            continue
        layers += 1
        for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
            k = _key(t)
            if k in seen:
                continue
            seen.add(k)
            quantized_tensor_ids.add(k)
            quantized_bytes += t.numel() * t.element_size()
        bf16_bytes += module.out_features * module.in_features * 2
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            bf16_bytes += bias.numel() * 2
    for t in list(model.parameters()) + list(model.buffers()):
        k = _key(t)
        if k in seen:
            continue
        seen.add(k)
        other_bytes += t.numel() * t.element_size()
        if t.is_floating_point():
            bf16_bytes += t.numel() * 2
        else:
            bf16_bytes += t.numel() * t.element_size()
    return WeightMemory(
        total_bytes=quantized_bytes + other_bytes,
        quantized_bytes=quantized_bytes,
        other_bytes=other_bytes,
        quantized_layers=layers,
        bf16_equivalent_bytes=bf16_bytes,
    )


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
