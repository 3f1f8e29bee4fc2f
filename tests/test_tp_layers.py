"""Tensor-parallel layers on real gloo process groups (2 and 4 CPU ranks) against the
single-process layer built from the same checkpoint tensors.

Per rank, exactly (torch.equal): the codes and block scales are the rank's rows (column
parallel, KV heads split or replicated) or columns (row parallel) of the full tensors, and a
column-parallel rank's output is its columns of the single-process output.

Row parallel, up to fp32 summation order: each rank's float32 partial sum is all-reduced,
then rounded once and the bias added once. Both the single-process GEMM and the sum of the
partials are fp32 sums of the same K exact products (times alpha), so with u = 2^-24

    |Y_tp - Y_1| <= 2 (K + 2) u * alpha * (|A| @ |W|^T)          (fp32, before rounding)

and the bf16 outputs differ by at most that plus one bf16 ulp of the result. A bias added on
every rank would be off by (tp - 1) * bias, far outside the bound (the bias is 0.5 here).
"""

from __future__ import annotations

import pytest
import torch

from tp_harness import run_ranks

K, N, HEAD, HEADS, KV_HEADS = 128, 48, 16, 4, 2
U32 = 2.0 ** -24


def _tensors(seed: int, n: int, k: int):
    from nvfp4 import quantize_weight

    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(n, k, generator=g) * 0.1).to(torch.bfloat16)
    return quantize_weight(w)


def _gx(seed: int) -> torch.Tensor:
    return torch.tensor([448.0 * 6 / (3.0 + seed)], dtype=torch.float32)


def _load(layer, shards: dict, bias=None):
    """shards: {shard_id or None: (packed, scale, gw, gx)}; loads through the layer's loaders."""
    for sid, (packed, scale, gw, gx) in shards.items():
        layer.weight_loader(layer.weight_packed, packed, sid)
        layer.weight_loader(layer.weight_scale, scale, sid)
        layer.weight_loader(layer.weight_global_scale, gw, sid)
        if hasattr(layer, "input_global_scale"):
            layer.weight_loader(layer.input_global_scale, gx, sid)
    if bias is not None:
        layer.weight_loader(layer.bias, bias)
    layer.process_weights_after_loading()
    return layer


def _rows(t: torch.Tensor, index: int, parts: int) -> torch.Tensor:
    n = t.shape[0] // parts
    return t[index * n:(index + 1) * n]


def _cols(t: torch.Tensor, index: int, parts: int) -> torch.Tensor:
    n = t.shape[1] // parts
    return t[:, index * n:(index + 1) * n]


