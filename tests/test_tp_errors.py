"""Tensor parallelism fails early, clearly and everywhere.

* A model that cannot be split N ways is refused from its config, before any weight is read,
  naming the layer(s) and the numbers (heads, KV heads, intermediate size, row-parallel K/tp
  not a multiple of 16).
* A rank that raises makes every rank exit non-zero within a bounded time (well under the
  process-group timeout, which is set to 300 s here so that passing proves teardown, not the
  timeout): while its peer waits in an all-reduce, during loading (the others stop with a
  message naming the failed rank), and under torchrun.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest
import torch

from tp_harness import free_port, run_in_own_session, run_ranks

TEARDOWN_BOUND_S = 45.0  # generous for 2 loaded CPU cores; the group timeout is 300 s


def _config(model_type="llama", **kw):
    from transformers import AutoConfig

    base = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=96)
    base.update(kw)
    return AutoConfig.for_model(model_type, **base)


def _plan(config, tp, quantized=("o_proj", "down_proj")):
    from nvfp4.parallel import plan_tensor_parallel

    rows = {k: [f"model.layers.{i}.{'self_attn' if k == 'o_proj' else 'mlp'}.{k}" for i in range(2)] for k in quantized}
    return plan_tensor_parallel(config, tp, rows)


# -- the split checks ----------------------------------------------------------------------
def test_plan_splits_and_replicates_kv_heads():
    plan = _plan(_config(), 4)
    assert (plan.heads_per_rank, plan.kv_heads_per_rank, plan.kv_head_replicas) == (1, 1, 2)
    assert plan.kv_groups_per_rank == 1 and plan.intermediate_per_rank == 32
    assert [plan.kv_head_of_rank(r) for r in range(4)] == [0, 0, 1, 1]
    plan = _plan(_config(), 2)
    assert (plan.heads_per_rank, plan.kv_heads_per_rank, plan.kv_head_replicas, plan.kv_groups_per_rank) == (2, 1, 1, 2)


def test_heads_not_divisible():
    from nvfp4.parallel import TensorParallelSplitError

    with pytest.raises(TensorParallelSplitError, match=r"self_attn\.q_proj: 4 attention heads cannot be split evenly across 3 ranks"):
        _plan(_config(), 3)


def test_kv_heads_cannot_be_split_or_replicated():
    from nvfp4.parallel import TensorParallelSplitError

    with pytest.raises(TensorParallelSplitError, match=r"k_proj/v_proj: 3 KV heads cannot be split evenly across 2 ranks"):
        _plan(_config(num_attention_heads=6, num_key_value_heads=3, hidden_size=96, intermediate_size=64), 2)
    with pytest.raises(TensorParallelSplitError, match=r"3 KV heads cannot be replicated evenly across 4 ranks"):
        _plan(_config(num_attention_heads=12, num_key_value_heads=3, hidden_size=192, intermediate_size=64), 4)


def test_intermediate_size_not_divisible():
    from nvfp4.parallel import TensorParallelSplitError

    with pytest.raises(TensorParallelSplitError, match=r"intermediate_size 130 cannot be split evenly across 4 ranks"):
        _plan(_config(intermediate_size=130), 4)


def test_row_parallel_partition_not_a_multiple_of_16():
    from nvfp4.parallel import TensorParallelSplitError

    # down_proj: K = 96, 96/4 = 24 per rank
    with pytest.raises(TensorParallelSplitError) as info:
        _plan(_config(intermediate_size=96), 4)
    msg = str(info.value)
    assert "model.layers.0.mlp.down_proj" in msg and "96 / 4 ranks = 24 per rank" in msg and "16" in msg
    # o_proj: K = heads * head_dim = 4 * 8 = 32, 32/4 = 8 per rank
    with pytest.raises(TensorParallelSplitError, match=r"self_attn\.o_proj.*32 / 4 ranks = 8 per rank"):
        _plan(_config(hidden_size=32, intermediate_size=128), 4)
    # the same split is fine when down_proj is not quantized (a float row-parallel layer)
    assert _plan(_config(intermediate_size=96), 4, quantized=("o_proj",)).intermediate_per_rank == 24


def test_every_problem_is_listed_and_unsupported_models_named():
    from nvfp4.parallel import TensorParallelSplitError

    with pytest.raises(TensorParallelSplitError) as info:
        _plan(_config(intermediate_size=100), 3)
    assert str(info.value).count("\n  - ") == 3  # heads, KV heads, intermediate size
    with pytest.raises(TensorParallelSplitError, match=r"'gpt2'"):
        from transformers import GPT2Config

        _plan(GPT2Config(), 2)


def test_tp_without_enough_processes_says_how_to_launch(monkeypatch):
    from nvfp4.distributed import init_tensor_parallel

    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=r"torchrun --nproc-per-node 2"):
        init_tensor_parallel(2)
    assert init_tensor_parallel(1).size == 1


def test_load_refuses_before_reading_any_weight(tmp_path, monkeypatch):
    """tp=1 here; the split check runs on the config before the SliceReader exists."""
    import tp_harness
    from nvfp4.parallel import TensorParallelSplitError, load_tp, plan
    from nvfp4.parallel import model as tp_model

    path = tp_harness.write_checkpoint(tp_harness.tiny_float_model(intermediate_size=96), tmp_path / "m")
    opened = []
    monkeypatch.setattr(tp_model, "SliceReader", lambda *a, **k: opened.append(a) or pytest.fail("read weights"))
    real = plan.plan_tensor_parallel
    monkeypatch.setattr(tp_model, "plan_tensor_parallel", lambda config, tp, rows: real(config, 4, rows))
    with pytest.raises(TensorParallelSplitError, match=r"down_proj.*96 / 4 ranks = 24 per rank"):
        load_tp(path, tp=1, device="cpu")
    assert not opened


# -- a failing rank takes the group down -----------------------------------------------------
def _raise_while_peer_waits(rank, world):
    from nvfp4.distributed import all_reduce_sum, init_tensor_parallel

    tp = init_tensor_parallel(world, device="cpu")
    if rank == world - 1:
        time.sleep(0.5)
        raise RuntimeError(f"injected failure on rank {rank}")
    t = torch.ones(8)
    for _ in range(3):
        all_reduce_sum(t, tp)
    return t


@pytest.mark.parametrize("world", [2, 4])
def test_a_raising_rank_makes_every_rank_exit_nonzero(world):
    res = run_ranks(_raise_while_peer_waits, world, timeout=120, env={"NVFP4_TP_TIMEOUT_S": "300"})
    assert not res.killed, f"ranks {res.killed} hung"
    assert all(code not in (0, None) for code in res.exitcodes), res.exitcodes
    assert res.seconds < TEARDOWN_BOUND_S, f"teardown took {res.seconds:.1f} s"
    assert f"[rank {world - 1}/{world}] error: RuntimeError: injected failure on rank {world - 1}" in res.stderr[-1]
    assert all("error" in e for e in res.stderr[:-1]), res.stderr  # the others say why they stopped


def _fail_one_rank_while_loading(rank, world, path):
    from nvfp4.parallel import load_tp, slices

    if rank == 1:
        def broken(self, name, ranges):
            raise slices.CheckpointError(f"{name}: simulated unreadable shard on rank 1")
        slices.SliceReader.read = broken
    load_tp(path, tp=world, device="cpu", progress=False)


def test_a_rank_failing_to_load_stops_every_rank_with_its_message(tmp_path):
    import tp_harness

    path = tp_harness.write_checkpoint(tp_harness.tiny_float_model(), tmp_path / "m")
    res = run_ranks(_fail_one_rank_while_loading, 2, path, timeout=120, env={"NVFP4_TP_TIMEOUT_S": "300"})
    assert not res.killed and res.exitcodes == [1, 1], (res.exitcodes, res.stderr)
    assert res.seconds < TEARDOWN_BOUND_S
    assert "[rank 1/2] error: CheckpointError" in res.stderr[1] and "simulated unreadable shard" in res.stderr[1]
    assert "[rank 0/2] stopping because another rank failed" in res.stderr[0]
    assert "rank 1: CheckpointError" in res.stderr[0] and "simulated unreadable shard" in res.stderr[0]


def test_torchrun_tears_the_group_down(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time, torch
        from nvfp4.distributed import all_reduce_sum, init_tensor_parallel, run_tensor_parallel_main

        def main():
            tp = init_tensor_parallel(device="cpu")
            if tp.rank == 1:
                time.sleep(0.5)
                raise ValueError("rank 1 cannot go on")
            t = torch.ones(4)
            all_reduce_sum(t, tp)

        sys.exit(run_tensor_parallel_main(main))
    """))
    env = dict(os.environ, NVFP4_TP_TIMEOUT_S="300", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(script)]
    returncode, stderr, seconds = run_in_own_session(cmd, env, timeout=120)
    assert returncode is not None, f"torchrun still running after {seconds:.0f} s (hang); stderr: {stderr}"
    assert returncode != 0
    assert "[rank 1/2] error: ValueError: rank 1 cannot go on" in stderr
    assert seconds < TEARDOWN_BOUND_S, f"{seconds:.1f} s"
