"""Evaluation utilities against direct computations on tiny models."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from nvfp4.evaluation import perplexity, weight_memory
from nvfp4.evaluation.calibration import calibration_samples, read_text_file
from nvfp4.evaluation.corpus import HELD_OUT_EVERY, offline_text_split, split_documents
from nvfp4.evaluation.generation import build_prompt, generate_timed
from test_cli_fixtures import make_float_model, make_tokenizer


class TinyLM(nn.Module):
    """A causal LM small enough to score by hand: logits depend on the whole prefix (cumsum)."""

    def __init__(self, vocab=11, dim=8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Parameter(torch.randn(vocab, dim, generator=g))
        self.out = nn.Parameter(torch.randn(dim, vocab, generator=g))

    def forward(self, ids):
        h = self.emb[ids].cumsum(dim=1)
        return h @ self.out  # a plain tensor: perplexity() accepts logits directly


@torch.no_grad()
def direct_perplexity(model, ids, seq_len):
    """Independent: float64 log-softmax, token by token."""
    total, count = 0.0, 0
    for start in range(0, ids.numel(), seq_len):
        window = ids[start : start + seq_len]
        if window.numel() < 2:
            continue
        logits = model(window.unsqueeze(0))[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        for t in range(window.numel() - 1):
            total -= float(logp[t, window[t + 1]])
            count += 1
    return math.exp(total / count), count


@pytest.mark.parametrize("n,seq_len", [(50, 16), (49, 16), (17, 16), (10, 32), (2, 2)])
def test_perplexity_matches_a_direct_computation(n, seq_len):
    model = TinyLM()
    ids = torch.randint(0, 11, (n,), generator=torch.Generator().manual_seed(n))
    got = perplexity(model, ids, seq_len, progress=False)
    want, count = direct_perplexity(model, ids, seq_len)
    assert got.scored_tokens == count
    assert got.perplexity == pytest.approx(want, rel=1e-5)
    assert got.windows == len([s for s in range(0, n, seq_len) if n - s >= 2])
    assert got.seconds > 0 and got.tokens_per_second > 0


def test_perplexity_drops_a_one_token_tail_and_honours_max_windows():
    model = TinyLM()
    ids = torch.arange(33) % 11  # windows of 16: [0,16) [16,32) and a 1-token tail
    r = perplexity(model, ids, 16, progress=False)
    assert (r.windows, r.scored_tokens) == (2, 30)
    r1 = perplexity(model, ids, 16, max_windows=1, progress=False)
    assert (r1.windows, r1.scored_tokens) == (1, 15)
    assert r1.perplexity == pytest.approx(direct_perplexity(model, ids[:16], 16)[0], rel=1e-5)


def test_perplexity_of_a_hugging_face_model_matches_its_own_loss(tmp_path):
    from transformers import AutoModelForCausalLM

    src = make_float_model(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    ids = torch.randint(0, model.config.vocab_size, (40,), generator=torch.Generator().manual_seed(1))
    r = perplexity(model, ids, 40, progress=False)
    with torch.no_grad():
        loss = model(ids.unsqueeze(0), labels=ids.unsqueeze(0)).loss  # HF's own mean NLL
    assert r.mean_nll == pytest.approx(float(loss), rel=1e-5)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, dtype=torch.long), [1, 2, 3]])
def test_perplexity_rejects_non_1d_input(bad):
    with pytest.raises(TypeError, match="1-D"):
        perplexity(TinyLM(), bad, 4, progress=False)


def test_perplexity_rejects_too_short_input_and_window():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(TinyLM(), torch.tensor([1]), 4, progress=False)
    with pytest.raises(ValueError, match="seq_len"):
        perplexity(TinyLM(), torch.tensor([1, 2, 3]), 1, progress=False)


def test_weight_memory_of_a_float_model_counts_tied_weights_once(tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(make_float_model(tmp_path / "m", tie=True)), dtype=torch.bfloat16)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    unique = {p.data_ptr(): p for p in list(model.parameters()) + list(model.buffers())}
    expected = sum(p.numel() * p.element_size() for p in unique.values())
    mem = weight_memory(model)
    assert mem.total_bytes == expected and mem.quantized_layers == 0 and mem.quantized_bytes == 0


def test_weight_memory_of_a_quantized_model(tmp_path):
    import nvfp4
    from nvfp4.layers import NVFP4Linear
    from test_cli_fixtures import make_nvfp4_checkpoint

    src = make_float_model(tmp_path / "m")
    model = nvfp4.load(str(make_nvfp4_checkpoint(src, tmp_path / "q")), progress=False)
    layers = [m for m in model.modules() if isinstance(m, NVFP4Linear)]
    mem = weight_memory(model)
    assert mem.quantized_layers == len(layers) == 14
    packed = sum(m.weight_packed.numel() for m in layers)
    assert packed == sum(m.out_features * m.in_features // 2 for m in layers)
    assert mem.quantized_bytes >= packed + packed // 8  # FP4 + one FP8 scale per 16 values, at least
    assert mem.bf16_equivalent_bytes > mem.total_bytes
    assert mem.total_bytes == mem.quantized_bytes + mem.other_bytes


def test_calibration_samples_are_evenly_spaced_exact_windows():
    tok = make_tokenizer()
    docs = ["alpha beta gamma " * 50, "delta epsilon " * 60]
    stream = []
    for d in docs:
        stream += tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    seq = 16
    windows = len(stream) // seq
    got = calibration_samples(tok, docs, 4, seq)
    assert len(got) == 4 and all(t.shape == (1, seq) for t in got)
    picks = [int(i * windows / 4) for i in range(4)]
    for t, w in zip(got, picks):
        assert t[0].tolist() == stream[w * seq : (w + 1) * seq]
    # More samples than windows: every window once; text shorter than a window: one short sample.
    assert len(calibration_samples(tok, docs, 10_000, seq)) == windows
    assert calibration_samples(tok, ["tiny"], 3, 10_000)[0].shape[0] == 1
    with pytest.raises(ValueError):
        calibration_samples(tok, docs, 0, seq)


def test_read_text_file_plain_and_jsonl(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("hello world")
    assert read_text_file(plain) == ["hello world"]
    jl = tmp_path / "b.jsonl"
    jl.write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    assert read_text_file(jl) == ["one", "two"]
    jl.write_text('{"nottext": 1}\n')
    with pytest.raises(ValueError, match="b.jsonl:1"):
        read_text_file(jl)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_text_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="no text"):
        read_text_file(tmp_path / "empty.txt")


def test_offline_split_is_disjoint_deterministic_and_big_enough():
    a, b = offline_text_split(), offline_text_split()
    assert a.heldout == b.heldout and a.calibration == b.calibration
    assert not set(a.heldout) & set(a.calibration)
    assert len(a.heldout_text) > 20_000 and sum(map(len, a.calibration)) > 100_000


def test_split_documents_holds_out_every_fifth():
    docs = [(f"d{i}", f"text {i}") for i in range(12)]
    s = split_documents("src", docs)
    assert s.heldout_names == [f"d{i}" for i in range(12) if i % HELD_OUT_EVERY == 2]
    assert len(s.calibration) + len(s.heldout) == 12
    with pytest.raises(ValueError, match="too few"):
        split_documents("src", docs[:3])


def test_generate_timed_is_greedy_generation(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = make_float_model(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(str(src))
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    ids = build_prompt(tok, "What is a list?")
    assert tok.decode(ids[0]).endswith("<|im_start|>assistant\n")  # went through the chat template
    r = generate_timed(model, tok, ids, max_new_tokens=6, min_new_tokens=6)
    want = model.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                          attention_mask=torch.ones_like(ids), pad_token_id=tok.pad_token_id)
    assert r.new_tokens == 6 and r.prompt_tokens == ids.shape[1]
    assert r.text == tok.decode(want[0, ids.shape[1]:], skip_special_tokens=True)
    assert 0 < r.first_token_seconds <= r.seconds
    assert r.decode_tokens_per_second > 0 and r.tokens_per_second > 0
    raw = build_prompt(tok, "plain", chat=False)
    assert tok.decode(raw[0]) == "plain"


def test_warmup_changes_no_result(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls = []
    model = TinyLM()
    model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[1]))
    ids = torch.arange(40) % 11
    a = perplexity(model, ids, 16, progress=False)
    n = len(calls)
    b = perplexity(model, ids, 16, progress=False, warmup=True)
    assert a.perplexity == b.perplexity and a.scored_tokens == b.scored_tokens
    assert len(calls) - n == n + 1 and calls[n] == 16  # one extra, untimed pass over the first window

    src = make_float_model(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(str(src))
    hf = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    ids = build_prompt(tok, "hello")
    r1 = generate_timed(hf, tok, ids, max_new_tokens=5, min_new_tokens=5)
    r2 = generate_timed(hf, tok, ids, max_new_tokens=5, min_new_tokens=5, warmup=True)
    assert r1.text == r2.text and r2.new_tokens == 5
