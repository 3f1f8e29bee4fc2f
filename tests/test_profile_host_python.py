"""benchmarks/profile_host_python.py runs on the CPU (it needs no GPU by design) and prints
its three cases; the numbers themselves are for comparing runs on one machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parent.parent


def test_profile_host_python_runs_on_the_cpu():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_host_python.py"), "--calls", "50"],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.endswith("us per call")]
    assert len(lines) == 3 and all(float(line.split()[-4]) > 0 for line in lines), proc.stdout
