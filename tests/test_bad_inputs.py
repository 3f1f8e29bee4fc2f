"""Every bad input of issue 2 gets a clear ValueError/TypeError naming the parameter or layer."""

import math

import pytest
import torch
from torch import nn

from nvfp4 import (
    ColumnParallelNVFP4Linear,
    CompressedTensorsW4A4Fp4,
    MergedColumnParallelNVFP4Linear,
    NVFP4Linear,
    QKVParallelNVFP4Linear,
    RowParallelNVFP4Linear,
    dequantize_weight,
    quantize_weight,
)
from nvfp4.numerics import activation_global_scale

NAME = "model.layers.3.mlp.down_proj"


def loaded_layer(k=32, n=8, prefix=NAME, **kw):
    torch.manual_seed(0)
    w = torch.randn(n, k, dtype=torch.bfloat16)
    packed, scale, gw = quantize_weight(w)
    layer = NVFP4Linear(k, n, bias=False, prefix=prefix, **kw)
    layer.weight_loader(layer.weight_packed, packed)
    layer.weight_loader(layer.weight_scale, scale)
    layer.weight_loader(layer.weight_global_scale, gw)
    if hasattr(layer, "input_global_scale"):
        layer.weight_loader(layer.input_global_scale, torch.tensor([10.0]))
    return layer


# -- K not a multiple of 16 ---------------------------------------------------------------------
def test_create_weights_rejects_k_not_multiple_of_16():
    module = nn.Module()
    module.prefix = NAME
    with pytest.raises(ValueError, match=f"{NAME}: input_size_per_partition = 24 .*group size 16"):
        CompressedTensorsW4A4Fp4().create_weights(module, [32], 24, torch.bfloat16, weight_loader=None)
    with pytest.raises(ValueError, match=f"{NAME}: input_size_per_partition = 40"):
        NVFP4Linear(40, 8, prefix=NAME)


def test_create_weights_rejects_bad_sizes_and_dtype():
    module = nn.Module()
    with pytest.raises(ValueError, match="output_partition_sizes must be positive"):
        CompressedTensorsW4A4Fp4().create_weights(module, [0], 32, torch.bfloat16, weight_loader=None)
    with pytest.raises(TypeError, match="params_dtype"):
        CompressedTensorsW4A4Fp4().create_weights(module, [16], 32, torch.int8, weight_loader=None)


def test_quantize_weight_rejects_k_not_multiple_of_16():
    with pytest.raises(ValueError, match="weight: in_features = 20 is not a multiple of the NVFP4 group size 16"):
        quantize_weight(torch.zeros(4, 20))


def test_from_linear_rejects_k_not_multiple_of_16():
    with pytest.raises(ValueError, match="from_linear: in_features = 20"):
        NVFP4Linear.from_linear(nn.Linear(20, 4), input_global_scale=1.0)
    with pytest.raises(ValueError, match="from_linear: in_features = 20"):
        NVFP4Linear.from_linear(nn.Linear(20, 4), weight_only=True)


