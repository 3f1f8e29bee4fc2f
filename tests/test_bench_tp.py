"""benchmarks/bench_tp.py on the CPU: tp=1 (one process) and tp=2 (gloo under torchrun).

The tiny shape with small prompts keeps both runs to a few seconds each. Checked: the run
exits 0, writes its CSV and markdown (names with tp and device) into ``--out-dir``, the
tp=2 run reuses the checkpoints the tp=1 run wrote into the shared ``--workdir``, the
correctness line says the NVFP4 greedy tokens of tp=N match the tp=1 load, and every timed
row holds a positive, finite throughput for both bf16 and NVFP4.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest

from tp_harness import free_port, run_in_own_session

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_tp.py"
QUICK = ["--device", "cpu", "--shape", "tiny", "--layers", "2", "--prefill", "32", "--decode-batch", "1,2",
         "--new-tokens", "3", "--decode-prompt", "8", "--reps", "2", "--warmup", "1", "--check-tokens", "4"]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", NVFP4_TP_TIMEOUT_S="60", PYTHONPATH=str(ROOT / "src"))


def _run(tp: int, workdir: Path, out_dir: Path):
    args = [str(SCRIPT), "--tp", str(tp), *QUICK, "--workdir", str(workdir), "--out-dir", str(out_dir)]
    if tp == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(tp),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]
    code, out, seconds = run_in_own_session(cmd, _env(), timeout=90, cwd=str(ROOT))
    assert code is not None, f"bench_tp tp={tp} hung ({seconds:.0f} s):\n{out}"
    assert code == 0, f"bench_tp tp={tp} exited {code}:\n{out}"
    return out


def _check_outputs(out_dir: Path, tp: int, stdout: str):
    stem = f"bench_tp_tiny_L2_tp{tp}_cpu"
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    assert csv_path.is_file() and md_path.is_file(), sorted(p.name for p in out_dir.iterdir())
    md = md_path.read_text()
    line = f"correctness, NVFP4 W4A4: tp={tp} vs tp=1 load of the same checkpoint: greedy tokens match"
    assert line in md and line in stdout, md
    assert f"tp={tp}" in md and "torch " in md and "NCCL n/a" in md
    assert stdout.count("| phase | batch |") == 1, "rank 0 alone prints the table"
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    seen = {(r["impl"], r["phase"], r["batch"], r["prompt_tokens"]) for r in rows}
    expected = {(impl, "decode", b, "8") for impl in ("bf16", "nvfp4") for b in ("1", "2")}
    expected |= {(impl, "prefill", "1", "32") for impl in ("bf16", "nvfp4")}
    assert seen == expected and len(rows) == len(expected)
    for r in rows:
        assert r["tp"] == str(tp) and r["shape"] == "tiny" and r["layers"] == "2" and r["dist_backend"]
        rate, speedup = float(r["tokens_per_s"]), float(r["speedup_vs_bf16"])
        assert math.isfinite(rate) and rate > 0 and math.isfinite(speedup) and speedup > 0
        if r["impl"] == "bf16":
            assert speedup == 1.0
    return md


def test_bench_tp_cpu_tp1_and_tp2(tmp_path):
    workdir, out_dir = tmp_path / "work", tmp_path / "out"
    out1 = _run(1, workdir, out_dir)
    assert "wrote bf16 + NVFP4 checkpoints" in out1
    _check_outputs(out_dir, 1, out1)
    out2 = _run(2, workdir, out_dir)
    assert "reusing the checkpoints" in out2, out2
    md2 = _check_outputs(out_dir, 2, out2)
    assert "process group: gloo" in md2 and "4 of 8 query heads per rank" in md2


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_tp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bad", [["--decode-batch", "0"], ["--prefill", "x"], ["--reps", "0"], ["--shape", "70b"]])
def test_bench_tp_refuses_bad_arguments(bad):
    with pytest.raises(SystemExit) as info:
        _bench_module().parse_args(bad)
    assert info.value.code == 2
