"""Replacing a model's targeted ``nn.Linear`` modules by ``NVFP4Linear`` (any ``nn.Module``
tree: Hugging Face models, plain PyTorch), and finding the projections that vLLM fuses.

The new layers are created directly on the target device with the exact buffer shapes of
the checkpoint (``weight_packed`` uint8 ``[N, K/2]``, ``weight_scale`` e4m3 ``[N, K/16]``,
global scales fp32) and are empty until loaded: no float weight is ever built for them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checkpoint.config import NVFP4Config
from ..layers import NVFP4Linear

# Sibling projections that vLLM fuses into one layer (qkv_proj, gate_up_proj) and that
# llm-compressor quantizes with one shared weight global scale.
FUSED_SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def targeted_linears(model: nn.Module, config: NVFP4Config) -> tuple[dict[str, tuple[nn.Linear, object]], list[str]]:
    """``({name: (linear, group)}, ignored_names)`` over the model's ``nn.Linear`` modules."""
    targeted, ignored = {}, []
    for name, module in model.named_modules():
        if isinstance(module, NVFP4Linear):
            continue
        if isinstance(module, nn.Linear):
            group = config.group_for(name, module)
            if group is None:
                ignored.append(name)
            else:
                targeted[name] = (module, group)
    return targeted, ignored


def swap_linears(
    model: nn.Module,
    config: NVFP4Config,
    *,
    dtype: torch.dtype,
    device: torch.device,
    backend: str | None = None,
    weight_only: bool = False,
    shard_scale_policy: str | None = None,
) -> tuple[dict[str, NVFP4Linear], list[str]]:
    """Swap every targeted ``nn.Linear`` for an empty ``NVFP4Linear``; returns the new layers
    by name and the names of the linear modules left as they are."""
    targeted, ignored = targeted_linears(model, config)
    layers = {}
    for name, (linear, group) in targeted.items():
        layer = NVFP4Linear(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            dtype=dtype,
            device=device,
            scheme="w4a16" if group.weight_only else "w4a4",
            weight_only=weight_only,
            backend=backend,
            shard_scale_policy=shard_scale_policy,
            prefix=name,
        )
        layer.nvfp4_group = group.name
        set_submodule(model, name, layer)
        layers[name] = layer
    return layers, ignored


def fused_sibling_groups(names) -> list[list[str]]:
    """Groups of layer names that vLLM would fuse: ``[...q_proj, ...k_proj, ...v_proj]`` and
    ``[...gate_proj, ...up_proj]`` under one parent, when every member is present."""
    present = set(names)
    groups = []
    parents = sorted({n.rpartition(".")[0] for n in present})
    for parent in parents:
        prefix = f"{parent}." if parent else ""
        for members in FUSED_SIBLINGS:
            full = [prefix + m for m in members]
            if all(f in present for f in full):
                groups.append(full)
    return groups
