"""Calibration for W4A4: the activation global scale ``Gx`` of every quantized linear layer.

Each layer's ``Gx = 448*6 / max|x|`` over everything it sees while the model runs over the
calibration set (llm-compressor's ``static_minmax`` observer), computed in the activations'
dtype exactly as compressed-tensors' ``generate_gparam`` does. Inputs are observed with
forward pre-hooks on the *float* model. llm-compressor instead fake-quantizes while it
calibrates ("quantize at the same time as calibrate"), so each layer sees the outputs of
already-quantized earlier layers and its ``Gx`` can differ slightly from ours; the weights
are bit-exact either way.
"""

from __future__ import annotations

import torch
from torch import nn

from ..numerics import global_scale_from_amax


def prepare_calibration(calibration, tokenizer=None, max_seq_len: int = 512, vocab_size: int | None = None) -> list[torch.Tensor]:
    """Turn token-id tensors, or texts with a tokenizer, into ``[1, T]`` int64 tensors
    (each truncated to ``max_seq_len`` tokens)."""
    if calibration is None:
        raise ValueError("calibration is required for the NVFP4 (W4A4) scheme: a list of token-id tensors or texts")
    if isinstance(calibration, (str, torch.Tensor)):
        calibration = [calibration]
    samples = []
    for i, item in enumerate(calibration):
        if isinstance(item, str):
            if tokenizer is None:
                raise TypeError(f"calibration[{i}] is a text; pass tokenizer= to tokenize it")
            ids = tokenizer(item, return_tensors="pt")["input_ids"]
        elif isinstance(item, torch.Tensor):
            ids = item
        else:
            raise TypeError(f"calibration[{i}] must be a token-id tensor or a text, got {type(item).__name__}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"calibration[{i}]: token ids must be an integer tensor, got {ids.dtype}")
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2:
            raise ValueError(f"calibration[{i}]: expected token ids of shape [T] or [B, T], got {tuple(ids.shape)}")
        ids = ids[:, :max_seq_len].to(torch.long)
        if ids.numel() == 0:
            continue
        if vocab_size is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            raise ValueError(f"calibration[{i}]: token ids must lie in [0, {vocab_size}), got {int(ids.min())}..{int(ids.max())}")
        samples.append(ids)
    if not samples:
        raise ValueError("calibration holds no tokens")
    return samples


@torch.no_grad()
def collect_input_amax(
    model: nn.Module, layers: dict[str, nn.Module], samples: list[torch.Tensor], progress: bool = True
) -> dict[str, torch.Tensor]:
    """``max|x|`` (in the input's dtype) of every layer's input over all calibration samples."""
    from tqdm.auto import tqdm

    amax: dict[str, torch.Tensor] = {}

    def observe(name):
        def hook(_module, args):
            x = args[0].detach()
            if x.numel() == 0:
                return
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name}: calibration input contains NaN or Inf")
            m = x.abs().amax()
            amax[name] = m if name not in amax else torch.maximum(amax[name], m.to(amax[name].dtype))

        return hook

    device = next((p.device for p in model.parameters() if p.device.type != "meta"), torch.device("cpu"))
    handles = [layer.register_forward_pre_hook(observe(name)) for name, layer in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for ids in tqdm(samples, desc="Calibrating", unit="sample", disable=not progress):
            if _accepts_use_cache(model):  # a transformers model: no KV cache needed
                model(input_ids=ids.to(device), use_cache=False)
            else:
                model(ids.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    silent = [n for n in layers if n not in amax]
    if silent:
        raise ValueError(
            f"{len(silent)} layer(s) saw no calibration input (not reached by the forward pass): "
            + ", ".join(silent[:10]) + (" ..." if len(silent) > 10 else "")
            + "; add them to ignore= or quantize with scheme='NVFP4A16'"
        )
    return amax


def _accepts_use_cache(model: nn.Module) -> bool:
    return hasattr(getattr(model, "config", None), "use_cache")


def input_global_scales(amax: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``Gx`` per layer, and warnings for layers whose inputs were all zero (``Gx`` = 1.0)."""
    scales, warnings = {}, []
    for name, a in amax.items():
        scales[name] = global_scale_from_amax(a, "input")
        if float(a) == 0.0:
            warnings.append(f"{name}: every calibration input was zero; input_global_scale set to 1.0 (as compressed-tensors does)")
    return scales, warnings
