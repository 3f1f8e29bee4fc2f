"""Whole models with tensor parallelism on gloo CPU ranks, against ``nvfp4.load`` (one process).

Cases (tiny random models, checkpoints in compressed-tensors layout):

* the tiny Llama of the model-loading tests, quantized by the compressed-tensors package's own
  pipeline (``hf_tiny.ct_quantize_and_save``), tp=2;
* a Llama quantized by our quantizer with *unequal* q/k/v and gate/up global scales, sharded in
  3 files, tp=2 and tp=4 (tp=4 > 2 KV heads: KV heads replicated on 2 ranks each);
* Qwen2 (q/k/v biases: column-parallel biases split) and Mistral, tp=2;
* Qwen3 (q_norm/k_norm) with k_proj and down_proj left unquantized (float parallel layers,
  KV replication of a float projection), W4A16, float32 activations, tp=4.

Bounds. Row-parallel layers sum float32 partials in another order than one process (see
test_tp_layers.py): each such output can differ by one bf16 ulp. In a float32 W4A16 model nothing
downstream is re-quantized, so logits agree to ``1e-4 * max|logits|`` (observed ~1e-7). In bf16
W4A4 a one-ulp change can flip one FP4 code of the next layer's activations, so the bound there is
looser, ``2^-6 * max|logits|`` (on the machines we ran, the logits were bit-identical). Greedy
tokens must be identical in every case.

A rank reads only its slices: every read the rank made is checked against the rows/columns that
rank must own, computed here from the config (not from the library's partitioning).
"""

from __future__ import annotations

import pytest
import torch

import hf_tiny
import tp_harness
from tp_harness import run_ranks

NEW_TOKENS = 6


def _ids(vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp_ckpts")
    out = {}
    model = hf_tiny.float_model(hf_tiny.tiny_config("llama"))
    out["llama_ct"] = hf_tiny.ct_quantize_and_save(model, root / "llama_ct")
    out["llama"] = tp_harness.write_checkpoint(tp_harness.tiny_float_model("llama"), root / "llama", shards=3)
    out["qwen2"] = tp_harness.write_checkpoint(tp_harness.tiny_float_model("qwen2", seed=2), root / "qwen2")
    out["mistral"] = tp_harness.write_checkpoint(tp_harness.tiny_float_model("mistral", seed=3), root / "mistral")
    out["qwen3_mixed"] = tp_harness.write_checkpoint(
        tp_harness.tiny_float_model("qwen3", seed=4, head_dim=16), root / "qwen3_mixed", scheme="NVFP4A16",
        ignore=("lm_head", "re:.*k_proj$", "re:.*down_proj$"),
    )
    return out


def _model_worker(rank, world, cases):
    import nvfp4
    from nvfp4.parallel import load_tp

    results = {}
    for label, path, ids, dtype in cases:
        if label == "mistral":  # the nvfp4.load(..., tp=N) entry
            model = nvfp4.load(path, device="cpu", dtype=dtype, progress=False, tp=world)
        else:
            model = load_tp(path, tp=world, device="cpu", dtype=dtype, progress=False)
        assert model.nvfp4_tp.size == world and model.nvfp4_tp.rank == rank
        attn = model.model.layers[0].self_attn
        with torch.no_grad():
            logits = model(ids).logits
            tokens = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                    min_new_tokens=NEW_TOKENS, do_sample=False)
        results[label] = dict(
            logits=logits, tokens=tokens, kv_groups=attn.num_key_value_groups,
            reads=[(r.name, r.ranges, r.nbytes) for r in model.nvfp4_slice_reader.reads],
            kinds={p: type(getattr(attn, p)).__name__ for p in ("q_proj", "k_proj", "o_proj")}
            | {"down_proj": type(model.model.layers[0].mlp.down_proj).__name__},
        )
    return results


def _reference(path, ids, dtype):
    import nvfp4

    model = nvfp4.load(path, device="cpu", dtype=dtype, progress=False)
    with torch.no_grad():
        logits = model(ids).logits
        tokens = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                min_new_tokens=NEW_TOKENS, do_sample=False)
    return logits, tokens


