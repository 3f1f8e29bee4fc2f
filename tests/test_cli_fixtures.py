"""Tiny real models for the CLI, demo and evaluation tests (built in seconds, no network).

``make_tokenizer`` trains a small byte-level BPE on offline text and gives it a chat template;
``make_float_model`` saves a random Llama with that tokenizer as a Hugging Face checkpoint;
``make_nvfp4_checkpoint`` quantizes it with the library (``nvfp4.quantize_model`` + ``save``).
The tests at the bottom check the fixtures themselves.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def training_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)[:20])


def make_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([training_text()], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_float_model(directory: Path, *, seed: int = 0, tie: bool = True, layers: int = 2) -> Path:
    """A random Llama (hidden 64, 2 layers, 4 heads / 2 KV heads) with its tokenizer, in bf16."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        tie_word_embeddings=tie, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def make_nvfp4_checkpoint(src: Path, dst: Path, scheme: str = "NVFP4") -> Path:
    import nvfp4
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(src))
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.bfloat16)
    ids = tokenizer(training_text()[:4000], return_tensors="pt")["input_ids"][:, :256]
    calibration = [ids[:, :128], ids[:, 128:]] if scheme == "NVFP4" else None
    nvfp4.quantize_model(model, calibration, ignore=["lm_head"], scheme=scheme, progress=False)
    nvfp4.save(model, dst, tokenizer=tokenizer)
    return Path(dst)


# -- checks of the fixtures themselves --------------------------------------------------------
def test_tiny_tokenizer_round_trips_text_and_has_a_chat_template():
    tok = make_tokenizer()
    text = "for x in range(10):\n    print(x)"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_tiny_float_model_loads_back(tmp_path):
    from transformers import AutoModelForCausalLM

    src = make_float_model(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(str(src))
    assert model.config.num_hidden_layers == 2 and (src / "tokenizer.json").is_file()
