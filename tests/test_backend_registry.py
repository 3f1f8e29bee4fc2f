"""Backend choice: argument > ``NVFP4_BACKEND`` > automatic by priority; clear errors with reasons.

The registry's module-level state is replaced per test (monkeypatch) so that backends other
helpers register (e.g. Triton) cannot change what these tests see.
"""

import logging

import pytest
import torch

from nvfp4 import NVFP4Linear, available_backends, backend_status, select_backend
from nvfp4.backends import registry
from nvfp4.backends.base import Backend
from nvfp4.backends.emulation import EmulationBackend
from nvfp4.backends.reference import ReferenceBackend


class FastButAbsent(Backend):
    name = "fast-but-absent"
    priority = 10

    @classmethod
    def unavailable_reason(cls, device):
        return "needs a device that is not here"


class FastOnCpu(Backend):
    name = "fast-on-cpu"
    priority = 5

    @classmethod
    def unavailable_reason(cls, device):
        return None if device.type == "cpu" else "cpu only"


@pytest.fixture
def fresh_registry(monkeypatch):
    reg = {"reference": ReferenceBackend, "emulation": EmulationBackend}
    monkeypatch.setattr(registry, "_REGISTRY", reg)
    monkeypatch.setattr(registry, "_INSTANCES", {})
    monkeypatch.setattr(registry, "_ANNOUNCED", set())
    monkeypatch.setattr(registry, "_WARNED", set())
    return reg


def test_real_registry_has_reference_and_emulation():
    names = available_backends()
    assert "reference" in names and "emulation" in names
    status = backend_status("cpu")
    assert status["reference"] is None and status["emulation"] is None


def test_unknown_explicit_backend_lists_choices(fresh_registry):
    with pytest.raises(ValueError, match=r"unknown NVFP4 backend 'cutlass' \(from argument\); choose one of \['reference', 'emulation'\]"):
        select_backend("cutlass", "cpu")


def test_unknown_backend_on_a_layer_fails_at_finalisation(fresh_registry):
    with pytest.raises(ValueError, match="unknown NVFP4 backend 'nope'"):
        NVFP4Linear.from_linear(torch.nn.Linear(32, 8), weight_only=True, backend="nope")


def test_auto_picks_highest_priority_available_and_never_emulation(fresh_registry):
    assert select_backend(None, "cpu").name == "reference"  # emulation (priority -1) is never automatic
    assert select_backend("auto", "cpu").name == "reference"
    registry.register_backend(FastButAbsent)
    registry.register_backend(FastOnCpu)
    assert available_backends() == ["fast-but-absent", "fast-on-cpu", "reference", "emulation"]
    assert select_backend(None, "cpu").name == "fast-on-cpu"
    with pytest.warns(UserWarning) as caught:
        assert select_backend(None, torch.device("cuda")).name == "reference"
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "not using the 'fast-but-absent' backend on cuda: needs a device that is not here" in messages[0]
    assert "not using the 'fast-on-cpu' backend on cuda: cpu only; using 'reference'" in messages[1]


def test_auto_warns_once_on_gpu_when_a_faster_backend_is_skipped(fresh_registry):
    registry.register_backend(FastButAbsent)
    with pytest.warns(UserWarning, match="not using the 'fast-but-absent' backend on cuda: needs a device that is not here"):
        select_backend(None, "cuda")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        select_backend(None, "cuda")  # once only
        select_backend(None, "cpu")  # a CPU never expected the fast path: no warning


def test_unavailable_explicit_backend_raises_with_reason(fresh_registry):
    registry.register_backend(FastButAbsent)
    with pytest.raises(RuntimeError, match="'fast-but-absent' \\(from argument\\) cannot run on cpu: needs a device that is not here"):
        select_backend("fast-but-absent", "cpu")
    assert backend_status("cpu")["fast-but-absent"] == "needs a device that is not here"


def test_environment_variable_is_honoured(fresh_registry, monkeypatch):
    monkeypatch.setenv("NVFP4_BACKEND", "emulation")
    assert select_backend(None, "cpu").name == "emulation"
    # an explicit argument beats the environment
    assert select_backend("reference", "cpu").name == "reference"
    monkeypatch.setenv("NVFP4_BACKEND", "auto")
    assert select_backend(None, "cpu").name == "reference"
    monkeypatch.setenv("NVFP4_BACKEND", "  ")
    assert select_backend(None, "cpu").name == "reference"


def test_environment_variable_unknown_or_unavailable(fresh_registry, monkeypatch):
    monkeypatch.setenv("NVFP4_BACKEND", "bogus")
    with pytest.raises(ValueError, match=r"unknown NVFP4 backend 'bogus' \(from \$NVFP4_BACKEND\); choose one of"):
        select_backend(None, "cpu")
    registry.register_backend(FastButAbsent)
    monkeypatch.setenv("NVFP4_BACKEND", "fast-but-absent")
    with pytest.raises(RuntimeError, match=r"\(from \$NVFP4_BACKEND\) cannot run on cpu: needs a device"):
        select_backend(None, "cpu")


def test_environment_variable_reaches_a_layer(fresh_registry, monkeypatch):
    monkeypatch.setenv("NVFP4_BACKEND", "emulation")
    layer = NVFP4Linear.from_linear(torch.nn.Linear(32, 8), input_global_scale=10.0)
    assert "backend=emulation" in repr(layer)
    explicit = NVFP4Linear.from_linear(torch.nn.Linear(32, 8), input_global_scale=10.0, backend="reference")
    assert "backend=reference" in repr(explicit)


def test_choice_is_logged_once(fresh_registry, caplog):
    with caplog.at_level(logging.INFO, logger="nvfp4"):
        select_backend(None, "cpu")
        select_backend(None, "cpu")
        select_backend("emulation", "cpu")
    chosen = [r.getMessage() for r in caplog.records if "chosen" in r.getMessage()]
    assert chosen == ["NVFP4 backend 'reference' chosen for cpu (auto)",
                      "NVFP4 backend 'emulation' chosen for cpu (argument)"]


def test_backend_instances_are_shared(fresh_registry):
    assert select_backend("reference", "cpu") is select_backend(None, "cpu")
