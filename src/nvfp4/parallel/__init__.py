"""Tensor parallelism for HF Llama/Mistral/Qwen2/Qwen3 NVFP4 models (docs/tensor_parallel.md).

* ``plan.py``: can the model be split N ways (checked from the config, before any work);
* ``layers.py``: k/v projections split or replicated by KV head; float parallel layers;
* ``slices.py``: a rank reads only its rows/columns of each checkpoint tensor;
* ``model.py``: ``load_tp(path, tp=N)``: the model of this rank, loaded and ready.
"""

from .layers import ColumnParallelFloatLinear, KVHeadParallelNVFP4Linear, RowParallelFloatLinear
from .model import load_tp, swap_tensor_parallel
from .plan import SUPPORTED_MODEL_TYPES, TensorParallelSplitError, TPPlan, kv_head_partition, plan_tensor_parallel
from .slices import LazyTensor, SliceRead, SliceReader

__all__ = [
    "load_tp",
    "swap_tensor_parallel",
    "plan_tensor_parallel",
    "TPPlan",
    "TensorParallelSplitError",
    "SUPPORTED_MODEL_TYPES",
    "kv_head_partition",
    "KVHeadParallelNVFP4Linear",
    "ColumnParallelFloatLinear",
    "RowParallelFloatLinear",
    "SliceReader",
    "LazyTensor",
    "SliceRead",
]
