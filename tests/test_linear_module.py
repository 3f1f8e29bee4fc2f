"""``NVFP4Linear`` and the schemes end to end: the forward equals dequantize-then-matmul in
float64 (from the dequantized operands without global scales, times alpha) within the fp32
summation-order bound explained in ``test_reference_gemm.py``."""

import pytest
import torch
from torch import nn

from core_helpers import (
    assert_within,
    ct_compress,
    decode_codes,
    dequant_unscaled_f64,
    gemm_bound,
    ref_activation_quant,
)
from nvfp4 import CompressedTensorsW4A4Fp4, CompressedTensorsW4A16Fp4, NVFP4Linear, quantize_weight


def float_linear(k, n, bias=True, dtype=torch.bfloat16, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.mul_(3.0)
        if bias:
            lin.bias.normal_()
    return lin.to(dtype)


def expected_w4a4(layer, x):
    """Y = alpha * (e2m1(qx) sx) @ (e2m1(qw) sw)^T from the independent activation reference."""
    k = layer.in_features
    x2 = x.reshape(-1, k)
    gx = layer.input_global_scale.reshape(1)
    codes, s = ref_activation_quant(x2, gx)
    a64 = (decode_codes(codes.to(torch.int64)).reshape(-1, k // 16, 16) * s.double().unsqueeze(-1)).reshape(-1, k)
    w64 = dequant_unscaled_f64(layer.weight_packed, layer.weight_scale)
    return gemm_bound(a64, w64, layer.alpha.double(), x.dtype)


def expected_w4a16(layer, x):
    x2 = x.reshape(-1, layer.in_features).double()
    w64 = dequant_unscaled_f64(layer.weight_packed, layer.weight_scale)
    return gemm_bound(x2, w64, layer.alpha.double(), x.dtype, extra_products=x.dtype == torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lead", [(1,), (7,), (2, 3), (2, 1, 5)])
def test_w4a4_forward_vs_fp64(dtype, lead):
    lin = float_linear(64, 24, bias=False, dtype=dtype)
    x = torch.randn(*lead, 64).to(dtype)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([448 * 6 / 4.0]))
    out = layer(x)
    assert out.shape == (*lead, 24) and out.dtype == dtype
    y, bound = expected_w4a4(layer, x)
    assert_within(out.reshape(-1, 24), y, bound)


def test_alpha_is_vllms_fp32_formula():
    lin = float_linear(32, 8)
    gx = torch.tensor([123.25])
    layer = NVFP4Linear.from_linear(lin, input_global_scale=gx)
    _, _, gw = quantize_weight(lin.weight.detach())
    assert torch.equal(layer.alpha, (1.0 / (gx * gw)).expand(8))
    assert torch.equal(layer.weight_global_scale, gw) and torch.equal(layer.input_global_scale, gx)


def test_from_linear_is_bit_exact_with_compressed_tensors():
    lin = float_linear(128, 40)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([100.0]))
    sd = ct_compress(lin.weight.detach())
    assert torch.equal(layer.weight_packed, sd["weight_packed"])
    assert torch.equal(layer.weight_scale.view(torch.uint8), sd["weight_scale"].view(torch.uint8))
    assert torch.equal(layer.weight_global_scale, sd["weight_global_scale"])
    assert torch.equal(layer.bias, lin.bias.detach())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bias_added_once_after_the_cast(dtype):
    lin = float_linear(48, 16, bias=True, dtype=dtype)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([300.0]))
    x = torch.randn(5, 48).to(dtype)
    with_bias = layer(x)
    layer.bias = None
    assert torch.equal(with_bias, layer(x) + lin.bias.detach())


@pytest.mark.parametrize("weight_only", [False, True])
def test_empty_batch(weight_only):
    layer = NVFP4Linear.from_linear(float_linear(32, 8), input_global_scale=torch.tensor([10.0]),
                                    weight_only=weight_only)
    for shape in ((0, 32), (3, 0, 32)):
        out = layer(torch.empty(*shape, dtype=torch.bfloat16))
        assert out.shape == (*shape[:-1], 8) and out.dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_w4a16_forward_vs_fp64(dtype):
    lin = float_linear(64, 20, bias=False, dtype=dtype)
    layer = NVFP4Linear.from_linear(lin, weight_only=True)
    assert isinstance(layer.scheme, CompressedTensorsW4A16Fp4) and layer.scheme.weight_only
    assert not hasattr(layer, "input_global_scale")
    x = torch.randn(2, 3, 64).to(dtype)
    out = layer(x)
    _, _, gw = quantize_weight(lin.weight.detach())
    assert torch.equal(layer.alpha, (1.0 / gw).expand(20))
    y, bound = expected_w4a16(layer, x)
    assert_within(out.reshape(-1, 20), y, bound)


def test_w4a4_checkpoint_run_weight_only():
    lin = float_linear(64, 12, bias=True)
    gx = torch.tensor([50.0])
    a4 = NVFP4Linear.from_linear(lin, input_global_scale=gx)
    layer = NVFP4Linear(64, 12, scheme="w4a4", weight_only=True)
    for name in ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale", "bias"):
        source = {"weight_global_scale": a4.weight_global_scale, "input_global_scale": gx}.get(name, getattr(a4, name))
        layer.weight_loader(getattr(layer, name), source.detach())
    layer.process_weights_after_loading()
    assert isinstance(layer.scheme, CompressedTensorsW4A4Fp4) and layer.scheme.weight_only
    assert "W4A4 checkpoint run weight-only" in repr(layer)
    x = torch.randn(4, 64).to(torch.bfloat16)
    # activations are not quantized: Gx is loaded but ignored, alpha = 1/Gw
    assert torch.equal(layer.alpha, (1.0 / a4.weight_global_scale).expand(12))
    with_bias = layer(x)
    assert not torch.equal(with_bias, a4(x))  # not the W4A4 numbers
    layer.bias = None
    out = layer(x)
    assert torch.equal(with_bias, out + lin.bias.detach())
    y, bound = expected_w4a16(layer, x)
    assert_within(out, y, bound)


def test_calibration_gives_static_minmax_input_scale():
    lin = float_linear(32, 8, dtype=torch.float32)
    batches = [torch.randn(4, 32), torch.randn(3, 32) * 5, torch.randn(2, 32)]
    layer = NVFP4Linear.from_linear(lin, calibration=batches)
    amax = max(b.abs().amax() for b in batches)
    assert torch.equal(layer.input_global_scale, (448 * 6 / amax).reshape(1))


def test_extra_repr_names_backend_shapes_and_mode():
    layer = NVFP4Linear.from_linear(float_linear(32, 8), input_global_scale=torch.tensor([1.0]), backend="reference")
    text = repr(layer)
    for part in ("in_features=32", "out_features=8", "bias=True", "scheme=W4A4", "backend=reference"):
        assert part in text
    a16 = NVFP4Linear.from_linear(float_linear(32, 8), weight_only=True)
    assert "scheme=W4A16" in repr(a16)


def test_emulation_backend_through_the_layer():
    from test_reference_gemm import vllm_run_nvfp4_emulations

    lin = float_linear(64, 16, bias=True)
    gx = torch.tensor([200.0])
    layer = NVFP4Linear.from_linear(lin, input_global_scale=gx, backend="emulation")
    x = torch.randn(3, 64).to(torch.bfloat16)
    expected = vllm_run_nvfp4_emulations(
        x, gx, layer.weight_packed, layer.weight_scale, 1.0 / layer.weight_global_scale, lin.bias.detach()
    )
    assert torch.equal(layer(x), expected)
    assert "backend=emulation" in repr(layer)


def test_float32_input_output_is_tight():
    lin = float_linear(256, 32, bias=False, dtype=torch.float32)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([448 * 6 / 3.0]))
    x = torch.randn(9, 256)
    y, bound = expected_w4a4(layer, x)
    assert_within(layer(x), y, bound)


