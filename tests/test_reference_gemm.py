"""The exact reference GEMMs (reference sheet §4) against float64, and the ``emulation`` backend
against a direct re-implementation of vLLM's ``run_nvfp4_emulations``.

Tolerance: the operands ``e2m1 * e4m3`` are exact in fp32 and so are their pairwise products,
so an fp32 GEMM differs from the float64 value only by the rounding of its K-1 additions
(<= (K-1) * 2^-24 * sum|terms|, any order), one rounding for ``* alpha`` and the final cast
(half an ulp of the output dtype). ``core_helpers.gemm_bound`` computes exactly that bound.
"""

import pytest
import torch

from core_helpers import (
    assert_within,
    decode_codes,
    dequant_unscaled_f64,
    gemm_bound,
    ref_activation_quant,
    unpack_codes,
)
from nvfp4 import quantize_activation, quantize_weight
from nvfp4.backends.emulation import EmulationBackend
from nvfp4.numerics import nvfp4_matmul_reference, scaled_matmul_reference, w4a16_matmul_reference


def make_operands(m, n, k, seed, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=g) * 2).to(dtype)
    w = (torch.randn(n, k, generator=g) * 0.05).to(dtype)
    gx = (448 * 6 / x.abs().amax().float()).reshape(1)
    return x, w, gx


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("m,n,k", [(1, 1, 16), (3, 17, 64), (65, 33, 512), (4, 8, 4096)])
def test_w4a4_reference_vs_fp64(out_dtype, m, n, k):
    x, w, gx = make_operands(m, n, k, seed=m * n + k)
    wp, ws, gw = quantize_weight(w)
    xp, xs = quantize_activation(x, gx)
    # one alpha per output row, different per row (as for fused shards with their own Gw)
    alpha = (1.0 / (gx * gw)) * torch.linspace(0.5, 2.0, n)
    out = nvfp4_matmul_reference(xp, xs, wp, ws, alpha, out_dtype)
    assert out.dtype == out_dtype and out.shape == (m, n)
    a64 = dequant_unscaled_f64(xp, xs)
    w64 = dequant_unscaled_f64(wp, ws)
    y, bound = gemm_bound(a64, w64, alpha.double(), out_dtype)
    assert_within(out, y, bound)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("m,n,k", [(1, 5, 16), (9, 31, 256)])
def test_w4a16_reference_vs_fp64(dtype, m, n, k):
    x, w, _ = make_operands(m, n, k, seed=7 + m, dtype=dtype)
    wp, ws, gw = quantize_weight(w)
    alpha = (1.0 / gw).expand(n).clone()
    out = w4a16_matmul_reference(x, wp, ws, alpha, dtype)
    assert out.dtype == dtype
    y, bound = gemm_bound(x.double(), dequant_unscaled_f64(wp, ws), alpha.double(), dtype,
                          extra_products=dtype == torch.float32)
    assert_within(out, y, bound)


def test_bias_is_added_after_the_cast():
    x, w, gx = make_operands(5, 12, 64, seed=3)
    wp, ws, gw = quantize_weight(w)
    xp, xs = quantize_activation(x, gx)
    alpha = (1.0 / (gx * gw)).expand(12).clone()
    bias = torch.randn(12).to(torch.bfloat16)
    plain = nvfp4_matmul_reference(xp, xs, wp, ws, alpha, torch.bfloat16)
    with_bias = nvfp4_matmul_reference(xp, xs, wp, ws, alpha, torch.bfloat16, bias)
    assert torch.equal(with_bias, plain + bias)  # out = Y.to(x.dtype) + bias, as vLLM


def test_scaled_matmul_float64_inputs_accumulate_in_float64():
    a = torch.randn(3, 32, dtype=torch.float64)
    w = torch.randn(4, 32, dtype=torch.float64)
    alpha = torch.rand(4, dtype=torch.float64)
    out = scaled_matmul_reference(a, w, alpha, torch.float64)
    assert torch.equal(out, (a @ w.t()) * alpha)


