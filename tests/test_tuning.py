"""The once-per-shape configuration choice (``nvfp4.ops.tuning.pick``), its logic on the CPU
with the GPU parts (timing, capture state, the L2 flush buffer) replaced by scripted stand-ins.
The GPU tests run the real thing (tests/gpu/test_dp4a_gpu.py, test_triton_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from nvfp4.ops import tuning

CUDA = torch.device("cuda")  # constructing a device object touches no GPU


@pytest.fixture
def scripted(monkeypatch):
    """``time_us`` returns the scripted time of the candidate last run; records every run."""
    state = {"runs": [], "times": {}, "capturing": False}

    def run(cand):
        state["runs"].append(cand)

    def time_us(fn, flush, reps=tuning.TUNE_REPS):
        fn()
        return state["times"][state["runs"][-1]]

    monkeypatch.setattr(tuning, "time_us", time_us)
    monkeypatch.setattr(tuning, "flush_buffer", lambda device: None)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: state["capturing"])
    monkeypatch.delenv(tuning.TUNE_ENV, raising=False)
    state["run"] = run
    return state


def test_fastest_candidate_is_kept_and_reused(scripted):
    scripted["times"] = {"a": 5.0, "b": 3.0, "c": 4.0}
    table = {}
    assert tuning.pick(table, "k", ["a", "b", "c"], scripted["run"], CUDA, "test") == "b"
    assert table == {"k": "b"}
    assert set(scripted["runs"]) == {"a", "b", "c"}  # every candidate ran (warm-up and timing)
    scripted["runs"].clear()
    assert tuning.pick(table, "k", ["a", "b", "c"], scripted["run"], CUDA, "test") == "b"
    assert scripted["runs"] == []  # cached: nothing timed again


def test_capture_keeps_the_first_candidate_for_later_eager_calls(scripted):
    scripted["times"] = {"a": 5.0, "b": 3.0}
    scripted["capturing"] = True
    table = {}
    assert tuning.pick(table, "k", ["a", "b"], scripted["run"], CUDA, "test") == "a"
    assert scripted["runs"] == []  # nothing can be timed inside a capture
    scripted["capturing"] = False
    assert tuning.pick(table, "k", ["a", "b"], scripted["run"], CUDA, "test") == "a"  # same as captured


def test_off_single_candidate_and_cpu_take_the_first_without_timing(scripted, monkeypatch):
    scripted["times"] = {"a": 5.0, "b": 3.0}
    assert tuning.pick({}, "k", ["a", "b"], scripted["run"], torch.device("cpu"), "test") == "a"
    assert tuning.pick({}, "k", ["b"], scripted["run"], CUDA, "test") == "b"
    monkeypatch.setenv(tuning.TUNE_ENV, "off")
    table = {}
    assert tuning.pick(table, "k", ["a", "b"], scripted["run"], CUDA, "test") == "a"
    assert scripted["runs"] == [] and table == {}


def test_bad_setting_and_empty_candidates_are_refused(scripted, monkeypatch):
    with pytest.raises(ValueError, match="no candidate"):
        tuning.pick({}, "k", [], scripted["run"], CUDA, "test")
    monkeypatch.setenv(tuning.TUNE_ENV, "sometimes")
    with pytest.raises(ValueError, match="NVFP4_TRITON_TUNE='sometimes'"):
        tuning.pick({}, "k", ["a", "b"], scripted["run"], CUDA, "test")


def test_cached_returns_the_kept_choice_unless_tuning_is_off(scripted, monkeypatch):
    """What the launchers check before building a candidate list (``tuning.cached``)."""
    scripted["times"] = {"a": 2.0, "b": 1.0}
    table = {}
    assert tuning.cached(table, "k") is None  # never chosen: the launcher builds its list and picks
    assert tuning.pick(table, "k", ["a", "b"], scripted["run"], CUDA, "test") == "b"
    assert tuning.cached(table, "k") == "b"
    assert tuning.cached(table, "other") is None
    monkeypatch.setenv(tuning.TUNE_ENV, "off")  # off: the first candidate, so no cached choice applies
    assert tuning.cached(table, "k") is None
    assert tuning.pick(table, "k", ["a", "b"], scripted["run"], CUDA, "test") == "a"
