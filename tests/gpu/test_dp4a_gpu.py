"""GPU tests of the integer-dot W4A4 decode path (``pytest -m gpu tests/gpu``).

The real ``prmt``/``dp4a`` instructions against plain-Python models of their PTX definitions;
every FP4 code and E4M3 scale byte; the magic-number E2M1 rounding and the int8 activation
output on the hardware; the GEMV at Llama shapes within the fp32-summation bound of a
float64 computation (fused and unfused activation quantization, every M it serves, uneven
split-K, bias, fp16); non-finite activations; bitwise determinism with the split-K counters
back at zero; CUDA-graph capture/replay and ``torch.compile(fullgraph=True)`` at M = 1.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import int_dot_checks  # noqa: E402
from triton_exactness import activation_operand, assert_close_to_exact  # noqa: E402

from nvfp4 import NVFP4Linear  # noqa: E402
from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402
from nvfp4.numerics.formats import e2m1_decode, unpack_fp4  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = "cuda"


def _launch():
    from nvfp4.ops import launch, launch_dp4a

    return launch, launch_dp4a


def test_prmt_and_dp4a_instructions_match_the_ptx_models():
    int_dot_checks.check_primitives(DEV, use_asm=True, count=1024, seed=1)


def test_every_fp4_code_in_every_nibble_on_hardware():
    int_dot_checks.check_fp4_words_all_codes(DEV, use_asm=True)


@pytest.mark.parametrize("sm89", [False, True], ids=["bit_placement", "sm89_cvt"])
def test_every_e4m3_scale_byte_on_hardware(sm89):
    if sm89 and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("cvt.rn.f16x2.e4m3x2 needs compute capability 8.9")
    int_dot_checks.check_scale_decode_all_bytes(DEV, sm89=sm89)


def test_signed_weight_words_on_hardware():
    int_dot_checks.check_signed_words_all_codes(DEV, use_asm=True)


def test_e2m1_rounding_on_hardware():
    int_dot_checks.check_e2m1_round(DEV)


def test_e2m1_codes_on_hardware():
    int_dot_checks.check_e2m1_code(DEV)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_int8_activation_output_identical(dtype):
    launch, _ = _launch()
    x = (torch.randn(37, 4096, device=DEV) * 4).to(dtype)
    x[0, :16] = 0
    x[1, 16:32] = 1e-30
    x[2, :3] = torch.tensor([float("inf"), -0.0, float("-inf")])
    x[3, 100] = float("nan")
    gx = torch.tensor([448.0 * 6.0 / 16.0], device=DEV)
    values, scale = launch.quantize_activation_int8(x, gx)
    rp, rs = quantize_activation(x, gx)
    nan = torch.isnan(rs.float())
    assert torch.equal(torch.isnan(scale), nan)
    assert torch.equal(scale[~nan], rs.float()[~nan])
    keep = ~nan.repeat_interleave(16, dim=1)
    assert torch.equal(values[keep], (2 * e2m1_decode(unpack_fp4(rp))).to(torch.int8)[keep])


def _layer(n, k, seed, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.02
    w[1, 16:32] *= 0.05  # a subnormal E4M3 block scale
    return quantize_weight(w.to(dtype).to(DEV))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("n,k", [(4096, 4096), (6144, 4096), (4096, 14336), (1000, 2048), (96, 16)])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_dp4a_linear_at_real_shapes(m, n, k, fused):
    launch, launch_dp4a = _launch()
    wp, ws, gw = _layer(n, k, seed=n + m)
    x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
    gx = torch.tensor([448.0 * 6.0 / float(x.abs().max())], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    before = launch.KERNEL_LAUNCHES["gemv_dp4a"]
    out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, {"FUSED_QUANT": fused})
    torch.cuda.synchronize()
    assert launch.KERNEL_LAUNCHES["gemv_dp4a"] == before + 1
    rp, rs = quantize_activation(x, gx)
    assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, None, f"dp4a M={m} {n}x{k} fused={fused}")


@pytest.mark.parametrize("split", [1, 3, 7])
def test_dp4a_uneven_split_fp16_bias_per_row_alpha(split):
    _, launch_dp4a = _launch()
    n, k = 3000, 4096 + 256
    wp, ws, gw = _layer(n, k, seed=split, dtype=torch.float16)
    x = torch.randn(3, k, device=DEV, dtype=torch.float16)
    gx = torch.tensor([448.0 * 6.0 / float(x.abs().max())], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(n).clone()
    alpha[::3] *= 0.5
    bias = torch.randn(n, device=DEV, dtype=torch.float16)
    out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, bias, {"SPLIT_K": split})
    rp, rs = quantize_activation(x, gx)
    assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, bias, f"split {split}")


@pytest.mark.parametrize("stages,fused", [(2, True), (3, True), (3, False)])
def test_dp4a_pipelined_k_loop(stages, fused):
    """NUM_STAGES > 1 (cp.async-staged weight tiles): same exact results, uneven splits too."""
    _, launch_dp4a = _launch()
    for n, k, split in ((4096, 14336, None), (1000, 4096 + 512, 5)):
        wp, ws, gw = _layer(n, k, seed=stages)
        x = torch.randn(2, k, device=DEV, dtype=torch.bfloat16)
        gx = torch.tensor([448.0 * 6.0 / float(x.abs().max())], device=DEV)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        cfg = {"NUM_STAGES": stages, "FUSED_QUANT": fused, **({"SPLIT_K": split} if split else {})}
        out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, cfg)
        rp, rs = quantize_activation(x, gx)
        assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, None, f"stages {stages} {n}x{k}")


def test_non_finite_activations_on_hardware():
    _, launch_dp4a = _launch()
    wp, ws, gw = _layer(2048, 4096, seed=3)
    x = torch.randn(3, 4096, device=DEV, dtype=torch.bfloat16)
    x[0, 7] = float("inf")
    x[1, 900] = float("-inf")
    x[2, 4000] = float("nan")
    gx = torch.tensor([300.0], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(2048).contiguous()
    out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None)
    assert torch.isfinite(out[:2]).all() and torch.isnan(out[2]).all()
    rp, rs = quantize_activation(x[:2], gx)
    assert_close_to_exact(out[:2], activation_operand(rp, rs), wp, ws, alpha, None, "Inf rows")


@pytest.mark.parametrize("m", [1, 3])
def test_every_tuner_candidate_exact_and_the_choice_cached(m):
    """Each candidate (GEMV tiles and, at M >= 2, the float path) within the exact bound; the
    tuner times them once per shape, keeps one of them and then launches only that."""
    launch, launch_dp4a = _launch()
    n, k = 6144, 4096
    wp, ws, gw = _layer(n, k, seed=11 + m)
    x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
    gx = torch.tensor([448.0 * 6.0 / float(x.abs().max())], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    rp, rs = quantize_activation(x, gx)
    for cand in launch_dp4a.candidates(m):
        out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, cand)
        assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, None, f"candidate {cand}")
    launch_dp4a._CHOICE.clear()
    tuned = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None)
    (choice,) = launch_dp4a._CHOICE.values()
    assert choice in launch_dp4a.candidates(m)

    def launches_of(call):
        before = dict(launch.KERNEL_LAUNCHES)
        assert torch.equal(call(), tuned)
        return {k: v - before.get(k, 0) for k, v in launch.KERNEL_LAUNCHES.items() if v != before.get(k, 0)}

    explicit = launches_of(lambda: launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, choice))
    again = launches_of(lambda: launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None))
    assert again == explicit and (again.get("gemv_dp4a") == 1) == (choice != launch_dp4a.FLOAT_PATH), (choice, again)
    assert (launch_dp4a.FLOAT_PATH in launch_dp4a.candidates(m)) == (m > 1)


def test_shape_first_seen_in_a_capture_keeps_the_default_tiles():
    _, launch_dp4a = _launch()
    n, k = 2048, 3072
    wp, ws, gw = _layer(n, k, seed=17)
    x = torch.randn(1, k, device=DEV, dtype=torch.bfloat16)
    gx = torch.tensor([448.0 * 6.0 / float(x.abs().max())], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, launch_dp4a.candidates(1)[0])  # compile outside
    launch_dp4a._CHOICE.clear()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None)
    graph.replay()
    torch.cuda.synchronize()
    assert list(launch_dp4a._CHOICE.values()) == [launch_dp4a.candidates(1)[0]]
    assert torch.equal(out, launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None))


def test_deterministic_and_counters_back_at_zero():
    _, launch_dp4a = _launch()
    wp, ws, gw = _layer(4096, 14336, seed=5)
    x = torch.randn(2, 14336, device=DEV, dtype=torch.bfloat16)
    gx = torch.tensor([448.0 * 6.0 / float(x.abs().max())], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(4096).contiguous()
    first = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None)
    assert launch_dp4a.dp4a_config(2, 4096, 14336, x.device)["SPLIT_K"] > 1
    for _ in range(20):
        assert torch.equal(launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None), first)
    torch.cuda.synchronize()
    from nvfp4.ops import splitk_counters

    assert all(int(buf.abs().sum()) == 0 for buf in splitk_counters._COUNTERS.values())


@pytest.mark.parametrize("m", [1, 3])
def test_scale_conversion_levels_give_the_same_bits(m, monkeypatch):
    """sm_89's scale conversion (exact scales, terms corrected by 1/4) and the sm_80 bit
    placement (scales times 2^-8, corrected by 64) differ by an exact power of two in every
    term: every candidate, split-K included, gives bit-identical outputs at both levels."""
    launch, launch_dp4a = _launch()
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("this GPU has no cvt.rn.f16x2.e4m3x2 (capability < 8.9)")
    wp, ws, gw = _layer(4096, 14336, seed=8)
    x = torch.randn(m, 14336, device=DEV, dtype=torch.bfloat16)
    gx = torch.tensor([300.0], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(4096).contiguous()
    for cand in (c for c in launch_dp4a.candidates(m) if c.get("PATH") != "float"):
        monkeypatch.setenv(launch.DECODE_ENV, "sm89")
        sm89 = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, config=cand)
        monkeypatch.setenv(launch.DECODE_ENV, "asm")  # the sm_80 PTX
        sm80 = launch_dp4a.linear_w4a4_dp4a(x, wp, ws, gx, alpha, None, config=cand)
        assert torch.isfinite(sm89).all() and torch.equal(sm89, sm80), cand


def _model():
    torch.manual_seed(0)
    layers = [NVFP4Linear.from_linear(torch.nn.Linear(k, n, device=DEV, dtype=torch.bfloat16),
                                      input_global_scale=torch.tensor([300.0])) for k, n in ((2048, 4096), (4096, 1024))]
    return torch.nn.Sequential(layers[0], torch.nn.GELU(), layers[1]).to(DEV)


def test_cuda_graph_replays_the_dp4a_path():
    launch, _ = _launch()
    model = _model()
    static_x = torch.randn(1, 2048, device=DEV, dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    before = launch.KERNEL_LAUNCHES["gemv_dp4a"]
    with torch.cuda.graph(graph):
        static_out = model(static_x)
    assert launch.KERNEL_LAUNCHES["gemv_dp4a"] == before + 2
    for _ in range(3):  # the counters reset themselves inside the graph too
        new_x = torch.randn(1, 2048, device=DEV, dtype=torch.bfloat16)
        static_x.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(static_out, model(new_x))


def test_torch_compile_fullgraph_at_m1():
    launch, _ = _launch()
    model = _model()
    x = torch.randn(1, 2048, device=DEV, dtype=torch.bfloat16)
    eager = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    before = launch.KERNEL_LAUNCHES["gemv_dp4a"]
    out = compiled(x)
    assert launch.KERNEL_LAUNCHES["gemv_dp4a"] > before
    assert torch.equal(out, eager)
