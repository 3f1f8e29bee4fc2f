"""nvfp4.quantize_model + nvfp4.save: bit-exact with compressed-tensors' own pipeline, loadable
by compressed-tensors and by nvfp4.load with the in-memory model's logits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")

import nvfp4  # noqa: E402
from hf_tiny import (  # noqa: E402
    VOCAB,
    calibration_tokens,
    ct_quantize_and_save,
    float_model,
    logits,
    read_tensors,
    tiny_config,
)
from nvfp4.integrations.export import model_state_dict  # noqa: E402


def _quantize(model, scheme="NVFP4", **kw):
    kw.setdefault("calibration", calibration_tokens() if scheme == "NVFP4" else None)
    return nvfp4.quantize_model(model, scheme=scheme, backend="reference", progress=False, **kw)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("scheme", ["NVFP4", "NVFP4A16"])
def test_bit_exact_with_compressed_tensors_pipeline(tmp_path, dtype, scheme):
    model = float_model(tiny_config(bias=True), dtype=dtype)
    ct_quantize_and_save(copy.deepcopy(model), tmp_path, scheme=scheme)
    theirs = read_tensors(tmp_path)
    ours = model_state_dict(_quantize(model, scheme))
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype, key
        assert torch.equal(ours[key], theirs[key]), key
    assert sum(k.endswith("input_global_scale") for k in ours) == (14 if scheme == "NVFP4" else 0)


def test_fused_projections_share_one_weight_global_scale():
    model = float_model(tiny_config())
    attn0 = model.model.layers[0].self_attn
    expected = nvfp4.weight_global_scale(*(p.weight.detach() for p in (attn0.q_proj, attn0.k_proj, attn0.v_proj)))
    mlp0 = model.model.layers[0].mlp
    expected_mlp = nvfp4.weight_global_scale(mlp0.gate_proj.weight.detach(), mlp0.up_proj.weight.detach())
    alone = nvfp4.weight_global_scale(attn0.o_proj.weight.detach())
    _quantize(model)
    attn0, mlp0 = model.model.layers[0].self_attn, model.model.layers[0].mlp
    for p in (attn0.q_proj, attn0.k_proj, attn0.v_proj):
        assert torch.equal(p.weight_global_scale, expected)
    for p in (mlp0.gate_proj, mlp0.up_proj):
        assert torch.equal(p.weight_global_scale, expected_mlp)
    assert torch.equal(attn0.o_proj.weight_global_scale, alone)
    # The members really had different maxima: sharing is not a coincidence.
    assert len({float(nvfp4.weight_global_scale(p.weight.detach())) for p in (
        float_model(tiny_config()).model.layers[0].self_attn.get_submodule(n) for n in ("q_proj", "k_proj", "v_proj"))}) > 1


@pytest.mark.parametrize("tie,shard", [(False, None), (True, "20KB")])
@pytest.mark.parametrize("scheme", ["NVFP4", "NVFP4A16"])
def test_save_then_load_equals_in_memory_model(tmp_path, tie, shard, scheme):
    model = _quantize(float_model(tiny_config(tie=tie)), scheme)
    expected = logits(model)
    nvfp4.save(model, tmp_path / "out", max_shard_size=shard)
    out = tmp_path / "out"
    assert (out / "model.safetensors.index.json").exists() == (shard is not None)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["format"] == "nvfp4-pack-quantized" and qc["ignore"] == ["lm_head"]
    assert (qc["config_groups"]["group_0"]["input_activations"] is None) == (scheme == "NVFP4A16")
    loaded = nvfp4.load(out, backend="reference", progress=False)
    assert torch.equal(logits(loaded), expected)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tie
    # What was loaded saves back to the same bytes.
    nvfp4.save(loaded, tmp_path / "again")
    again, first = read_tensors(tmp_path / "again"), read_tensors(out)
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)


def _compressed_tensors_model(directory):
    """Load a checkpoint the way transformers' compressed-tensors integration does, strictly."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(directory))
    qconfig = QuantizationConfig.model_validate(config.quantization_config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    apply_quantization_config(model, qconfig)
    compressor = ModelCompressor(quantization_config=qconfig)
    compressor.compress_model(model)
    model.load_state_dict(read_tensors(directory), strict=True)  # every key on both sides
    compressor.decompress_model(model)
    return model.eval()


@pytest.mark.parametrize("scheme", ["NVFP4", "NVFP4A16"])
def test_compressed_tensors_loads_what_we_write(tmp_path, scheme):
    model = _quantize(float_model(tiny_config()), scheme)
    nvfp4.save(model, tmp_path)
    theirs = _compressed_tensors_model(tmp_path)
    for name, layer in model.named_modules():
        if not isinstance(layer, nvfp4.NVFP4Linear):
            continue
        ct_layer = theirs.get_submodule(name)
        ours = nvfp4.dequantize_weight(layer.weight_packed, layer.weight_scale, layer.weight_global_scale, torch.bfloat16)
        assert torch.equal(ct_layer.weight, ours), name
        if scheme == "NVFP4":
            assert torch.equal(ct_layer.input_global_scale, layer.input_global_scale), name
    # compressed-tensors runs its own fake quantization: it rounds amax/6 to bf16 before the
    # FP8 rounding (vLLM, and we, compute it in fp32), so a block scale near an FP8 midpoint can
    # land one FP8 step away (e.g. 416 instead of 384), and it rounds dequantized operands to
    # bf16. Each layer can therefore only be close to ours: 2 % for W4A16 and 10 % for W4A4 of
    # the largest output; a wrong scale direction or a mixed-up tensor is off by far more.
    bound = 0.1 if scheme == "NVFP4" else 0.02
    torch.manual_seed(0)
    for name, layer in model.named_modules():
        if isinstance(layer, nvfp4.NVFP4Linear):
            # Inside the calibrated range (|x| <= 448*6/Gx), where neither side saturates.
            amax = 448 * 6 / float(getattr(layer, "input_global_scale", torch.ones(1)))
            x = (torch.rand(7, layer.in_features) * 2 - 1).mul(0.9 * amax).to(torch.bfloat16)
            with torch.no_grad():
                ours, ct = layer(x).float(), theirs.get_submodule(name)(x).float()
            assert (ours - ct).abs().max() <= bound * ours.abs().max(), name


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{chr(i): i - 31 for i in range(32, 127)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_text_calibration_with_tokenizer_and_max_seq_len(tmp_path):
    tok = _char_tokenizer()
    texts = ["The quick brown fox jumps over the lazy dog.", "NVFP4: 4-bit floats, 16 per FP8 scale!"]
    from_text = _quantize(float_model(tiny_config()), calibration=texts, tokenizer=tok, max_seq_len=20)
    ids = [tok(t, return_tensors="pt")["input_ids"][0, :20] for t in texts]
    from_ids = _quantize(float_model(tiny_config()), calibration=ids)
    longer = _quantize(float_model(tiny_config()), calibration=[tok(t, return_tensors="pt")["input_ids"][0] for t in texts])
    gx = lambda m: [float(l.input_global_scale) for l in m.modules() if isinstance(l, nvfp4.NVFP4Linear)]  # noqa: E731
    assert gx(from_text) == gx(from_ids)
    assert gx(from_text) != gx(longer)  # the truncation to max_seq_len mattered

    nvfp4.save(from_text, tmp_path / "ckpt", tokenizer=tok)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tmp_path / "ckpt"))("fox")["input_ids"] == tok("fox")["input_ids"]


