"""The launcher users know: ``torchrun --nproc-per-node 2 -m nvfp4 generate|eval CKPT --tp 2``.

Rank 0 prints (the answer once, not twice); the answer and the perplexity equal the
single-process command's (greedy decoding; perplexity within 1e-3 relative, see
test_tp_model.py for the logits bound); a model that cannot be split exits non-zero on every
rank with the reason printed once.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

import tp_harness
from test_cli_fixtures import make_float_model, make_nvfp4_checkpoint, training_text
from tp_harness import free_port, run_in_own_session

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def cli_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp_cli")
    src = make_float_model(root / "src")  # tied embeddings, tokenizer with a chat template
    return make_nvfp4_checkpoint(src, root / "nvfp4")


def _torchrun(args, nproc=2, timeout=150):
    env = dict(os.environ, OMP_NUM_THREADS="1", NVFP4_TP_TIMEOUT_S="120", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "nvfp4", *args]
    code, out, seconds = run_in_own_session(cmd, env, timeout)
    assert code is not None, f"torchrun hung ({seconds:.0f} s): {out}"
    return code, out


def _single(args, capsys):
    from nvfp4.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out


def test_generate_tp2_prints_once_and_matches_one_process(cli_checkpoint, capsys):
    args = ["generate", str(cli_checkpoint), "--prompt", PROMPT, "--raw", "--max-new-tokens", "10", "--device", "cpu"]
    code, single_out = _single(args, capsys)
    assert code == 0
    answer = single_out.strip()
    assert answer.startswith(PROMPT) and len(answer) > len(PROMPT)
    code, out = _torchrun(args + ["--tp", "2"])
    assert code == 0, out
    assert out.count(answer) == 1, f"expected the answer once from rank 0:\n{out}"


def test_eval_tp2_matches_one_process(cli_checkpoint, tmp_path, capsys):
    text = tmp_path / "held_out.txt"
    text.write_text(training_text()[4000:6000])
    args = ["eval", str(cli_checkpoint), "--text", str(text), "--seq-len", "64", "--max-tokens", "256",
            "--gen-tokens", "4", "--json", "--device", "cpu"]
    code, single_out = _single(args, capsys)
    assert code == 0
    ppl_1 = json.loads(single_out)["rows"][-1]["perplexity"]
    code, out = _torchrun(args + ["--tp", "2"])
    assert code == 0, out
    start = out.index("{")
    result = json.loads(out[start:out.rindex("}") + 1])
    row = result["rows"][-1]
    assert row["model"].endswith("tp=2")
    assert abs(row["perplexity"] - ppl_1) <= 1e-3 * ppl_1, (row["perplexity"], ppl_1)


def test_generate_refuses_a_model_that_cannot_be_split(cli_checkpoint, tmp_path):
    bad = tp_harness.write_checkpoint(tp_harness.tiny_float_model(intermediate_size=80), tmp_path / "bad")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(cli_checkpoint / name, bad / name)
    code, out = _torchrun(["generate", str(bad), "--prompt", "hi", "--device", "cpu", "--tp", "2"])
    assert code != 0
    assert out.count("cannot be split across tp=2 ranks") == 1, out  # rank 0 only
    assert "down_proj" in out and "80 / 2 ranks = 40 per rank" in out
