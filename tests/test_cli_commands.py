"""The CLI's commands on a tiny random Llama: their output checked against the library."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import nvfp4
from nvfp4.cli import main
from test_cli_fixtures import make_float_model, make_nvfp4_checkpoint, training_text

LINEARS_PER_LAYER = 7  # q k v o gate up down


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    src = make_float_model(root / "float")
    return {
        "float": src,
        "w4a4": make_nvfp4_checkpoint(src, root / "w4a4", "NVFP4"),
        "w4a16": make_nvfp4_checkpoint(src, root / "w4a16", "NVFP4A16"),
        "root": root,
    }


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "eval.txt"
    path.write_text(training_text()[20_000:26_000])
    return path


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


# -- inspect ---------------------------------------------------------------------------------
def test_inspect_reports_layers_sizes_and_scales(models, capsys):
    s = run_json(capsys, ["inspect", str(models["w4a4"]), "--json"])
    assert s["format"] == "nvfp4-pack-quantized" and s["ignore"] == ["lm_head"]
    assert s["schemes"] == {"W4A4": 2 * LINEARS_PER_LAYER} and s["warnings"] == []
    tensors = load_file(str(models["w4a4"] / "model.safetensors"))
    gws = sorted(float(v) for k, v in tensors.items() if k.endswith("weight_global_scale"))
    assert s["weight_global_scales"]["count"] == len(gws) == 14
    assert s["weight_global_scales"]["minimum"] == gws[0] and s["weight_global_scales"]["maximum"] == gws[-1]
    q = [l for l in s["layers"] if l["name"] == "model.layers.0.self_attn.q_proj"][0]
    assert (q["out_features"], q["in_features"]) == (64, 64)
    assert q["input_global_scale"] == float(tensors["model.layers.0.self_attn.q_proj.input_global_scale"])
    packed = sum(t.numel() for k, t in tensors.items() if k.endswith("weight_packed"))
    assert s["quantized_bf16_bytes"] == packed * 2 * 2  # two FP4 per byte, 2 bytes per bf16
    assert s["total_bytes"] == (models["w4a4"] / "model.safetensors").stat().st_size


def test_inspect_text_output_and_weight_only(models, capsys):
    assert main(["inspect", str(models["w4a16"]), "--layers"]) == 0
    out = capsys.readouterr().out
    assert "14 layers (14 W4A16)" in out and "NVFP4A16" in out and "no problems found" in out
    assert "model.layers.1.mlp.down_proj" in out and "input Gx" not in out


def _broken_copy(models, tmp_path, edit):
    dst = tmp_path / "broken"
    shutil.copytree(models["w4a4"], dst)
    tensors = load_file(str(dst / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_inspect_warns_about_unequal_fused_shard_scales(models, tmp_path, capsys):
    def edit(t):
        t["model.layers.0.self_attn.k_proj.weight_global_scale"] = t["model.layers.0.self_attn.k_proj.weight_global_scale"] * 2
    s = run_json(capsys, ["inspect", str(_broken_copy(models, tmp_path, edit)), "--json"])
    (w,) = s["warnings"]
    assert "1 of 4 fused groups" in w and "unequal weight global scales" in w and "model.layers.0.self_attn" in w


def test_inspect_warns_about_non_finite_scales_and_strict_fails(models, tmp_path, capsys):
    def edit(t):
        t["model.layers.1.mlp.up_proj.input_global_scale"] = torch.tensor([float("inf")])
        t["model.layers.0.mlp.down_proj.weight_global_scale"] = torch.tensor([0.0])
        scale = t["model.layers.0.self_attn.o_proj.weight_scale"].view(torch.uint8).clone()
        scale[3, 1] = 0x7F  # FP8 E4M3 NaN
        t["model.layers.0.self_attn.o_proj.weight_scale"] = scale.view(torch.float8_e4m3fn)
    path = str(_broken_copy(models, tmp_path, edit))
    s = run_json(capsys, ["inspect", path, "--json"])
    text = "\n".join(s["warnings"])
    assert "2 non-finite or zero global scale(s)" in text
    assert "model.layers.1.mlp.up_proj.input_global_scale" in text and "down_proj.weight_global_scale" in text
    assert "NaN FP8 block scales: model.layers.0.self_attn.o_proj.weight_scale" in text
    assert "unequal input global scales" in text  # gate/up of layer 1 now differ
    assert s["input_global_scales"]["non_finite"] == 1 and s["weight_global_scales"]["zero"] == 1
    assert main(["inspect", path, "--strict"]) == 3
    assert "warning:" in capsys.readouterr().out
    s2 = run_json(capsys, ["inspect", path, "--json", "--no-scan"])
    assert not any("NaN FP8" in w for w in s2["warnings"]) and not s2["scanned_block_scales"]


def test_inspect_warns_about_missing_and_misshaped_tensors(models, tmp_path, capsys):
    def edit(t):
        del t["model.layers.0.mlp.up_proj.weight_scale"]
        t["model.layers.1.mlp.up_proj.weight_scale"] = t["model.layers.1.mlp.up_proj.weight_scale"][:, :2].contiguous()
    s = run_json(capsys, ["inspect", str(_broken_copy(models, tmp_path, edit)), "--json"])
    text = "\n".join(s["warnings"])
    assert "missing: model.layers.0.mlp.up_proj.weight_scale" in text
    assert "model.layers.1.mlp.up_proj.weight_scale [128, 2] (expected [128, 4])" in text


# -- quantize --------------------------------------------------------------------------------
def test_quantize_writes_what_the_library_writes(models, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nvfp4.evaluation.calibration import calibration_samples
    from nvfp4.evaluation.corpus import offline_text_split

    dst = tmp_path / "q"
    assert main(["quantize", str(models["float"]), str(dst), "--samples", "3", "--seq-len", "32"]) == 0
    assert "calibrating on 3 window(s) of 32 tokens" in capsys.readouterr().out
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (dst / name).is_file(), name
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    # The same calibration through the API gives bit-identical tensors.
    tok = AutoTokenizer.from_pretrained(str(models["float"]))
    model = AutoModelForCausalLM.from_pretrained(str(models["float"]), dtype=torch.bfloat16)
    calib = calibration_samples(tok, offline_text_split().calibration, 3, 32)
    nvfp4.quantize_model(model, calib, ignore=["lm_head"], scheme="NVFP4", progress=False)
    nvfp4.save(model, tmp_path / "api")
    ours, api = load_file(str(dst / "model.safetensors")), load_file(str(tmp_path / "api" / "model.safetensors"))
    assert ours.keys() == api.keys()
    for k in api:
        assert torch.equal(ours[k].view(torch.uint8), api[k].view(torch.uint8)), k
    # --overwrite replaces it (atomically); NVFP4A16 has no input scales.
    assert main(["quantize", str(models["float"]), str(dst), "--scheme", "NVFP4A16", "--overwrite"]) == 0
    assert not any(k.endswith("input_global_scale") for k in load_file(str(dst / "model.safetensors")))


def test_quantize_refuses_an_already_quantized_source(models, tmp_path, capsys):
    assert main(["quantize", str(models["w4a4"]), str(tmp_path / "x")]) == 1
    assert "already quantized (compressed-tensors)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# -- generate / eval -------------------------------------------------------------------------
def test_generate_prints_the_greedy_answer_of_the_loaded_model(models, capsys):
    from transformers import AutoTokenizer

    from nvfp4.evaluation.generation import build_prompt

    assert main(["generate", str(models["w4a4"]), "--prompt", "What is a tuple?", "--max-new-tokens", "5",
                 "--device", "cpu", "--backend", "reference"]) == 0
    captured = capsys.readouterr()
    tok = AutoTokenizer.from_pretrained(str(models["w4a4"]))
    model = nvfp4.load(str(models["w4a4"]), progress=False)
    ids = build_prompt(tok, "What is a tuple?")
    want = model.generate(ids, max_new_tokens=5, do_sample=False, attention_mask=torch.ones_like(ids),
                          pad_token_id=tok.pad_token_id)
    assert captured.out.strip() == tok.decode(want[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert "tokens/s decode" in captured.err and "backend reference on cpu" in captured.err


def test_eval_numbers_match_direct_computations(models, text_file, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nvfp4.evaluation import perplexity, tokenize_text

    r = run_json(capsys, ["eval", str(models["w4a4"]), "--text", str(text_file), "--reference", str(models["float"]),
                          "--seq-len", "64", "--max-tokens", "300", "--gen-tokens", "3", "--json"])
    ref, q = r["rows"]
    tok = AutoTokenizer.from_pretrained(str(models["w4a4"]))
    ids = tokenize_text(tok, text_file.read_text(), 300)
    float_model = AutoModelForCausalLM.from_pretrained(str(models["float"]), dtype=torch.bfloat16).eval()
    assert ref["perplexity"] == perplexity(float_model, ids, 64, progress=False).perplexity
    assert q["perplexity"] == perplexity(nvfp4.load(str(models["w4a4"]), progress=False), ids, 64, progress=False).perplexity
    assert q["scored_tokens"] == ids.numel() - q["windows"] and q["generated_tokens"] == 3
    assert q["backend"] == "reference" and ref["backend"] == "-"
    assert q["weight_bytes"] < ref["weight_bytes"] and q["quantized_layers"] == 14
    assert main(["eval", str(models["w4a16"]), "--text", str(text_file), "--seq-len", "64", "--max-tokens", "100",
                 "--gen-tokens", "0"]) == 0
    out = capsys.readouterr().out
    assert "NVFP4 W4A16" in out and "perplexity" in out


# -- env -------------------------------------------------------------------------------------
def test_env_reports_versions_and_the_backend_choice(capsys, monkeypatch):
    info = run_json(capsys, ["env", "--device", "cpu", "--json"])
    assert info["packages"]["torch"] == torch.__version__
    names = {b["name"]: b for b in info["backends"]}
    assert names["reference"]["available"] and info["auto_choice"] == "reference"
    assert "highest-priority" in info["why"]
    monkeypatch.setenv("NVFP4_BACKEND", "emulation")
    info = run_json(capsys, ["env", "--device", "cpu", "--json"])
    assert info["auto_choice"] == "emulation" and "NVFP4_BACKEND" in info["why"]
    monkeypatch.setenv("NVFP4_BACKEND", "bogus")
    info = run_json(capsys, ["env", "--device", "cpu", "--json"])
    assert info["auto_choice"] is None and "names no backend" in info["why"]
    monkeypatch.delenv("NVFP4_BACKEND")
    monkeypatch.delenv("NVFP4_TRITON_DP4A", raising=False)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "chosen        reference" in out and "triton paths  defaults" in out
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "off")
    assert run_json(capsys, ["env", "--device", "cpu", "--json"])["triton_env"]["NVFP4_TRITON_DP4A"] == "off"
    assert main(["env"]) == 0
    assert "triton paths  NVFP4_TRITON_DP4A=off" in capsys.readouterr().out


def test_quantize_sharded_then_inspect_reads_every_shard(models, tmp_path, capsys):
    dst = tmp_path / "sharded"
    assert main(["quantize", str(models["float"]), str(dst), "--scheme", "NVFP4A16", "--max-shard-size", "30KB"]) == 0
    capsys.readouterr()
    shards = sorted(p.name for p in dst.glob("model-*.safetensors"))
    assert len(shards) >= 3 and (dst / "model.safetensors.index.json").is_file()
    s = run_json(capsys, ["inspect", str(dst), "--json"])
    assert sorted(f["name"] for f in s["files"]) == shards
    assert s["schemes"] == {"W4A16": 14} and s["warnings"] == []
    single = run_json(capsys, ["inspect", str(models["w4a16"]), "--json"])
    assert [l["weight_global_scale"] for l in s["layers"]] == [l["weight_global_scale"] for l in single["layers"]]
