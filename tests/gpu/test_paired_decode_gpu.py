"""GPU tests of the paired weight decode (``kernels/paired_decode.py``; ``pytest -m gpu tests/gpu``).

The PTX decoder on the hardware (every code at every nibble position with every E4M3 scale
byte, NaN bytes included) against the reference values and bit for bit against the portable
decoder; the W4A4 small-M GEMM over the paired operand, every tile the tuner can pick, at
Llama shapes and awkward ones, M = 5..128, bf16 and fp16 inputs, within the fp32-summation
bound of a float64 computation; the same for W4A16 at M = 1..32 (x's tile permuted in the
kernel; bf16 and fp16 decoders); special weights and activations; the layer path (W4A4 and
W4A16) reaching it eagerly and in a CUDA-graph capture.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from gemv_half2_checks import every_word_and_scale, special_weight  # noqa: E402
from cuda_graph_checks import assert_capture_replays_eager  # noqa: E402
from paired_decode_checks import check_w4a4, check_w4a16, decode_reference, decode_words, exact_w4a4  # noqa: E402
from triton_exactness import exact_and_bound  # noqa: E402

from nvfp4 import NVFP4Linear  # noqa: E402
from nvfp4.numerics import quantize_weight  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = "cuda"


def _gx(x):
    return torch.tensor([448.0 * 6.0 / max(x.abs().max().float().item(), 1e-6)], device=x.device)


@pytest.mark.parametrize("level", ["sm80", "sm89"])
@pytest.mark.parametrize("op", ["fp16", "bf16"])
def test_ptx_decoder_every_code_position_and_scale_byte(op, level):
    """Both PTX scale decoders (sm_80 bit placement; sm_89's ``cvt.rn.f16x2.e4m3x2``, on GPUs
    that have it) against the reference values and the portable decoder, every word x byte."""
    from nvfp4.ops import launch

    if level == "sm89" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("cvt.rn.f16x2.e4m3x2 needs compute capability 8.9")
    words, scales = every_word_and_scale(DEV)
    asm = decode_words(words, scales, use_asm=launch.ASM_SM89 if level == "sm89" else launch.ASM_SM80, op=op)
    portable = decode_words(words, scales, use_asm=launch.ASM_OFF, op=op)
    torch.testing.assert_close(asm.cpu(), decode_reference(words, scales, op), rtol=0, atol=0, equal_nan=True)
    same = (asm.view(torch.int32) == portable.view(torch.int32)) | (torch.isnan(asm) & torch.isnan(portable))
    same |= (asm == 0) & (portable == 0)  # -0 vs +0 from the portable table decode: no sum can tell
    assert bool(same.all()), f"{int((~same).sum())} decoded values differ between the PTX and portable decoders"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", [(4096, 4096), (4096, 14336), (1000, 2048), (72, 432)])
def test_every_candidate_matches_exact(dtype, n, k, monkeypatch):
    from nvfp4.ops import launch

    g = torch.Generator().manual_seed(n + k)
    wp, ws, gw = quantize_weight((torch.randn(n, k, generator=g) * 0.05).to(dtype))
    wp, ws = wp.to(DEV), ws.to(DEV)
    bias = torch.randn(n, generator=g).to(dtype).to(DEV)
    for m in (5, 16, 33, 64, 128):
        x = torch.randn(m, k, generator=g).to(dtype).to(DEV)
        gx = _gx(x)
        alpha = (1.0 / (gx.cpu() * gw)).expand(n).contiguous().to(DEV)
        b = bias if m % 2 else None
        exact = exact_w4a4(x, gx, wp, ws, alpha, b)
        monkeypatch.setenv(launch.EIGHT_ROW_ENV, "on")  # the opt-in 8-row tiles too (M <= 8)
        for cand in launch.small_m_candidates(m, with_gemv=False):
            check_w4a4(x, gx, wp, ws, alpha, b, f"M={m} {n}x{k} {cand}", monkeypatch, dict(cand), exact)
        check_w4a4(x, gx, wp, ws, alpha, b, f"M={m} {n}x{k} tuned", monkeypatch, None, exact)


def test_special_weights_and_activations(monkeypatch):
    n, k = 1000, 4096
    wp, ws = special_weight(n, k, seed=11)
    x = torch.randn(16, k).to(torch.bfloat16)
    x[0] = 0.0
    x[1, :2048] = -0.0
    x[2, :16] = 6 * 448.0
    x[3, 16:32] = -1.0e30
    x, wp, ws = x.to(DEV), wp.to(DEV), ws.to(DEV)
    gx = _gx(x)
    alpha = torch.full((n,), 0.5, device=DEV)
    check_w4a4(x, gx, wp, ws, alpha, None, "special", monkeypatch)
    ws_nan = ws.view(torch.uint8).clone()
    ws_nan[7, 100] = 0x7F  # NaN block scale: row 7 is NaN for every token, nothing else
    monkeypatch.setenv("NVFP4_TRITON_PAIRED_K", "on")
    from nvfp4.ops import launch

    out = launch.linear_w4a4(x, wp, ws_nan.view(torch.float8_e4m3fn), gx, alpha, None)
    assert out[:, 7].isnan().all() and not out[:, torch.arange(n, device=DEV) != 7].isnan().any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", [(4096, 4096), (1000, 2048), (72, 432)])
def test_w4a16_every_candidate_matches_exact(dtype, n, k, monkeypatch):
    """W4A16 permutes x's tile in the GEMM up to 32 rows (fp16 and bf16 decoders)."""
    from nvfp4.ops import launch

    g = torch.Generator().manual_seed(n * 3 + k)
    wp, ws, gw = quantize_weight((torch.randn(n, k, generator=g) * 0.05).to(dtype))
    wp, ws = wp.to(DEV), ws.to(DEV)
    alpha = (1.0 / gw).expand(n).contiguous().to(DEV)
    for m in (1, 4, 16, 32):
        x = torch.randn(m, k, generator=g).to(dtype).to(DEV)
        bias = torch.randn(n, generator=g).to(dtype).to(DEV) if m % 2 else None
        exact = exact_and_bound(x.cpu().float(), wp.cpu(), ws.cpu(), alpha.cpu(), None if bias is None else bias.cpu(), dtype)
        monkeypatch.setenv(launch.EIGHT_ROW_ENV, "on")  # the opt-in 8-row tiles too (M <= 8)
        for cand in launch.small_m_candidates(m, with_gemv=False):
            _, launches = check_w4a16(x, wp, ws, alpha, bias, f"M={m} {n}x{k} {cand}", monkeypatch, dict(cand), exact)
            assert launches[launch.PAIRED_IN_KERNEL] == 1, (m, cand, launches)


@pytest.mark.parametrize("weight_only", [False, True])
def test_layer_reaches_the_paired_gemm_eagerly_and_in_a_cuda_graph(weight_only, monkeypatch):
    from nvfp4.ops import launch

    monkeypatch.setenv(launch.PAIRED_K_ENV, "on")
    counter = f"gemm_paired_k{launch.PAIRED_IN_KERNEL}"
    lin = torch.nn.Linear(2048, 3072, bias=True, device=DEV, dtype=torch.bfloat16)
    kw = dict(weight_only=True) if weight_only else dict(input_global_scale=300.0)
    layer = NVFP4Linear.from_linear(lin, backend="triton", **kw).to(DEV)
    ref = NVFP4Linear.from_linear(lin, backend="reference", **kw).to(DEV)
    x = torch.randn(16, 2048, device=DEV, dtype=torch.bfloat16)
    before = launch.KERNEL_LAUNCHES[counter]
    out = layer(x)
    assert launch.KERNEL_LAUNCHES[counter] > before
    torch.testing.assert_close(out, ref(x), rtol=2**-7, atol=1e-2)  # the exact bound is tested above
    assert_capture_replays_eager(layer, x, launch, counter)