def test_quantize_weight_rejects_other_bad_weights():
    with pytest.raises(TypeError, match="weight must be float32, bfloat16 or float16"):
        quantize_weight(torch.zeros(4, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="weight must be 2-D"):
        quantize_weight(torch.zeros(2, 4, 16))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        quantize_weight([[0.0] * 16])
    with pytest.raises(ValueError, match="global_scale must be finite and > 0"):
        quantize_weight(torch.ones(4, 16), 0.0)
    with pytest.raises(ValueError, match="global_scale must be finite and > 0"):
        quantize_weight(torch.ones(4, 16), torch.tensor([math.inf]))


# -- NaN / Inf in a weight being quantized ---------------------------------------------------------
@pytest.mark.parametrize("bad,word", [(math.nan, "NaN"), (math.inf, "Inf"), (-math.inf, "Inf")])
def test_non_finite_weight_is_rejected(bad, word):
    w = torch.ones(4, 32, dtype=torch.bfloat16)
    w[2, 7] = bad
    with pytest.raises(ValueError, match=f"weight contains {word}"):
        quantize_weight(w)
    lin = nn.Linear(32, 4).to(torch.bfloat16)
    with torch.no_grad():
        lin.weight[1, 1] = bad
    with pytest.raises(ValueError, match=f"weight contains {word}"):
        NVFP4Linear.from_linear(lin, weight_only=True)


def test_from_linear_bad_arguments():
    with pytest.raises(TypeError, match="from_linear expects a torch.nn.Linear"):
        NVFP4Linear.from_linear(nn.Conv1d(16, 4, 1), input_global_scale=1.0)
    with pytest.raises(ValueError, match="input_global_scale= or calibration="):
        NVFP4Linear.from_linear(nn.Linear(32, 4))
    with pytest.raises(ValueError, match="input_global_scale must be finite and > 0"):
        NVFP4Linear.from_linear(nn.Linear(32, 4), input_global_scale=0.0)
    with pytest.raises(ValueError, match="calibration activations contain NaN or Inf"):
        NVFP4Linear.from_linear(nn.Linear(32, 4), calibration=torch.tensor([[math.nan] * 32]))
    with pytest.raises(TypeError, match="calibration activations must be floating-point"):
        activation_global_scale([torch.ones(2, 32, dtype=torch.int32)])
    with pytest.raises(ValueError, match="at least one non-empty"):
        activation_global_scale([torch.empty(0, 32)])


# -- the input x ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.float64, torch.uint8])
def test_unsupported_input_dtype(dtype):
    layer = loaded_layer()
    layer.process_weights_after_loading()
    with pytest.raises(TypeError, match=f"{NAME}: input dtype must be bfloat16, float16 or float32, got {dtype}"):
        layer(torch.zeros(2, 32, dtype=dtype))


def test_input_last_dim_wrong():
    layer = loaded_layer()
    layer.process_weights_after_loading()
    with pytest.raises(ValueError, match=f"{NAME}: input's last dimension must be 32, got shape \\(2, 48\\)"):
        layer(torch.zeros(2, 48, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=f"{NAME}: input's last dimension must be 32"):
        layer(torch.tensor(1.0, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match=f"{NAME}: input must be a torch.Tensor"):
        layer([[0.0] * 32])


def test_forward_before_process_weights_after_loading():
    layer = loaded_layer()
    with pytest.raises(RuntimeError, match=f"{NAME}: call process_weights_after_loading\\(\\) before"):
        layer(torch.zeros(2, 32, dtype=torch.bfloat16))


# -- loaders ------------------------------------------------------------------------------------------
def test_loader_wrong_shape():
    layer = NVFP4Linear(32, 8, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}.weight_packed.*dimension 0 .* is 9, expected 8"):
        layer.weight_loader(layer.weight_packed, torch.zeros(9, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=f"{NAME}.weight_packed: expected shape \\(8, 16\\), got \\(8, 32\\)"):
        layer.weight_loader(layer.weight_packed, torch.zeros(8, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=f"{NAME}.weight_scale: expected a 2-D tensor"):
        layer.weight_loader(layer.weight_scale, torch.zeros(16, dtype=torch.float8_e4m3fn))
    with pytest.raises(ValueError, match=f"{NAME}.weight_global_scale: expected shape"):
        layer.weight_loader(layer.weight_global_scale, torch.ones(2))
    with pytest.raises(ValueError, match=f"{NAME}.bias"):
        layer.weight_loader(layer.bias, torch.zeros(9, dtype=torch.bfloat16))


def test_loader_wrong_dtype():
    layer = NVFP4Linear(32, 8, prefix=NAME)
    with pytest.raises(TypeError, match=f"{NAME}.weight_packed: expected dtype torch.uint8, got torch.int8"):
        layer.weight_loader(layer.weight_packed, torch.zeros(8, 16, dtype=torch.int8))
    with pytest.raises(TypeError, match=f"{NAME}.weight_scale: expected dtype torch.float8_e4m3fn, got torch.float32"):
        layer.weight_loader(layer.weight_scale, torch.zeros(8, 2))
    with pytest.raises(TypeError, match=f"{NAME}.weight_global_scale: expected dtype"):
        layer.weight_loader(layer.weight_global_scale, torch.ones(1, dtype=torch.int32))
    with pytest.raises(TypeError, match=f"{NAME}.weight_packed: expected a torch.Tensor"):
        layer.weight_loader(layer.weight_packed, [[0] * 16] * 8)


def test_loader_rejects_foreign_parameter():
    layer = NVFP4Linear(32, 8, prefix=NAME)
    with pytest.raises(TypeError, match=f"{NAME}: Parameter is not an NVFP4 loading parameter"):
        layer.weight_loader(nn.Parameter(torch.zeros(1)), torch.zeros(1))


def test_loader_fused_tensor_with_wrong_row_count():
    layer = NVFP4Linear(32, 24, output_sizes=[16, 4, 4], shard_names=["q", "k", "v"], prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}.weight_packed: a fused tensor must have 24 rows"):
        layer.weight_loader(layer.weight_packed, torch.zeros(20, 16, dtype=torch.uint8))


@pytest.mark.parametrize("shard", ["x", "gate", "up", 3, -1, 1.5, True])
def test_unknown_shard_id(shard):
    layer = NVFP4Linear(32, 24, output_sizes=[16, 4, 4], shard_names=["q", "k", "v"], prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}.*shard id"):
        layer.weight_loader(layer.weight_packed, torch.zeros(16, 16, dtype=torch.uint8), shard)
    with pytest.raises(ValueError, match=f"{NAME}.*shard id"):
        layer.weight_loader(layer.weight_global_scale, torch.ones(1), shard)


def test_unnamed_fused_layer_rejects_bool_shard_id():
    layer = NVFP4Linear(32, 32, output_sizes=[16, 16], prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}.*unknown shard id True"):
        layer.weight_loader(layer.weight_packed, torch.zeros(16, 16, dtype=torch.uint8), True)


def test_row_parallel_layer_has_no_shards():
    layer = RowParallelNVFP4Linear(64, 8, tp_rank=0, tp_size=2, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}.weight_packed: a row-parallel layer has no shards"):
        layer.weight_loader(layer.weight_packed, torch.zeros(8, 32, dtype=torch.uint8), 0)


def test_fused_layer_construction_errors():
    with pytest.raises(ValueError, match=f"{NAME}: output_sizes \\[16, 4\\] do not add up to 24"):
        NVFP4Linear(32, 24, output_sizes=[16, 4], prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}: 2 shard names for 3 shards"):
        NVFP4Linear(32, 24, output_sizes=[16, 4, 4], shard_names=["a", "b"], prefix=NAME)
    with pytest.raises(ValueError, match="scheme must be one of"):
        NVFP4Linear(32, 8, scheme="w8a8")


# -- tensor parallelism that does not divide ----------------------------------------------------------
def test_tp_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match=f"{NAME}: output size 30 of shard 0 cannot be split across 4 ranks"):
        ColumnParallelNVFP4Linear(32, 30, tp_rank=0, tp_size=4, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}: output size 20 of shard 'up' cannot be split across 8 ranks"):
        MergedColumnParallelNVFP4Linear(32, [24, 20], tp_rank=0, tp_size=8, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}: 6 attention heads cannot be split across 4 ranks"):
        QKVParallelNVFP4Linear(32, 16, 6, 2, tp_rank=0, tp_size=4, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}: 4 KV heads cannot be replicated evenly across 6 ranks"):
        QKVParallelNVFP4Linear(32, 16, 12, 4, tp_rank=0, tp_size=6, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}: 6 KV heads cannot be split across 4 ranks"):
        QKVParallelNVFP4Linear(32, 16, 12, 6, tp_rank=0, tp_size=4, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}: in_features 48 cannot be split across 5 ranks"):
        RowParallelNVFP4Linear(48, 8, tp_rank=0, tp_size=5, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}: each of 4 ranks would hold 8 input features, not a multiple"):
        RowParallelNVFP4Linear(32, 8, tp_rank=0, tp_size=4, prefix=NAME)


@pytest.mark.parametrize("rank,size", [(2, 2), (-1, 2), (0, 0)])
def test_invalid_tp_rank(rank, size):
    with pytest.raises(ValueError, match=f"{NAME}: invalid tensor-parallel rank"):
        ColumnParallelNVFP4Linear(32, 32, tp_rank=rank, tp_size=size, prefix=NAME)


def test_replicated_layer_rejects_tp():
    with pytest.raises(ValueError, match=f"{NAME}: NVFP4Linear is replicated"):
        NVFP4Linear(32, 8, tp_rank=0, tp_size=2, prefix=NAME)


def test_tp_loader_given_a_tensor_that_does_not_split():
    layer = ColumnParallelNVFP4Linear(32, 16, tp_rank=1, tp_size=2, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}.weight_packed: dimension 0 of the checkpoint tensor is 8, expected 16"):
        layer.weight_loader(layer.weight_packed, torch.zeros(8, 16, dtype=torch.uint8))
    row = RowParallelNVFP4Linear(64, 8, tp_rank=1, tp_size=2, prefix=NAME)
    with pytest.raises(ValueError, match=f"{NAME}.weight_scale: dimension 1 of the checkpoint tensor is 2, expected 4"):
        row.weight_loader(row.weight_scale, torch.zeros(8, 2, dtype=torch.float8_e4m3fn))


# -- global scales at process_weights_after_loading -----------------------------------------------------
@pytest.mark.parametrize("attr", ["weight_global_scale", "input_global_scale"])
@pytest.mark.parametrize("value", [0.0, -2.0, math.inf, -math.inf, math.nan])
def test_non_finite_or_non_positive_global_scale(attr, value):
    layer = loaded_layer()
    layer.weight_loader(getattr(layer, attr), torch.tensor([value]))
    with pytest.raises(ValueError, match=f"{NAME}.{attr}: global scales must be finite and > 0"):
        layer.process_weights_after_loading()


def test_unloaded_global_scale_slot_is_reported_by_shard():
    layer = NVFP4Linear(32, 24, bias=False, output_sizes=[16, 4, 4], shard_names=["q", "k", "v"], prefix=NAME)
    for sid in ("q", "v"):
        layer.weight_loader(layer.weight_global_scale, torch.tensor([100.0]), sid)
        layer.weight_loader(layer.input_global_scale, torch.tensor([100.0]), sid)
    with pytest.raises(ValueError, match=f"{NAME}.weight_global_scale: .*shard 'k' = nan.*never provided"):
        layer.process_weights_after_loading()


def test_w4a4_layer_without_input_global_scale():
    layer = NVFP4Linear(32, 8, prefix=NAME)
    layer.weight_loader(layer.weight_global_scale, torch.tensor([100.0]))
    with pytest.raises(ValueError, match=f"{NAME}.input_global_scale: .*never provided"):
        layer.process_weights_after_loading()


def test_dequantize_weight_bad_inputs():
    packed, scale, gs = quantize_weight(torch.randn(4, 32))
    with pytest.raises(TypeError, match="weight_packed must be uint8"):
        dequantize_weight(packed.to(torch.int16), scale, gs)
    with pytest.raises(TypeError, match="weight_scale must be float8_e4m3fn .*got torch.uint8"):
        dequantize_weight(packed, scale.view(torch.uint8), gs)
    with pytest.raises(ValueError, match="weight_scale shape \\(4, 1\\) does not match weight_packed"):
        dequantize_weight(packed, scale[:, :1], gs)
    with pytest.raises(ValueError, match="weight_global_scale must be finite and > 0"):
        dequantize_weight(packed, scale, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="weight_global_scale must hold one value"):
        dequantize_weight(packed, scale, torch.ones(2))
