"""Tensor-parallel throughput: decode and prefill tokens/s, bf16 vs NVFP4 W4A4, at tp = N.

    # one GPU, or the CPU (--device cpu):
    python benchmarks/bench_tp.py --tp 1 --shape 8b --layers 4
    # N GPUs of one host (NCCL; NVLink multicast stays off):
    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc-per-node 2 benchmarks/bench_tp.py --tp 2 --shape 8b --layers 4
    # N ranks on the CPU (gloo), e.g. to test the script:
    torchrun --standalone --nproc-per-node 2 benchmarks/bench_tp.py --tp 2 --device cpu --shape tiny

What one run does, on every rank (rank 0 prints and writes):

1. **Model.** A Llama-shaped model with random weights (``--shape tiny``, or ``8b``:
   Llama-3.1-8B's widths with ``--layers`` of its 32 decoder layers), built by rank 0, saved
   twice, atomically, under ``--workdir``: ``float/`` (the bf16 weights) and ``nvfp4/`` (the same
   weights quantized by ``nvfp4.quantize_model``, W4A4, ``lm_head`` left in bf16, saved by
   ``nvfp4.save`` in the compressed-tensors layout). The other ranks wait for it. A later run
   with the same ``--workdir``, shape, layers and seed reuses it (tp = 1, 2, 4 share one).
2. **Correctness.** NVFP4: ``nvfp4.parallel.selfcheck.check_model``: greedy tokens of the
   tp = N model equal those of ``nvfp4.load`` (one device) of the same checkpoint, logits within
   ``--logit-tol`` x max|logits|. bf16: the same comparison for the float tensor-parallel model
   against its tp = 1 load (reported; the requirement is on NVFP4). The run exits 1 when the
   NVFP4 tokens differ (after writing its results).
3. **Timing**, bf16 then NVFP4, each loaded split N ways: NVFP4 by ``nvfp4.load(path, tp=N)``,
   bf16 by the same tensor-parallel machinery (``swap_tensor_parallel`` with every projection
   left in float: ``ColumnParallelFloatLinear``/``RowParallelFloatLinear``, same split, same
   slice reads, float32 all-reduce). *Decode*: a ``--decode-prompt`` token prompt is prefilled
   (untimed), then ``--new-tokens`` greedy steps with the KV cache (HF ``DynamicCache``) are
   timed; tokens/s = batch x steps / time. *Prefill*: one forward of ``--prefill`` prompt tokens
   (KV cache written, last position's logits only); tokens/s = batch x prompt / time. Each
   figure is the median of ``--reps`` repetitions after ``--warmup`` untimed ones (Triton
   compilation and autotuning), every rank starting together (barrier) and the slowest rank's
   time counted; CUDA is synchronised around each timed region.

Caveats printed with the results: the model runs in eager HF (no CUDA graphs), so at small
batch and small per-rank weights decode is partly launch-bound (the same for bf16 and NVFP4);
``lm_head`` (vocab x hidden, bf16, replicated) is read at every step in both; at 8b widths every
layer's weights (436 MB bf16, 123 MB NVFP4, divided by tp) exceed the 50 MB L2, so each step
streams them from HBM.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

FIELDS = [
    "gpu", "gpu_count", "torch", "triton", "nccl", "date", "dist_backend", "tp", "shape", "layers", "of_layers",
    "impl", "backend", "phase", "batch", "prompt_tokens", "new_tokens", "reps", "median_s", "tokens_per_s",
    "ms_per_step", "speedup_vs_bf16", "weights_per_rank_gib",
]
FULL_LAYERS = {"tiny": None, "8b": 32}


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tp", type=int, default=None, help="tensor-parallel ranks (= torchrun's --nproc-per-node)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="cuda: rank r on cuda:LOCAL_RANK with NCCL; cpu: gloo (default: cuda if visible)")
    p.add_argument("--backend", default=None, help="NVFP4 backend (default: auto, triton on GPUs)")
    p.add_argument("--shape", default="tiny", choices=("tiny", "8b"))
    p.add_argument("--layers", type=int, default=4, help="decoder layers (8b: of Llama-3.1-8B's 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decode-batch", type=_ints, default=[1, 8], help="decode batch sizes (default 1,8)")
    p.add_argument("--decode-prompt", type=int, default=128, help="prompt tokens before decoding")
    p.add_argument("--new-tokens", type=int, default=64, help="timed greedy decode steps")
    p.add_argument("--prefill", type=_ints, default=[512, 2048], help="prefill prompt lengths (default 512,2048)")
    p.add_argument("--prefill-batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--check-tokens", type=int, default=16, help="greedy tokens compared with tp=1")
    p.add_argument("--logit-tol", type=float, default=2.0 ** -6, help="NVFP4 logits: max|diff| / max|logits|")
    p.add_argument("--workdir", default=None,
                   help="where rank 0 writes (or finds) the checkpoints; default: a temp dir, removed at the end")
    p.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"),
                   help="CSV + markdown go here (rank 0)")
    args = p.parse_args(argv)
    if args.layers < 1 or args.reps < 1 or args.warmup < 0 or args.new_tokens < 1 or args.check_tokens < 1:
        p.error("--layers, --reps, --new-tokens and --check-tokens must be >= 1, --warmup >= 0")
    return args


# -- the model and its two checkpoints -------------------------------------------------------
def bench_config(args):
    from nvfp4.parallel.selfcheck import llama_config

    config = llama_config(args.shape, args.layers)
    # Fixed unless a run needs more, so that runs with other prompt lengths can share a --workdir.
    longest = max(max(args.prefill), args.decode_prompt + args.new_tokens + 1)
    config.max_position_embeddings = max(8192, longest)
    config.tie_word_embeddings = False
    return config


def write_checkpoints(target: Path, config, device, seed: int) -> None:
    """``target/float`` (bf16 weights) and ``target/nvfp4`` (the same, quantized), atomically."""
    import torch
    from transformers import AutoModelForCausalLM

    import nvfp4
    from nvfp4.checkpoint import atomic_directory, write_json, write_safetensors

    torch.manual_seed(seed)
    with torch.device(device):  # random init on the GPU: seconds instead of minutes at 8b widths
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model = model.to(device).eval()  # in case the factory ignored the device context
    with atomic_directory(target) as tmp:
        (tmp / "float").mkdir()
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        write_safetensors(tmp / "float", state, "20GB")
        del state
        write_json(tmp / "float" / "config.json", dict(config.to_dict(), dtype="bfloat16"))
        g = torch.Generator().manual_seed(seed + 1)
        calib = [torch.randint(0, config.vocab_size, (1, 64), generator=g) for _ in range(2)]
        nvfp4.quantize_model(model, calib, ignore=["lm_head"], scheme="NVFP4", progress=False)
        nvfp4.save(model, tmp / "nvfp4")
    del model


def prepare_checkpoints(args, tp, config) -> tuple[Path, Path | None]:
    """Rank 0 writes (or reuses) the checkpoints; every rank returns their directory."""
    from nvfp4.distributed import agree, all_gather_objects

    own_tmp = None
    if tp.is_first and args.workdir is None:
        own_tmp = Path(tempfile.mkdtemp(prefix="nvfp4-bench-tp-"))
    root = Path(all_gather_objects(str(Path(args.workdir or own_tmp).resolve()) if tp.is_first else None, tp)[0])
    target = root / f"llama-{args.shape}-L{args.layers}-seed{args.seed}"
    error = None
    if tp.is_first:
        try:
            if (target / "float" / "config.json").exists() and (target / "nvfp4" / "config.json").exists():
                log(tp, f"reusing the checkpoints in {target}")
            else:
                start = time.perf_counter()
                write_checkpoints(target, config, tp.device, args.seed)
                log(tp, f"wrote bf16 + NVFP4 checkpoints to {target} in {time.perf_counter() - start:.1f} s")
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks by agree()
            error = exc
    agree(tp, "writing the checkpoints", error)
    return target, own_tmp


def load_bf16_tp(float_dir: Path, tp, dtype):
    """The float model split as ``load_tp`` splits the NVFP4 one: a quantization config that
    targets nothing makes every projection a float column/row-parallel layer (slice reads,
    float32 all-reduce); embeddings, norms and lm_head are replicated."""
    from transformers import AutoConfig

    from nvfp4.checkpoint.config import build_quantization_config, parse_quantization_config
    from nvfp4.integrations.hf import _empty_model
    from nvfp4.integrations.loading import TensorPlacer
    from nvfp4.parallel import SliceReader, plan_tensor_parallel, swap_tensor_parallel
    from nvfp4.parallel.model import _load_slices

    nothing = parse_quantization_config(build_quantization_config("NVFP4", ignore=["re:.*"]), "bench_tp")
    hf_config = AutoConfig.from_pretrained(str(float_dir))
    model = _empty_model(hf_config, dtype)
    plan = plan_tensor_parallel(hf_config, tp.size)
    _, floats, _ = swap_tensor_parallel(model, nothing, plan, tp, dtype=dtype)
    with SliceReader(float_dir) as reader:
        placer = TensorPlacer(model, {}, dtype=dtype, device=tp.device, require_all_unquantized=False)
        _load_slices(reader, placer, floats, progress=False)
        placer.finish(str(float_dir))
    return model.eval()


def weight_gib(model) -> float:
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total / 2**30


def backends_used(model) -> str:
    names = {b.name for m in model.modules() for b in (m.__dict__.get("nvfp4_backends") or {}).values()}
    return ",".join(sorted(names)) or "-"


# -- timing ----------------------------------------------------------------------------------
def log(tp, message: str) -> None:
    if tp.is_first:
        print(message, flush=True)


def _sync(tp) -> None:
    import torch

    if tp.device.type == "cuda":
        torch.cuda.synchronize(tp.device)


def _barrier(tp) -> None:
    import torch.distributed as dist

    if tp.is_distributed:
        dist.barrier()


def _cache_kwarg(model) -> str:
    """transformers 5.2x calls the KV-cache argument ``cache``; earlier ones ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def greedy(model, ids, steps: int, tp):
    """Prefill ``ids`` (untimed), then ``steps`` greedy decode steps with the KV cache.
    Returns ``(tokens [B, 1 + steps], seconds of the steps, last-position logits of the prefill)``."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)  # filled in place by every forward
    kw = {_cache_kwarg(model): cache, "use_cache": True, "logits_to_keep": 1}
    with torch.no_grad():
        first_logits = model(input_ids=ids, **kw).logits[:, -1].float()
        token = first_logits.argmax(-1, keepdim=True)
        tokens = [token]
        _sync(tp)
        start = time.perf_counter()
        for _ in range(steps):
            token = model(input_ids=token, **kw).logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(token)
        _sync(tp)
        seconds = time.perf_counter() - start
    if cache.get_seq_length() != ids.shape[1] + steps:
        raise RuntimeError(f"the KV cache holds {cache.get_seq_length()} positions, expected {ids.shape[1] + steps}")
    return torch.cat(tokens, dim=1), seconds, first_logits


def prefill_seconds(model, ids, tp) -> float:
    import torch

    with torch.no_grad():
        _sync(tp)
        start = time.perf_counter()
        model(input_ids=ids, use_cache=True, logits_to_keep=1)
        _sync(tp)
    return time.perf_counter() - start


def median_slowest_rank(fn, tp, reps: int, warmup: int) -> float:
    """Median over ``reps`` of the slowest rank's seconds (ranks start each rep together)."""
    from nvfp4.distributed import all_gather_objects

    for _ in range(warmup):
        _barrier(tp)
        fn()
    times = []
    for _ in range(reps):
        _barrier(tp)
        times.append(fn())
    per_rank = all_gather_objects(times, tp)
    return statistics.median(max(r[i] for r in per_rank) for i in range(reps))


