"""Slice reads (``nvfp4.parallel.slices``) in one process: a layer of rank r of N loaded from a
``LazyTensor`` holds the same bytes as one loaded from the whole tensor, and only its rows or
columns were read; bad requests fail with the tensor's name."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nvfp4 import ColumnParallelNVFP4Linear, RowParallelNVFP4Linear, quantize_weight
from nvfp4.checkpoint import CheckpointError
from nvfp4.parallel import KVHeadParallelNVFP4Linear, SliceReader


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    packed, scale, gw = quantize_weight(torch.randn(64, 128, dtype=torch.bfloat16))
    tensors = {"l.weight_packed": packed, "l.weight_scale": scale, "l.weight_global_scale": gw,
               "l.input_global_scale": torch.tensor([100.0]), "l.bias": torch.randn(64, dtype=torch.bfloat16)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    return tmp_path, tensors


def _load(layer, source):
    for name in ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale", "bias"):
        layer.weight_loader(getattr(layer, name), source(name))
    layer.process_weights_after_loading()
    return layer


def _same(a, b):
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))


@pytest.mark.parametrize("kind", ["column", "row"])
@pytest.mark.parametrize("rank,world", [(1, 2), (3, 4)])
def test_lazy_slices_load_the_same_bytes_and_read_only_the_rank_share(checkpoint, kind, rank, world):
    path, tensors = checkpoint
    kw = dict(dtype=torch.bfloat16, tp_rank=rank, tp_size=world, backend="reference")
    make = {
        "column": lambda: ColumnParallelNVFP4Linear(128, 64, True, **kw),
        "row": lambda: RowParallelNVFP4Linear(128, 64, True, **kw),
    }[kind]
    whole = _load(make(), lambda n: tensors[f"l.{n}"])
    reader = SliceReader(path)
    split = ("weight_packed", "weight_scale") + (("bias",) if kind != "row" else ())
    lazy = _load(make(), lambda n: reader.lazy(f"l.{n}") if n in split else reader.whole(f"l.{n}"))
    for name in ("weight_packed", "weight_scale", "bias", "alpha"):
        assert _same(getattr(lazy, name).detach(), getattr(whole, name).detach()), name
    reads = {r.name: r.ranges for r in reader.reads}
    if kind == "row":
        assert reads["l.weight_packed"] == ((0, 64), (rank * 64 // world, (rank + 1) * 64 // world))
        assert reads["l.weight_scale"] == ((0, 64), (rank * 8 // world, (rank + 1) * 8 // world))
        assert reads["l.bias"] == ((0, 64),)
    else:
        n = 64 // world
        assert reads["l.weight_packed"] == ((rank * n, (rank + 1) * n), (0, 64))
        assert reads["l.weight_scale"] == ((rank * n, (rank + 1) * n), (0, 8))
        assert reads["l.bias"] == ((rank * n, (rank + 1) * n),)
    split_bytes = sum(r.nbytes for r in reader.reads if r.name in ("l.weight_packed", "l.weight_scale"))
    assert split_bytes == (64 * 64 + 64 * 8) // world


def test_kv_rows_from_lazy_slices(tmp_path):
    torch.manual_seed(1)
    packed, scale, gw = quantize_weight(torch.randn(32, 128, dtype=torch.bfloat16))  # 2 KV heads x 16
    save_file({"k.weight_packed": packed, "k.weight_scale": scale, "k.weight_global_scale": gw,
               "k.input_global_scale": torch.tensor([50.0])}, str(tmp_path / "model.safetensors"))
    for rank, world, rows in ((1, 2, (16, 32)), (2, 4, (16, 32)), (1, 4, (0, 16))):
        reader = SliceReader(tmp_path)
        layer = KVHeadParallelNVFP4Linear(128, 16, 2, False, dtype=torch.bfloat16, tp_rank=rank, tp_size=world)
        for name in ("weight_packed", "weight_scale"):
            layer.weight_loader(getattr(layer, name), reader.lazy(f"k.{name}"))
        assert _same(layer.weight_packed.detach(), packed[rows[0]:rows[1]])
        assert {r.name: r.ranges[0] for r in reader.reads} == {"k.weight_packed": rows, "k.weight_scale": rows}


def test_bad_slices_name_the_tensor(checkpoint):
    path, _ = checkpoint
    reader = SliceReader(path)
    with pytest.raises(CheckpointError, match=r"'l\.missing' is not in the checkpoint"):
        reader.lazy("l.missing")
    with pytest.raises(ValueError, match=r"l\.weight_packed: rows/columns 60\.\.70 are outside dimension 0 of size 64"):
        reader.lazy("l.weight_packed").narrow(0, 60, 10)
    layer = ColumnParallelNVFP4Linear(256, 64, False, dtype=torch.bfloat16, tp_rank=0, tp_size=2, prefix="m.l")
    with pytest.raises(ValueError, match=r"m\.l\.weight_packed"):  # a [64, 64] tensor for K = 256
        layer.weight_loader(layer.weight_packed, reader.lazy("l.weight_packed"))
    assert reader.reads == []  # nothing was read for the refused requests