# -- vLLM's emulation, re-implemented from run_nvfp4_emulations ---------------------------------
def vllm_run_nvfp4_emulations(x, gx, w_packed, w_scale, w_global_scale_inv, bias=None):
    """``ref_nvfp4_quant_dequant`` + ``dequantize_to_dtype(swizzle=False)`` + ``torch.matmul``."""
    m, k = x.shape
    codes, s = ref_activation_quant(x, gx)
    x_fp4 = decode_codes(codes).to(torch.float32).reshape(m, k // 16, 16)
    x_dq = (x_fp4 * (s.unsqueeze(-1) / gx)).reshape(m, k).to(x.dtype)
    w_dq = vllm_dequantize_to_dtype(w_packed, w_scale, w_global_scale_inv, x.dtype)
    out = torch.matmul(x_dq, w_dq.t())
    return out + bias if bias is not None else out


class _Layer:
    pass


def _emulation_layer(w, gx):
    wp, ws, gw = quantize_weight(w)
    layer = _Layer()
    layer.weight_packed, layer.weight_scale = wp, ws
    layer.input_global_scale = gx
    layer.weight_global_scale_inv_per_row = (1.0 / gw).expand(w.shape[0]).clone()
    return layer, gw


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,n,k", [(1, 7, 16), (17, 40, 320), (64, 96, 1024)])
def test_emulation_backend_equals_vllm_formula(dtype, m, n, k):
    x, w, gx = make_operands(m, n, k, seed=100 + m, dtype=dtype)
    layer, gw = _emulation_layer(w, gx)
    bias = torch.randn(n).to(dtype)
    backend = EmulationBackend()
    expected = vllm_run_nvfp4_emulations(x, gx, layer.weight_packed, layer.weight_scale, 1.0 / gw, bias)
    assert torch.equal(backend.apply_w4a4(layer, x, bias), expected)


def vllm_dequantize_to_dtype(w_packed, w_scale, w_global_scale_inv, dtype):
    """vLLM ``dequantize_to_dtype(swizzle=False)``: ``e2m1 * (s * (1/Gw))`` in fp32, cast."""
    n = w_packed.shape[0]
    k = 2 * w_packed.shape[1]
    w_f32 = decode_codes(unpack_codes(w_packed)).to(torch.float32).reshape(n, k // 16, 16)
    sf = w_scale.to(torch.float32) * w_global_scale_inv.reshape(-1, 1)
    return (w_f32 * sf.unsqueeze(-1)).reshape(n, k).to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_emulation_backend_w4a16_equals_vllm_formula(dtype):
    x, w, gx = make_operands(9, 48, 256, seed=5, dtype=dtype)
    layer, gw = _emulation_layer(w, gx)
    bias = torch.randn(48).to(dtype)
    w_dq = vllm_dequantize_to_dtype(layer.weight_packed, layer.weight_scale, 1.0 / gw, dtype)
    assert torch.equal(EmulationBackend().apply_w4a16(layer, x, bias), torch.matmul(x, w_dq.t()) + bias)


def test_emulation_weight_rounding_order_is_vllms():
    """vLLM multiplies ``s * (1/Gw)`` first, then by the e2m1 value; ``(e2m1*s) * (1/Gw)`` rounds
    differently in fp32, which shows after an fp16 cast. Crafted rows where the orders differ."""
    scales = torch.arange(1, 127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    g = torch.Generator().manual_seed(0)
    inv = torch.rand(4096, generator=g) * 1e-3 + 1e-4
    vllm_order = 1.5 * (scales[:, None] * inv[None, :])
    other_order = (1.5 * scales)[:, None] * inv[None, :]
    differ = (vllm_order.half() != other_order.half()).nonzero()[:32]
    assert len(differ) > 0  # the crafted case discriminates between the two orders
    n, k = len(differ), 32
    layer = _Layer()
    layer.weight_packed = torch.full((n, k // 2), 0x33, dtype=torch.uint8)  # every code 3 = 1.5
    layer.weight_scale = scales[differ[:, 0]].unsqueeze(1).expand(n, k // 16).to(torch.float8_e4m3fn)
    layer.weight_global_scale_inv_per_row = inv[differ[:, 1]]
    eye = torch.eye(k, dtype=torch.float16)
    w_dq = vllm_dequantize_to_dtype(layer.weight_packed, layer.weight_scale, layer.weight_global_scale_inv_per_row,
                                    torch.float16)
    assert torch.equal(EmulationBackend().apply_w4a16(layer, eye, None), w_dq.t())