def measure(model, impl: str, args, tp, vocab: int, meta: dict) -> list[dict]:
    import torch

    rows = []
    gib = weight_gib(model)

    def ids(batch, length, seed):
        return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed)).to(tp.device)

    for batch in args.decode_batch:
        prompt = ids(batch, args.decode_prompt, 100 + batch)
        sec = median_slowest_rank(lambda: greedy(model, prompt, args.new_tokens, tp)[1], tp, args.reps, args.warmup)
        tokens = batch * args.new_tokens
        rows.append(dict(meta, impl=impl, phase="decode", batch=batch, prompt_tokens=args.decode_prompt,
                         new_tokens=args.new_tokens, median_s=sec, tokens_per_s=tokens / sec,
                         ms_per_step=1000 * sec / args.new_tokens, weights_per_rank_gib=gib))
        log(tp, f"  {impl:5s} decode  batch {batch:3d}: {tokens / sec:10.1f} tokens/s ({1000 * sec / args.new_tokens:.2f} ms/step)")
    for length in args.prefill:
        prompt = ids(args.prefill_batch, length, 200 + length)
        sec = median_slowest_rank(lambda: prefill_seconds(model, prompt, tp), tp, args.reps, args.warmup)
        tokens = args.prefill_batch * length
        rows.append(dict(meta, impl=impl, phase="prefill", batch=args.prefill_batch, prompt_tokens=length,
                         new_tokens=0, median_s=sec, tokens_per_s=tokens / sec, ms_per_step="",
                         weights_per_rank_gib=gib))
        log(tp, f"  {impl:5s} prefill {length:5d} tokens: {tokens / sec:10.1f} tokens/s ({1000 * sec:.1f} ms)")
    backend = backends_used(model) if impl == "nvfp4" else "torch F.linear"
    for r in rows:
        r["backend"] = backend
    return rows


