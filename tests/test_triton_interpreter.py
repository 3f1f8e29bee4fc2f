"""Runs ``tests/triton_interp_cases.py`` in a subprocess with ``TRITON_INTERPRET=1``.

The interpreter must be selected before Triton kernels are defined, and this process may
already have imported things; a subprocess keeps the rest of the suite unaffected.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")


def test_triton_kernels_under_interpreter():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TRITON_INTERPRET="1")
    env.pop("NVFP4_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(here, "triton_interp_cases.py")],
        cwd=os.path.dirname(here), env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
