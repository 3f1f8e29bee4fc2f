"""``nvfp4 env``: versions, GPU, which backends can run and which one is picked, and why."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys

from .common import add_command, resolve_device

DESCRIPTION = """\
Print what nvfp4 runs on: Python and library versions, the GPU (name, compute capability,
memory), every NVFP4 backend with whether it can run on the device (and if not, why), and
which backend is picked automatically and why. Paste this into bug reports."""

EPILOG = """\
examples:
  nvfp4 env
  nvfp4 env --device cpu
  NVFP4_BACKEND=reference nvfp4 env     # see the environment variable take effect
  nvfp4 env --json"""

PACKAGES = ("torch", "triton", "transformers", "compressed_tensors", "safetensors", "accelerate", "gguf", "tqdm")


def add_parser(subparsers):
    p = add_command(subparsers, "env", run, help="versions, GPU and backend choice", description=DESCRIPTION,
                    epilog=EPILOG)
    p.add_argument("--device", default="auto", help="device to check backends for; auto = first GPU, else cpu")
    p.add_argument("--json", action="store_true", help="print as JSON")
    return p


def _version(name: str) -> str:
    """The installed version, from the distribution's metadata (no import needed)."""
    from importlib import metadata

    try:
        return metadata.version(name.replace("_", "-"))
    except metadata.PackageNotFoundError:
        pass
    try:
        module = importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - report, never fail
        return "not installed" if isinstance(err, ImportError) else f"broken ({err})"
    return str(getattr(module, "__version__", "?"))


# The triton backend's path switches, shown by `nvfp4 env` (README, Backends).
TRITON_ENV_VARS = (
    "NVFP4_TRITON_DP4A", "NVFP4_TRITON_TUNE", "NVFP4_TRITON_GEMV", "NVFP4_TRITON_GEMV_HALF2", "NVFP4_TRITON_SMALL_M",
    "NVFP4_TRITON_DECODE", "NVFP4_TRITON_PAIRED_K", "NVFP4_TRITON_SPLITK_REDUCE", "NVFP4_TRITON_EIGHT_ROW_TILES",
    "NVFP4_TRITON_CUBLAS_MIN_M", "NVFP4_TRITON_CUBLAS_CHUNKS", "NVFP4_TRITON_FAST_LAUNCH", "NVFP4_TRITON_PDL",
    "NVFP4_TRITON_EAGER_GRAPHS",
    "NVFP4_TRITON_EAGER_GRAPHS_M_MAX", "NVFP4_TRITON_ACT_QUANT_ROWS", "NVFP4_SHARD_SCALES",
)


def collect(device_name: str = "auto") -> dict:
    import torch

    import nvfp4
    from nvfp4.backends import ENV_VAR, available_backends, backend_status

    info: dict = {
        "nvfp4": nvfp4.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cpu_threads": torch.get_num_threads(),
    }
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({
                "index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
            })
    info["cuda"] = {"torch_cuda": torch.version.cuda, "available": torch.cuda.is_available(), "gpus": gpus}
    device = resolve_device(device_name)
    info["device"] = str(device)
    status = backend_status(device)
    info["backends"] = [{"name": name, "available": reason is None, "reason": reason} for name, reason in status.items()]
    env = os.environ.get(ENV_VAR, "").strip()
    info["env"] = {ENV_VAR: env or None}
    # The triton backend's path switches (README, Backends); unset means the default.
    info["triton_env"] = {name: os.environ.get(name) for name in TRITON_ENV_VARS}
    info["auto_choice"], info["why"] = _explain_choice(status, env, available_backends())
    return info


def _explain_choice(status: dict, env: str, order: list[str]) -> tuple[str | None, str]:
    from nvfp4.backends.registry import _REGISTRY  # priorities, for the explanation

    if env and env != "auto":
        if env not in status:
            return None, f"${'NVFP4_BACKEND'}={env!r} names no backend; loading would fail"
        if status[env] is not None:
            return None, f"$NVFP4_BACKEND={env!r} cannot run here ({status[env]}); loading would fail"
        return env, f"$NVFP4_BACKEND={env!r} asks for it"
    skipped = []
    for name in order:
        if _REGISTRY[name].priority < 0:
            continue
        if status[name] is None:
            why = f"the highest-priority backend that can run here (priority {_REGISTRY[name].priority})"
            if skipped:
                why += "; skipped " + "; ".join(f"{n}: {r}" for n, r in skipped)
            return name, why
        skipped.append((name, status[name]))
    return None, "no backend can run here"


def run(args) -> int:
    info = collect(args.device)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"nvfp4         {info['nvfp4']}")
    print(f"python        {info['python']}")
    print(f"platform      {info['platform']}")
    for name, version in info["packages"].items():
        print(f"{name:<13} {version}" if len(name) < 14 else f"{name} {version}")
    cuda = info["cuda"]
    if cuda["gpus"]:
        for g in cuda["gpus"]:
            print(f"gpu {g['index']:<9} {g['name']} (compute capability {g['capability']}, {g['memory_gib']} GiB, "
                  f"CUDA {cuda['torch_cuda']})")
    else:
        why = "torch is a CPU-only build" if cuda["torch_cuda"] is None else f"CUDA {cuda['torch_cuda']}, no GPU visible"
        print(f"gpu           none ({why}); CPU threads: {info['cpu_threads']}")
    print(f"\nbackends on {info['device']} (in order of preference):")
    for b in info["backends"]:
        state = "available" if b["available"] else f"unavailable: {b['reason']}"
        print(f"  {b['name']:<11} {state}")
    env = info["env"]["NVFP4_BACKEND"]
    print(f"\nNVFP4_BACKEND {env if env else '(not set)'}")
    print(f"chosen        {info['auto_choice'] or '-'}: {info['why']}")
    knobs = ", ".join(f"{k}={v}" for k, v in info["triton_env"].items() if v is not None)
    print(f"triton paths  {knobs or 'defaults (no NVFP4_TRITON_* variable set)'}")
    return 0