def test_report_and_memory_after_quantization():
    model = _quantize(float_model(tiny_config()))
    report = model.nvfp4_report
    assert report.schemes == {"NVFP4": 14} and report.layers_ignored == ["lm_head"] and report.backend == "reference"
    for layer in model.modules():
        if isinstance(layer, nvfp4.NVFP4Linear):
            floats = (torch.bfloat16, torch.float16, torch.float32)
            assert not any(p.dtype in floats and p.dim() == 2 for p in layer.parameters())
    assert "14 NVFP4" in str(report)


def test_regex_ignore_and_targets():
    model = _quantize(float_model(tiny_config()), targets=[r"re:.*self_attn\."], ignore=["lm_head", r"re:.*o_proj$"])
    names = sorted(n for n, m in model.named_modules() if isinstance(m, nvfp4.NVFP4Linear))
    assert names == [f"model.layers.{i}.self_attn.{p}_proj" for i in (0, 1) for p in ("k", "q", "v")]
    assert "model.layers.0.mlp.up_proj" in model.nvfp4_config.ignore  # saved configs name every float linear


class TwoLayer(nn.Module):
    def __init__(self, k=32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, k)
        self.up = nn.Linear(k, 32)
        self.unused = nn.Linear(32, 32)

    def forward(self, ids):
        return self.up(self.embed(ids))


