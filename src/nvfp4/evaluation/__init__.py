"""Measuring a model: perplexity, generation speed, weight memory, and offline text to do it on.

Used by ``nvfp4 eval``, ``nvfp4 generate`` and the bundled demo; works on any Hugging Face
causal LM (bf16 or with NVFP4 layers).
"""

from .corpus import TextSplit, offline_text_split
from .generation import GenerationResult, build_prompt, generate_timed
from .memory import WeightMemory, weight_memory
from .perplexity import PerplexityResult, perplexity, tokenize_text

__all__ = [
    "PerplexityResult",
    "perplexity",
    "tokenize_text",
    "GenerationResult",
    "generate_timed",
    "build_prompt",
    "WeightMemory",
    "weight_memory",
    "TextSplit",
    "offline_text_split",
]