def _expected_ranges(name, shape, config, rank, world):
    """The rows/columns of ``name`` that ``rank`` must read (None: the whole tensor)."""
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    leaf = name.rsplit(".", 1)[-1]
    proj = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else ""
    whole = tuple((0, s) for s in shape)
    if leaf in ("weight_global_scale", "input_global_scale") or proj not in (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    ):
        return whole
    if proj in ("o_proj", "down_proj"):
        if leaf == "bias":
            return whole
        n = shape[1] // world
        return ((0, shape[0]), (rank * n, (rank + 1) * n))
    if proj in ("k_proj", "v_proj"):
        replicas = max(1, world // kv)
        index, parts = rank // replicas, world // replicas
    else:
        index, parts = rank, world
    n = shape[0] // parts
    return ((index * n, (index + 1) * n),) + tuple((0, s) for s in shape[1:])


def _check_reads(path, reads, rank, world):
    from safetensors import safe_open
    from transformers import AutoConfig

    from nvfp4.checkpoint import find_checkpoint_files

    config = AutoConfig.from_pretrained(str(path))
    files = find_checkpoint_files(path)
    shapes = {}
    for file in files.files:
        with safe_open(str(file), "pt") as f:
            for k in f.keys():
                shapes[k] = tuple(f.get_slice(k).get_shape())
    names = [r[0] for r in reads]
    assert sorted(names) == sorted(shapes), "every tensor read exactly once"
    expected_bytes = 0
    for name, ranges, nbytes in reads:
        want = _expected_ranges(name, shapes[name], config, rank, world)
        assert tuple(ranges) == want, f"rank {rank}/{world} read {name}{list(ranges)}, expected {list(want)}"
        expected_bytes += nbytes
    split_bytes = sum(nb for n, rg, nb in reads if tuple(rg) != tuple((0, s) for s in shapes[n]))
    assert split_bytes > 0
    return expected_bytes


def _compare(label, res, ref_logits, ref_tokens, rel_bound):
    diff = (res["logits"].float() - ref_logits.float()).abs().max().item()
    scale = ref_logits.float().abs().max().item()
    assert diff <= rel_bound * scale, f"{label}: max|logits diff| {diff} > {rel_bound} * {scale}"
    assert torch.equal(res["tokens"], ref_tokens), f"{label}: greedy tokens differ"


def test_tp2_models_match_one_process(checkpoints):
    bf16 = torch.bfloat16
    cases = [
        ("llama_ct", checkpoints["llama_ct"], _ids(hf_tiny.VOCAB), bf16),
        ("llama", checkpoints["llama"], _ids(96, 1), bf16),
        ("qwen2", checkpoints["qwen2"], _ids(96, 2), bf16),
        ("mistral", checkpoints["mistral"], _ids(96, 3), bf16),
    ]
    results = run_ranks(_model_worker, 2, cases, timeout=150).check()
    for label, path, ids, dtype in cases:
        ref_logits, ref_tokens = _reference(path, ids, dtype)
        for rank in range(2):
            res = results[rank][label]
            _compare(f"{label} rank {rank}", res, ref_logits, ref_tokens, 2.0 ** -6)
            assert res["kv_groups"] == 2  # 2 of 4 query heads over 1 of 2 KV heads
            _check_reads(path, res["reads"], rank, 2)
        # every rank holds the same logits (replicated lm_head after the all-reduces)
        assert torch.equal(results[0][label]["logits"], results[1][label]["logits"])


def test_tp4_kv_replication_and_float_projections(checkpoints):
    cases = [
        ("llama", checkpoints["llama"], _ids(96, 1), torch.bfloat16),
        ("qwen3_mixed", checkpoints["qwen3_mixed"], _ids(96, 4), torch.float32),
    ]
    results = run_ranks(_model_worker, 4, cases, timeout=170).check()
    for label, path, ids, dtype in cases:
        ref_logits, ref_tokens = _reference(path, ids, dtype)
        bound = 2.0 ** -6 if dtype == torch.bfloat16 else 1e-4
        for rank in range(4):
            res = results[rank][label]
            _compare(f"{label} tp=4 rank {rank}", res, ref_logits, ref_tokens, bound)
            assert res["kv_groups"] == 1  # 1 query head per rank over 1 (replicated) KV head
            if label == "qwen3_mixed":
                assert res["kinds"] == {"q_proj": "ColumnParallelNVFP4Linear", "k_proj": "ColumnParallelFloatLinear",
                                        "o_proj": "RowParallelNVFP4Linear", "down_proj": "RowParallelFloatLinear"}
            else:
                assert res["kinds"]["k_proj"] == "KVHeadParallelNVFP4Linear"
            _check_reads(path, res["reads"], rank, 4)