def test_bad_arguments(tmp_path):
    cfg = tiny_config()
    with pytest.raises(ValueError, match="calibration is required"):
        nvfp4.quantize_model(float_model(cfg), None, progress=False)
    with pytest.raises(TypeError, match=r"calibration\[0\] is a text; pass tokenizer="):
        nvfp4.quantize_model(float_model(cfg), ["hello"], progress=False)
    with pytest.raises(TypeError, match=r"calibration\[1\]: token ids must be an integer tensor"):
        nvfp4.quantize_model(float_model(cfg), [torch.ones(4, dtype=torch.long), torch.ones(4)], progress=False)
    with pytest.raises(ValueError, match=rf"token ids must lie in \[0, {VOCAB}\)"):
        nvfp4.quantize_model(float_model(cfg), [torch.tensor([1, VOCAB])], progress=False)
    with pytest.raises(ValueError, match="scheme must be one of"):
        nvfp4.quantize_model(float_model(cfg), calibration_tokens(), scheme="FP8", progress=False)
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        nvfp4.quantize_model(float_model(cfg), calibration_tokens(), targets=["re:nothing"], progress=False)
    with pytest.raises(ValueError, match=r"up: in_features = 24 is not a multiple of the NVFP4 group size 16"):
        nvfp4.quantize_model(TwoLayer(k=24), [torch.arange(5)], ignore=[], progress=False)
    with pytest.raises(ValueError, match=r"1 layer\(s\) saw no calibration input.*unused"):
        nvfp4.quantize_model(TwoLayer(), [torch.arange(5)], ignore=[], progress=False)
    with pytest.raises(ValueError, match="has no NVFP4 layers"):
        nvfp4.save(float_model(cfg), tmp_path / "x")


def test_plain_module_and_save_refuses_to_clobber(tmp_path):
    model = nvfp4.quantize_model(TwoLayer(), [torch.arange(7)], ignore=["unused"], progress=False)
    assert isinstance(model.up, nvfp4.NVFP4Linear) and isinstance(model.unused, nn.Linear)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        nvfp4.save(model, tmp_path / "busy")
    nvfp4.save(model, tmp_path / "busy", overwrite=True)
    tensors = read_tensors(tmp_path / "busy")
    assert sorted(tensors) == sorted(
        ["embed.weight", "unused.weight", "unused.bias"]
        + [f"up.{p}" for p in ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale", "bias")]
    )
    assert not (tmp_path / "busy" / "keep").exists()


def test_tied_lm_head_is_not_quantized_silently(tmp_path):
    model = float_model(tiny_config(tie=True))
    with pytest.raises(ValueError, match=r"lm_head\.weight is shared with model\.embed_tokens\.weight .*add 'lm_head' to ignore="):
        nvfp4.quantize_model(model, calibration_tokens(), ignore=[], progress=False)
    untied = nvfp4.quantize_model(float_model(tiny_config()), calibration_tokens(), ignore=[], progress=False)
    assert isinstance(untied.lm_head, nvfp4.NVFP4Linear)
    nvfp4.save(untied, tmp_path / "all")
    assert json.loads((tmp_path / "all" / "config.json").read_text())["quantization_config"]["ignore"] == []
    loaded = nvfp4.load(tmp_path / "all", backend="reference", progress=False)
    assert isinstance(loaded.lm_head, nvfp4.NVFP4Linear) and torch.equal(logits(loaded), logits(untied))
