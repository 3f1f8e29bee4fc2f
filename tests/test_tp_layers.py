"""Tensor-parallel layers on real gloo process groups (2 and 4 CPU ranks) against the
single-process layer built from the same checkpoint tensors
(``nvfp4.parallel.selfcheck.check_parallel_layers``: the same checks the GPU validation runs).

Per rank, exactly (byte equality): the codes and block scales are the rank's rows (column,
merged gate/up, fused QKV, k/v with KV heads split or replicated at 4 ranks > 2 KV heads) or
columns (row parallel) of the full tensors, computed by slicing the full tensors in the check,
not by the library's partitioning. With the reference backend a column-parallel rank's output
is bit-identical to its columns of the single-process output (asserted: ``out_equal``).

Row parallel, up to fp32 summation order: each rank's float32 partial sum is all-reduced, then
rounded once and the bias added once. Both the single-process GEMM and the sum of partials are
fp32 sums of the same K exact products times alpha, so with u = 2^-24

    |Y_tp - Y_1| <= 2 (K + 2) u * alpha * (|A| @ |W|^T)          (fp32, before rounding)

and the bf16 outputs differ by at most that plus one bf16 ulp of the result. A bias added on
every rank would be off by (tp - 1) * 0.5, far outside the bound.
"""

from __future__ import annotations

import pytest

from tp_harness import run_ranks

COLUMN_LAYERS = ("column", "merged", "qkv", "kv_heads")


def _worker(rank, world, scheme):
    from nvfp4.distributed import init_tensor_parallel
    from nvfp4.parallel.selfcheck import check_parallel_layers

    tp = init_tensor_parallel(world, device="cpu")
    assert (tp.rank, tp.size, tp.backend) == (rank, world, "gloo")
    return check_parallel_layers(tp, scheme, backend="reference")


def _assert_all(results, world, scheme):
    from nvfp4.parallel.selfcheck import failed_checks

    assert len(results) == world
    for rank, res in enumerate(results):
        assert set(res) == set(COLUMN_LAYERS) | {"row"}
        assert failed_checks(res) == [], f"rank {rank}/{world} {scheme}: {res}"
        for layer in COLUMN_LAYERS:
            assert res[layer]["out_equal"] is True, f"rank {rank}/{world} {scheme}: {layer} not bit-identical"
        assert res["row"]["exact_fp32_partials"] == "reference: True"
        if world > 2:
            assert res["qkv"]["replicas"] is True and res["kv_heads"]["replicas"] is True


@pytest.mark.parametrize("world", [2, 4])
def test_parallel_layers_match_single_process_w4a4(world):
    _assert_all(run_ranks(_worker, world, "w4a4", timeout=120).check(), world, "w4a4")


def test_parallel_layers_match_single_process_w4a16():
    _assert_all(run_ranks(_worker, 2, "w4a16", timeout=120).check(), 2, "w4a16")
