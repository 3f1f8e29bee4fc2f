"""Helpers for the model-level tests: tiny random transformers models, checkpoints written
by the compressed-tensors package's own pipeline, and an independent reference model.

The checkpoint writer follows llm-compressor's recipe with compressed-tensors' pieces:
``apply_quantization_config`` -> observe min/max (weights per tensor and per group of 16,
inputs by forward pre-hooks) -> ``generate_gparam`` / ``calculate_qparams`` (q/k/v and
gate/up take the min of their global scales, as ``update_fused_layer_weight_global_scales``
does) -> ``ModelCompressor.compress_model`` -> ``save_pretrained`` + ``update_config``.
"""

from __future__ import annotations

import glob
import json
import os

import torch
from torch import nn

from nvfp4.numerics import nvfp4_matmul_reference, quantize_activation, w4a16_matmul_reference

VOCAB = 128


def tiny_config(family: str = "llama", tie: bool = False, bias: bool = False):
    import transformers

    common = dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=tie,
    )
    if family == "llama":
        return transformers.LlamaConfig(attention_bias=bias, mlp_bias=bias, **common)
    if family == "mistral":
        return transformers.MistralConfig(**common)
    if family == "qwen2":
        return transformers.Qwen2Config(**common)  # q/k/v carry biases
    if family == "qwen3":
        return transformers.Qwen3Config(head_dim=16, **common)  # q_norm / k_norm
    raise ValueError(family)


def float_model(config, seed: int = 0, dtype=torch.bfloat16):
    """A random model built as ``from_pretrained`` builds it (rotary tables stay float32)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():  # larger, varied weights than the default init: more FP4 codes in play
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.05 + 0.05 * torch.rand(()).item())
            elif "bias" in name:
                p.normal_(0, 0.02)
    return model.eval()


def calibration_tokens(n: int = 3, length: int = 12, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (length,), generator=g) for _ in range(n)]


def ct_quantize_and_save(model, directory, scheme="NVFP4", targets=("Linear",), ignore=("lm_head",),
                         calibration=None, fuse_global_scales=True, max_shard_size=None):
    """Quantize ``model`` with compressed-tensors' own functions and save it in its format."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationConfig,
        apply_quantization_config,
        disable_quantization,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam

    qconfig = QuantizationConfig(
        config_groups={"group_0": preset_name_to_scheme(scheme, list(targets))}, ignore=list(ignore)
    )
    apply_quantization_config(model, qconfig)
    quantized = {n: m for n, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None}
    amax = {}
    if scheme == "NVFP4":
        def observe(name):
            def hook(_m, args):
                a = args[0].detach().abs().amax()
                amax[name] = a if name not in amax else torch.maximum(amax[name], a)
            return hook

        handles = [m.register_forward_pre_hook(observe(n)) for n, m in quantized.items()]
        model.apply(disable_quantization)
        with torch.no_grad():
            for ids in calibration or calibration_tokens():
                model(input_ids=ids.reshape(1, -1), use_cache=False)
        for h in handles:
            h.remove()
    with torch.no_grad():
        for name, m in quantized.items():
            w = m.weight
            m.weight_global_scale.copy_(generate_gparam(w.min(), w.max()))
            if scheme == "NVFP4":
                m.input_global_scale.copy_(generate_gparam(-amax[name], amax[name]))
        if fuse_global_scales:
            for name, m in model.named_modules():
                for members in (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")):
                    subs = [getattr(m, s, None) for s in members]
                    if all(s is not None and getattr(s, "quantization_scheme", None) is not None for s in subs):
                        g = torch.stack([s.weight_global_scale for s in subs]).min()
                        for s in subs:
                            s.weight_global_scale.fill_(g)
        for name, m in quantized.items():
            groups = m.weight.unflatten(-1, (-1, 16))
            scale, _ = calculate_qparams(groups.amin(-1), groups.amax(-1), m.quantization_scheme.weights,
                                         global_scale=m.weight_global_scale)
            m.weight_scale.copy_(scale)
    compressor = ModelCompressor.from_pretrained_model(model, "nvfp4-pack-quantized")
    compressor.compress_model(model)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(directory), **kw)
    compressor.update_config(str(directory))
    return directory


def read_tensors(directory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(glob.glob(os.path.join(str(directory), "*.safetensors"))):
        tensors.update(load_file(f))
    return tensors


def read_quantization_config(directory) -> dict:
    with open(os.path.join(str(directory), "config.json")) as fh:
        return json.load(fh)["quantization_config"]


class ReferenceNVFP4Linear(nn.Module):
    """The exact NVFP4 forward written out from checkpoint tensors (no nvfp4 layers involved)."""

    def __init__(self, tensors: dict[str, torch.Tensor], weight_only: bool):
        super().__init__()
        self.t = tensors
        self.weight_only = weight_only

    def forward(self, x):
        t = self.t
        lead, k = x.shape[:-1], x.shape[-1]
        x2d = x.reshape(-1, k)
        gw = t["weight_global_scale"].float()
        bias = t.get("bias")
        if self.weight_only:
            y = w4a16_matmul_reference(x2d, t["weight_packed"], t["weight_scale"], (1.0 / gw).expand(t["weight_packed"].shape[0]), x.dtype, bias)
        else:
            gx = t["input_global_scale"].float()
            xp, xs = quantize_activation(x2d, gx)
            alpha = (1.0 / (gx * gw)).expand(t["weight_packed"].shape[0])
            y = nvfp4_matmul_reference(xp, xs, t["weight_packed"], t["weight_scale"], alpha, x.dtype, bias)
        return y.reshape(*lead, -1)


def reference_model(directory, weight_only: bool | None = None, dtype=torch.bfloat16):
    """The checkpoint's model with every quantized linear computed by ``ReferenceNVFP4Linear``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(directory))
    qc = config.quantization_config
    del config.quantization_config
    tensors = read_tensors(directory)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    prefixes = {k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_packed")}
    for prefix in prefixes:
        local = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        w_only = "input_global_scale" not in local if weight_only is None else weight_only
        parent, _, child = prefix.rpartition(".")
        setattr(model.get_submodule(parent), child, ReferenceNVFP4Linear(local, w_only))
    plain = {k: v for k, v in tensors.items() if k.rsplit(".", 1)[0] not in prefixes}
    missing, unexpected = model.load_state_dict(plain, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= ({"lm_head.weight"} if config.tie_word_embeddings else set()), missing
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval(), qc


def logits(model, ids=None):
    ids = ids if ids is not None else torch.arange(3, 3 + 2 * 11, 2).reshape(1, -1) % VOCAB
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits
