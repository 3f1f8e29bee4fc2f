"""Reading and writing safetensors checkpoints: discovery, sharding, atomic directories."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from nvfp4.checkpoint import (
    CheckpointError,
    atomic_directory,
    find_checkpoint_files,
    iter_tensors,
    parse_size,
    write_safetensors,
)
from nvfp4.checkpoint.writer import plan_shards


def _tensors():
    return {f"t{i}": torch.full((10, 10), float(i)) for i in range(5)}  # 400 bytes each


def test_parse_size():
    assert parse_size(None) is None and parse_size(1234) == 1234
    assert parse_size("2GB") == 2 * 10**9 and parse_size("500MiB") == 500 * 2**20 and parse_size("1.5kb") == 1500
    for bad in ("lots", "-1GB", 0, "0KB"):
        with pytest.raises(ValueError, match="max_shard_size"):
            parse_size(bad)


def test_plan_shards_keeps_order_and_limit():
    t = _tensors()
    assert plan_shards(t, None) == [list(t)]
    assert plan_shards(t, 800) == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    assert plan_shards(t, 100) == [[k] for k in t]  # a tensor over the limit gets a shard of its own


@pytest.mark.parametrize("limit", [None, 900])
def test_write_then_read_back(tmp_path, limit):
    t = _tensors()
    names = write_safetensors(tmp_path, t, limit)
    files = find_checkpoint_files(tmp_path)
    if limit is None:
        assert names == ["model.safetensors"] and files.index_file is None
    else:
        assert names[-1] == "model.safetensors.index.json" and len(files.files) == 3
        assert [f.name for f in files.files] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == 5 * 400
    got = {k: v for k, v, _ in iter_tensors(files, progress=False)}
    assert got.keys() == t.keys() and all(torch.equal(got[k], t[k]) for k in t)


def test_single_file_path_and_odd_names(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "weights.safetensors"))
    assert list(find_checkpoint_files(tmp_path).weight_map) == ["a"]
    assert list(find_checkpoint_files(tmp_path / "weights.safetensors").weight_map) == ["a"]
    save_file({"b": torch.ones(2)}, str(tmp_path / "more.safetensors"))
    with pytest.raises(CheckpointError, match="several .safetensors files .* but no model.safetensors.index.json"):
        find_checkpoint_files(tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        find_checkpoint_files(tmp_path / "nope")


def test_index_lists_tensor_absent_from_its_file(tmp_path):
    write_safetensors(tmp_path, _tensors(), 900)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["ghost"] = "model-00001-of-00003.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"model-00001-of-00003\.safetensors: 1 tensor\(s\) listed .* ghost"):
        find_checkpoint_files(tmp_path)


def test_atomic_directory_writes_and_refuses_to_clobber(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    with pytest.raises(FileExistsError, match="not empty .*overwrite=True"):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries left behind


def test_atomic_directory_failure_leaves_target_untouched(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_directory_replaces_an_empty_dir(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "x").write_text("1")
    assert (target / "x").exists()
    (tmp_path / "file").write_text("not a dir")
    with pytest.raises(FileExistsError, match="not a directory"):
        with atomic_directory(tmp_path / "file"):
            pass


def test_published_files_are_readable_by_others(tmp_path):
    """safetensors and mkstemp create 0600 files; a saved checkpoint must follow the umask."""
    import stat

    import torch

    from nvfp4.checkpoint.writer import write_safetensors

    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        write_safetensors(tmp, {"a": torch.zeros(4)}, None)
    mask = os.umask(0)
    os.umask(mask)
    for path in [target, *target.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert mode == expected, f"{path}: mode {oct(mode)}, expected {oct(expected)}"
