"""benchmarks/bench_decode_w4a4.py on the CPU (``--smoke``: the Triton interpreter, one tiny
shape, no CUDA graphs): the script runs end to end, checks every path against the exact
result before timing it, and writes its CSV in bench_linear's format. The numbers of a smoke
run mean nothing; the GPU run is what the results files hold."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parent.parent


def test_bench_decode_smoke(tmp_path):
    out = tmp_path / "decode.csv"
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT / "src"))
    env.pop("NVFP4_TRITON_DP4A", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_decode_w4a4.py"), "--smoke", "--ms", "1", "--sweep-ms", "",
         "--out", str(out)], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    checks = [r for r in rows if r["impl"] == "check"]
    assert checks and all(r["note"].endswith("ok") for r in checks)
    timed = {r["impl"]: r for r in rows if r["shape"] == "smoke"}
    assert set(timed) == {"bf16", "w4a4", "w4a4_dp4a_fused", "w4a4_dp4a_unfused", "w4a4_float", "w4a16"}
    for impl, r in timed.items():
        assert float(r["time_us"]) > 0
        if impl != "bf16":
            assert r["note"] == "exact-bound ok" and r["speedup_vs_bf16"] != ""
    assert {r["note"].split(";")[0] for r in rows if r["impl"] == "act_quant"} == {"dequant_bf16", "packed", "int8"}
    assert not (tmp_path / "decode.csv.partial").exists()


def test_bench_act_quant_smoke(tmp_path):
    """benchmarks/bench_act_quant.py --smoke: every output mode at two tile settings, bf16 x read
    as int32 pairs and as bf16, each byte-identical to the default, the packed default
    identical to nvfp4.numerics."""
    out = tmp_path / "act_quant.csv"
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_act_quant.py"), "--smoke", "--out", str(out)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["mode"], r["block_r"], r["bf16_words"]) for r in rows] == [
        (mode, r, w) for mode in ("packed", "operand", "int8") for r in ("16", "32") for w in ("True", "False")]
    assert all(r["identical"] == "yes" and float(r["time_us"]) > 0 for r in rows)
    assert {r["note"] for r in rows if r["mode"] == "packed"} == {"default tiles vs nvfp4.numerics: identical"}
    assert not (tmp_path / "act_quant.csv.partial").exists()
