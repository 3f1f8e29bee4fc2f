"""The kernel tests compare calls of one layer under different settings (variants, PDL,
direct vs Triton launches) and count kernel launches. A layer's eager CUDA graphs (on by
default, ``nvfp4.ops.eager_graphs``) would replay the first captured call in place of those,
so here they are off unless a test turns them on; the graphs themselves, and the default
setting, have their own tests (``test_eager_graphs_*`` in ``test_triton_gpu.py``)."""

import pytest


@pytest.fixture(autouse=True)
def _eager_graphs_off_unless_asked(monkeypatch):
    monkeypatch.setenv("NVFP4_TRITON_EAGER_GRAPHS", "off")  # eager_graphs.ENV; nvfp4.ops not imported at collection
    yield
