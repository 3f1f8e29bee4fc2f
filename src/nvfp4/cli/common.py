"""What the commands share: errors, device and backend options, loading models, tables."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class RawDescriptionDefaultsFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the hand-wrapped description/epilog and show each option's default."""


def add_command(subparsers, name: str, run, *, help: str, description: str, epilog: str):
    parser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=RawDescriptionDefaultsFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    parser.set_defaults(run=run)
    return parser


def add_device_arguments(parser, *, backend: bool = True, dtype: bool = True) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N; auto = the first GPU if there is one")
    if backend:
        parser.add_argument(
            "--backend", default="auto",
            help="NVFP4 GEMM backend (see `nvfp4 env`); auto = $NVFP4_BACKEND, else the fastest that runs here",
        )
    if dtype:
        parser.add_argument(
            "--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
            help="dtype of activations and unquantized weights",
        )


def resolve_device(name: str):
    import torch

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise CLIError(f"--device {name!r}: not a device name ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {name}: no CUDA GPU is visible (torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CLIError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


def resolve_dtype(name: str):
    import torch

    return getattr(torch, name)


def backend_argument(name: str | None) -> str | None:
    return None if name in (None, "", "auto") else name


def existing_dir(path: str, what: str = "checkpoint") -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CLIError(f"{path}: no such {what} directory")
    if not p.is_dir():
        raise CLIError(f"{path}: not a directory (a {what} is a directory with config.json and *.safetensors)")
    return p


def require_hf(*extra: str) -> None:
    """Fail with an install hint when the Hugging Face stack (the ``hf`` extra) is missing."""
    missing = []
    for module in ("transformers", *extra):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise CLIError(f"this command needs {', '.join(missing)}: pip install 'nvfp4[hf]'")


def library(name: str):
    """``nvfp4.<name>`` (load, save, quantize_model, ...), with a clear error if this build lacks it."""
    import nvfp4

    fn = getattr(nvfp4, name, None)
    if fn is None:
        raise CLIError(f"nvfp4.{name} is not available in this installation of nvfp4")
    return fn


def load_tokenizer(path: Path, required: bool = True):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise CLIError("this command needs transformers: pip install 'nvfp4[hf]'") from None
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds
        if required:
            raise CLIError(f"{path}: cannot load a tokenizer ({_first_line(err)})") from None
        return None


def load_quantized_model(path: Path, device, dtype, backend: str | None, *, weight_only: bool = False, progress=True):
    load = library("load")
    return load(str(path), device=device, dtype=dtype, backend=backend, weight_only=weight_only, progress=progress)


def load_reference_model(path: Path, device, dtype):
    """A float Hugging Face model (the bf16 baseline), with transformers alone."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise CLIError("this command needs transformers: pip install 'nvfp4[hf]'") from None
    config = path / "config.json"
    if not config.is_file():
        raise CLIError(f"{path}: no config.json (not a Hugging Face model directory)")
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    return model.to(device).eval()


def model_backend(model) -> str:
    """The backend(s) the model's NVFP4 layers run on, or "-" for a float model."""
    names = set()
    for module in model.modules():
        scheme = getattr(module, "scheme", None)
        if scheme is not None and hasattr(scheme, "backend_name_for"):
            names.add(str(scheme.backend_name_for(module)))
    return ",".join(sorted(names)) if names else "-"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; ``align`` is one of 'l'/'r' per column (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns
