"""Producing NVFP4 checkpoints: calibration and ``quantize_model``."""

from .calibration import collect_input_amax, prepare_calibration
from .model import quantize_model

__all__ = ["quantize_model", "prepare_calibration", "collect_input_amax"]