# -- correctness -----------------------------------------------------------------------------
def check_bf16(float_dir: Path, tp, new_tokens: int, vocab: int) -> dict:
    """Greedy tokens of the bf16 tp=N model against its tp=1 load (informational)."""
    import torch

    from nvfp4.distributed import TPGroup, all_gather_objects

    ids = torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(1)).to(tp.device)
    one = load_bf16_tp(float_dir, TPGroup(rank=0, size=1, device=tp.device), torch.bfloat16)
    ref_tokens, _, ref_logits = greedy(one, ids, new_tokens - 1, tp)
    del one
    model = load_bf16_tp(float_dir, tp, torch.bfloat16)
    tokens, _, logits = greedy(model, ids, new_tokens - 1, tp)
    del model
    same = bool(torch.equal(tokens, ref_tokens))
    gathered = all_gather_objects(tokens.cpu().tolist(), tp)
    diff = (logits - ref_logits).abs().max().item()
    return dict(tokens_equal=same, tokens_same_on_ranks=all(t == gathered[0] for t in gathered),
                logits_max_abs_diff=diff, logits_max_abs=ref_logits.abs().max().item(),
                first_differing_new_token=None if same else int((tokens != ref_tokens).any(0).nonzero()[0]))


def correctness_line(label: str, tp_size: int, res: dict, sequences: int, new_tokens: int) -> str:
    if res["tokens_equal"] and res["tokens_same_on_ranks"]:
        verdict = f"greedy tokens match ({sequences} sequences x {new_tokens} new tokens)"
    elif not res["tokens_same_on_ranks"]:
        verdict = "greedy tokens DIFFER between ranks"
    else:
        verdict = f"greedy tokens DIFFER (first at new token {res['first_differing_new_token']})"
    rel = res["logits_max_abs_diff"] / max(res["logits_max_abs"], 1e-30)
    return (f"correctness, {label}: tp={tp_size} vs tp=1 load of the same checkpoint: {verdict}; "
            f"logits max|diff| = {res['logits_max_abs_diff']:.3g} ({rel:.2e} of max|logits| {res['logits_max_abs']:.3g})")


