"""Eager NVFP4 linear calls replayed from per-layer CUDA graphs (host time).

An eager decode-sized call of the triton backend spends 0.1-0.2 ms of host time (Python and
1-3 kernel launches) on 13-20 us of GPU work (docs/performance.md, "Eager calls"), so an
eager ``generate()`` is bound by the host. So by default (``NVFP4_TRITON_EAGER_GRAPHS=on``;
``off`` turns it off) the backend keeps, per layer and input shape, a CUDA graph of the whole
call:

1. the first call of a shape runs eagerly (the tuner times its candidates, Triton compiles);
2. the second runs eagerly on a private copy of the input, on the capture stream (compiling
   any specialization that copy needs, allocating per-stream buffers outside any graph),
   and then captures the same call into a graph (not executed);
3. later calls copy the input into the graph's input buffer, replay, and return a copy of
   the graph's output: three host operations instead of the launchers.

The replayed kernels are the ones the eager call launched, with the same configuration, so
the output is bit-identical. A graph reads the layer's weight, scale and alpha tensors at the
addresses they had at capture: the key holds those addresses, so weights replaced by new
tensors get a new graph, and weights updated in place are read as updated. Anything chosen
at capture (tuned tiles, ``NVFP4_TRITON_*`` variant settings) stays as captured.

On the H200 this took an eager 8B ``o`` call at M = 1 from 121 to 56 us and an eager
``generate()`` of a Llama-8B-shaped model (8 layers) from 89.9 to 142.8 tokens/s, bf16 169.8
in the same run (docs/performance.md).

Calls run eagerly instead when: graphs are off, more than
``NVFP4_TRITON_EAGER_GRAPHS_M_MAX`` rows (default 16: decode batches; every new M would cost a
capture and two small buffers), the current stream is already capturing (the user's own
graph), autograd records the call, or the bias is not the layer's own tensor (a temporary,
e.g. converted to x's dtype for this call, could not be read again at replay). A capture that
fails marks its key eager-only, with a warning.

The graphs of one device and stream share one memory pool (their temporaries are dead once a
replay ends, and replays on one stream never overlap) and are captured on a capture stream
of their own per replay stream, so that buffers keyed by the capturing stream (the integer
decode's split-K counters) are never shared between streams. A pool lives only as long as a
graph captured into it: once the last one is gone (its layers were freed) PyTorch releases
the pool and would refuse a capture into that handle ("use_count > 0" internal assert, seen
on the H200 when a second model was captured after the first was freed), so the module
counts its live graphs per pool and takes a fresh handle when none is left.
"""

from __future__ import annotations

import logging
import warnings
import weakref

import torch

from ..utils import env

ENV = "NVFP4_TRITON_EAGER_GRAPHS"
M_MAX_ENV = "NVFP4_TRITON_EAGER_GRAPHS_M_MAX"
logger = logging.getLogger("nvfp4")
_SEEN = "seen once"  # first call of a key ran eagerly
_EAGER_ONLY = "eager only"  # its capture failed
_STREAM_STATE: dict = {}  # (device index, stream) -> _StreamState
STATS = {"eager": 0, "captured": 0, "replayed": 0}


def enabled() -> bool:
    return env.switch(ENV, True)


def m_max() -> int:
    return env.whole_number(M_MAX_ENV, 16, 0)


class _Captured:
    __slots__ = ("graph", "static_x", "static_out", "__weakref__")

    def __init__(self, graph, static_x, static_out):
        self.graph, self.static_x, self.static_out = graph, static_x, static_out


class _StreamState:
    """What the graphs replayed on one (device, stream) share: a capture stream and a pool."""

    __slots__ = ("capture_stream", "pool", "live_graphs")

    def __init__(self, capture_stream):
        self.capture_stream, self.pool, self.live_graphs = capture_stream, None, 0

    def pool_for_capture(self):
        # A handle whose graphs are all gone names a released pool (module docstring): new one.
        if self.live_graphs == 0:
            self.pool = torch.cuda.graph_pool_handle()
        return self.pool

    def keep(self, entry: "_Captured") -> "_Captured":
        """Count ``entry``'s graph (captured into ``self.pool``) as alive until it is freed."""
        self.live_graphs += 1
        weakref.finalize(entry, self._released)
        return entry

    def _released(self):
        self.live_graphs -= 1


