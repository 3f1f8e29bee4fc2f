"""The per-layer CUDA-graph cache of eager calls (``nvfp4.ops.eager_graphs``), its decisions on
the CPU with the CUDA parts (capture, replay, the current stream) replaced by recorders. The
graphs themselves (bit-identical replays, in-place weight updates, inference mode) are tested
on the GPU (``tests/gpu/test_triton_gpu.py``)."""

from __future__ import annotations

import os
import types

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") == "1":  # pragma: no cover
    pytest.skip("imports the compiled kernels", allow_module_level=True)
pytest.importorskip("triton")

from nvfp4.ops import eager_graphs  # noqa: E402


@pytest.fixture
def fake_cuda(monkeypatch):
    log = {"captures": [], "replays": []}

    def capture(fn, x, index, stream):
        log["captures"].append((tuple(x.shape), index, stream))
        return fn(x.clone()), ("graph", len(log["captures"]))

    def replay(entry, x):
        log["replays"].append(entry)
        return torch.full((x.shape[0], 2), -1.0)

    monkeypatch.setattr(eager_graphs, "_capture", capture)
    monkeypatch.setattr(eager_graphs, "_replay", replay)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: log.get("capturing", False))
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda index: 77, raising=False)
    monkeypatch.delenv(eager_graphs.M_MAX_ENV, raising=False)
    return log


def _layer(bias=True):
    t = lambda *s: torch.zeros(*s)  # noqa: E731
    return types.SimpleNamespace(weight_packed=t(2, 8), weight_scale=t(2, 1), alpha=t(2), input_global_scale=t(1),
                                 bias=t(2) if bias else None, nvfp4_alpha_scalar=0.5)


class _Eager:
    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return torch.zeros(x.shape[0], 2)


def test_settings_are_parsed_and_refused_when_wrong(monkeypatch):
    monkeypatch.delenv(eager_graphs.ENV, raising=False)
    assert eager_graphs.enabled(), "on by default"
    monkeypatch.setenv(eager_graphs.ENV, " OFF ")
    assert not eager_graphs.enabled()
    monkeypatch.setenv(eager_graphs.ENV, "on")
    assert eager_graphs.enabled()
    monkeypatch.setenv(eager_graphs.ENV, "yes")
    with pytest.raises(ValueError, match=eager_graphs.ENV):
        eager_graphs.enabled()
    monkeypatch.setenv(eager_graphs.M_MAX_ENV, "64")
    assert eager_graphs.m_max() == 64
    for bad in ("-1", "many"):
        monkeypatch.setenv(eager_graphs.M_MAX_ENV, bad)
        with pytest.raises(ValueError, match=eager_graphs.M_MAX_ENV):
            eager_graphs.m_max()


def test_first_call_eager_second_captures_then_replays(fake_cuda):
    layer, fn = _layer(), _Eager()
    x = torch.randn(3, 8)
    out1 = eager_graphs.call(layer, "w4a4", fn, x, layer.bias)
    assert fn.calls == 1 and not fake_cuda["captures"] and torch.equal(out1, torch.zeros(3, 2))
    eager_graphs.call(layer, "w4a4", fn, x, layer.bias)  # capture: this call's result from an eager run
    assert fake_cuda["captures"] == [((3, 8), 0, 77)] and fn.calls == 2
    for _ in range(3):
        out = eager_graphs.call(layer, "w4a4", fn, torch.randn(3, 8), layer.bias)
        assert torch.equal(out, torch.full((3, 2), -1.0))
    assert fn.calls == 2 and fake_cuda["replays"] == [("graph", 1)] * 3
    # another shape, another kind (W4A16) of the same layer: their own graphs
    for kind, shape in (("w4a4", (1, 8)), ("w4a16", (3, 8))):
        for _ in range(3):
            eager_graphs.call(layer, kind, fn, torch.randn(*shape), layer.bias)
    assert len(fake_cuda["captures"]) == 3 and len(fake_cuda["replays"]) == 5


def test_new_weight_tensors_get_a_new_graph(fake_cuda):
    layer, fn = _layer(), _Eager()
    x = torch.randn(1, 8)
    for _ in range(3):
        eager_graphs.call(layer, "w4a4", fn, x, layer.bias)
    assert len(fake_cuda["captures"]) == 1
    layer.weight_scale = torch.ones(2, 1)  # replaced (new storage): the old graph would read stale memory
    for _ in range(3):
        eager_graphs.call(layer, "w4a4", fn, x, layer.bias)
    assert len(fake_cuda["captures"]) == 2
    layer.weight_scale.copy_(torch.full((2, 1), 3.0))  # updated in place: same graph, it reads the new values
    eager_graphs.call(layer, "w4a4", fn, x, layer.bias)
    assert len(fake_cuda["captures"]) == 2 and len(fake_cuda["replays"]) == 3