# -- output ----------------------------------------------------------------------------------
def environment(tp) -> dict:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    cuda = tp.device.type == "cuda"
    nccl = "n/a"
    if cuda:
        version = torch.cuda.nccl.version()  # a tuple in recent torch, an int in old ones
        nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return dict(
        gpu=torch.cuda.get_device_name(tp.device) if cuda else f"CPU ({platform.processor() or platform.machine()})",
        gpu_count=tp.size if cuda else 0, torch=torch.__version__, triton=triton_version, nccl=nccl,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        dist_backend=tp.backend or "none (one process)",
    )


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def markdown(rows: list[dict], meta: dict, args, lines_check: list[str], summary: str) -> str:
    of = f"{args.layers} of {FULL_LAYERS[args.shape]}" if FULL_LAYERS[args.shape] else f"{args.layers}"
    gpus = f"{meta['gpu']} x {meta['gpu_count']}" if meta["gpu_count"] else meta["gpu"]
    out = [
        f"# Tensor-parallel throughput: tp={meta['tp']}, {args.shape} shape, {of} layers",
        "",
        f"{gpus}; torch {meta['torch']}; triton {meta['triton']}; NCCL {meta['nccl']}; "
        f"process group: {meta['dist_backend']}; {meta['date']}.",
        f"Model: random Llama-shaped weights (`--shape {args.shape}`, {of} decoder layers), bf16 vs the same "
        "weights quantized by `nvfp4.quantize_model` (NVFP4 W4A4, lm_head bf16), both split "
        f"across {meta['tp']} rank(s) by the tensor-parallel loader. {summary}",
        f"Medians of {args.reps} repetitions after {args.warmup} warm-up, slowest rank counted, "
        "CUDA synchronised around timed regions. Decode: greedy steps with the KV cache after an untimed "
        f"{args.decode_prompt}-token prefill. Eager HF (no CUDA graphs): small-batch decode is partly "
        "launch-bound for both; lm_head (bf16, replicated) is read at every step in both.",
        *(["", "On the CPU the NVFP4 layers run an exact reference backend, not a fast path: these "
           "figures test the benchmark and the tensor-parallel plumbing, not NVFP4 speed."]
          if not meta["gpu_count"] else []),
        "",
        *[f"- {line}" for line in lines_check],
        "",
        "| phase | batch | prompt | new tokens | bf16 tokens/s | NVFP4 tokens/s | NVFP4 x bf16 | bf16 ms/step | NVFP4 ms/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["impl"], r["phase"], r["batch"], r["prompt_tokens"]): r for r in rows}
    for r in rows:
        if r["impl"] != "bf16":
            continue
        q = by[("nvfp4", r["phase"], r["batch"], r["prompt_tokens"])]
        ms = lambda x: f"{x['ms_per_step']:.2f}" if x["ms_per_step"] != "" else ""  # noqa: E731
        out.append(f"| {r['phase']} | {r['batch']} | {r['prompt_tokens']} | {r['new_tokens'] or ''} | "
                   f"{r['tokens_per_s']:.1f} | {q['tokens_per_s']:.1f} | {q['speedup_vs_bf16']:.2f}x | {ms(r)} | {ms(q)} |")
    b = next(r for r in rows if r["impl"] == "bf16")
    q = next(r for r in rows if r["impl"] == "nvfp4")
    out += ["", f"Weights per rank: bf16 {b['weights_per_rank_gib']:.3f} GiB, NVFP4 {q['weights_per_rank_gib']:.3f} GiB "
            f"(embeddings, norms and lm_head replicated). NVFP4 backend: {q['backend']}.", ""]
    return "\n".join(out)


def write_results(rows, meta, args, lines_check, summary) -> tuple[Path, Path]:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = "cpu" if not meta["gpu_count"] else "".join(c if c.isalnum() else "-" for c in meta["gpu"].lower()).strip("-")
    stem = f"bench_tp_{args.shape}_L{args.layers}_tp{meta['tp']}_{slug}"
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"

    def fmt(v):
        return f"{v:.6g}" if isinstance(v, float) else v

    def write_csv(fh):
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: fmt(r.get(k, "")) for k in FIELDS} for r in rows)

    _atomic_write(csv_path, write_csv)
    _atomic_write(md_path, lambda fh: fh.write(markdown(rows, meta, args, lines_check, summary)))
    return csv_path, md_path