def _stream_state(device_index: int, stream: int) -> _StreamState:
    key = (device_index, stream)
    state = _STREAM_STATE.get(key)
    if state is None:
        state = _STREAM_STATE[key] = _StreamState(torch.cuda.Stream(device=device_index))
    return state


def _capture(fn, x: torch.Tensor, device_index: int, stream: int):
    """Steps 2 of the module docstring: ``(output of this call, _Captured)``."""
    with torch.inference_mode(False):  # a normal tensor: copy_ into it works in and out of inference mode
        static_x = torch.empty_like(x, memory_format=torch.contiguous_format)
    static_x.copy_(x)
    state = _stream_state(device_index, stream)
    capture_stream = state.capture_stream
    current = torch.cuda.current_stream(device_index)
    graph = torch.cuda.CUDAGraph()
    capture_stream.wait_stream(current)
    with torch.cuda.stream(capture_stream):
        # Warm-up on the capture stream, outside the capture: this call's result, Triton
        # compiles what static_x's alignment needs, and buffers kept per stream (the split-K
        # counters) are allocated and zeroed eagerly, never inside a graph.
        out = fn(static_x)
        graph.capture_begin(pool=state.pool_for_capture(), capture_error_mode="thread_local")
        try:
            static_out = fn(static_x)
        finally:
            graph.capture_end()
    current.wait_stream(capture_stream)
    out.record_stream(current)  # allocated on the capture stream, used on this one
    return out, state.keep(_Captured(graph, static_x, static_out))


def _replay(entry: _Captured, x: torch.Tensor) -> torch.Tensor:
    entry.static_x.copy_(x)
    entry.graph.replay()
    return entry.static_out.clone()


def graphable(layer, x: torch.Tensor, bias) -> bool:
    """Whether this call may be served from a graph (the conditions of the module docstring)."""
    if x.shape[0] > m_max() or (x.requires_grad and torch.is_grad_enabled()):
        return False
    if bias is not None and bias is not getattr(layer, "bias", None):
        return False
    return not torch.cuda.is_current_stream_capturing()


def call(layer, kind: str, fn, x: torch.Tensor, bias) -> torch.Tensor:
    """``fn(x)`` (the eager call with the layer's tensors bound), through the layer's graphs."""
    if not graphable(layer, x, bias):
        STATS["eager"] += 1
        return fn(x)
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    stream = torch._C._cuda_getCurrentRawStream(index)
    gx = getattr(layer, "input_global_scale", None)
    key = (
        kind, tuple(x.shape), x.dtype, index, stream, layer.weight_packed.data_ptr(), layer.weight_scale.data_ptr(),
        layer.alpha.data_ptr(), 0 if gx is None else gx.data_ptr(), 0 if bias is None else bias.data_ptr(),
        getattr(layer, "nvfp4_alpha_scalar", None),
    )
    graphs = layer.__dict__.get("nvfp4_eager_graphs")
    if graphs is None:
        graphs = layer.__dict__["nvfp4_eager_graphs"] = {}
    entry = graphs.get(key)
    if entry is None or entry is _EAGER_ONLY:
        if entry is None:
            graphs[key] = _SEEN
        STATS["eager"] += 1
        return fn(x)
    if entry is _SEEN:
        try:
            out, graphs[key] = _capture(fn, x, index, stream)
        except Exception as exc:  # noqa: BLE001 - any capture failure: this key stays eager
            graphs[key] = _EAGER_ONLY
            warnings.warn(f"NVFP4 eager graphs: capturing {kind} {tuple(x.shape)} failed ({exc}); that shape "
                          "runs eagerly", stacklevel=3)
            return fn(x)
        STATS["captured"] += 1
        logger.info("NVFP4 eager graphs: captured %s %s", kind, tuple(x.shape))
        return out
    STATS["replayed"] += 1
    return _replay(entry, x)
