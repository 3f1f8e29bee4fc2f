"""nvfp4.load / nvfp4.convert on tiny random models quantized and saved by compressed-tensors
itself: logits equal, bit for bit, to a reference model written out from the same tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")

import nvfp4  # noqa: E402
from hf_tiny import (  # noqa: E402
    ct_quantize_and_save,
    float_model,
    logits,
    read_quantization_config,
    read_tensors,
    reference_model,
    tiny_config,
)

QUANT_DTYPES = {torch.uint8, torch.float8_e4m3fn, torch.float32}


def _nvfp4_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nvfp4.NVFP4Linear)}


@pytest.mark.parametrize(
    "family,sharded", [("llama", False), ("llama", True), ("mistral", False), ("qwen2", True), ("qwen3", False)]
)
def test_ct_checkpoint_loads_with_reference_logits(tmp_path, family, sharded):
    model = float_model(tiny_config(family))
    ct_quantize_and_save(model, tmp_path, max_shard_size="30KB" if sharded else None)
    assert (tmp_path / "model.safetensors.index.json").exists() == sharded

    loaded = nvfp4.load(tmp_path, backend="reference", progress=False)
    ref, _ = reference_model(tmp_path)
    assert torch.equal(logits(loaded), logits(ref))

    layers = _nvfp4_layers(loaded)
    assert len(layers) == 2 * 7 and "lm_head" not in layers
    assert isinstance(loaded.lm_head, nn.Linear) and not isinstance(loaded.lm_head, nvfp4.NVFP4Linear)
    report = loaded.nvfp4_report
    assert report.layers_ignored == ["lm_head"] and report.schemes == {"NVFP4": 14}
    assert report.run_as == "W4A4" and report.backend == "reference"
    assert len(report.files_read) == (1 if not sharded else len(list(tmp_path.glob("model-*.safetensors"))))
    text = str(report)
    assert "14 NVFP4" in text and "W4A4" in text and "reference" in text


def test_nvfp4a16_checkpoint(tmp_path):
    ct_quantize_and_save(float_model(tiny_config()), tmp_path, scheme="NVFP4A16")
    assert read_quantization_config(tmp_path)["config_groups"]["group_0"]["input_activations"] is None
    loaded = nvfp4.load(tmp_path, backend="reference", progress=False)
    ref, _ = reference_model(tmp_path)
    assert torch.equal(logits(loaded), logits(ref))
    for layer in _nvfp4_layers(loaded).values():
        assert layer.scheme.weight_only and not hasattr(layer, "input_global_scale")
    assert loaded.nvfp4_report.schemes == {"NVFP4A16": 14} and loaded.nvfp4_report.run_as == "W4A16"


def test_w4a4_checkpoint_run_weight_only(tmp_path):
    ct_quantize_and_save(float_model(tiny_config()), tmp_path)
    loaded = nvfp4.load(tmp_path, backend="reference", progress=False, weight_only=True)
    ref, _ = reference_model(tmp_path, weight_only=True)
    assert torch.equal(logits(loaded), logits(ref))
    assert loaded.nvfp4_report.run_as == "W4A16" and loaded.nvfp4_report.schemes == {"NVFP4": 14}


def test_regex_targets_and_ignores(tmp_path):
    # Only MLP projections, and not those of layer 1: re.match anchors at the start of the name.
    ct_quantize_and_save(
        float_model(tiny_config()), tmp_path, targets=[r"re:.*mlp\.(gate|up|down)_proj$"],
        ignore=["lm_head", r"re:model\.layers\.1\."],
    )
    loaded = nvfp4.load(tmp_path, backend="reference", progress=False)
    assert sorted(_nvfp4_layers(loaded)) == [f"model.layers.0.mlp.{p}_proj" for p in ("down", "gate", "up")]
    ref, _ = reference_model(tmp_path)
    assert torch.equal(logits(loaded), logits(ref))
    assert "model.layers.1.mlp.up_proj" in loaded.nvfp4_report.layers_ignored


@pytest.mark.parametrize("bias", [False, True])
def test_tied_embeddings_and_biases(tmp_path, bias):
    ct_quantize_and_save(float_model(tiny_config(tie=True, bias=bias)), tmp_path)
    tensors = read_tensors(tmp_path)
    assert "lm_head.weight" not in tensors  # the tie is stored once
    assert ("model.layers.0.self_attn.q_proj.bias" in tensors) == bias
    loaded = nvfp4.load(tmp_path, backend="reference", progress=False)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ref, _ = reference_model(tmp_path)
    assert torch.equal(logits(loaded), logits(ref))
    q = loaded.model.layers[0].self_attn.q_proj
    assert (q.bias is not None) == bias
    if bias:
        assert torch.equal(q.bias, tensors["model.layers.0.self_attn.q_proj.bias"])


def test_no_float_copy_of_quantized_weights(tmp_path):
    """Loading never creates a float tensor shaped like a quantized weight, and afterwards the
    targeted modules hold only packed FP4, FP8 scales and fp32 scalars / row vectors."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ct_quantize_and_save(float_model(tiny_config()), tmp_path)
    tensors = read_tensors(tmp_path)
    weight_shapes = {
        (v.shape[0], 2 * v.shape[1]) for k, v in tensors.items() if k.endswith(".weight_packed")
    }
    assert weight_shapes == {(64, 64), (32, 64), (96, 64), (64, 96)}  # no float tensor has these shapes

    class FloatWeightWatch(TorchDispatchMode):
        seen: list = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if (isinstance(t, torch.Tensor) and t.device.type != "meta" and t.is_floating_point()
                        and t.dim() == 2 and tuple(t.shape) in weight_shapes):
                    self.seen.append((str(func), tuple(t.shape), t.dtype))
            return out

    with FloatWeightWatch() as watch:
        loaded = nvfp4.load(tmp_path, backend="reference", progress=False)
    assert watch.seen == []

    for name, layer in _nvfp4_layers(loaded).items():
        for pname, t in list(layer.named_parameters()) + list(layer.named_buffers()):
            assert t.dtype in QUANT_DTYPES, (name, pname, t.dtype)
            assert t.dtype != torch.float32 or t.dim() <= 1, (name, pname, tuple(t.shape))
    report = loaded.nvfp4_report
    weights = 2 * sum(n * k for n, k in [(64, 64), (32, 64), (32, 64), (64, 64), (96, 64), (96, 64), (64, 96)])
    assert report.bf16_equivalent_bytes == 2 * weights
    # 4 bits + one FP8 scale per 16 weights, plus two fp32 global scales per layer.
    assert report.quantized_weight_bytes == weights // 2 + weights // 16 + 14 * 2 * 4
    assert 3.5 < report.compression < 3.56