# -- main ------------------------------------------------------------------------------------
def main(argv=None) -> int:
    import torch

    import nvfp4
    from nvfp4.distributed import init_tensor_parallel
    from nvfp4.parallel.selfcheck import check_model

    args = parse_args(argv)
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # as the TP runtime does: NVLink multicast stays off
    device = None if args.device == "auto" else args.device
    tp = init_tensor_parallel(args.tp, device=device)
    config = bench_config(args)
    meta = dict(environment(tp), tp=tp.size, shape=args.shape, layers=args.layers,
                of_layers=FULL_LAYERS[args.shape] or args.layers, reps=args.reps)
    log(tp, f"bench_tp: tp={tp.size} on {meta['gpu']} ({meta['dist_backend']}), shape {args.shape}, "
            f"{args.layers}{' of 32' if args.shape == '8b' else ''} layers")
    root, own_tmp = prepare_checkpoints(args, tp, config)
    try:
        nvfp4_dir, float_dir = root / "nvfp4", root / "float"
        res_q = check_model(tp, str(nvfp4_dir), backend=args.backend, new_tokens=args.check_tokens,
                            logit_tol=args.logit_tol)
        res_b = check_bf16(float_dir, tp, args.check_tokens, config.vocab_size)
        lines_check = [
            correctness_line("NVFP4 W4A4", tp.size, res_q, 2, args.check_tokens)
            + ("" if res_q["logits_within"] else f" (ABOVE the tolerance {args.logit_tol:.3g})"),
            correctness_line("bf16 (informational)", tp.size, res_b, 2, args.check_tokens),
        ]
        for line in lines_check:
            log(tp, line)
        rows = []
        log(tp, "bf16:")
        model = load_bf16_tp(float_dir, tp, torch.bfloat16)
        rows += measure(model, "bf16", args, tp, config.vocab_size, meta)
        del model
        if tp.device.type == "cuda":
            torch.cuda.empty_cache()
        log(tp, "NVFP4 W4A4:")
        model = nvfp4.load(str(nvfp4_dir), device=tp.device.type, tp=tp.size, backend=args.backend, progress=False)
        summary = model.nvfp4_tp_summary.split(";")[0] + "."
        rows += measure(model, "nvfp4", args, tp, config.vocab_size, meta)
        del model
        base = {(r["phase"], r["batch"], r["prompt_tokens"]): r["tokens_per_s"] for r in rows if r["impl"] == "bf16"}
        for r in rows:
            r["speedup_vs_bf16"] = r["tokens_per_s"] / base[(r["phase"], r["batch"], r["prompt_tokens"])]
        passed = res_q["tokens_equal"] and res_q["tokens_same_on_ranks"] and res_q["logits_within"]
        if tp.is_first:
            csv_path, md_path = write_results(rows, meta, args, lines_check, summary)
            print(markdown(rows, meta, args, lines_check, summary))
            print(f"wrote {csv_path} and {md_path}")
            if not passed:
                print("FAILED: NVFP4 tp=N differs from tp=1 (see the correctness line)", file=sys.stderr)
    except BaseException:
        if own_tmp is not None:  # no barrier here: a peer may be stuck elsewhere; this run is over
            shutil.rmtree(own_tmp, ignore_errors=True)
        raise
    _barrier(tp)  # every rank is done reading the checkpoints
    if own_tmp is not None:
        shutil.rmtree(own_tmp, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from nvfp4.distributed import finish_tensor_parallel_main, run_tensor_parallel_main

    code = run_tensor_parallel_main(main)
    finish_tensor_parallel_main(code)
