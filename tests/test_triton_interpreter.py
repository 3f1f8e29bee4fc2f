"""Runs the Triton kernel cases under the CPU interpreter (``TRITON_INTERPRET=1``), each case
file in a subprocess.

The interpreter must be selected before Triton kernels are defined, and this process may
already have imported things; a subprocess keeps the rest of the suite unaffected.

* ``triton_interp_cases.py``: activation quantization and every float GEMM path;
* ``triton_decode_v2_cases.py``: the decode GEMM v2 (repacked weights);
* ``triton_dp4a_cases.py``: the integer-dot W4A4 decode path and its primitives;
* ``triton_gemv_half2_cases.py``: the half2-decode GEMV (M <= 4, dense operand).
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

CASE_FILES = ["triton_interp_cases.py", "triton_decode_v2_cases.py", "triton_dp4a_cases.py", "triton_gemv_half2_cases.py",
              "triton_paired_decode_cases.py"]
# Settings that change which kernel a case reaches: the cases set what they need themselves.
CLEARED_ENV = ["NVFP4_BACKEND", "NVFP4_TRITON_SMALL_M", "NVFP4_TRITON_DP4A", "NVFP4_TRITON_GEMV", "NVFP4_TRITON_GEMV_HALF2",
               "NVFP4_TRITON_PAIRED_K"]


@pytest.mark.parametrize("case_file", CASE_FILES)
def test_triton_kernels_under_interpreter(case_file):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TRITON_INTERPRET="1")
    for name in CLEARED_ENV:
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(here, case_file)],
        cwd=os.path.dirname(here), env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
