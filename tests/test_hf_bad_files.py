"""Bad checkpoints: each fails with a clear message naming the file and the tensor or field."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")

from safetensors.torch import load_file, save_file  # noqa: E402

import nvfp4  # noqa: E402
from hf_tiny import ct_quantize_and_save, float_model, tiny_config  # noqa: E402

LAYER = "model.layers.1.mlp.down_proj"


@pytest.fixture(scope="module")
def good_single(tmp_path_factory):
    path = tmp_path_factory.mktemp("good_single")
    return ct_quantize_and_save(float_model(tiny_config()), path)


@pytest.fixture(scope="module")
def good_sharded(tmp_path_factory):
    path = tmp_path_factory.mktemp("good_sharded")
    return ct_quantize_and_save(float_model(tiny_config()), path, max_shard_size="30KB")


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _edit_tensors(directory, edit):
    file = directory / "model.safetensors"
    tensors = load_file(str(file))
    edit(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})
    return file


def _edit_config(directory, edit):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    return path


def _load(path):
    return nvfp4.load(path, backend="reference", progress=False)


def test_truncated_safetensors(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    file = bad / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated or corrupt"):
        _load(bad)


def test_truncated_shard(good_sharded, tmp_path):
    bad = _copy(good_sharded, tmp_path / "ckpt")
    shard = sorted(bad.glob("model-*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{shard.name}.*truncated or corrupt"):
        _load(bad)


def test_index_names_a_missing_file(good_sharded, tmp_path):
    bad = _copy(good_sharded, tmp_path / "ckpt")
    shard = sorted(bad.glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(ValueError, match=rf"{shard.name}: listed in model\.safetensors\.index\.json but not found"):
        _load(bad)


def test_missing_tensor(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_tensors(bad, lambda t: t.pop(f"{LAYER}.weight_scale"))
    with pytest.raises(ValueError, match=rf"1 expected tensor\(s\) missing: {LAYER}\.weight_scale"):
        _load(bad)


def test_missing_unquantized_tensor(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_tensors(bad, lambda t: t.pop("model.norm.weight"))
    with pytest.raises(ValueError, match=r"missing: model\.norm\.weight"):
        _load(bad)


def test_unexpected_tensor(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_tensors(bad, lambda t: t.update({f"{LAYER}.weight_zero_point": torch.zeros(4), "model.extra.weight": torch.ones(2)}))
    with pytest.raises(ValueError, match=r"2 unexpected tensor\(s\).*model\.extra\.weight \(in .*model\.safetensors\)"):
        _load(bad)


@pytest.mark.parametrize(
    "name,value,error,message",
    [
        ("weight_packed", torch.zeros(64, 40, dtype=torch.uint8), ValueError, r"expected shape \(64, 48\), got \(64, 40\)"),
        ("weight_scale", torch.zeros(64, 5, dtype=torch.float8_e4m3fn), ValueError, r"expected shape \(64, 6\)"),
        ("weight_packed", torch.zeros(64, 48, dtype=torch.int8), TypeError, r"expected dtype torch\.uint8, got torch\.int8"),
        ("weight_scale", torch.zeros(64, 6, dtype=torch.bfloat16), TypeError, r"expected dtype torch\.float8_e4m3fn"),
        ("weight_global_scale", torch.ones(1, dtype=torch.int32), TypeError, r"global scale must be float32"),
    ],
)
def test_wrong_shape_or_dtype(good_single, tmp_path, name, value, error, message):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_tensors(bad, lambda t: t.update({f"{LAYER}.{name}": value}))
    with pytest.raises(error, match=rf"model\.safetensors: tensor '{LAYER}\.{name}': .*{message}"):
        _load(bad)


def test_wrong_shape_unquantized(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_tensors(bad, lambda t: t.update({"model.norm.weight": torch.ones(65, dtype=torch.bfloat16)}))
    with pytest.raises(ValueError, match=r"tensor 'model\.norm\.weight': expected shape \(64,\), got \(65,\)"):
        _load(bad)


@pytest.mark.parametrize("attr", ["weight_global_scale", "input_global_scale"])
@pytest.mark.parametrize("value", [math.inf, math.nan, 0.0, -1.0])
def test_non_finite_or_non_positive_global_scale(good_single, tmp_path, attr, value):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_tensors(bad, lambda t: t.update({f"{LAYER}.{attr}": torch.tensor([value], dtype=torch.float32)}))
    with pytest.raises(ValueError, match=rf"model\.safetensors: tensor '{LAYER}\.{attr}': global scale must be finite and > 0"):
        _load(bad)


def test_nan_block_scale(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")

    def poison(t):
        scale = t[f"{LAYER}.weight_scale"].clone()
        scale.view(torch.uint8)[3, 2] = 0x7F  # the E4M3 NaN
        t[f"{LAYER}.weight_scale"] = scale

    _edit_tensors(bad, poison)
    with pytest.raises(ValueError, match=rf"tensor '{LAYER}\.weight_scale': block scales contain NaN"):
        _load(bad)


def test_unknown_format(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")

    def edit(config):
        qc = config["quantization_config"]
        qc["format"] = "float-quantized"
        qc["config_groups"]["group_0"]["format"] = "float-quantized"

    _edit_config(bad, edit)
    with pytest.raises(ValueError, match=r"config\.json: .*format 'float-quantized' is not supported"):
        _load(bad)


def test_other_quant_method(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_config(bad, lambda c: c["quantization_config"].update(quant_method="gptq"))
    with pytest.raises(ValueError, match=r"config\.json: quant_method 'gptq' is not supported"):
        _load(bad)


def test_config_without_quantization_config(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_config(bad, lambda c: c.pop("quantization_config"))
    with pytest.raises(ValueError, match=r"config\.json: no quantization_config"):
        _load(bad)


def test_missing_config(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    (bad / "config.json").unlink()
    with pytest.raises(ValueError, match=r"config\.json: model config not found"):
        _load(bad)


def test_no_safetensors(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    (bad / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"no model\.safetensors"):
        _load(bad)


def test_w4a16_config_with_input_scales_on_disk(good_single, tmp_path):
    bad = _copy(good_single, tmp_path / "ckpt")
    _edit_config(bad, lambda c: c["quantization_config"]["config_groups"]["group_0"].update(input_activations=None))
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\).*input_global_scale"):
        _load(bad)


def test_old_rotary_tables_are_skipped_with_a_note(good_single, tmp_path):
    ok = _copy(good_single, tmp_path / "ckpt")
    _edit_tensors(ok, lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}))
    report = _load(ok).nvfp4_report
    assert any("1 checkpoint tensor(s) skipped" in w and "rotary_emb.inv_freq" in w for w in report.warnings)
