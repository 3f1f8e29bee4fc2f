"""Eager ``generate()`` decode speed: bf16 against NVFP4 (GPU needed, no download).

    PYTHONPATH=src python benchmarks/bench_eager_decode.py --layers 8 --out results/raw/eager_decode.csv

A Llama-3.1-8B-shaped model (hidden 4096, MLP 14336, 32 heads, 8 KV heads, vocab 128256) with
``--layers`` decoder layers and random weights is built from its config (nothing to
download), timed in bf16, then quantized in place by ``nvfp4.quantize_model`` (W4A4 with a
random-token calibration, or weight-only) and timed again: with the triton backend's default
eager path and with ``NVFP4_TRITON_EAGER_GRAPHS=on`` (``ops/eager_graphs.py``). Each timing is
Hugging Face's eager greedy ``generate()`` of ``--new-tokens`` tokens after an untimed warm-up
generation (compilation, tuning, graph captures), the decode rate being tokens after the first
over the time after the first (``nvfp4.evaluation.generation``: the same clock as ``nvfp4
generate``). An eager decode step is bound by host time, so this measures what an eager user
gets, not the kernels (``bench_linear.py`` does those).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_linear import write_csv  # noqa: E402

FIELDS = ["gpu", "torch", "triton", "transformers", "date", "layers", "variant", "new_tokens",
          "decode_tokens_per_s", "ms_per_token", "vs_bf16", "note"]


class _Ids:
    """The tokenizer ``generate_timed`` needs: pad/eos ids and a decode that shows ids."""
    pad_token_id = 0
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(int(i)) for i in ids)


def main(argv=None) -> None:
    import torch
    import transformers
    import triton

    import nvfp4
    from nvfp4.evaluation.generation import generate_timed
    from nvfp4.ops import eager_graphs

    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--schemes", default="NVFP4,NVFP4A16", help="comma-separated: NVFP4 (W4A4), NVFP4A16")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tiny", action="store_true",
                    help="a 64-wide model on the CPU with the reference backend (a smoke test of this script)")
    args = ap.parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    backend = "reference" if args.tiny else "triton"
    meta = dict(gpu="cpu" if args.tiny else torch.cuda.get_device_name(), torch=torch.__version__,
                triton=triton.__version__,
                transformers=transformers.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    dims = (dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, vocab_size=128)
            if args.tiny else
            dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                 vocab_size=128256))
    config = transformers.LlamaConfig(num_hidden_layers=args.layers, max_position_embeddings=4096, **dims)
    torch.manual_seed(0)
    tok = _Ids()
    prompt = torch.randint(1, config.vocab_size, (1, args.prompt_tokens))
    calibration = [torch.randint(1, config.vocab_size, (256,)) for _ in range(4)]
    rows = []

    def timed(model, variant, note=""):
        generate_timed(model, tok, prompt, max_new_tokens=4, min_new_tokens=4)  # warm-up: compile, tune, capture
        r = generate_timed(model, tok, prompt, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
        rate = r.decode_tokens_per_second
        row = dict(meta, layers=args.layers, variant=variant, new_tokens=r.new_tokens,
                   decode_tokens_per_s=f"{rate:.1f}", ms_per_token=f"{1000.0 / rate:.2f}", vs_bf16="", note=note)
        rows.append(row)
        print(f"{variant:28s} {rate:8.1f} tokens/s  {1000.0 / rate:7.2f} ms/token", flush=True)
        return rate

    for scheme in args.schemes.split(","):
        with torch.device(device):  # initialised in place, no host copy of the weights
            model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
        if not rows:
            bf16 = timed(model, "bf16")
        nvfp4.quantize_model(model, calibration if scheme == "NVFP4" else None, scheme=scheme, backend=backend,
                             progress=False)
        name = "w4a4" if scheme == "NVFP4" else "w4a16"
        for graphs in ("off", "on"):
            os.environ[eager_graphs.ENV] = graphs
            try:
                timed(model, f"{name} eager graphs {graphs}")
            finally:
                os.environ.pop(eager_graphs.ENV, None)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    # bf16 once more on a fresh model, last: the first timing of a process has been 53 ms per
    # token on the H200 where NVFP4 took 7-26 ms, so both bf16 rows are reported and the
    # ratios use the faster one (the conservative choice for NVFP4).
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    bf16_again = timed(model, "bf16 again")
    best = max(bf16, bf16_again)
    for row in rows:
        row["vs_bf16"] = f"{float(row['decode_tokens_per_s']) / best:.2f}"
        if row["variant"].startswith("bf16"):
            row["note"] = "vs_bf16 uses the faster bf16 row"
    write_csv(args.out, rows, FIELDS)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
