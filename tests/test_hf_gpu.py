"""nvfp4.load onto a CUDA device (run on the GPU machine; skipped on the CPU).

The checkpoint is written by nvfp4.quantize_model + nvfp4.save on the CPU (no
compressed-tensors needed on the GPU machine); the GPU model must hold every tensor on the
device, keep the quantized layers packed, and give the CPU reference's logits up to fp32
summation order and GPU attention kernels.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

import nvfp4  # noqa: E402
from hf_tiny import calibration_tokens, float_model, logits, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu_ckpt") / "ckpt"
    model = nvfp4.quantize_model(float_model(tiny_config(tie=True, bias=True)), calibration_tokens(),
                                 backend="reference", progress=False)
    nvfp4.save(model, path, max_shard_size="30KB")
    return path


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["reference", None])
@pytest.mark.parametrize("weight_only", [False, True])
def test_load_on_cuda_matches_cpu(checkpoint, backend, weight_only):
    cpu = nvfp4.load(checkpoint, backend="reference", progress=False, weight_only=weight_only)
    gpu = nvfp4.load(checkpoint, device="cuda", backend=backend, progress=False, weight_only=weight_only)
    for name, t in list(gpu.named_parameters()) + list(gpu.named_buffers()):
        assert t.device.type == "cuda", name
    ids = torch.arange(3, 40, 3).reshape(1, -1) % 128
    expected = logits(cpu, ids).float()
    got = logits(gpu, ids.cuda()).float().cpu()
    # Same quantized tensors; only fp32 summation order, GPU attention kernels and the odd
    # FP4 code flipped downstream of them differ.
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()
    report = gpu.nvfp4_report
    assert report.device == "cuda" and report.run_as == ("W4A16" if weight_only else "W4A4")
    if backend is not None:
        assert report.backend == backend
    print(report)