def test_state_dict_keeps_checkpoint_names():
    # process_weights_after_loading replaces the loading parameters by plain ones; state_dict
    # still holds the checkpoint names
    layer = NVFP4Linear.from_linear(float_linear(32, 8), input_global_scale=torch.tensor([1.0]))
    keys = set(layer.state_dict())
    assert {"weight_packed", "weight_scale", "weight_global_scale", "input_global_scale", "bias"} <= keys
    assert "alpha" not in keys  # derived, not persistent


def test_min_capability_is_vllms():
    assert CompressedTensorsW4A4Fp4.get_min_capability() == 75
    assert CompressedTensorsW4A16Fp4.get_min_capability() == 75


def test_non_finite_activations_policy():
    """Decided policy (activations.py): +-Inf saturates (scale 448, code +-6) so the output stays
    finite; NaN poisons its group's scale, so every output of that token is NaN (as a float
    matmul would give) and other tokens are unaffected."""
    lin = float_linear(64, 16, bias=False)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([100.0]))
    x = torch.randn(3, 64).to(torch.bfloat16)
    x[0, 5] = float("inf")
    x[0, 40] = float("-inf")
    x[1, 17] = float("nan")
    out = layer(x)
    assert torch.all(torch.isfinite(out[0])) and torch.all(torch.isfinite(out[2]))
    assert torch.all(torch.isnan(out[1]))
    finite_rows = [0, 2]
    y, bound = expected_w4a4(layer, x[finite_rows])
    assert_within(out[finite_rows], y, bound)
