"""Runs ``tests/triton_decode_v2_cases.py`` (decode GEMM v2) under ``TRITON_INTERPRET=1``
in a subprocess, for the same reason as tests/test_triton_interpreter.py."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")


def test_decode_v2_under_interpreter():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TRITON_INTERPRET="1")
    env.pop("NVFP4_BACKEND", None)
    env.pop("NVFP4_TRITON_SMALL_M", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(here, "triton_decode_v2_cases.py")],
        cwd=os.path.dirname(here), env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
