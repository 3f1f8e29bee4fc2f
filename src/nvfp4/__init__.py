"""nvfp4: run NVFP4 (compressed-tensors W4A4 / W4A16) checkpoints exactly on any device, and
fast on GPUs without FP4 tensor cores.

Public API (see README.md):

* numerics: ``quantize_weight``, ``dequantize_weight``, ``quantize_activation``,
  ``dequantize_activation`` and the rest of ``nvfp4.numerics``;
* schemes with vLLM's contract: ``CompressedTensorsW4A4Fp4``, ``CompressedTensorsW4A16Fp4``;
* modules: ``NVFP4Linear`` and the tensor-parallel layers;
* backends: ``available_backends``, ``backend_status``, ``select_backend``.
"""

from .backends import available_backends, backend_status, select_backend
from .integrations.export import save
from .integrations.hf import convert, load
from .integrations.report import NVFP4Report
from .layers import (
    ColumnParallelNVFP4Linear,
    CompressedTensorsW4A4Fp4,
    CompressedTensorsW4A16Fp4,
    MergedColumnParallelNVFP4Linear,
    NVFP4Linear,
    QKVParallelNVFP4Linear,
    RowParallelNVFP4Linear,
)
from .numerics import (
    activation_global_scale,
    dequantize_activation,
    dequantize_weight,
    quantize_activation,
    quantize_weight,
    weight_global_scale,
)
from .quantize import quantize_model

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "quantize_weight",
    "dequantize_weight",
    "quantize_activation",
    "dequantize_activation",
    "weight_global_scale",
    "activation_global_scale",
    "CompressedTensorsW4A4Fp4",
    "CompressedTensorsW4A16Fp4",
    "NVFP4Linear",
    "ColumnParallelNVFP4Linear",
    "MergedColumnParallelNVFP4Linear",
    "QKVParallelNVFP4Linear",
    "RowParallelNVFP4Linear",
    "available_backends",
    "backend_status",
    "select_backend",
    "load",
    "convert",
    "NVFP4Report",
    "quantize_model",
    "save",
]
