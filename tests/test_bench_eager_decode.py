"""benchmarks/bench_eager_decode.py on the CPU (``--tiny``: a 64-wide Llama, the reference
backend): the script builds, quantizes (W4A4 with calibration, and weight-only) and times the
model end to end and writes its CSV. The numbers of such a run mean nothing; the GPU run is
what the results files hold."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parent.parent


def test_bench_eager_decode_tiny(tmp_path):
    out = tmp_path / "eager.csv"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_eager_decode.py"), "--tiny", "--layers", "1",
         "--new-tokens", "4", "--out", str(out)], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [r["variant"] for r in rows] == [
        "bf16", "w4a4 eager graphs off", "w4a4 eager graphs on", "w4a16 eager graphs off", "w4a16 eager graphs on",
        "bf16 again",
    ]
    best_bf16 = max(float(r["decode_tokens_per_s"]) for r in rows if r["variant"].startswith("bf16"))
    for r in rows:
        assert abs(float(r["vs_bf16"]) - float(r["decode_tokens_per_s"]) / best_bf16) < 0.01
    for r in rows:
        assert int(r["new_tokens"]) == 4 and float(r["decode_tokens_per_s"]) > 0 and float(r["vs_bf16"]) > 0
