"""``benchmarks/bench_linear.py report`` on the CPU: two partial CSVs (two shape groups, as the
device runs write them) merge into one markdown table, CSV and PNG; the medians are the
medians of the rows, and the A/B rows of ``--paired-ab`` land in the "other implementations"
table (timing itself needs a GPU)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_linear", ROOT / "benchmarks" / "bench_linear.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(shapes, speedups):
    meta = dict(gpu="Test GPU", torch="t", triton="x", date="2026-12-07 00:00 UTC", tflops="1.0", weight_gbps="1",
                speedup_vs_reference="", note="")
    rows = []
    for shape, (n, k) in shapes.items():
        for m in (1, 16):
            rows.append(dict(meta, shape=shape, n=n, k=k, m=m, impl="bf16", time_us="10.00", speedup_vs_bf16=""))
            for impl, ratio in speedups.items():
                rows.append(dict(meta, shape=shape, n=n, k=k, m=m, impl=impl, time_us=f"{10 / ratio:.2f}",
                                 speedup_vs_bf16=f"{ratio:.2f}"))
    return rows


def test_report_merges_shape_groups_and_lists_the_ab_rows(tmp_path):
    bench = _bench()
    first = tmp_path / "bench_8b.csv"
    second = tmp_path / "bench_70b.csv"
    bench.write_csv(str(first), _rows({"8b_o": (4096, 4096)}, {"w4a4": 2.0, "w4a16": 1.5, "w4a4_paired": 3.0}))
    bench.write_csv(str(second), _rows({"70b_o": (8192, 8192)}, {"w4a4": 4.0, "w4a16": 2.5, "w4a4_paired": 5.0}))
    out_dir = tmp_path / "results"
    bench.main(["report", str(first), str(second), "--out-dir", str(out_dir), "--name", "bench_test"])
    md = (out_dir / "bench_test.md").read_text()
    assert "GPU: Test GPU" in md
    assert "| 1 | 3.00x | 2.00x |" in md and "| 16 | 3.00x | 2.00x |" in md  # medians of 2.0/4.0 and 1.5/2.5
    assert "| w4a4_paired | 4.00x (2) | 4.00x (2) |" in md
    with open(out_dir / "bench_test.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 16
    assert (out_dir / "bench_test.png").stat().st_size > 0


def test_report_promotes_a_variant_made_default_after_the_run(tmp_path):
    bench = _bench()
    rows = _rows({"8b_o": (4096, 4096)}, {"w4a4": 2.0, "w4a16": 1.5, "w4a4_paired": 3.0, "w4a16_paired": 1.6})
    rows.append(dict(rows[0], impl="reference", time_us="100.00", speedup_vs_bf16="0.10"))  # M = 1
    path = tmp_path / "bench.csv"
    bench.write_csv(str(path), rows)
    out_dir = tmp_path / "results"
    bench.main(["report", str(path), "--out-dir", str(out_dir), "--name", "promoted", "--promote", "_paired=_natural"])
    md = (out_dir / "promoted.md").read_text()
    assert "| 1 | 3.00x | 1.60x |" in md and "| 16 | 3.00x | 1.60x |" in md
    assert "| w4a4_natural | 2.00x (1) | 2.00x (1) |" in md and "| w4a16_natural | 1.50x (1) | 1.50x (1) |" in md
    assert "w4a4_paired |" not in md and "2 pairs" not in md and "(4 pairs)" in md
    with open(out_dir / "promoted.csv", newline="") as fh:
        merged = list(csv.DictReader(fh))
    headline = [r for r in merged if r["impl"] == "w4a4" and r["m"] == "1"]
    assert [r["time_us"] for r in headline] == ["3.33"] and headline[0]["speedup_vs_reference"] == "30.03"


def test_report_promote_refuses_a_variant_the_run_lacks(tmp_path):
    bench = _bench()
    path = tmp_path / "bench.csv"
    bench.write_csv(str(path), _rows({"8b_o": (4096, 4096)}, {"w4a4": 2.0, "w4a16": 1.5}))
    with pytest.raises(SystemExit, match="no rows named w4a4_paired"):
        bench.main(["report", str(path), "--out-dir", str(tmp_path), "--promote", "_paired=_natural"])
    with pytest.raises(SystemExit, match="VARIANT=DEMOTED"):
        bench.main(["report", str(path), "--out-dir", str(tmp_path), "--promote", "_paired"])