def _bytes_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def _layers_worker(rank: int, world: int, scheme: str):
    import torch.distributed as dist

    from nvfp4 import (
        ColumnParallelNVFP4Linear,
        MergedColumnParallelNVFP4Linear,
        NVFP4Linear,
        QKVParallelNVFP4Linear,
        RowParallelNVFP4Linear,
    )
    from nvfp4.distributed import init_tensor_parallel
    from nvfp4.numerics import dequantize_weight_unscaled
    from nvfp4.parallel import KVHeadParallelNVFP4Linear

    tp = init_tensor_parallel(world, device="cpu")
    assert (tp.rank, tp.size, tp.backend) == (rank, world, "gloo")
    kw = dict(dtype=torch.bfloat16, device="cpu", scheme=scheme, backend="reference")
    par = dict(kw, tp_rank=rank, tp_size=world)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, K, generator=g).to(torch.bfloat16)
    out = {}

    def shard(seed, n, k=K):
        packed, scale, gw = _tensors(seed, n, k)
        return packed, scale, gw, _gx(seed)

    # -- column parallel, with a split bias ------------------------------------------------
    w = shard(1, N)
    bias_n = torch.linspace(-1, 1, N).to(torch.bfloat16)
    single = _load(NVFP4Linear(K, N, True, **kw), {None: w}, bias_n)
    col = _load(ColumnParallelNVFP4Linear(K, N, True, **par), {None: w}, bias_n)
    y1 = single(x)
    out["column"] = dict(
        codes=_bytes_equal(col.weight_packed, _rows(w[0], rank, world)),
        scales=_bytes_equal(col.weight_scale, _rows(w[1], rank, world)),
        out=torch.equal(col(x), y1[..., rank * N // world:(rank + 1) * N // world]),
    )

    # -- merged gate/up with different weight global scales -------------------------------
    gate, up = shard(2, 64), shard(3, 64)
    single = _load(NVFP4Linear(K, 128, False, output_sizes=[64, 64], shard_names=["gate", "up"], **kw),
                   {"gate": gate, "up": up})
    merged = _load(MergedColumnParallelNVFP4Linear(K, [64, 64], **par), {"gate": gate, "up": up})
    y1 = single(x)
    n = 64 // world
    expect = torch.cat([y1[..., rank * n:(rank + 1) * n], y1[..., 64 + rank * n:64 + (rank + 1) * n]], -1)
    out["merged"] = dict(
        codes=_bytes_equal(merged.weight_packed, torch.cat([_rows(gate[0], rank, world), _rows(up[0], rank, world)])),
        scales=_bytes_equal(merged.weight_scale, torch.cat([_rows(gate[1], rank, world), _rows(up[1], rank, world)])),
        out=torch.equal(merged(x), expect),
    )

    # -- fused QKV and separate k/v (KV heads replicated when world > KV_HEADS) ---------------
    q, k, v = shard(4, HEADS * HEAD), shard(5, KV_HEADS * HEAD), shard(6, KV_HEADS * HEAD)
    qn, kvn = HEADS * HEAD, KV_HEADS * HEAD
    single = _load(NVFP4Linear(K, qn + 2 * kvn, False, output_sizes=[qn, kvn, kvn], shard_names=["q", "k", "v"], **kw),
                   {"q": q, "k": k, "v": v})
    qkv = _load(QKVParallelNVFP4Linear(K, HEAD, HEADS, KV_HEADS, **par), {"q": q, "k": k, "v": v})
    reps = max(1, world // KV_HEADS)
    kv_index, kv_parts = rank // reps, world // reps
    y1 = single(x)
    qs, ks = qn // world, kvn // kv_parts
    expect = torch.cat([
        y1[..., rank * qs:(rank + 1) * qs],
        y1[..., qn + kv_index * ks:qn + (kv_index + 1) * ks],
        y1[..., qn + kvn + kv_index * ks:qn + kvn + (kv_index + 1) * ks],
    ], -1)
    out["qkv"] = dict(
        replicas=qkv.num_kv_head_replicas == reps,
        codes=_bytes_equal(qkv.weight_packed, torch.cat(
            [_rows(q[0], rank, world), _rows(k[0], kv_index, kv_parts), _rows(v[0], kv_index, kv_parts)])),
        scales=_bytes_equal(qkv.weight_scale, torch.cat(
            [_rows(q[1], rank, world), _rows(k[1], kv_index, kv_parts), _rows(v[1], kv_index, kv_parts)])),
        out=torch.equal(qkv(x), expect),
    )
    single_k = _load(NVFP4Linear(K, kvn, False, **kw), {None: k})
    kproj = _load(KVHeadParallelNVFP4Linear(K, HEAD, KV_HEADS, **par), {None: k})
    out["kv_heads"] = dict(
        replicas=kproj.num_kv_head_replicas == reps,
        codes=_bytes_equal(kproj.weight_packed, _rows(k[0], kv_index, kv_parts)),
        scales=_bytes_equal(kproj.weight_scale, _rows(k[1], kv_index, kv_parts)),
        out=torch.equal(kproj(x), single_k(x)[..., kv_index * ks:(kv_index + 1) * ks]),
    )

    # -- row parallel with a bias: partial sums all-reduced in fp32, bias added once ---------
    o = shard(8, N)
    bias = torch.full((N,), 0.5, dtype=torch.bfloat16)
    single = _load(NVFP4Linear(K, N, True, **kw), {None: o}, bias)
    row = _load(RowParallelNVFP4Linear(K, N, True, **par), {None: o}, bias)
    kp = K // world
    x_local = x[..., rank * kp:(rank + 1) * kp].contiguous()
    y_tp = row(x_local)
    y_1 = single(x)
    y32_1 = single.scheme.apply_weights(single, x.float(), None)  # fp32, before rounding
    y32_tp = row.forward_partial_fp32(x_local)
    dist.all_reduce(y32_tp)
    # |A| @ |W|^T with the exact operands of the GEMM (activations quantized for W4A4)
    if scheme == "w4a4":
        from nvfp4.numerics import dequantize_activation_unscaled, quantize_activation

        a = dequantize_activation_unscaled(*quantize_activation(x.reshape(-1, K), single.input_global_scale))
    else:
        a = x.reshape(-1, K).float()
    wabs = dequantize_weight_unscaled(single.weight_packed, single.weight_scale).abs()
    magnitude = (a.abs() @ wabs.t()).reshape(y32_1.shape) * single.alpha
    bound32 = 2 * (K + 2) * U32 * magnitude
    ulp = torch.finfo(torch.bfloat16).eps * y_1.float().abs().clamp_min(2.0 ** -126)
    out["row"] = dict(
        codes=_bytes_equal(row.weight_packed, _cols(o[0], rank, world)),
        scales=_bytes_equal(row.weight_scale, _cols(o[1], rank, world)),
        fp32_within=bool(((y32_tp - y32_1).abs() <= bound32).all()),
        fp32_max_ratio=float(((y32_tp - y32_1).abs() / bound32.clamp_min(1e-30)).max()),
        out_within=bool(((y_tp.float() - y_1.float()).abs() <= (bound32 + ulp)).all()),
        same_on_ranks=None,
        empty=tuple(row(x_local[:0]).shape) == (0, 5, N),
    )
    gathered = [torch.empty_like(y_tp) for _ in range(world)]
    dist.all_gather(gathered, y_tp)
    out["row"]["same_on_ranks"] = all(torch.equal(t, gathered[0]) for t in gathered)
    return out


@pytest.mark.parametrize("world", [2, 4])
def test_parallel_layers_match_single_process(world):
    results = run_ranks(_layers_worker, world, "w4a4", timeout=120).check()
    for rank, res in enumerate(results):
        for layer, checks in res.items():
            for name, value in checks.items():
                if name.endswith("_ratio"):
                    continue
                assert value is True, f"rank {rank}/{world}: {layer}: {name} failed ({checks})"


def test_parallel_layers_w4a16_two_ranks():
    results = run_ranks(_layers_worker, 2, "w4a16", timeout=120).check()
    for rank, res in enumerate(results):
        for layer, checks in res.items():
            for name, value in checks.items():
                if not name.endswith("_ratio"):
                    assert value is True, f"rank {rank}/2 (W4A16): {layer}: {name} failed ({checks})"
