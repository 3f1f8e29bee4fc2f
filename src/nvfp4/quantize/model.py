"""``quantize_model``: turn a float model's linear layers into NVFP4 layers, as llm-compressor
does for its ``NVFP4`` / ``NVFP4A16`` presets, bit-exact in the weights.

* weights: ``quantize_weight`` (compressed-tensors semantics). q/k/v and gate/up of one
  block share one weight global scale ``Gw = 448*6 / max|W|`` over the group, as
  llm-compressor's ``update_fused_layer_weight_global_scales`` makes them (its min() of the
  per-layer ``Gw`` equals ``Gw`` of the group max, rounding being monotone);
* activations (``NVFP4`` only): ``Gx`` by static min-max over the calibration set
  (``calibration.py``).

The model is changed in place (its float linears are dropped as they are replaced) and
returned with ``model.nvfp4_config`` (what ``nvfp4.save`` writes) and ``model.nvfp4_report``.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..checkpoint.config import SCHEMES, build_quantization_config, parse_quantization_config
from ..integrations.hf import build_report
from ..integrations.swap import fused_sibling_groups, set_submodule, targeted_linears
from ..layers import NVFP4Linear
from ..numerics import GROUP_SIZE, weight_global_scale
from .calibration import collect_input_amax, input_global_scales, prepare_calibration


def _shared_weight_scales(linears: dict[str, nn.Linear]) -> dict[str, torch.Tensor]:
    """``Gw`` per layer; the members of a fused group (q/k/v, gate/up) share one."""
    scales = {}
    for group in fused_sibling_groups(linears):
        weights = [linears[n].weight.detach() for n in group]
        if len({w.dtype for w in weights}) == 1:
            gw = weight_global_scale(*weights)
            scales.update({n: gw for n in group})
    for name, linear in linears.items():
        if name not in scales:
            scales[name] = weight_global_scale(linear.weight.detach())
    return scales


def _refuse_shared_weights(model: nn.Module, linears: dict[str, nn.Linear]) -> None:
    """A targeted weight that another module also uses (tied lm_head / embeddings) cannot be
    quantized without silently untying them; loaders that honour the tie would then ignore it."""
    owners: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    for name, linear in linears.items():
        names = owners.get(id(linear.weight), [])
        others = [n for n in names if n != f"{name}.weight"]
        if others:
            raise ValueError(
                f"{name}.weight is shared with {', '.join(others)} (tied weights, e.g. tie_word_embeddings); "
                f"add {name!r} to ignore="
            )


def _quantized_layer(name: str, linear: nn.Linear, gw: torch.Tensor, gx: torch.Tensor | None, weight_only: bool,
                     backend: str | None) -> NVFP4Linear:
    try:
        return NVFP4Linear.from_linear(
            linear, input_global_scale=gx, weight_only=weight_only, backend=backend, weight_global_scale=gw,
            prefix=name,
        )
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def quantize_model(
    model: nn.Module,
    calibration=None,
    ignore=("lm_head",),
    scheme: str = "NVFP4",
    tokenizer=None,
    max_seq_len: int = 512,
    progress: bool = True,
    *,
    targets=("Linear",),
    backend: str | None = None,
) -> nn.Module:
    """Quantize ``model``'s linear layers to NVFP4 in place and return it.

    ``calibration``: token-id tensors (``[T]`` or ``[B, T]``), or texts with ``tokenizer``;
    required for ``scheme="NVFP4"`` (W4A4), unused for ``"NVFP4A16"`` (weight-only).
    ``ignore``/``targets``: class names, exact module names or ``re:`` patterns (matched
    with ``re.match``), as in compressed-tensors configs.
    """
    start = time.perf_counter()
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if isinstance(ignore, str):
        ignore = [ignore]
    if isinstance(targets, str):
        targets = [targets]
    weight_only = scheme == "NVFP4A16"
    selection = parse_quantization_config(build_quantization_config(scheme, ignore=list(ignore), targets=list(targets)))
    targeted, ignored = targeted_linears(model, selection)
    if not targeted:
        raise ValueError(f"quantize_model: no nn.Linear matches targets={list(targets)} outside ignore={list(ignore)}")
    for name, (linear, _) in targeted.items():
        if linear.in_features % GROUP_SIZE:
            raise ValueError(
                f"{name}: in_features = {linear.in_features} is not a multiple of the NVFP4 group size {GROUP_SIZE}; "
                "add it to ignore="
            )
        if linear.weight.device.type == "meta":
            raise ValueError(f"{name}: weight is on the meta device; load the float model's weights first")
    linears = {name: linear for name, (linear, _) in targeted.items()}
    _refuse_shared_weights(model, linears)

    warnings: list[str] = []
    gx: dict[str, torch.Tensor] = {}
    if not weight_only:
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        samples = prepare_calibration(calibration, tokenizer, max_seq_len, vocab)
        gx, warnings = input_global_scales(collect_input_amax(model, linears, samples, progress))
    gw = _shared_weight_scales(linears)

    from tqdm.auto import tqdm

    layers = {}
    with torch.no_grad():
        for name, linear in tqdm(list(linears.items()), desc="Quantizing", unit="layer", disable=not progress):
            layer = _quantized_layer(name, linear, gw[name], gx.get(name), weight_only, backend)
            set_submodule(model, name, layer)
            layers[name] = layer

    # What nvfp4.save writes: every linear left in float is named in "ignore".
    qc = build_quantization_config(scheme, ignore=sorted(ignored), targets=["Linear"])
    model.nvfp4_config = parse_quantization_config(qc)
    first = next(iter(layers.values()))
    model.nvfp4_report = build_report(
        model, layers, ignored, source="quantize_model", device=str(first.weight_packed.device),
        dtype=str(first.params_dtype).replace("torch.", ""), warnings=warnings, seconds=time.perf_counter() - start,
        other_weight_bytes=sum(
            p.numel() * p.element_size()
            for n, p in model.named_parameters()
            if not any(n.startswith(f"{ln}.") for ln in layers)
        ),
    )
    return model
