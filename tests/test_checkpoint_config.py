"""Parsing, matching and writing the compressed-tensors ``quantization_config``."""

from __future__ import annotations

import copy

import pytest
from torch import nn

from nvfp4.checkpoint import (
    QuantizationConfigError,
    build_quantization_config,
    parse_quantization_config,
    target_matches,
)

W4A4 = build_quantization_config("NVFP4", ignore=["lm_head"])


class CustomLinear(nn.Linear):
    pass


def test_emitted_config_has_the_reference_sheet_layout():
    g = W4A4["config_groups"]["group_0"]
    assert W4A4["quant_method"] == "compressed-tensors" and W4A4["format"] == "nvfp4-pack-quantized"
    assert W4A4["quantization_status"] == "compressed" and W4A4["ignore"] == ["lm_head"]
    assert g["targets"] == ["Linear"] and g["format"] == "nvfp4-pack-quantized" and g["output_activations"] is None
    assert g["weights"] == {
        "num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16,
        "dynamic": False, "scale_dtype": "torch.float8_e4m3fn", "observer": "memoryless_minmax",
    }
    assert g["input_activations"]["dynamic"] == "local" and g["input_activations"]["observer"] == "static_minmax"
    a16 = build_quantization_config("NVFP4A16")
    assert a16["config_groups"]["group_0"]["input_activations"] is None


def test_emitted_config_validates_in_compressed_tensors():
    ct = pytest.importorskip("compressed_tensors.quantization")
    for scheme in ("NVFP4", "NVFP4A16"):
        parsed = ct.QuantizationConfig.model_validate(build_quantization_config(scheme, ignore=["lm_head"]))
        group = parsed.config_groups["group_0"]
        preset = ct.preset_name_to_scheme(scheme, ["Linear"])
        ours, theirs = group.weights.model_dump(), preset.weights.model_dump()
        assert {k: v for k, v in ours.items() if k != "observer"} == {k: v for k, v in theirs.items() if k != "observer"}
        assert (group.input_activations is None) == (scheme == "NVFP4A16")
        if scheme == "NVFP4":
            assert group.input_activations.dynamic == preset.input_activations.dynamic
            assert group.input_activations.group_size == 16


def test_parse_schemes():
    cfg = parse_quantization_config(W4A4, "x/config.json")
    assert [g.scheme for g in cfg.groups] == ["NVFP4"] and cfg.ignore == ("lm_head",)
    assert parse_quantization_config(build_quantization_config("NVFP4A16")).groups[0].weight_only
    assert cfg.to_dict() == W4A4


def test_parse_is_lenient_about_what_does_not_change_numbers():
    old = copy.deepcopy(W4A4)
    for args in (old["config_groups"]["group_0"]["weights"], old["config_groups"]["group_0"]["input_activations"]):
        del args["scale_dtype"], args["observer"], args["strategy"]
    del old["version"], old["quantization_status"], old["config_groups"]["group_0"]["format"]
    old["format"] = "nvfp4-pack-quantized"
    old["some_future_field"] = 1
    old["sparsity_config"] = {"format": "dense", "global_sparsity": 0.0, "targets": [], "ignore": []}
    old["transform_config"] = {}
    assert parse_quantization_config(old).groups[0].scheme == "NVFP4"


def test_mixed_precision_with_several_groups():
    qc = copy.deepcopy(W4A4)
    qc["format"] = "mixed-precision"
    a16 = build_quantization_config("NVFP4A16")["config_groups"]["group_0"]
    qc["config_groups"]["group_1"] = dict(a16, targets=[r"re:.*mlp\.down_proj$"])
    cfg = parse_quantization_config(qc)
    lin = nn.Linear(16, 16)
    assert cfg.group_for("model.layers.0.mlp.down_proj", lin).name == "group_1"  # regex beats class name
    assert cfg.group_for("model.layers.0.mlp.up_proj", lin).name == "group_0"
    assert cfg.group_for("lm_head", lin) is None
    assert cfg.schemes == ["NVFP4", "NVFP4A16"]


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda q: q.update(format="float-quantized"), "format 'float-quantized' is not supported"),
        (lambda q: q["config_groups"]["group_0"].update(format="mxfp4-pack-quantized"),
         "group_0: format 'mxfp4-pack-quantized' is not supported"),
        (lambda q: q.update(quant_method="awq"), "quant_method 'awq'"),
        (lambda q: q["config_groups"]["group_0"]["weights"].update(group_size=32), r"group_size=32 \(need 16\)"),
        (lambda q: q["config_groups"]["group_0"]["weights"].update(num_bits=8, type="int"), r"num_bits=8.*type='int'"),
        (lambda q: q["config_groups"]["group_0"]["weights"].update(symmetric=False), "symmetric=false"),
        (lambda q: q["config_groups"]["group_0"]["input_activations"].update(group_size=128),
         r"input_activations is not NVFP4: group_size=128"),
        (lambda q: q["config_groups"]["group_0"].update(output_activations={"num_bits": 4}), "output_activations"),
        (lambda q: q.update(kv_cache_scheme={"num_bits": 8}), "kv_cache_scheme is set"),
        (lambda q: q.update(transform_config={"config_groups": {"u": {}}}), "transform_config is set"),
        (lambda q: q.update(sparsity_config={"format": "sparse-24-bitmask"}), "sparsity_config format 'sparse-24-bitmask'"),
        (lambda q: q.update(config_groups={}), "config_groups is missing or empty"),
        (lambda q: q["config_groups"]["group_0"].update(targets=[]), "targets is empty"),
        (lambda q: q["config_groups"]["group_0"].update(weights=None), "weights is null"),
        (lambda q: q.update(ignore=[1]), "ignore must be a string or a list of strings"),
    ],
)
def test_refusals_name_the_field(edit, message):
    qc = copy.deepcopy(W4A4)
    edit(qc)
    with pytest.raises(QuantizationConfigError, match=rf"^ckpt/config\.json: .*{message}"):
        parse_quantization_config(qc, "ckpt/config.json")


def test_not_a_dict():
    with pytest.raises(QuantizationConfigError, match="must be an object"):
        parse_quantization_config(["NVFP4"])


def test_target_forms():
    lin, custom = nn.Linear(16, 16), CustomLinear(16, 16)
    name = "model.layers.3.self_attn.q_proj"
    assert target_matches("Linear", name, lin) and target_matches("Linear", name, custom)  # class or a base
    assert target_matches("CustomLinear", name, custom) and not target_matches("CustomLinear", name, lin)
    assert not target_matches("Embedding", name, lin)
    assert target_matches(name, name, lin) and not target_matches("q_proj", name, lin)  # exact means exact
    # re: is anchored at the start (re.match), not a search.
    assert target_matches(r"re:.*q_proj$", name) and target_matches(r"re:model\.layers\.3\.", name)
    assert not target_matches("re:self_attn", name) and not target_matches(r"re:.*k_proj", name)


def test_ignore_wins_over_targets_in_every_form():
    cfg = parse_quantization_config(build_quantization_config("NVFP4", ignore=[
        "lm_head", r"re:.*layers\.0\.", "model.layers.1.mlp.down_proj",
    ]))
    lin = nn.Linear(16, 16)
    assert cfg.group_for("model.layers.0.mlp.up_proj", lin) is None
    assert cfg.group_for("model.layers.1.mlp.down_proj", lin) is None
    assert cfg.group_for("model.layers.1.mlp.up_proj", lin) is not None
    assert cfg.group_for("model.layers.10.mlp.up_proj", lin) is not None  # "layers\.0\." does not match 10
