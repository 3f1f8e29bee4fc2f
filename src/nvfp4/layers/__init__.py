"""NVFP4 layers: loading parameters, the compressed-tensors schemes, and nn.Modules."""

from .linear import (
    ColumnParallelNVFP4Linear,
    MergedColumnParallelNVFP4Linear,
    NVFP4Linear,
    QKVParallelNVFP4Linear,
    RowParallelNVFP4Linear,
    make_scheme,
)
from .parameters import (
    GroupQuantScaleParameter,
    ModelWeightParameter,
    NVFP4Parameter,
    PerTensorScaleParameter,
    RowOnlyParameter,
)
from .scheme import CompressedTensorsW4A4Fp4, CompressedTensorsW4A16Fp4

__all__ = [
    "CompressedTensorsW4A4Fp4",
    "CompressedTensorsW4A16Fp4",
    "NVFP4Linear",
    "ColumnParallelNVFP4Linear",
    "MergedColumnParallelNVFP4Linear",
    "QKVParallelNVFP4Linear",
    "RowParallelNVFP4Linear",
    "make_scheme",
    "NVFP4Parameter",
    "ModelWeightParameter",
    "GroupQuantScaleParameter",
    "PerTensorScaleParameter",
    "RowOnlyParameter",
]
