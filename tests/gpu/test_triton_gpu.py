"""GPU tests of the Triton fast path (``pytest -m gpu tests/gpu``; skipped without CUDA).

Real shapes, bit-exact activation quantization (including FP8 rounding at every E4M3
midpoint and at the clamp, on the real hardware), GEMMs within the stated fp32-summation
bound of a float64 computation (see ``tests/triton_exactness.py``), both weight decoders,
torch.compile(fullgraph=True), CUDA-graph capture, and proof that the kernels actually ran.
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from cuda_graph_checks import assert_capture_replays_eager  # noqa: E402
from triton_exactness import activation_operand, assert_close_to_exact  # noqa: E402

from nvfp4 import NVFP4Linear  # noqa: E402
from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = "cuda"


def _ops():
    import nvfp4.ops as ops

    return torch.ops.nvfp4, ops.KERNEL_LAUNCHES


def _gx(x):
    return torch.tensor([448.0 * 6.0 / x.abs().max().float().item()], device=x.device)


def _weights(n, k, seed=0, dtype=torch.bfloat16):
    g = torch.Generator(device="cpu").manual_seed(seed)
    w = (torch.randn(n, k, generator=g) * 0.05).to(dtype).to(DEV)
    return quantize_weight(w)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,k", [(1, 4096), (7, 16), (300, 4096), (4096, 1024), (33, 14336)])
def test_activation_quant_identical(dtype, m, k):
    ops, launches = _ops()
    x = (torch.randn(m, k, device=DEV) * 4).to(dtype)
    x[0, :16] = 0  # an all-zero group
    if m > 2 and k >= 32:
        x[1, 16:32] = torch.tensor([1e-30] * 16)  # subnormal-scale group
        x[2, :3] = torch.tensor([float("inf"), -0.0, float("-inf")])
    gx = _gx(x[torch.isfinite(x)].reshape(1, -1))
    before = launches["activation_quant"]
    p, s = ops.quantize_activation(x, gx)
    torch.cuda.synchronize()
    assert launches["activation_quant"] == before + 1
    rp, rs = quantize_activation(x, gx)
    assert torch.equal(p, rp)
    assert torch.equal(s.view(torch.uint8), rs.view(torch.uint8))


def test_activation_quant_bf16_words_and_fallback(monkeypatch):
    """bf16 x read as int32 pairs (4-byte-aligned rows) and as bf16 (odd row stride, odd start,
    or the setting off): packed codes and scales identical to the reference, the dense operands
    (both dtypes, natural and paired order) and the int8 output identical between the two."""
    from nvfp4.ops import launch, launch_act_quant

    wide = (torch.randn(300, 4097, device=DEV) * 4).to(torch.bfloat16)
    wide[3, 16:32] = -0.0
    wide[4, 40] = float("nan")
    wide[5, 0] = float("inf")
    flat = torch.zeros(300 * 4096 + 1, device=DEV, dtype=torch.bfloat16)
    flat[1:] = wide[:, :4096].reshape(-1)
    views = {"contiguous": wide[:, :4096].contiguous(), "odd row stride": wide[:, :4096], "odd start": flat[1:].view(300, 4096)}
    assert [launch_act_quant._bf16_words(v) for v in views.values()] == [True, False, False]
    gx = _gx(wide[torch.isfinite(wide)].reshape(1, -1))
    rp, rs = quantize_activation(views["contiguous"], gx)

    def outputs(x):
        return [*launch.quantize_activation(x, gx), *launch.quantize_activation_int8(x, gx)] + [
            launch.quantize_activation(x, gx, dequant_dtype=dt, paired_k=pk) for dt in (torch.bfloat16, torch.float16)
            for pk in (False, True)]

    want = outputs(views["contiguous"])
    assert torch.equal(want[0], rp) and torch.equal(want[1].view(torch.uint8), rs.view(torch.uint8))
    for name, x in views.items():
        for words in (True, False):
            monkeypatch.setattr(launch_act_quant, "ACT_QUANT_BF16_WORDS", words)
            for got, ref in zip(outputs(x), want):
                assert torch.equal(got.view(torch.uint8), ref.view(torch.uint8)), (name, words)


def test_activation_quant_nan_group():
    ops, _ = _ops()
    x = torch.randn(4, 64, device=DEV, dtype=torch.bfloat16)
    x[1, 20] = float("nan")
    gx = torch.tensor([100.0], device=DEV)
    p, s = ops.quantize_activation(x, gx)
    rp, rs = quantize_activation(x, gx)
    assert torch.equal(p, rp) and torch.equal(s.view(torch.uint8), rs.view(torch.uint8))
    assert s.view(torch.uint8)[1, 1].item() == 0x7F


def test_fp8_rounding_midpoints_and_clamp_on_hardware():
    """Every E4M3 midpoint (and its fp32 neighbours) and values past 448, as block scales.

    With amax = 6 in a group, ``Gx * (6 * fp32(1/6))`` is exactly ``Gx``, so the block scale
    is ``fp8(clamp(Gx))``: sweeping Gx sweeps the rounding of the scale.
    """
    ops, _ = _ops()
    codes = torch.arange(0, 0x7F, dtype=torch.uint8)
    values = codes.view(torch.float8_e4m3fn).to(torch.float32)
    mids = (values[:-1] + values[1:]) / 2
    probes = torch.cat([mids, torch.nextafter(mids, mids + 1), torch.nextafter(mids, mids - 1)])
    probes = torch.cat([probes, torch.tensor([448.0, 449.0, 463.9, 464.0, 465.0, 1e4, 3e38])])
    x = torch.zeros(1, 16, device=DEV, dtype=torch.bfloat16)
    x[0, 0] = 6.0
    x[0, 1] = -3.0
    x[0, 2] = 0.7
    got, want = [], []
    for gx_value in probes.tolist():
        gx = torch.tensor([gx_value], device=DEV, dtype=torch.float32)
        p, s = ops.quantize_activation(x, gx)
        rp, rs = quantize_activation(x.cpu(), gx.cpu())
        got.append(torch.cat([s.view(torch.uint8).flatten().cpu(), p.flatten().cpu()]))
        want.append(torch.cat([rs.view(torch.uint8).flatten(), rp.flatten()]))
    got, want = torch.stack(got), torch.stack(want)
    assert torch.equal(got, want), f"{int((got != want).any(1).sum())} of {len(probes)} probes differ"
    # And the CPU reference itself agrees with torch's own RNE cast on the GPU for in-range values.
    in_range = probes[probes <= 448]
    assert torch.equal(
        in_range.to(DEV).to(torch.float8_e4m3fn).view(torch.uint8).cpu(),
        in_range.to(torch.float8_e4m3fn).view(torch.uint8),
    )


SHAPES = [(4096, 4096), (1000, 432), (96, 16)]
MS = [1, 3, 33, 600]  # gemv/split-K, split-K, autotuned (per-row alpha) and cuBLAS paths


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", SHAPES)
def test_w4a4_matches_exact(dtype, n, k):
    ops, launches = _ops()
    wp, ws, gw = _weights(n, k)
    for m in MS:
        x = (torch.randn(m, k, device=DEV) * 2).to(dtype)
        gx = _gx(x)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        alpha[: n // 3] *= 0.5  # per-row alpha (fused shards with different Gw)
        bias = (torch.randn(n, device=DEV) * 0.1).to(dtype) if m % 2 else None
        total = sum(launches.values())
        out = ops.linear_w4a4(x, wp, ws, gx, alpha, bias)
        assert sum(launches.values()) > total
        rp, rs = quantize_activation(x, gx)
        assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, bias, f"w4a4 {dtype} M={m} N={n} K={k}")
        packed_out = ops.gemm_w4a4_packed(rp, rs, wp, ws, alpha, bias, dtype)
        assert_close_to_exact(packed_out, activation_operand(rp, rs), wp, ws, alpha, bias, f"packed M={m}")
        # One alpha for every row: large M takes the cuBLAS path (dequantized transient weight).
        alpha_u = (1.0 / (gx * gw)).expand(n).contiguous()
        out_u = ops.linear_w4a4(x, wp, ws, gx, alpha_u, bias, float(alpha_u[0]))
        assert_close_to_exact(out_u, activation_operand(rp, rs), wp, ws, alpha_u, bias, f"w4a4 uniform alpha M={m}")
    assert m < 512 or launches["cublas_gemm"] > 0


@pytest.mark.parametrize("n,k", [(4096, 4096), (1000, 2048), (6144, 432)])
@pytest.mark.parametrize("m", [2, 5, 16, 33, 64, 100, 128])
def test_every_small_m_candidate_matches_exact(m, n, k, monkeypatch):
    """Each configuration the small-M tuner can pick (both MMA operand orientations, the
    CUDA-core GEMVs at M <= 4), W4A4 (fp16 operand) and W4A16 (bf16), then the tuned choice."""
    from nvfp4.ops import launch, launch_gemv_half2

    monkeypatch.setenv(launch_gemv_half2.TUNER_ENV, "on")  # its tiles too, whatever the default
    monkeypatch.setenv(launch.EIGHT_ROW_ENV, "on")  # and the opt-in 8-row swap-AB tiles (M <= 8)
    wp, ws, gw = _weights(n, k, seed=m)
    x = (torch.randn(m, k, device=DEV) * 2).to(torch.bfloat16)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    bias = (torch.randn(n, device=DEV) * 0.1).to(torch.bfloat16)
    rp, rs = quantize_activation(x, gx)
    a = activation_operand(rp, rs)
    x_hat = launch.quantize_activation(x, gx, dequant_dtype=torch.float16)
    gemv_ok = launch.gemv_config(m, n, k, x.device) is not None
    cands = launch.small_m_candidates(m, with_gemv=gemv_ok)
    for cand in cands:
        if cand.get("PATH") == "gemv":
            cfg = launch.gemv_config(m, n, k, x.device)
            out = launch.gemv(x_hat, wp, ws.view(torch.uint8), alpha, bias, torch.bfloat16, tl_fp16(), cfg)
            out16 = launch.gemv(x, wp, ws.view(torch.uint8), (1.0 / gw).expand(n).contiguous(), bias, torch.bfloat16, tl_bf16(), cfg)
        elif cand.get("PATH") == "gemv_half2":
            from nvfp4.ops.launch_gemv_half2 import gemv_half2

            out = gemv_half2(x_hat, wp, ws.view(torch.uint8), alpha, bias, torch.bfloat16, cand)
            out16 = gemv_half2(x, wp, ws.view(torch.uint8), (1.0 / gw).expand(n).contiguous(), bias, torch.bfloat16, cand)
        else:
            out = launch.gemm(x_hat, None, 0, wp, ws.view(torch.uint8), alpha, bias, None, torch.bfloat16, tl_fp16(), cand)
            out16 = launch.gemm(x, None, 0, wp, ws.view(torch.uint8), (1.0 / gw).expand(n).contiguous(), bias, None,
                                torch.bfloat16, tl_bf16(), cand)
        assert_close_to_exact(out, a, wp, ws, alpha, bias, f"w4a4 M={m} N={n} K={k} {cand}")
        assert_close_to_exact(out16, x.float(), wp, ws, (1.0 / gw).expand(n), bias, f"w4a16 M={m} N={n} K={k} {cand}")
    launch._SMALL_PATH_CHOICE.clear()
    tuned = launch._small_gemm(x_hat, wp, ws.view(torch.uint8), alpha, bias, torch.bfloat16, tl_fp16())
    assert list(launch._SMALL_PATH_CHOICE.values())[0] in cands
    assert_close_to_exact(tuned, a, wp, ws, alpha, bias, f"tuned M={m}")
    assert torch.equal(tuned, launch._small_gemm(x_hat, wp, ws.view(torch.uint8), alpha, bias, torch.bfloat16, tl_fp16()))


@pytest.mark.parametrize("m", [5, 16, 64, 128])
def test_splitk_reduced_in_the_gemm_matches_the_launch(m, monkeypatch):
    """``NVFP4_TRITON_SPLITK_REDUCE=kernel`` on the hardware: every tensor-core candidate,
    W4A4 and W4A16, Llama and awkward shapes with split-K > 1, bit-identical to the separate
    ``splitk_reduce`` launch (same summation order), run twice (the ticket counters reset
    themselves), no reduction launch; then a CUDA-graph capture of a layer in this mode
    replays its eager call."""
    from nvfp4.ops import launch, splitk_counters

    for n, k in ((4096, 14336), (1000, 2048)):
        wp, ws, gw = _weights(n, k, seed=m + n)
        x = (torch.randn(m, k, device=DEV) * 2).to(torch.bfloat16)
        gx = _gx(x)
        alpha = (1.0 / (gx * gw)).expand(n).contiguous()
        alpha16 = (1.0 / gw).expand(n).contiguous()
        bias = (torch.randn(n, device=DEV) * 0.1).to(torch.bfloat16)
        x_hat = launch.quantize_activation(x, gx, dequant_dtype=torch.float16)
        for cand in launch.small_m_candidates(m, with_gemv=False):
            cfg = launch.small_m_config(m, n, k, x.device, cand)
            if cfg["SPLIT_K"] == 1:
                continue
            outs = {}
            for mode in ("launch", "kernel", "kernel"):
                monkeypatch.setenv(splitk_counters.SPLITK_REDUCE_ENV, mode)
                launch.KERNEL_LAUNCHES.clear()
                outs.setdefault(mode, []).append((
                    launch.gemm(x_hat, None, 0, wp, ws.view(torch.uint8), alpha, bias, None, torch.bfloat16, tl_fp16(), cand),
                    launch.gemm(x, None, 0, wp, ws.view(torch.uint8), alpha16, None, None, torch.bfloat16, tl_bf16(), cand)))
                assert launch.KERNEL_LAUNCHES["splitk_reduce"] == (2 if mode == "launch" else 0), (mode, cand)
            for run in outs["kernel"]:
                for got, want in zip(run, outs["launch"][0]):
                    assert torch.equal(got, want), (m, n, k, cand)
    torch.cuda.synchronize()
    assert all(int(buf.abs().sum()) == 0 for buf in splitk_counters._COUNTERS.values())
    monkeypatch.setenv(splitk_counters.SPLITK_REDUCE_ENV, "kernel")
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "off")
    lin = torch.nn.Linear(14336, 4096, bias=True, device=DEV, dtype=torch.bfloat16)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([300.0])).to(DEV)
    assert_capture_replays_eager(layer, torch.randn(m, 14336, device=DEV, dtype=torch.bfloat16), launch, "gemm_small_m")


def tl_fp16():
    import triton.language as tl

    return tl.float16


def tl_bf16():
    import triton.language as tl

    return tl.bfloat16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", SHAPES)
def test_w4a16_matches_exact(dtype, n, k):
    ops, _ = _ops()
    wp, ws, gw = _weights(n, k, seed=1)
    alpha = (1.0 / gw).expand(n).contiguous()
    for m in MS:
        x = torch.randn(m, k, device=DEV).to(dtype)
        bias = torch.randn(n, device=DEV).to(dtype) if m % 2 == 0 else None
        out = ops.linear_w4a16(x, wp, ws, alpha, bias)
        assert_close_to_exact(out, x.float(), wp, ws, alpha, bias, f"w4a16 {dtype} M={m} N={n} K={k}")
        out_s = ops.linear_w4a16(x, wp, ws, alpha, bias, float(alpha[0]))
        assert_close_to_exact(out_s, x.float(), wp, ws, alpha, bias, f"w4a16 scalar alpha {dtype} M={m}")


def test_fused_quantization_variant_matches_exact():
    from nvfp4.ops import launch

    wp, ws, gw = _weights(1000, 432, seed=5)
    for dtype in (torch.bfloat16, torch.float16):
        for m in (1, 16, 40):
            x = (torch.randn(m, 432, device=DEV) * 3).to(dtype)
            gx = _gx(x)
            alpha = (1.0 / (gx * gw)).expand(1000).contiguous()
            out = launch.linear_w4a4(x, wp, ws, gx, alpha, None, config=dict(A_MODE=1))
            rp, rs = quantize_activation(x, gx)
            assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, None, f"fused M={m}")


@pytest.mark.parametrize("decode", ["asm", "sm89", "portable"])
def test_weight_dequant_kernel_exact(decode, monkeypatch):
    """Every decoder level (sm_89's E4M3 conversion on this GPU, the sm_80 PTX, portable),
    random weights and then every E4M3 scale byte (NaN bytes decode to NaN)."""
    from nvfp4.numerics.weights import dequantize_weight_unscaled
    from nvfp4.ops import launch

    monkeypatch.setenv(launch.DECODE_ENV, decode)
    wp, ws, _ = _weights(300, 4112, seed=6)
    every_byte = torch.arange(256, dtype=torch.uint8, device=DEV).reshape(16, 16).view(torch.float8_e4m3fn)
    for packed, scales in ((wp, ws), (wp[:16, :128].contiguous(), every_byte)):
        for dtype in (torch.bfloat16, torch.float16):
            got = launch.dequantize_weight(packed, scales.view(torch.uint8), dtype)
            torch.testing.assert_close(got, dequantize_weight_unscaled(packed, scales).to(dtype), rtol=0, atol=0,
                                       equal_nan=True)


def test_asm_and_portable_decoders_agree(monkeypatch):
    """W4A16 and W4A4 at 1 and 3 rows (W4A4: the integer-dot GEMV), 16 (paired decode) and 48
    (natural decode for W4A16): the outputs of every decoder level are bit-identical (untuned:
    the same tiles and split-K)."""
    monkeypatch.setenv("NVFP4_TRITON_TUNE", "off")
    ops, _ = _ops()
    wp, ws, gw = _weights(512, 1024, seed=3)
    alpha = (1.0 / gw).expand(512).contiguous()
    for dtype in (torch.bfloat16, torch.float16):
        for m in (1, 3, 16, 48):
            x = torch.randn(m, 1024, device=DEV).to(dtype)
            gx = _gx(x)
            outs = {}
            for decode in ("asm", "sm89", "portable"):
                monkeypatch.setenv("NVFP4_TRITON_DECODE", decode)
                outs[decode] = (ops.linear_w4a16(x, wp, ws, alpha, None),
                                ops.linear_w4a4(x, wp, ws, gx, (1.0 / (gx * gw)).expand(512).contiguous(), None))
            for decode in ("sm89", "portable"):
                for got, want in zip(outs[decode], outs["asm"]):
                    assert torch.equal(got, want), (dtype, m, decode)


def _model(dtype=torch.bfloat16, weight_only=False, backend=None):
    torch.manual_seed(0)
    dims = [(512, 1024), (1024, 256)]
    layers = []
    for k, n in dims:
        lin = torch.nn.Linear(k, n, bias=True, device=DEV, dtype=dtype)
        kw = dict(weight_only=True) if weight_only else dict(input_global_scale=torch.tensor([300.0]))
        layers.append(NVFP4Linear.from_linear(lin, backend=backend, **kw) if backend else NVFP4Linear.from_linear(lin, **kw))
    return torch.nn.Sequential(layers[0], torch.nn.GELU(), layers[1]).to(DEV)


def test_auto_backend_is_triton_and_matches_reference():
    _, launches = _ops()
    model = _model()
    assert "triton" in repr(model[0])
    ref_model = _model(backend="reference")
    x = torch.randn(3, 5, 512, device=DEV, dtype=torch.bfloat16)
    before = launches["gemm_small_m"]
    out = model(x)
    assert launches["gemm_small_m"] >= before + 2
    ref = ref_model(x)
    assert out.shape == ref.shape == (3, 5, 256)
    assert torch.allclose(out.float(), ref.float(), rtol=2e-2, atol=2e-2)
    assert model(x[:, :0]).shape == (3, 0, 256)
    # non-contiguous input
    xt = torch.randn(512, 7, device=DEV, dtype=torch.bfloat16).t()
    assert torch.equal(model(xt), model(xt.contiguous()))


def test_fp32_input_warns_and_uses_reference():
    model = _model(dtype=torch.float32)
    x = torch.randn(4, 512, device=DEV)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model(x)
    assert out.dtype == torch.float32
    assert any("float32 activations" in str(w.message) for w in caught)


GRAPHS = pytest.mark.parametrize("eager_graphs", ["off", "on"])  # the layers' own CUDA graphs (on by default)


@GRAPHS
@pytest.mark.parametrize("weight_only", [False, True])
def test_torch_compile_fullgraph(weight_only, eager_graphs, monkeypatch):
    """The compiled model runs the custom ops (never the layers' eager graphs) and gives the
    eager bits; with eager graphs on, the eager calls around it capture and replay as usual
    and still agree with the compiled output."""
    from nvfp4.ops import eager_graphs as graphs

    monkeypatch.setenv(graphs.ENV, eager_graphs)
    _, launches = _ops()
    model = _model(weight_only=weight_only)
    x = torch.randn(8, 512, device=DEV, dtype=torch.bfloat16)
    eager = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    before_launches, before_graphs = sum(launches.values()), dict(graphs.STATS)
    out = compiled(x)
    assert sum(launches.values()) > before_launches, "compiled model did not run the Triton kernels"
    assert graphs.STATS == before_graphs, "a traced call went through the eager-graph path"
    assert torch.equal(out, eager)
    later = [model(x) for _ in range(3)]  # eager again: with graphs on, captured then replayed
    if eager_graphs == "on":
        assert graphs.STATS["replayed"] > before_graphs["replayed"]
    for y in later:
        assert torch.equal(y, eager)
    assert torch.equal(compiled(x), eager)


@GRAPHS
@pytest.mark.parametrize("m", [1, 16, 200])
def test_cuda_graph_capture(m, eager_graphs, monkeypatch):
    """A user's own capture of the model: with eager graphs on, the warm-up calls capture
    layer graphs first (M <= 16), and the calls inside the user's capture must run the
    kernels themselves (a replay of another graph cannot be captured)."""
    from nvfp4.ops import eager_graphs as graphs

    monkeypatch.setenv(graphs.ENV, eager_graphs)
    _, launches = _ops()
    model = _model()
    static_x = torch.randn(m, 512, device=DEV, dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up: compile and autotune (and capture layer graphs) outside the capture
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    if eager_graphs == "on" and m <= graphs.m_max():
        assert any(layer.__dict__.get("nvfp4_eager_graphs") for layer in (model[0], model[2]))
    graph = torch.cuda.CUDAGraph()
    before = sum(launches.values())
    with torch.cuda.graph(graph):
        static_out = model(static_x)
    assert sum(launches.values()) > before, "nothing was launched during capture"
    for _ in range(2):
        new_x = torch.randn(m, 512, device=DEV, dtype=torch.bfloat16)
        static_x.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(static_out, model(new_x))


@pytest.mark.parametrize("weight_only", [False, True])
def test_eager_layer_skips_the_dispatcher_and_matches_the_op(weight_only):
    """Eager NVFP4Linear calls run the op's function directly (no torch.ops dispatch: ~50 us
    less host time); the result is bit-identical to the custom op's."""
    from nvfp4.ops import library

    lin = torch.nn.Linear(512, 384, bias=True, device=DEV, dtype=torch.bfloat16)
    kw = dict(weight_only=True) if weight_only else dict(input_global_scale=300.0)
    layer = NVFP4Linear.from_linear(lin, backend="triton", **kw).to(DEV)
    x = torch.randn(3, 512, device=DEV, dtype=torch.bfloat16)
    assert library.direct_call_ok(x)
    ops, _ = _ops()
    if weight_only:
        via_op = ops.linear_w4a16(x, layer.weight_packed, layer.weight_scale, layer.alpha, layer.bias,
                                  layer.nvfp4_alpha_scalar)
    else:
        via_op = ops.linear_w4a4(x, layer.weight_packed, layer.weight_scale, layer.input_global_scale, layer.alpha,
                                 layer.bias, layer.nvfp4_alpha_scalar)
    assert torch.equal(layer(x), via_op)


@pytest.mark.parametrize("weight_only", [False, True])
@pytest.mark.parametrize("m", [1, 3, 16, 300])
def test_direct_launch_is_tritons_launch(weight_only, m):
    """``ops.fast_launch`` replays the compiled kernel without Triton's launcher: outputs are
    bit-identical to plain ``kernel[grid]`` launches, also for a misaligned input (a new
    specialization, so a new kernel), and the second call of a shape is all direct launches."""
    from nvfp4.ops import fast_launch

    lin = torch.nn.Linear(1024, 768, bias=True, device=DEV, dtype=torch.bfloat16)
    kw = dict(weight_only=True) if weight_only else dict(input_global_scale=300.0)
    layer = NVFP4Linear.from_linear(lin, backend="triton", **kw).to(DEV)
    buf = torch.randn(m * 1024 + 1, device=DEV, dtype=torch.bfloat16)
    x = buf[: m * 1024].view(m, 1024)
    x_odd = buf[1:].view(m, 1024)  # contiguous, 2 bytes off 16-byte alignment
    assert x_odd.data_ptr() % 16 and x_odd.is_contiguous()
    layer(x), layer(x_odd)  # tune and compile first
    fast_launch.ENABLED = False
    try:
        plain, plain_odd = layer(x), layer(x_odd)
    finally:
        fast_launch.ENABLED = True
    fast_launch.clear()
    first, first_odd = layer(x), layer(x_odd)  # through Triton, kept
    direct_before, triton_before = fast_launch.STATS["direct"], fast_launch.STATS["triton"]
    second, second_odd = layer(x), layer(x_odd)
    torch.cuda.synchronize()
    assert fast_launch.STATS["triton"] == triton_before, "a repeated call went through Triton's launcher"
    assert fast_launch.STATS["direct"] > direct_before
    for a, b in ((plain, first), (plain, second), (plain_odd, first_odd), (plain_odd, second_odd)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("chunks", [3, 8])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_chunked_cublas_path_matches_exact(chunks, dtype):
    """The large-M cuBLAS path with the weight dequantized in N-chunks (one reused buffer, each
    chunk's GEMM writing its columns of the output in place): within the exact bound (as the
    whole-weight GEMM), N not a multiple of the chunk, bias; and in a CUDA graph."""
    from nvfp4.ops import launch_cublas as launch

    ops, launches = _ops()
    n, k, m = 1000, 1024, 600
    wp, ws, gw = _weights(n, k)
    x = (torch.randn(m, k, device=DEV) * 2).to(dtype)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    bias = (torch.randn(n, device=DEV) * 0.1).to(dtype)
    rp, rs = quantize_activation(x, gx)
    a_s = float(alpha[0])  # (a device read: never inside the capture)
    saved = os.environ.get(launch.CUBLAS_CHUNKS_ENV)
    try:
        os.environ[launch.CUBLAS_CHUNKS_ENV] = "1"
        whole = ops.linear_w4a4(x, wp, ws, gx, alpha, bias, a_s)
        os.environ[launch.CUBLAS_CHUNKS_ENV] = str(chunks)
        before = launches["cublas_gemm"]
        out = ops.linear_w4a4(x, wp, ws, gx, alpha, bias, a_s)
        assert launches["cublas_gemm"] - before == len(launch._chunk_bounds(n, chunks)) > 1
        assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, bias, f"chunks={chunks}")
        assert_close_to_exact(whole, activation_operand(rp, rs), wp, ws, alpha, bias, "chunks=1")
        static_x = x.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = ops.linear_w4a4(static_x, wp, ws, gx, alpha, bias, a_s)
        static_x.copy_(x.flip(0))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(static_out, ops.linear_w4a4(x.flip(0), wp, ws, gx, alpha, bias, a_s))
    finally:
        if saved is None:
            os.environ.pop(launch.CUBLAS_CHUNKS_ENV, None)
        else:
            os.environ[launch.CUBLAS_CHUNKS_ENV] = saved


@pytest.mark.parametrize("weight_only", [False, True])
@pytest.mark.parametrize("m", [1, 3, 16])
def test_eager_graphs_replay_the_eager_call(weight_only, m, monkeypatch):
    """``NVFP4_TRITON_EAGER_GRAPHS=on``: the third and later eager calls of a shape replay a CUDA
    graph; every output is bit-identical to the call without graphs (fresh inputs each time),
    in and out of inference mode, and a weight updated in place is read as updated."""
    from nvfp4.ops import eager_graphs

    lin = torch.nn.Linear(1024, 768, bias=True, device=DEV, dtype=torch.bfloat16)
    kw = dict(weight_only=True) if weight_only else dict(input_global_scale=300.0)
    layer = NVFP4Linear.from_linear(lin, backend="triton", **kw).to(DEV)
    xs = [torch.randn(m, 1024, device=DEV, dtype=torch.bfloat16) for _ in range(5)]
    monkeypatch.setenv(eager_graphs.ENV, "off")
    expected = [layer(x) for x in xs]
    monkeypatch.setenv(eager_graphs.ENV, "on")
    before = dict(eager_graphs.STATS)
    got = [layer(xs[0]), layer(xs[1])]  # eager, then eager + capture
    with torch.inference_mode():
        got.append(layer(xs[2]))
    got += [layer(xs[3]), layer(xs[4])]
    torch.cuda.synchronize()
    assert eager_graphs.STATS["captured"] - before["captured"] == 1
    assert eager_graphs.STATS["replayed"] - before["replayed"] == 3
    for i, (a, b) in enumerate(zip(expected, got)):
        assert torch.equal(a, b), f"call {i}"
    assert got[3].data_ptr() != got[4].data_ptr(), "each call returns its own tensor"
    # in-place weight update (same storage): the graph reads the new scales
    with torch.no_grad():
        scale_bytes = layer.weight_scale.view(torch.uint8)
        scale_bytes.copy_(scale_bytes.flip(0))
    replayed = layer(xs[0])
    monkeypatch.setenv(eager_graphs.ENV, "off")
    assert torch.equal(replayed, layer(xs[0]))


def test_eager_graphs_are_the_default_and_survive_freed_models(monkeypatch):
    """With the setting unset, an eager decode loop replays graphs and gives the graphs-off
    bits; after a captured model is freed (its graphs and their shared pool with it), the next
    model's layers still capture (no "use_count > 0" assert, no warning). M = 17 stays eager."""
    import gc

    from nvfp4.ops import eager_graphs

    for weight_only in (False, True, False):
        model = _model(weight_only=weight_only)
        xs = [torch.randn(1, 512, device=DEV, dtype=torch.bfloat16) for _ in range(4)]
        big = torch.randn(17, 512, device=DEV, dtype=torch.bfloat16)
        monkeypatch.setenv(eager_graphs.ENV, "off")
        expected = [model(x) for x in xs] + [model(big)]
        monkeypatch.delenv(eager_graphs.ENV)
        before = dict(eager_graphs.STATS)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = [model(x) for x in xs] + [model(big)]
        torch.cuda.synchronize()
        assert eager_graphs.STATS["captured"] - before["captured"] == 2, "one graph per layer"
        assert eager_graphs.STATS["replayed"] - before["replayed"] == 2 * 2
        assert eager_graphs.STATS["eager"] - before["eager"] == 2 + 2  # first calls, then M = 17
        for i, (a, b) in enumerate(zip(expected, got)):
            assert torch.equal(a, b), f"call {i}"
        del model, got
        gc.collect()


@pytest.mark.parametrize("mode", ["on", "late"])
@pytest.mark.parametrize("weight_only", [False, True])
@pytest.mark.parametrize("m", [1, 3, 16, 100])
def test_pdl_launches_give_the_stream_order_results(weight_only, m, mode, monkeypatch):
    """``NVFP4_TRITON_PDL=on`` / ``late``: the decode-path kernels are launched as programmatic
    dependents (each waits for its predecessor at its top, and lets its successor be scheduled
    at its top or after its main loop); a two-layer model gives bit-identical outputs to plain
    launches, eagerly and replayed from a CUDA graph."""
    from nvfp4.ops import launch

    model = _model(weight_only=weight_only)
    x = torch.randn(m, 512, device=DEV, dtype=torch.bfloat16)
    monkeypatch.setenv(launch.PDL_ENV, "off")  # plain launches (unset, W4A4 would use "late")
    model(x)  # tune outside the comparison
    plain = model(x)
    monkeypatch.setenv(launch.PDL_ENV, mode)
    assert launch.pdl_options(x.device) == {"PDL": 1 if mode == "on" else 2, "launch_pdl": True}
    eager = [model(x) for _ in range(3)]
    static_x = x.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = model(static_x)
    graph.replay()
    torch.cuda.synchronize()
    for out in (*eager, static_out):
        assert torch.equal(out, plain)
