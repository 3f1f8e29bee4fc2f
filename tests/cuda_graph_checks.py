"""A layer captured in a CUDA graph must replay what an eager call computes (GPU tests)."""

from __future__ import annotations

import torch


def assert_capture_replays_eager(layer, x: torch.Tensor, launch, counter: str) -> None:
    """Warm ``layer`` up on a side stream (split-K counters and tuned tiles exist before the
    capture), capture one call, check that the capture launched the kernel counted by
    ``launch.KERNEL_LAUNCHES[counter]``, replay on new input and compare bit for bit with an
    eager call on that input."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        layer(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    before = launch.KERNEL_LAUNCHES[counter]
    with torch.cuda.graph(graph, stream=stream):
        static_out = layer(static_x)
    assert launch.KERNEL_LAUNCHES[counter] > before, f"the capture did not launch {counter}"
    new_x = torch.randn_like(x)
    static_x.copy_(new_x)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, layer(new_x))
