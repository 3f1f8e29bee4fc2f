"""The Python part of an eager NVFP4 linear call, on any machine (no GPU needed).

    PYTHONPATH=src python benchmarks/profile_host_python.py [--calls 20000] [--profile]

An eager decode-sized call is bound by host time (``profile_eager.py`` measures it on a GPU).
This isolates the share that is our own Python, so it can be tracked on a CPU: the triton
backend's layer path with the launcher replaced by a stub that returns a preallocated output
(``NVFP4Linear`` -> scheme -> backend -> op function with its validation), and the launchers
themselves at M = 1 (integer-dot path) and M = 16 (activation kernel + small-M GEMM) with
every kernel launch replaced by a no-op and the tuner's choice pre-set. Microseconds per
call on this CPU: compare runs on one machine only (the GPU host's CPU was about 2x slower
than a 2-core CI machine in the 2026-12-02 runs).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time


def per_call_us(fn, calls: int) -> float:
    for _ in range(min(200, calls)):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) * 1e6 / calls


def main(argv=None) -> None:
    import torch

    from nvfp4 import NVFP4Linear
    from nvfp4.backends.triton_backend import TritonBackend
    from nvfp4.ops import eager_graphs, fast_launch, launch, launch_dp4a, library
    from nvfp4.ops.launch import small_m_candidates

    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of each case by own time")
    args = ap.parse_args(argv)
    n = k = 4096
    lin = torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=2000.0, backend="reference")
    x1 = torch.randn(1, k, dtype=torch.bfloat16)
    x16 = torch.randn(16, k, dtype=torch.bfloat16)
    layer(x1)  # prepares the reference backend; then the triton backend takes its place
    backend = TritonBackend()
    backend.prepare(layer)
    layer.nvfp4_backends[(x1.device.type, x1.device.index)] = backend
    out = torch.empty(1, n, dtype=torch.bfloat16)
    wp, ws, alpha, gx = layer.weight_packed, layer.weight_scale, layer.alpha, layer.input_global_scale

    saved = (library.direct_call_ok, launch.linear_w4a4, fast_launch.launch, launch_dp4a.dp4a_applies)
    # The eager path itself, not its CUDA-graph replays (on by default for CUDA tensors; this
    # harness has none, so it times the path with graphs off).
    saved_graphs = os.environ.get(eager_graphs.ENV)
    os.environ[eager_graphs.ENV] = "off"
    try:
        library.direct_call_ok = lambda x: True  # as for a CUDA tensor outside torch.compile
        launch.linear_w4a4 = lambda *a, **kw: out
        cases = {"NVFP4Linear W4A4 M=1, launcher stubbed": lambda: layer(x1)}
        timings = {name: per_call_us(fn, args.calls) for name, fn in cases.items()}
        launch.linear_w4a4 = saved[1]
        fast_launch.launch = lambda *a, **kw: None  # every kernel launch
        launch_dp4a.dp4a_applies = lambda m, device: 0 < m <= launch_dp4a.DP4A_M_MAX
        launch_dp4a._CHOICE[launch_dp4a.choice_key(1, n, k, x1.dtype, x1.dtype, x1.device)] = launch_dp4a.candidates(1)[0]
        key16 = launch.small_path_key(16, n, k, torch.float16, launch._op_dtype(x16.dtype, True)[0], x16.dtype, "auto",
                                      x16.device, launch.paired_mode(16, True), True)
        launch._SMALL_PATH_CHOICE[key16] = small_m_candidates(16, False)[0]
        launch_cases = {
            "launch.linear_w4a4 M=1 (integer-dot), launches stubbed":
                lambda: launch.linear_w4a4(x1, wp, ws, gx, alpha, None, 0.5),
            "launch.linear_w4a4 M=16 (float path), launches stubbed":
                lambda: launch.linear_w4a4(x16, wp, ws, gx, alpha, None, 0.5),
        }
        cases.update(launch_cases)
        timings.update({name: per_call_us(fn, args.calls) for name, fn in launch_cases.items()})
        for name, us in timings.items():
            print(f"{name:58s} {us:7.2f} us per call", flush=True)
        if args.profile:
            for name, fn in cases.items():
                if name.startswith("NVFP4Linear"):
                    launch.linear_w4a4 = lambda *a, **kw: out
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(min(args.calls, 5000)):
                    fn()
                prof.disable()
                launch.linear_w4a4 = saved[1]
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
                print(f"--- cProfile {name}")
                print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:4000])
    finally:
        library.direct_call_ok, launch.linear_w4a4, fast_launch.launch, launch_dp4a.dp4a_applies = saved
        if saved_graphs is None:
            os.environ.pop(eager_graphs.ENV, None)
        else:
            os.environ[eager_graphs.ENV] = saved_graphs


if __name__ == "__main__":
    main()