def test_unequal_fused_shard_scales_reported_and_max_policy(tmp_path):
    ct_quantize_and_save(float_model(tiny_config()), tmp_path, fuse_global_scales=False)
    exact = nvfp4.load(tmp_path, backend="reference", progress=False)
    ref, _ = reference_model(tmp_path)
    assert torch.equal(logits(exact), logits(ref))  # each projection keeps its own scale: exact
    warnings = [w for w in exact.nvfp4_report.warnings if "q_proj/k_proj/v_proj" in w and "weight_global_scale" in w]
    assert len(warnings) == 2 and "exact" in warnings[0]
    assert any("gate_proj/up_proj" in w for w in exact.nvfp4_report.warnings)

    vllm_like = nvfp4.load(tmp_path, backend="reference", progress=False, shard_scale_policy="max")
    attn = vllm_like.model.layers[0].self_attn
    gws = [float(getattr(attn, p).weight_global_scale) for p in ("q_proj", "k_proj", "v_proj")]
    tensors = read_tensors(tmp_path)
    on_disk = [float(tensors[f"model.layers.0.self_attn.{p}.weight_global_scale"]) for p in ("q_proj", "k_proj", "v_proj")]
    assert len(set(on_disk)) > 1 and gws == [max(on_disk)] * 3
    assert not torch.equal(logits(vllm_like), logits(exact))


def test_convert_existing_model(tmp_path):
    config = tiny_config()
    ct_quantize_and_save(float_model(config, seed=3), tmp_path)
    tensors = read_tensors(tmp_path)
    holder = float_model(config, seed=4)  # a model the user already holds, with other weights
    nvfp4.convert(holder, tensors, read_quantization_config(tmp_path), backend="reference")
    ref, _ = reference_model(tmp_path)
    assert torch.equal(logits(holder), logits(ref))
    assert len(_nvfp4_layers(holder)) == 14 and holder.nvfp4_report.source == "state_dict"

    # strict: every unquantized parameter must come from the state dict.
    partial = {k: v for k, v in tensors.items() if k != "model.norm.weight"}
    with pytest.raises(ValueError, match=r"missing: model\.norm\.weight"):
        nvfp4.convert(float_model(config), partial, read_quantization_config(tmp_path))
    kept = nvfp4.convert(float_model(config), partial, read_quantization_config(tmp_path), strict=False)
    assert len(_nvfp4_layers(kept)) == 14


def test_dtype_float16_and_auto(tmp_path):
    ct_quantize_and_save(float_model(tiny_config()), tmp_path)
    fp16 = nvfp4.load(tmp_path, dtype=torch.float16, backend="reference", progress=False)
    assert fp16.model.embed_tokens.weight.dtype == torch.float16
    ref, _ = reference_model(tmp_path, dtype=torch.float16)
    assert torch.equal(logits(fp16), logits(ref))
    auto = nvfp4.load(tmp_path, dtype="auto", backend="reference", progress=False)
    assert auto.model.embed_tokens.weight.dtype == torch.bfloat16  # config.json says bfloat16


def test_shard_scale_policy_from_environment_and_bad_arguments(tmp_path, monkeypatch):
    ct_quantize_and_save(float_model(tiny_config()), tmp_path, fuse_global_scales=False)
    monkeypatch.setenv("NVFP4_SHARD_SCALES", "max")
    attn = nvfp4.load(tmp_path, backend="reference", progress=True).model.layers[0].self_attn
    assert len({float(getattr(attn, p).weight_global_scale) for p in ("q_proj", "k_proj", "v_proj")}) == 1
    monkeypatch.delenv("NVFP4_SHARD_SCALES")
    with pytest.raises(ValueError, match="shard_scale_policy must be one of"):
        nvfp4.load(tmp_path, progress=False, shard_scale_policy="min")
    with pytest.raises(ValueError, match="dtype must be one of"):
        nvfp4.load(tmp_path, progress=False, dtype="int8")
    with pytest.raises(ValueError, match=r"^unknown NVFP4 backend .nope. \(from argument\)"):
        nvfp4.load(tmp_path, progress=False, backend="nope")
