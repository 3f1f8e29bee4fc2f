"""``torch.compile(fullgraph=True)`` traces an NVFP4Linear on the triton backend into one graph
around the custom op, checked on the CPU: dynamo only traces (fake tensors, the ops' fake
implementations), and the compiler backend here returns a stand-in instead of running the
graph, so no GPU is needed. A graph break anywhere in the layer's Python (scheme, backend,
the eager-only shortcuts) fails this test before it fails on a GPU; the GPU tests run the
compiled model for real (tests/gpu/test_triton_gpu.py::test_torch_compile_fullgraph)."""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") == "1":  # pragma: no cover
    pytest.skip("imports the compiled kernels", allow_module_level=True)
pytest.importorskip("triton")

from nvfp4 import NVFP4Linear  # noqa: E402
from nvfp4.backends.triton_backend import TritonBackend  # noqa: E402


@pytest.mark.parametrize("weight_only,lead", [(False, (3,)), (True, (3,)), (False, (2, 5))])
def test_fullgraph_trace_is_one_custom_op(weight_only, lead, monkeypatch):
    monkeypatch.setenv("NVFP4_TRITON_EAGER_GRAPHS", "on")  # eager-only: must not be traced into
    lin = torch.nn.Linear(256, 128, bias=True, dtype=torch.bfloat16)
    kw = dict(weight_only=True) if weight_only else dict(input_global_scale=300.0)
    layer = NVFP4Linear.from_linear(lin, backend="reference", **kw)
    x = torch.randn(*lead, 256, dtype=torch.bfloat16)
    layer(x)  # prepares the layer; then the triton backend takes the reference's place
    backend = TritonBackend()
    backend.prepare(layer)
    layer.nvfp4_backends[(x.device.type, x.device.index)] = backend
    graphs = []

    def compiler(gm, example_inputs):
        graphs.append(gm)
        return lambda *args: (torch.zeros(*lead, 128, dtype=torch.bfloat16),)

    torch._dynamo.reset()
    out = torch.compile(layer, fullgraph=True, backend=compiler)(x)
    assert out.shape == (*lead, 128)
    assert len(graphs) == 1
    ops = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    want = "nvfp4.linear_w4a16" if weight_only else "nvfp4.linear_w4a4"
    assert sum(want in op for op in ops) == 1, ops
    torch._dynamo.reset()