def test_calls_that_stay_eager(fake_cuda, monkeypatch):
    layer, fn = _layer(), _Eager()
    cases = [
        (torch.randn(17, 8), layer.bias),  # more rows than the default 16
        (torch.randn(2, 8), layer.bias.clone()),  # a temporary bias: not readable at replay
        (torch.randn(2, 8, requires_grad=True), None),  # autograd records the call
    ]
    for x, bias in cases:
        for _ in range(3):
            eager_graphs.call(layer, "w4a4", fn, x, bias)
    fake_cuda["capturing"] = True  # inside the user's own capture
    for _ in range(3):
        eager_graphs.call(layer, "w4a4", fn, torch.randn(2, 8), layer.bias)
    assert not fake_cuda["captures"] and not fake_cuda["replays"] and fn.calls == 12
    fake_cuda["capturing"] = False
    with torch.no_grad():  # no autograd: a requires_grad input is fine
        for _ in range(3):
            eager_graphs.call(layer, "w4a4", fn, torch.randn(2, 8, requires_grad=True), None)
    monkeypatch.setenv(eager_graphs.M_MAX_ENV, "32")
    for _ in range(3):
        eager_graphs.call(layer, "w4a4", fn, torch.randn(17, 8), layer.bias)
    assert len(fake_cuda["captures"]) == 2 and len(fake_cuda["replays"]) == 2


def test_a_failed_capture_leaves_that_shape_eager(fake_cuda, monkeypatch):
    def broken(fn, x, index, stream):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(eager_graphs, "_capture", broken)
    layer, fn = _layer(bias=False), _Eager()
    x = torch.randn(2, 8)
    eager_graphs.call(layer, "w4a16", fn, x, None)
    with pytest.warns(UserWarning, match="runs eagerly"):
        out = eager_graphs.call(layer, "w4a16", fn, x, None)
    assert torch.equal(out, torch.zeros(2, 2))
    for _ in range(3):
        eager_graphs.call(layer, "w4a16", fn, x, None)  # no second attempt, no second warning
    assert fn.calls == 5 and not fake_cuda["replays"]


@pytest.mark.parametrize("weight_only", [False, True])
def test_the_triton_backend_routes_eager_calls_through_the_graphs(weight_only, monkeypatch):
    """With graphs on, the backend's eager (direct) calls go through ``eager_graphs.call`` with
    the layer, its kind and its own bias; traced calls (not direct) and graphs off never do."""
    from nvfp4 import NVFP4Linear
    from nvfp4.backends.triton_backend import TritonBackend
    from nvfp4.ops import launch, library

    lin = torch.nn.Linear(64, 32, bias=True, dtype=torch.bfloat16)
    kw = dict(weight_only=True) if weight_only else dict(input_global_scale=300.0)
    layer = NVFP4Linear.from_linear(lin, backend="reference", **kw)
    x = torch.randn(2, 64, dtype=torch.bfloat16)
    layer(x)
    backend = TritonBackend()
    backend.prepare(layer)
    layer.nvfp4_backends[(x.device.type, x.device.index)] = backend
    seen = []

    def fake_call(lay, kind, fn, t, bias):
        seen.append((lay, kind, bias))
        return fn(t)

    stub = torch.zeros(2, 32, dtype=torch.bfloat16)
    monkeypatch.setattr(eager_graphs, "call", fake_call)
    monkeypatch.setattr(launch, "linear_w4a4", lambda *a, **k: stub)
    monkeypatch.setattr(launch, "linear_w4a16", lambda *a, **k: stub)
    monkeypatch.setattr(library, "direct_call_ok", lambda t: True)
    monkeypatch.setenv(eager_graphs.ENV, "off")
    assert torch.equal(layer(x), stub) and not seen
    monkeypatch.setenv(eager_graphs.ENV, "on")
    assert torch.equal(layer(x), stub)
    assert seen == [(layer, "w4a16" if weight_only else "w4a4", layer.bias)]


def test_a_pool_whose_graphs_are_all_freed_is_not_captured_into_again(monkeypatch):
    """PyTorch releases a graph pool with its last graph and asserts on a capture into the old
    handle (seen on the H200 when a second model was captured after the first was freed), so
    the shared pool handle is renewed exactly when no graph captured into it is alive."""
    import gc

    handles = iter(range(100))
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: ("pool", next(handles)))
    state = eager_graphs._StreamState(capture_stream=None)
    first = state.pool_for_capture()
    entries = []
    for _ in range(2):  # two graphs captured into it
        entries.append(state.keep(eager_graphs._Captured(None, None, None)))
    assert state.pool_for_capture() == first, "graphs alive: shared pool"
    entries.pop()
    gc.collect()
    assert state.live_graphs == 1 and state.pool_for_capture() == first
    entries.clear()
    gc.collect()
    assert state.live_graphs == 0
    renewed = state.pool_for_capture()
    assert renewed != first
    assert state.pool_for_capture() not in (first, renewed), "after a failed capture (no graph kept) no stale handle"
