"""Integrations with model libraries: Hugging Face transformers (``hf.py``)."""

from .report import NVFP4Report

__all__ = ["NVFP4Report"]
