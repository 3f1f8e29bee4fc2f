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


def _worker(rank, world, scheme, partials="exact"):
    from nvfp4.backends.reference import ReferenceBackend
    from nvfp4.distributed import init_tensor_parallel
    from nvfp4.parallel.selfcheck import check_parallel_layers

    calls = []
    if partials == "hook":  # a backend offering apply_partial_fp32 (what a fast backend can add)
        def apply_partial_fp32(self, layer, x2d):
            calls.append(tuple(x2d.shape))
            run = self.apply_w4a16 if layer.scheme.weight_only else self.apply_w4a4
            return run(layer, x2d.float(), None)
        ReferenceBackend.apply_partial_fp32 = apply_partial_fp32
    elif partials == "rounded":  # a backend without exact float32 partials (triton today)
        ReferenceBackend.exact_fp32_partials = False
    tp = init_tensor_parallel(world, device="cpu")
    assert (tp.rank, tp.size, tp.backend) == (rank, world, "gloo")
    res = check_parallel_layers(tp, scheme, backend="reference")
    res["row"]["hook_calls"] = len(calls)
    return res


def _assert_all(results, world, scheme, partials="exact"):
    from nvfp4.parallel.selfcheck import failed_checks

    assert len(results) == world
    for rank, res in enumerate(results):
        assert set(res) == set(COLUMN_LAYERS) | {"row"}
        assert failed_checks({k: {n: v for n, v in c.items() if n != "hook_calls"} for k, c in res.items()}) == [], (
            f"rank {rank}/{world} {scheme}: {res}")
        for layer in COLUMN_LAYERS:
            assert res[layer]["out_equal"] is True, f"rank {rank}/{world} {scheme}: {layer} not bit-identical"
        assert res["row"]["exact_fp32_partials"] == f"reference: {partials != 'rounded'}"
        assert (res["row"].pop("hook_calls") > 0) == (partials == "hook")
        if world > 2:
            assert res["qkv"]["replicas"] is True and res["kv_heads"]["replicas"] is True


@pytest.mark.parametrize("world", [2, 4])
def test_parallel_layers_match_single_process_w4a4(world):
    _assert_all(run_ranks(_worker, world, "w4a4", timeout=120).check(), world, "w4a4")


def test_parallel_layers_match_single_process_w4a16():
    _assert_all(run_ranks(_worker, 2, "w4a16", timeout=120).check(), 2, "w4a16")


@pytest.mark.parametrize("partials", ["hook", "rounded"])
def test_row_parallel_partials_from_a_backend_hook_or_rounded(partials):
    """``apply_partial_fp32`` is used when a backend has it; without any exact float32 path each
    partial is rounded to bf16 before the fp32 sum, and the bound widens by half a bf16 ulp of
    the partial magnitude per rank (what the GPU check allows for such a backend)."""
    results = run_ranks(_worker, 2, "w4a4", partials, timeout=120).check()
    _assert_all(results, 2, "w4a4", partials)
