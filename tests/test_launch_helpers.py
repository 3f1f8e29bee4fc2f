"""Host-side helpers of the launchers (``nvfp4.ops.launch``): the same integers as Triton's
``cdiv`` / ``next_power_of_2`` without their per-call overhead (those are Triton constexpr
functions, ~5 us per host call, and the launchers call them several times per linear)."""

from __future__ import annotations

import os

import pytest

triton = pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":  # pragma: no cover
    pytest.skip("imports the compiled kernels", allow_module_level=True)

from nvfp4.ops.launch import cdiv, next_power_of_2  # noqa: E402


def test_cdiv_matches_triton():
    for a in range(0, 1200):
        for b in (1, 2, 3, 7, 16, 64, 132, 256, 512):
            assert cdiv(a, b) == triton.cdiv(a, b), (a, b)
    assert cdiv(57344, 64) == 896 and cdiv(1, 4096) == 1


def test_next_power_of_2_matches_triton():
    for v in range(1, 70000):
        assert next_power_of_2(v) == triton.next_power_of_2(v), v
    assert next_power_of_2(0) == 1  # "smallest power of two >= v" (Triton returns 0 here; no caller passes 0)


def test_direct_call_only_for_plain_eager_cuda_tensors():
    """The triton backend skips the dispatcher only for a plain CUDA tensor outside any
    tracing; CPU, meta and fake tensors go through ``torch.ops.nvfp4`` (compiled code too:
    the GPU tests compile NVFP4Linear with ``fullgraph=True``, which a direct call into the
    launcher would break)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from nvfp4.ops.library import direct_call_ok

    assert not direct_call_ok(torch.empty(2, 16))
    assert not direct_call_ok(torch.empty(2, 16, device="meta"))
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(torch.empty(2, 16))
        assert not direct_call_ok(fake)


def test_chunk_bounds_cover_the_rows_in_aligned_tiles():
    from nvfp4.ops.launch_cublas import _chunk_bounds

    for n in (1, 16, 127, 128, 129, 1000, 4096, 6144, 57344):
        for chunks in (1, 2, 3, 4, 8, 1000):
            bounds = _chunk_bounds(n, chunks)
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])), "contiguous, no gap or overlap"
            assert all(n0 % 128 == 0 for n0, _ in bounds), "chunk starts on whole 128-row tiles"
            assert len(bounds) <= max(1, chunks)
            assert all(n1 > n0 for n0, n1 in bounds)
    assert _chunk_bounds(1000, 3) == [(0, 384), (384, 768), (768, 1000)]
    assert _chunk_bounds(57344, 4) == [(i * 14336, (i + 1) * 14336) for i in range(4)]


def test_cublas_chunks_env(monkeypatch):
    from nvfp4.ops import launch_cublas as launch

    monkeypatch.delenv(launch.CUBLAS_CHUNKS_ENV, raising=False)
    assert launch.cublas_chunks() == 1
    monkeypatch.setenv(launch.CUBLAS_CHUNKS_ENV, " 4 ")
    assert launch.cublas_chunks() == 4
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(launch.CUBLAS_CHUNKS_ENV, bad)
        with pytest.raises(ValueError, match="NVFP4_TRITON_CUBLAS_CHUNKS"):
            launch.cublas_chunks()


def test_split_k_counters_are_allocated_once_and_never_replaced(monkeypatch):
    """A captured CUDA graph keeps reading the counter buffer it captured, so the buffer of a
    stream is never swapped for a larger one (which would free the captured one)."""
    import torch

    from nvfp4.ops import splitk_counters

    monkeypatch.setattr(splitk_counters, "_COUNTERS", {})
    cpu = torch.device("cpu")
    first = splitk_counters.counters(cpu, 10)
    assert first.numel() == splitk_counters.COUNTER_CAPACITY and int(first.abs().sum()) == 0
    assert splitk_counters.counters(cpu, splitk_counters.COUNTER_CAPACITY) is first
    with pytest.raises(ValueError, match="COUNTER_CAPACITY"):
        splitk_counters.counters(cpu, splitk_counters.COUNTER_CAPACITY + 1)


def test_splitk_reduce_setting(monkeypatch):
    from nvfp4.ops import splitk_counters

    monkeypatch.delenv(splitk_counters.SPLITK_REDUCE_ENV, raising=False)
    assert splitk_counters.splitk_reduce_mode() == "launch"  # until timed on a GPU
    monkeypatch.setenv(splitk_counters.SPLITK_REDUCE_ENV, "Kernel")
    assert splitk_counters.splitk_reduce_mode() == "kernel"
    monkeypatch.setenv(splitk_counters.SPLITK_REDUCE_ENV, "atomic")
    with pytest.raises(ValueError, match="NVFP4_TRITON_SPLITK_REDUCE"):
        splitk_counters.splitk_reduce_mode()


def test_pdl_options_env(monkeypatch):
    import torch

    from nvfp4.ops import dependent_launch, launch

    monkeypatch.delenv(launch.PDL_ENV, raising=False)
    assert launch.pdl_options(torch.device("cuda", 0)) == {}  # off by default for W4A16 (no GPU touched)
    monkeypatch.setenv(launch.PDL_ENV, "on")
    assert launch.pdl_options(torch.device("cpu")) == {}
    monkeypatch.setattr(dependent_launch, "_has_pdl", lambda index: index == 0)  # "device 0 is a Hopper"
    assert launch.pdl_options(torch.device("cuda", 0)) == {"PDL": True, "launch_pdl": True}
    assert launch.pdl_options(torch.device("cuda", 1)) == {}
    monkeypatch.setenv(launch.PDL_ENV, "late")  # signal the next kernel after the main loop
    assert launch.pdl_options(torch.device("cuda", 0)) == {"PDL": 2, "launch_pdl": True}
    monkeypatch.delenv(launch.PDL_ENV)  # unset: "late" for the kernels of a W4A4 linear only
    assert launch.pdl_options(torch.device("cuda", 0), w4a4=True) == {"PDL": 2, "launch_pdl": True}
    assert launch.pdl_options(torch.device("cuda", 0)) == {}
    monkeypatch.setenv(launch.PDL_ENV, "off")
    assert launch.pdl_options(torch.device("cuda", 0), w4a4=True) == {}
    monkeypatch.setenv(launch.PDL_ENV, "sometimes")
    with pytest.raises(ValueError, match="NVFP4_TRITON_PDL"):
        launch.pdl_options(torch.device("cuda", 0))


def test_decode_level_by_capability_and_setting(monkeypatch):
    """``use_asm_decode``: sm_89's E4M3 conversion on GPUs that have it (default, or
    ``NVFP4_TRITON_DECODE=sm89``), the sm_80 PTX elsewhere or with ``asm``, portable when asked
    or off the GPU."""
    import torch

    from nvfp4.ops import decode_level, launch

    monkeypatch.delenv(launch.DECODE_ENV, raising=False)
    monkeypatch.setattr(decode_level, "_has_e4m3_cvt", lambda index: index == 0)  # "device 0 is a Hopper, 1 an A100"
    assert launch.use_asm_decode(torch.device("cpu")) == launch.ASM_OFF
    assert launch.use_asm_decode(torch.device("cuda", 0)) == launch.ASM_SM89
    assert launch.use_asm_decode(torch.device("cuda", 1)) == launch.ASM_SM80
    monkeypatch.setenv(launch.DECODE_ENV, "asm")
    assert launch.use_asm_decode(torch.device("cuda", 0)) == launch.ASM_SM80
    monkeypatch.setenv(launch.DECODE_ENV, "sm89")
    assert launch.use_asm_decode(torch.device("cuda", 0)) == launch.ASM_SM89
    assert launch.use_asm_decode(torch.device("cuda", 1)) == launch.ASM_SM80
    assert launch.use_asm_decode(torch.device("cpu")) == launch.ASM_OFF
    monkeypatch.setenv(launch.DECODE_ENV, "Portable ")
    assert launch.use_asm_decode(torch.device("cuda", 0)) == launch.ASM_OFF
    monkeypatch.setenv(launch.DECODE_ENV, "ptx")
    with pytest.raises(ValueError, match="NVFP4_TRITON_DECODE"):
        launch.use_asm_decode(torch.device("cuda", 0))
    assert (launch.ASM_OFF, launch.ASM_SM80, launch.ASM_SM89) == (0, 1, 2)  # falsy only when portable


def test_waves_candidates_double_the_split_k(monkeypatch):
    """Up to 32 rows each ``W_AS_B`` tile is also offered with split-K sized for 4 programs per
    SM (``WAVES``); the split stays a divisor of the K-tile count (no masking) and at most 32."""
    import torch

    from nvfp4.ops import launch

    monkeypatch.setattr(launch, "num_sms", lambda device: 132)
    cpu = torch.device("cpu")
    for m in (5, 16, 32):
        cands = launch.small_m_candidates(m, False)
        waves = [c for c in cands if c.get("WAVES") == 4]
        assert [dict(c, WAVES=4) for c in cands if c.get("W_AS_B") and "WAVES" not in c] == waves
    assert not any("WAVES" in c for c in launch.small_m_candidates(64, False))
    for n, k in ((6144, 4096), (4096, 4096), (8192, 28672)):
        base = launch.small_m_config(16, n, k, cpu, launch.small_m_candidates(16, False)[1])
        more = launch.small_m_config(16, n, k, cpu, dict(launch.small_m_candidates(16, False)[1], WAVES=4))
        assert more["SPLIT_K"] == 2 * base["SPLIT_K"] and (k // 128) % more["SPLIT_K"] == 0 and more["EVEN_K"]
