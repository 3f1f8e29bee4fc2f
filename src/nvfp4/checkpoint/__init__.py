"""compressed-tensors NVFP4 checkpoints: the ``quantization_config``, reading safetensors
(single or sharded) and writing them atomically."""

from .config import (
    NVFP4_FORMAT,
    NVFP4Config,
    QuantGroup,
    QuantizationConfigError,
    build_quantization_config,
    parse_quantization_config,
    target_matches,
)
from .reader import CheckpointError, CheckpointFiles, find_checkpoint_files, iter_tensors, read_config
from .writer import atomic_directory, parse_size, write_json, write_safetensors

__all__ = [
    "NVFP4_FORMAT",
    "NVFP4Config",
    "QuantGroup",
    "QuantizationConfigError",
    "build_quantization_config",
    "parse_quantization_config",
    "target_matches",
    "CheckpointError",
    "CheckpointFiles",
    "find_checkpoint_files",
    "iter_tensors",
    "read_config",
    "atomic_directory",
    "parse_size",
    "write_json",
    "write_safetensors",
]
