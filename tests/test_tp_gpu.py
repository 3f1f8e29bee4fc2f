"""Tensor parallelism on GPUs with NCCL (skipped without CUDA): world size 1 on one GPU (the
NCCL code path as far as one GPU allows), and every visible GPU up to 4 when there are several.
The checks are ``nvfp4.parallel.selfcheck`` (see its docstring for the bounds)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from tp_harness import free_port, run_in_own_session


def _selfcheck(nproc: int, tmp_path, *extra):
    out = tmp_path / f"tp{nproc}.json"
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", OMP_NUM_THREADS="4", NVFP4_TP_TIMEOUT_S="300")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(free_port()), "-m", "nvfp4.parallel.selfcheck", "--device", "cuda",
           "--out", str(out), *extra]
    code, text, seconds = run_in_own_session(cmd, env, timeout=540)
    assert code == 0, text
    report = json.loads(out.read_text())
    assert report["passed"] and report["dist_backend"] == "nccl" and report["world_size"] == nproc, report
    return report


@pytest.mark.gpu
def test_nccl_world_size_one(tmp_path):
    report = _selfcheck(1, tmp_path)
    assert report["collectives"] == {"all_reduce": True, "all_gather": True}


@pytest.mark.gpu
def test_nccl_all_visible_gpus(tmp_path):
    n = min(torch.cuda.device_count(), 4)
    if n < 2:
        pytest.skip("needs 2+ GPUs (issue 6)")
    _selfcheck(n, tmp_path)
