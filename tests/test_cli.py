"""The command line's surface: every --help teaches, and errors are one clean line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nvfp4.cli import COMMANDS, build_parser, main

NAMES = ["demo", "inspect", "quantize", "generate", "eval", "env"]


def test_every_command_is_registered():
    assert sorted(m.__name__.rsplit("cmd_", 1)[1] for m in COMMANDS) == sorted(NAMES)


def test_top_level_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f"\n    {name} " in out
    assert "examples:" in out and "nvfp4 demo" in out


@pytest.mark.parametrize("name", NAMES)
def test_each_command_help_has_a_description_and_examples(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: nvfp4 {name}")
    assert "examples:" in out and f"nvfp4 {name}" in out.split("examples:")[1]
    assert "--debug" in out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _one_clean_error(capsys, argv, *needles):
    code = main(argv)
    captured = capsys.readouterr()
    err_lines = [l for l in captured.err.splitlines() if l.startswith("nvfp4 ")]
    assert code == 1, captured
    assert "Traceback" not in captured.err
    assert len(err_lines) == 1, captured.err
    for needle in needles:
        assert needle in err_lines[0], err_lines[0]
    return err_lines[0]


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    missing = str(tmp_path / "nope")
    for cmd in (["inspect", missing], ["generate", missing, "--prompt", "x"], ["eval", missing, "--text", missing]):
        _one_clean_error(capsys, cmd, f"nvfp4 {cmd[0]}: error:", "nope")


def test_inspect_of_a_float_model_says_it_is_not_quantized(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    _one_clean_error(capsys, ["inspect", str(tmp_path)], "no quantization_config", "nvfp4 quantize")


def test_inspect_of_an_unknown_format_names_it(tmp_path, capsys):
    (tmp_path / "config.json").write_text(
        '{"model_type": "llama", "quantization_config": {"quant_method": "compressed-tensors",'
        ' "format": "int-quantized", "config_groups": {}}}'
    )
    (tmp_path / "model.safetensors").write_bytes(b"")
    _one_clean_error(capsys, ["inspect", str(tmp_path)], str(tmp_path))


def test_cuda_device_on_a_machine_without_one(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _one_clean_error(capsys, ["env", "--device", "cuda"], "no CUDA GPU", "--device cpu")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="nope"):
        main(["inspect", str(tmp_path / "nope"), "--debug"])


def test_quantize_refuses_to_overwrite_and_same_dirs(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    _one_clean_error(capsys, ["quantize", str(tmp_path / "src"), str(tmp_path / "dst")], "already exists", "--overwrite")
    _one_clean_error(capsys, ["quantize", str(tmp_path / "src"), str(tmp_path / "src")], "DST must differ")


def test_bad_numbers_are_rejected(tmp_path, capsys):
    _one_clean_error(capsys, ["quantize", str(tmp_path), str(tmp_path / "x"), "--samples", "0"], "--samples")
    _one_clean_error(capsys, ["demo", "--max-new-tokens", "0"], "--max-new-tokens")


def test_python_dash_m_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "nvfp4", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("nvfp4 ")


def test_parser_dispatches_to_the_command():
    parser = build_parser()
    args = parser.parse_args(["inspect", "x", "--json"])
    assert args.command == "inspect" and args.json and callable(args.run)


def test_missing_hugging_face_packages_give_an_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    _one_clean_error(capsys, ["demo", "--device", "cpu"], "needs gguf", "pip install 'nvfp4[hf]'")
