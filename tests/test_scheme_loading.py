"""Loading NVFP4 layers from compressed-tensors-produced tensors: fused q/k/v and gate/up shard
by shard (equal and unequal weight global scales), fused tensors already on disk, and tensor
parallelism simulated in one process (column, merged column, QKV with KV-head replication,
row) at tp = 2 and 4. Forwards are checked against float64 with the fp32-order bound of
``test_reference_gemm.py``."""

import warnings

import pytest
import torch

from core_helpers import (
    assert_within,
    ct_compress,
    ct_global_scale,
    decode_codes,
    dequant_unscaled_f64,
    gemm_bound,
    ref_activation_quant,
)
from nvfp4 import (
    ColumnParallelNVFP4Linear,
    MergedColumnParallelNVFP4Linear,
    NVFP4Linear,
    QKVParallelNVFP4Linear,
    RowParallelNVFP4Linear,
)

K = 64
GX = torch.tensor([448 * 6 / 3.0])
QKV_PREFIX = "model.layers.0.self_attn.qkv_proj"


def shard_weights(sizes, seed, k=K, scales=None, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    scales = scales or [0.05] * len(sizes)
    return [(torch.randn(n, k, generator=g) * s).to(dtype) for n, s in zip(sizes, scales)]


def compress_shards(weights, shared: bool):
    gs = ct_global_scale(*weights) if shared else None
    return [ct_compress(w, gs) for w in weights]


def load(layer, name, tensor, shard=None):
    layer.weight_loader(getattr(layer, name), tensor, shard)


def load_shards(layer, sds, shard_ids, gx=GX):
    for sd, sid in zip(sds, shard_ids):
        for name in ("weight_packed", "weight_scale", "weight_global_scale"):
            load(layer, name, sd[name], sid)
        if hasattr(layer, "input_global_scale"):
            load(layer, "input_global_scale", gx, sid)


def activation_operand(x2d, gx):
    k = x2d.shape[-1]
    codes, s = ref_activation_quant(x2d, gx.reshape(1))
    return (decode_codes(codes.to(torch.int64)).reshape(-1, k // 16, 16) * s.double().unsqueeze(-1)).reshape(-1, k)


def reference(x2d, sds, gx=GX, gw_override=None):
    """fp64 Y and bound for shards ``sds`` stacked along outputs, alpha per shard (vLLM's fp32 formula)."""
    w64 = torch.cat([dequant_unscaled_f64(sd["weight_packed"], sd["weight_scale"]) for sd in sds])
    alphas = []
    for sd in sds:
        gw = sd["weight_global_scale"] if gw_override is None else gw_override
        alphas.append((1.0 / (gx * gw)).expand(sd["weight_packed"].shape[0]))
    alpha = torch.cat(alphas).double()
    return gemm_bound(activation_operand(x2d, gx), w64, alpha, x2d.dtype)


def x_input(m=5, k=K, seed=99, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g).to(dtype)


# -- fused q/k/v on one (replicated) layer ------------------------------------------------------
def qkv_layer(**kw):
    return NVFP4Linear(K, 64 + 32 + 32, bias=False, output_sizes=[64, 32, 32], shard_names=["q", "k", "v"],
                       prefix=QKV_PREFIX, **kw)


def test_qkv_shard_by_shard_equal_global_scales():
    weights = shard_weights([64, 32, 32], seed=1, scales=[0.05, 0.2, 0.01])
    sds = compress_shards(weights, shared=True)
    layer = qkv_layer()
    load_shards(layer, sds, ["q", "k", "v"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # equal scales: no warning
        layer.process_weights_after_loading()
    assert torch.equal(layer.weight_packed, torch.cat([sd["weight_packed"] for sd in sds]))
    assert torch.equal(layer.weight_scale.view(torch.uint8),
                       torch.cat([sd["weight_scale"] for sd in sds]).view(torch.uint8))
    assert torch.equal(layer.alpha, (1.0 / (GX * sds[0]["weight_global_scale"])).expand(128))
    x = x_input()
    y, bound = reference(x, sds)
    assert_within(layer(x), y, bound)


def test_qkv_loaded_in_any_order():
    sds = compress_shards(shard_weights([64, 32, 32], seed=2), shared=True)
    a, b = qkv_layer(), qkv_layer()
    load_shards(a, sds, ["q", "k", "v"])
    load_shards(b, sds[::-1], ["v", "k", "q"])
    for layer in (a, b):
        layer.process_weights_after_loading()
    assert torch.equal(a.weight_packed, b.weight_packed) and torch.equal(a.alpha, b.alpha)


def test_qkv_unequal_global_scales_exact_per_shard_alpha():
    weights = shard_weights([64, 32, 32], seed=3, scales=[0.05, 0.5, 0.002])
    sds = compress_shards(weights, shared=False)
    gws = [sd["weight_global_scale"].item() for sd in sds]
    assert len(set(gws)) == 3
    layer = qkv_layer()
    load_shards(layer, sds, ["q", "k", "v"])
    with pytest.warns(UserWarning, match=QKV_PREFIX + ".*different weight global scales"):
        layer.process_weights_after_loading()
    expected_alpha = torch.cat([(1.0 / (GX * sd["weight_global_scale"])).expand(n) for sd, n in zip(sds, (64, 32, 32))])
    assert torch.equal(layer.alpha, expected_alpha)
    x = x_input()
    y, bound = reference(x, sds)
    assert_within(layer(x), y, bound)


def test_qkv_unequal_global_scales_max_policy_reproduces_vllm():
    sds = compress_shards(shard_weights([64, 32, 32], seed=4, scales=[0.05, 0.5, 0.002]), shared=False)
    layer = qkv_layer(shard_scale_policy="max")
    load_shards(layer, sds, ["q", "k", "v"])
    with pytest.warns(UserWarning, match=QKV_PREFIX + ".*max\\(\\)"):
        layer.process_weights_after_loading()
    gw_max = torch.stack([sd["weight_global_scale"] for sd in sds]).amax().reshape(1)
    assert torch.equal(layer.alpha, (1.0 / (GX * gw_max)).expand(128))  # vLLM: alpha = 1/(Gx*max(Gw))
    x = x_input()
    y, bound = reference(x, sds, gw_override=gw_max)
    assert_within(layer(x), y, bound)
    # and it is *not* the exact answer: the shards with a smaller Gw are rescaled
    y_exact, _ = reference(x, sds)
    assert (layer(x).double() - y_exact).abs().max() > 10 * bound.max()


def test_shard_scale_policy_from_environment(monkeypatch):
    monkeypatch.setenv("NVFP4_SHARD_SCALES", "max")
    assert qkv_layer().scheme.shard_scale_policy == "max"
    monkeypatch.setenv("NVFP4_SHARD_SCALES", "bogus")
    with pytest.raises(ValueError, match="shard_scale_policy"):
        qkv_layer()


def test_unequal_input_global_scales_use_the_max():
    sds = compress_shards(shard_weights([64, 32, 32], seed=5), shared=True)
    layer = qkv_layer()
    for sd, sid, gx in zip(sds, "qkv", (100.0, 400.0, 200.0)):
        for name in ("weight_packed", "weight_scale", "weight_global_scale"):
            load(layer, name, sd[name], sid)
        load(layer, "input_global_scale", torch.tensor([gx]), sid)
    with pytest.warns(UserWarning, match="different input global scales"):
        layer.process_weights_after_loading()
    assert layer.input_global_scale.tolist() == [400.0]


@pytest.mark.parametrize("ids", [("gate", "up"), (0, 1)])
def test_gate_up_by_name_and_integer_ids(ids):
    sds = compress_shards(shard_weights([48, 48], seed=6, scales=[0.1, 0.03]), shared=False)
    layer = NVFP4Linear(K, 96, bias=False, output_sizes=[48, 48],
                        shard_names=["gate", "up"] if isinstance(ids[0], str) else None, prefix="mlp.gate_up_proj")
    load_shards(layer, sds, ids)
    with pytest.warns(UserWarning, match="mlp.gate_up_proj"):
        layer.process_weights_after_loading()
    x = x_input()
    y, bound = reference(x, sds)
    assert_within(layer(x), y, bound)


def test_fused_tensors_already_on_disk():
    sds = compress_shards(shard_weights([64, 32, 32], seed=7), shared=True)
    by_shard = qkv_layer()
    load_shards(by_shard, sds, ["q", "k", "v"])
    fused = qkv_layer()
    load(fused, "weight_packed", torch.cat([sd["weight_packed"] for sd in sds]))
    load(fused, "weight_scale", torch.cat([sd["weight_scale"] for sd in sds]))
    load(fused, "weight_global_scale", sds[0]["weight_global_scale"])  # one value: every slot takes it
    load(fused, "input_global_scale", GX)
    assert fused.weight_global_scale.tolist() == [sds[0]["weight_global_scale"].item()] * 3
    assert fused.input_global_scale.tolist() == [GX.item()] * 3
    for layer in (by_shard, fused):
        layer.process_weights_after_loading()
    for name in ("weight_packed", "alpha", "weight_global_scale", "input_global_scale"):
        assert torch.equal(getattr(by_shard, name), getattr(fused, name)), name
    x = x_input()
    assert torch.equal(by_shard(x), fused(x))


def test_per_shard_global_scale_vector_on_disk():
    layer = qkv_layer()
    load(layer, "weight_global_scale", torch.tensor([1.0, 2.0, 3.0]))
    assert layer.weight_global_scale.tolist() == [1.0, 2.0, 3.0]


# -- tensor parallelism, simulated ---------------------------------------------------------------
def full_sd(n, seed, k=K):
    return ct_compress(shard_weights([n], seed, k=k)[0])


def load_full(layer, sd, bias=None, gx=GX):
    for name in ("weight_packed", "weight_scale", "weight_global_scale"):
        load(layer, name, sd[name])
    load(layer, "input_global_scale", gx)
    if bias is not None:
        load(layer, "bias", bias)
    layer.process_weights_after_loading()
    return layer


@pytest.mark.parametrize("tp", [2, 4])
def test_column_parallel(tp):
    n = 48
    sd = full_sd(n, seed=10)
    bias = torch.randn(n).to(torch.bfloat16)
    single = load_full(NVFP4Linear(K, n, bias=False), sd)
    x = x_input(m=7)
    outs = []
    for r in range(tp):
        layer = load_full(ColumnParallelNVFP4Linear(K, n, bias=True, tp_rank=r, tp_size=tp), sd, bias)
        rows = slice(r * n // tp, (r + 1) * n // tp)
        assert torch.equal(layer.weight_packed, sd["weight_packed"][rows])
        assert torch.equal(layer.weight_scale.view(torch.uint8), sd["weight_scale"][rows].view(torch.uint8))
        assert torch.equal(layer.bias, bias[rows])
        with_bias = layer(x)
        layer.bias = None
        outs.append(layer(x))
        assert torch.equal(with_bias, outs[-1] + bias[rows])
    out = torch.cat(outs, dim=-1)
    y, bound = reference(x, [sd])
    assert_within(out, y, bound)
    # the single layer does the same operations per output element: equal up to fp32 order
    assert_within(single(x), y, bound)
    assert_within(out, single(x).double(), 2 * bound)


@pytest.mark.parametrize("tp", [2, 4])
def test_merged_column_parallel_gate_up(tp):
    inter = 32
    sds = compress_shards(shard_weights([inter, inter], seed=11, scales=[0.1, 0.02]), shared=False)
    x = x_input(m=3)
    y, bound = reference(x, sds)
    gate_parts, up_parts = [], []
    for r in range(tp):
        layer = MergedColumnParallelNVFP4Linear(K, [inter, inter], tp_rank=r, tp_size=tp, prefix="mlp.gate_up_proj")
        load_shards(layer, sds, ["gate", "up"])
        with pytest.warns(UserWarning, match="mlp.gate_up_proj"):
            layer.process_weights_after_loading()
        part = inter // tp
        rows = slice(r * part, (r + 1) * part)
        assert torch.equal(layer.weight_packed, torch.cat([sds[0]["weight_packed"][rows], sds[1]["weight_packed"][rows]]))
        assert torch.equal(layer.weight_scale.view(torch.uint8),
                           torch.cat([sds[0]["weight_scale"][rows], sds[1]["weight_scale"][rows]]).view(torch.uint8))
        out = layer(x)
        gate_parts.append(out[:, :part])
        up_parts.append(out[:, part:])
    assert_within(torch.cat(gate_parts + up_parts, dim=-1), y, bound)


@pytest.mark.parametrize("tp,heads,kv_heads", [(2, 4, 2), (4, 4, 2), (4, 8, 1), (2, 4, 4)])
def test_qkv_parallel_with_kv_replication(tp, heads, kv_heads):
    hd = 16
    sizes = [heads * hd, kv_heads * hd, kv_heads * hd]
    sds = compress_shards(shard_weights(sizes, seed=12, scales=[0.05, 0.3, 0.01]), shared=True)
    x = x_input(m=4)
    y, bound = reference(x, sds)
    replicas = max(1, tp // kv_heads)
    kv_per_rank = max(1, kv_heads // tp) * hd
    q_parts, k_parts, v_parts = [], [], []
    for r in range(tp):
        layer = QKVParallelNVFP4Linear(K, hd, heads, kv_heads, tp_rank=r, tp_size=tp, prefix=QKV_PREFIX)
        load_shards(layer, sds, ["q", "k", "v"])
        layer.process_weights_after_loading()
        assert layer.num_kv_head_replicas == replicas
        q_rows = slice(r * heads * hd // tp, (r + 1) * heads * hd // tp)
        kv_index = r // replicas
        kv_rows = slice(kv_index * kv_per_rank, (kv_index + 1) * kv_per_rank)
        expected_packed = torch.cat([sds[0]["weight_packed"][q_rows], sds[1]["weight_packed"][kv_rows],
                                     sds[2]["weight_packed"][kv_rows]])
        assert torch.equal(layer.weight_packed, expected_packed)
        expected_scale = torch.cat([sds[0]["weight_scale"][q_rows], sds[1]["weight_scale"][kv_rows],
                                    sds[2]["weight_scale"][kv_rows]])
        assert torch.equal(layer.weight_scale.view(torch.uint8), expected_scale.view(torch.uint8))
        # global scales are never split: every rank holds the (shared) Gw and Gx whole
        assert torch.equal(layer.weight_global_scale, sds[0]["weight_global_scale"].expand(3))
        assert torch.equal(layer.input_global_scale, GX)
        out = layer(x)
        nq = heads * hd // tp
        q_parts.append(out[:, :nq])
        if r % replicas == 0:  # one copy of each replicated KV head group
            k_parts.append(out[:, nq:nq + kv_per_rank])
            v_parts.append(out[:, nq + kv_per_rank:])
            group_kv = out[:, nq:]
        else:  # a replica computes the same K/V outputs as its group's first rank
            assert torch.equal(out[:, nq:], group_kv)
    assert_within(torch.cat(q_parts + k_parts + v_parts, dim=-1), y, bound)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tp", [2, 4])
def test_row_parallel(tp, dtype):
    k, n = 128, 24
    sd = full_sd(n, seed=13, k=k)
    bias = torch.randn(n).to(dtype)
    x = x_input(m=6, k=k, dtype=dtype)
    partials = []
    total_bound = torch.zeros(6, n, dtype=torch.float64)
    kp = k // tp
    for r in range(tp):
        layer = load_full(RowParallelNVFP4Linear(k, n, bias=True, tp_rank=r, tp_size=tp, dtype=dtype), sd, bias)
        cols = slice(r * kp // 2, (r + 1) * kp // 2)
        assert torch.equal(layer.weight_packed, sd["weight_packed"][:, cols])
        groups = slice(r * kp // 16, (r + 1) * kp // 16)
        assert torch.equal(layer.weight_scale.view(torch.uint8), sd["weight_scale"][:, groups].view(torch.uint8))
        assert torch.equal(layer.bias, bias)  # every rank holds the bias, only rank 0 adds it
        x_r = x[:, r * kp:(r + 1) * kp]
        part = layer.forward_partial(x_r)
        if r == 0:
            layer.bias = None
            assert torch.equal(part, layer.forward_partial(x_r) + bias)
            part = layer.forward_partial(x_r)
        partials.append(part)
        w64 = dequant_unscaled_f64(layer.weight_packed, layer.weight_scale)
        y_r, b_r = gemm_bound(activation_operand(x_r, GX), w64, layer.alpha.double(), dtype)
        assert_within(part, y_r, b_r, f"rank {r} partial")
        total_bound += b_r
    y, bound = reference(x, [sd])
    total = sum(p.double() for p in partials)
    # the sum of the per-rank partials (each within its own bound) is within the sum of the bounds
    assert_within(total, y, total_bound)
    single = load_full(RowParallelNVFP4Linear(k, n, bias=False, dtype=dtype), sd)
    assert_within(single(x), y, bound)
    assert_within(total, single(x).double(), total_bound + bound)
