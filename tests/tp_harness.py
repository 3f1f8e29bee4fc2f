"""Helpers for the tensor-parallel tests (tests/test_tp_*.py): start N gloo ranks on the
CPU, and write a tiny random Llama-family model as a compressed-tensors NVFP4 checkpoint.

``run_ranks(fn, world, *args)`` starts ``world`` spawned processes with torchrun's variables
set (so ``nvfp4.distributed.init_tensor_parallel`` works as under torchrun), runs
``fn(rank, world, *args)`` inside ``run_tensor_parallel_main`` (so a failing rank behaves as
in production) and returns every rank's exit code, its returned value (saved with
``torch.save``) and the seconds until the last process ended; processes still alive at the
deadline are killed, and that is reported, never hidden.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn, rank, world, port, args, out_dir, env):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), **env,
    )
    os.environ.setdefault("NVFP4_TP_TIMEOUT_S", "60")
    torch.set_num_threads(1)
    # This rank's stderr (Python and C level) goes to a file the parent reads back.
    err = open(Path(out_dir) / f"rank{rank}.err", "w")
    os.dup2(err.fileno(), 2)
    sys.stderr = err
    from nvfp4.distributed import finish_tensor_parallel_main, run_tensor_parallel_main

    def main():
        result = fn(rank, world, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")

    code = run_tensor_parallel_main(main)
    finish_tensor_parallel_main(code)


class RankResults:
    def __init__(self, exitcodes, results, seconds, killed, stderr):
        self.exitcodes, self.results, self.seconds, self.killed = exitcodes, results, seconds, killed
        self.stderr = stderr  # per rank, what it wrote to stderr

    def check(self):
        assert not self.killed, f"ranks {self.killed} were still running at the deadline (hang)"
        assert self.exitcodes == [0] * len(self.exitcodes), f"exit codes {self.exitcodes}; stderr: {self.stderr}"
        return self.results


def run_ranks(fn, world: int, *args, timeout: float = 120.0, env: dict | None = None) -> RankResults:
    ctx = mp.get_context("spawn")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nvfp4-tp-") as out_dir:
        procs = [
            ctx.Process(target=_entry, args=(fn, r, world, port, args, out_dir, dict(env or {})), daemon=True)
            for r in range(world)
        ]
        start = time.monotonic()
        for p in procs:
            p.start()
        deadline = start + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        seconds = time.monotonic() - start
        killed = [r for r, p in enumerate(procs) if p.is_alive()]
        for r in killed:
            procs[r].kill()
            procs[r].join()
        results, stderr = [], []
        for r in range(world):
            f = Path(out_dir) / f"rank{r}.pt"
            results.append(torch.load(f, weights_only=False) if f.exists() else None)
            e = Path(out_dir) / f"rank{r}.err"
            stderr.append(e.read_text(errors="replace") if e.exists() else "")
        return RankResults([p.exitcode for p in procs], results, seconds, killed, stderr)


def run_in_own_session(cmd, env, timeout: float, cwd=None):
    """Run ``cmd`` (e.g. torchrun) in its own process group; at the deadline kill the whole
    group (launcher *and* workers, so nothing is orphaned). Returns ``(returncode or None if it
    had to be killed, stdout + stderr, seconds)``."""
    import signal
    import subprocess

    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    return code, out, time.monotonic() - start


# -- a tiny model as a compressed-tensors NVFP4 checkpoint -----------------------------------
TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=96, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
)


def tiny_float_model(model_type: str = "llama", seed: int = 0, **overrides):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    kw = dict(TINY, **overrides)
    config = AutoConfig.for_model(model_type, **kw)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # a little bigger than the default init, so quantization matters
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
            elif "bias" in name:
                p.normal_(0, 0.05)
    return model.to(torch.bfloat16)


def write_checkpoint(model, directory, *, scheme: str = "NVFP4", ignore=("lm_head",), shards: int = 1,
                     calib_seed: int = 1) -> Path:
    """Quantize every targeted ``nn.Linear`` (bit-exact with compressed-tensors) and save in its
    layout; ``Gx`` from a static min-max over one random calibration batch, per layer."""
    from torch import nn

    from nvfp4 import activation_global_scale, quantize_weight
    from nvfp4.checkpoint import build_quantization_config, write_safetensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inputs: dict[str, torch.Tensor] = {}
    hooks = []
    from nvfp4.checkpoint import target_matches

    linears = {
        n: m for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and not any(target_matches(t, n, m) for t in ignore)
    }
    for name, m in linears.items():
        hooks.append(m.register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0].detach())))
    g = torch.Generator().manual_seed(calib_seed)
    with torch.no_grad():
        model(torch.randint(0, model.config.vocab_size, (2, 12), generator=g))
    for h in hooks:
        h.remove()
    tensors = {}
    for name, t in model.state_dict().items():
        prefix, _, leaf = name.rpartition(".")
        if prefix in linears and leaf == "weight":
            packed, scale, gw = quantize_weight(t)
            tensors[f"{prefix}.weight_packed"] = packed
            tensors[f"{prefix}.weight_scale"] = scale
            tensors[f"{prefix}.weight_global_scale"] = gw
            if scheme == "NVFP4":
                tensors[f"{prefix}.input_global_scale"] = activation_global_scale(inputs[prefix].float())
        else:
            tensors[name] = t.contiguous()
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    write_safetensors(directory, tensors, max_shard_size=None if shards == 1 else total // shards + 1)
    config = model.config.to_dict()
    config["quantization_config"] = build_quantization_config(scheme, ignore=list(ignore))
    config["dtype"] = "bfloat16"
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory
