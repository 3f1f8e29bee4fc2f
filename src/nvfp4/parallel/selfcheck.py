"""Validate tensor parallelism on this machine: ``torchrun --nproc-per-node N -m nvfp4.parallel.selfcheck``.

Runs on every rank (NCCL on GPUs, gloo on the CPU) and exits 0 only if every check passes:

1. **collectives**: a float32 all-reduce on the device, ``agree`` and an object all-gather;
2. **layers** (W4A4 and W4A16): column, merged gate/up, fused QKV, k/v by KV head (replicated
   when N > KV heads) and row-parallel NVFP4 layers against the one-device layer built from
   the same tensors, with the chosen backend: this rank's codes and block scales are exactly
   its rows/columns of the full tensors; outputs are within the fp32 summation-order bound
   ``2 (K + 2) 2^-24 alpha |A||W|^T`` plus one ulp of the output dtype (``*_equal`` says
   whether they are even bit-identical); a row-parallel bias is added once;
3. **model**: a random Llama-shaped model (``--shape tiny`` or ``8b``: Llama-3.1-8B's widths
   with ``--layers`` layers) quantized by ``nvfp4.quantize_model`` and saved by rank 0, then
   loaded by every rank with ``load_tp`` (N ranks) and with ``nvfp4.load`` (one device): greedy
   tokens must be identical, logits within ``--logit-tol`` x max|logits|.

Rank 0 prints a JSON summary (and writes it to ``--out`` when given). The checkpoint goes to
``--workdir`` (default: a temporary directory of rank 0; one host, or a shared file system).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch

U32 = 2.0 ** -24


# -- layers ---------------------------------------------------------------------------------
def _quantized(seed: int, n: int, k: int):
    from ..numerics import quantize_weight

    g = torch.Generator().manual_seed(seed)
    packed, scale, gw = quantize_weight((torch.randn(n, k, generator=g) * 0.1).to(torch.bfloat16))
    return packed, scale, gw, torch.tensor([448.0 * 6 / (3.0 + seed)], dtype=torch.float32)


def _load(layer, shards: dict, bias=None):
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


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().cpu(), b.detach().cpu()
    return a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def _magnitude(layer, x: torch.Tensor) -> torch.Tensor:
    """``alpha * |A| @ |W|^T`` with the exact GEMM operands of a (one-device) layer."""
    from ..numerics import dequantize_activation_unscaled, dequantize_weight_unscaled, quantize_activation

    k = layer.input_size_per_partition
    x2 = x.reshape(-1, k)
    if layer.scheme.weight_only:
        a = x2.float()
    else:
        a = dequantize_activation_unscaled(*quantize_activation(x2, layer.input_global_scale))
    w = dequantize_weight_unscaled(layer.weight_packed, layer.weight_scale)
    return ((a.abs() @ w.abs().t()) * layer.alpha).reshape(*x.shape[:-1], -1)


def _within(y: torch.Tensor, ref: torch.Tensor, magnitude: torch.Tensor, k: int, partial_roundings: int = 0,
            partial_dtype=None) -> bool:
    """fp32 order bound, + one ulp of ``ref``'s dtype, + half an ulp of ``partial_dtype`` per
    rounded row-parallel partial (backends without exact float32 partials)."""
    bound = 2 * (k + 2) * U32 * magnitude
    if ref.dtype != torch.float32:
        bound = bound + torch.finfo(ref.dtype).eps * ref.float().abs()
    if partial_roundings:
        bound = bound + 0.5 * partial_roundings * torch.finfo(partial_dtype).eps * magnitude
    return bool(((y.float() - ref.float()).abs() <= bound).all())


def check_parallel_layers(tp, scheme: str = "w4a4", backend: str | None = None, dtype=torch.bfloat16,
                          k: int = 128, n: int = 48, head: int = 16, heads: int = 4, kv_heads: int = 2) -> dict:
    """Every parallel layer of this rank against the one-device layer (see the module doc)."""
    import torch.distributed as dist

    from ..layers import (
        ColumnParallelNVFP4Linear, MergedColumnParallelNVFP4Linear, NVFP4Linear, QKVParallelNVFP4Linear,
        RowParallelNVFP4Linear,
    )
    from ..layers.linear import exact_fp32_partials
    from .layers import KVHeadParallelNVFP4Linear

    rank, world, device = tp.rank, tp.size, tp.device
    kw = dict(dtype=dtype, device=device, scheme=scheme, backend=backend)
    par = dict(kw, tp_rank=rank, tp_size=world)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, k, generator=g).to(dtype).to(device)
    out = {}

    def rows(t, index, parts):
        m = t.shape[0] // parts
        return t[index * m:(index + 1) * m]

    def column_result(layer, single, expect_cols, packed_rows, scale_rows):
        y, y1 = layer(x), single(x)
        mag = _magnitude(single, x)
        idx = torch.tensor(expect_cols, device=y1.device)
        return dict(
            codes=_same_bytes(layer.weight_packed, packed_rows), scales=_same_bytes(layer.weight_scale, scale_rows),
            out_within=_within(y, y1.index_select(-1, idx), mag.index_select(-1, idx), k),
            out_equal=torch.equal(y, y1.index_select(-1, idx)),
        )

    # column parallel with a split bias
    w = _quantized(1, n, k)
    bias_n = torch.linspace(-1, 1, n).to(dtype)
    per = n // world
    out["column"] = column_result(
        _load(ColumnParallelNVFP4Linear(k, n, True, **par), {None: w}, bias_n),
        _load(NVFP4Linear(k, n, True, **kw), {None: w}, bias_n),
        list(range(rank * per, (rank + 1) * per)), rows(w[0], rank, world), rows(w[1], rank, world),
    )
    # merged gate/up with different weight global scales
    gate, up, inter = _quantized(2, 64, k), _quantized(3, 64, k), 64
    per = inter // world
    out["merged"] = column_result(
        _load(MergedColumnParallelNVFP4Linear(k, [inter, inter], **par), {"gate": gate, "up": up}),
        _load(NVFP4Linear(k, 2 * inter, False, output_sizes=[inter, inter], shard_names=["gate", "up"], **kw),
              {"gate": gate, "up": up}),
        list(range(rank * per, (rank + 1) * per)) + list(range(inter + rank * per, inter + (rank + 1) * per)),
        torch.cat([rows(gate[0], rank, world), rows(up[0], rank, world)]),
        torch.cat([rows(gate[1], rank, world), rows(up[1], rank, world)]),
    )
    # fused QKV, and k_proj alone; KV heads replicated when world > kv_heads
    qn, kvn = heads * head, kv_heads * head
    q, kk, v = _quantized(4, qn, k), _quantized(5, kvn, k), _quantized(6, kvn, k)
    reps = max(1, world // kv_heads)
    kvi, kvp = rank // reps, world // reps
    qs, ks = qn // world, kvn // kvp
    cols = (list(range(rank * qs, (rank + 1) * qs)) + list(range(qn + kvi * ks, qn + (kvi + 1) * ks))
            + list(range(qn + kvn + kvi * ks, qn + kvn + (kvi + 1) * ks)))
    qkv = _load(QKVParallelNVFP4Linear(k, head, heads, kv_heads, **par), {"q": q, "k": kk, "v": v})
    out["qkv"] = column_result(
        qkv,
        _load(NVFP4Linear(k, qn + 2 * kvn, False, output_sizes=[qn, kvn, kvn], shard_names=["q", "k", "v"], **kw),
              {"q": q, "k": kk, "v": v}),
        cols,
        torch.cat([rows(q[0], rank, world), rows(kk[0], kvi, kvp), rows(v[0], kvi, kvp)]),
        torch.cat([rows(q[1], rank, world), rows(kk[1], kvi, kvp), rows(v[1], kvi, kvp)]),
    )
    out["qkv"]["replicas"] = qkv.num_kv_head_replicas == reps
    kproj = _load(KVHeadParallelNVFP4Linear(k, head, kv_heads, **par), {None: kk})
    out["kv_heads"] = column_result(
        kproj, _load(NVFP4Linear(k, kvn, False, **kw), {None: kk}), list(range(kvi * ks, (kvi + 1) * ks)),
        rows(kk[0], kvi, kvp), rows(kk[1], kvi, kvp),
    )
    out["kv_heads"]["replicas"] = kproj.num_kv_head_replicas == reps
    # row parallel with a bias (added once), fp32 partial sums all-reduced
    o = _quantized(8, n, k)
    bias = torch.full((n,), 0.5, dtype=dtype)
    single = _load(NVFP4Linear(k, n, True, **kw), {None: o}, bias)
    row = _load(RowParallelNVFP4Linear(k, n, True, process_group=tp.group, **par), {None: o}, bias)
    kp = k // world
    x_local = x[..., rank * kp:(rank + 1) * kp].contiguous()
    y_tp, y_1 = row(x_local), single(x)
    y32_1 = single.scheme.apply_weights(single, x.float(), None)
    y32_tp = row.forward_partial_fp32(x_local)
    if world > 1:
        dist.all_reduce(y32_tp, group=tp.group)
    mag = _magnitude(single, x)
    backend_obj = row.scheme._backend_for(row, device)
    exact = exact_fp32_partials(backend_obj)
    rounded = 0 if (exact or world == 1) else world  # partials rounded to dtype before the fp32 sum
    gathered = [torch.empty_like(y_tp) for _ in range(world)]
    if world > 1:
        dist.all_gather(gathered, y_tp, group=tp.group)
    else:
        gathered = [y_tp]
    out["row"] = dict(
        codes=_same_bytes(row.weight_packed, o[0][:, rank * kp // 2:(rank + 1) * kp // 2]),
        scales=_same_bytes(row.weight_scale, o[1][:, rank * kp // 16:(rank + 1) * kp // 16]),
        fp32_within=_within(y32_tp, y32_1, mag, k, rounded, dtype),
        out_within=_within(y_tp, y_1, mag, k, rounded, dtype),
        exact_fp32_partials=f"{backend_obj.name}: {bool(exact)}",
        out_equal=torch.equal(y_tp, y_1),
        same_on_ranks=all(torch.equal(t, gathered[0]) for t in gathered),
        empty=tuple(row(x_local[:0]).shape) == (0, 5, n),
    )
    return out


def failed_checks(results: dict, ignore=("out_equal", "exact_fp32_partials")) -> list[str]:
    """Names of the checks that are not True (``out_equal`` is informative, not required)."""
    return [f"{layer}.{name}" for layer, checks in results.items() for name, value in checks.items()
            if name not in ignore and value is not True]


# -- model ----------------------------------------------------------------------------------
def llama_config(shape: str, layers: int | None):
    from transformers import LlamaConfig

    if shape == "tiny":
        return LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=layers or 2,
                           num_attention_heads=8, num_key_value_heads=2, head_dim=32, vocab_size=512,
                           max_position_embeddings=256)
    if shape == "8b":  # Llama-3.1-8B's widths
        return LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers or 2,
                           num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                           max_position_embeddings=2048, rope_theta=500000.0)
    raise ValueError(f"--shape must be tiny or 8b, got {shape!r}")


def write_random_checkpoint(directory, shape: str, layers: int | None, device, scheme="NVFP4", seed: int = 0):
    from transformers import AutoModelForCausalLM

    import nvfp4

    torch.manual_seed(seed)
    config = llama_config(shape, layers)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to(device).eval()
    calib = [torch.randint(0, config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(seed + i))
             for i in range(2)]
    nvfp4.quantize_model(model, calib if scheme == "NVFP4" else None, ignore=["lm_head"], scheme=scheme,
                         progress=False)
    nvfp4.save(model, directory, overwrite=True)
    return directory


def check_model(tp, path, *, dtype=torch.bfloat16, backend=None, new_tokens=16, logit_tol=2.0 ** -6) -> dict:
    import nvfp4

    from ..distributed import all_gather_objects
    from .model import load_tp

    vocab = json.load(open(os.path.join(path, "config.json")))["vocab_size"]
    ids = torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(1)).to(tp.device)
    mask = torch.ones_like(ids)
    gen = dict(attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    with torch.no_grad():
        one = nvfp4.load(path, device=tp.device, dtype=dtype, backend=backend, progress=False)
        ref_logits = one(ids).logits.float()
        ref_tokens = one.generate(ids, **gen)
        del one
        start = time.perf_counter()
        model = load_tp(path, group=tp, dtype=dtype, backend=backend, progress=False)
        load_s = time.perf_counter() - start
        logits = model(ids).logits.float()
        tokens = model.generate(ids, **gen)
    diff = (logits - ref_logits).abs().max().item()
    scale = ref_logits.abs().max().item()
    all_tokens = all_gather_objects(tokens.cpu().tolist(), tp)
    same = (tokens == ref_tokens).all(0)
    first_diff = int((~same).nonzero()[0]) - ids.shape[1] if not bool(same.all()) else None
    return dict(
        logits_max_abs_diff=diff, logits_max_abs=scale, logits_equal=bool(torch.equal(logits, ref_logits)),
        logits_within=diff <= logit_tol * scale, tokens_equal=bool(torch.equal(tokens, ref_tokens)),
        tokens_same_on_ranks=all(t == all_tokens[0] for t in all_tokens), first_differing_new_token=first_diff,
        load_seconds=load_s,
        summary=model.nvfp4_tp_summary,
    )


# -- main -----------------------------------------------------------------------------------
def _parser():
    p = argparse.ArgumentParser(prog="python -m nvfp4.parallel.selfcheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if GPUs, else cpu), cuda or cpu")
    p.add_argument("--backend", default=None, help="NVFP4 backend (default: auto; e.g. triton, reference)")
    p.add_argument("--shape", default="tiny", choices=("tiny", "8b"), help="model widths for the model check")
    p.add_argument("--layers", type=int, default=None, help="decoder layers of the model (default 2)")
    p.add_argument("--new-tokens", type=int, default=16, help="greedy tokens to compare")
    p.add_argument("--logit-tol", type=float, default=2.0 ** -6, help="allowed max|diff| / max|logits|")
    p.add_argument("--skip-model", action="store_true", help="collectives and layers only")
    p.add_argument("--workdir", default=None, help="where rank 0 writes the checkpoint (default: a temp dir)")
    p.add_argument("--out", default=None, help="also write the JSON summary to this file (rank 0)")
    return p


def main(argv=None) -> int:
    import torch.distributed as dist

    from ..distributed import agree, all_gather_objects, all_reduce_sum, init_tensor_parallel

    args = _parser().parse_args(argv)
    tp = init_tensor_parallel(device=None if args.device == "auto" else args.device)
    report = dict(world_size=tp.size, device=str(tp.device), dist_backend=tp.backend, torch=torch.__version__,
                  python=platform.python_version(),
                  gpu=torch.cuda.get_device_name(tp.device) if tp.device.type == "cuda" else None,
                  nccl_nvls_enable=os.environ.get("NCCL_NVLS_ENABLE"))
    t = torch.full((4,), float(tp.rank + 1), device=tp.device)
    all_reduce_sum(t, tp)
    names = all_gather_objects(f"rank{tp.rank}", tp)
    agree(tp, "collectives check")
    report["collectives"] = dict(all_reduce=bool((t == tp.size * (tp.size + 1) / 2).all()),
                                 all_gather=names == [f"rank{r}" for r in range(tp.size)])
    failures = [f"collectives.{k}" for k, v in report["collectives"].items() if not v]
    for scheme in ("w4a4", "w4a16"):
        res = check_parallel_layers(tp, scheme, args.backend)
        report[f"layers_{scheme}"] = res
        failures += [f"{scheme}:{f}" for f in failed_checks(res)]
    if not args.skip_model:
        workdir = all_gather_objects(args.workdir or (tempfile.mkdtemp(prefix="nvfp4-tp-") if tp.is_first else None), tp)[0]
        path = os.path.join(workdir, f"llama-{args.shape}-nvfp4")
        error = None
        if tp.is_first:
            try:
                write_random_checkpoint(path, args.shape, args.layers, tp.device)
            except Exception as exc:  # noqa: BLE001 - shared with the other ranks by agree()
                error = exc
        agree(tp, "writing the checkpoint", error)
        res = check_model(tp, path, backend=args.backend, new_tokens=args.new_tokens, logit_tol=args.logit_tol)
        report["model"] = dict(res, shape=args.shape, layers=args.layers or 2)
        failures += [f"model.{k}" for k in ("logits_within", "tokens_equal", "tokens_same_on_ranks") if not res[k]]
    all_failures = all_gather_objects(failures, tp)
    report["failures"] = {r: f for r, f in enumerate(all_failures) if f}
    report["passed"] = not report["failures"]
    if tp.is_first:
        text = json.dumps(report, indent=2, default=str)
        print(text)
        if args.out:
            with open(args.out, "w") as fh:
                fh.write(text + "\n")
    if dist.is_initialized():
        dist.barrier()
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    from ..distributed import finish_tensor_parallel_main, run_tensor_parallel_main

    code = run_tensor_parallel_main(main)
    finish_tensor_parallel_main(code)
