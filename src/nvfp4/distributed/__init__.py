"""Tensor-parallel runtime on ``torch.distributed`` (NCCL on GPUs, gloo on CPUs).

* ``group.py``: set up and tear down the process group from torchrun's environment
  (``init_tensor_parallel`` / ``TPGroup`` / ``destroy_tensor_parallel``);
* ``collectives.py``: the few collectives the model needs (float32 all-reduce of partial sums)
  and ``agree`` (every rank learns whether any rank failed a step, and why);
* ``errors.py``: ``run_tensor_parallel_main``: a failing rank prints its error tagged with its
  rank and exits non-zero at once, so the launcher (torchrun) and the peers' collectives
  tear the group down instead of hanging; ``finish_tensor_parallel_main``: how a script's
  ranks end after it (a last barrier, then ``os._exit`` with the code).
"""

from .collectives import RankFailure, agree, all_gather_objects, all_reduce_sum
from .errors import finish_tensor_parallel_main, run_tensor_parallel_main
from .group import (
    TIMEOUT_ENV,
    TPGroup,
    current_group,
    destroy_tensor_parallel,
    init_tensor_parallel,
    launched_by_torchrun,
)

__all__ = [
    "TPGroup",
    "init_tensor_parallel",
    "destroy_tensor_parallel",
    "current_group",
    "launched_by_torchrun",
    "TIMEOUT_ENV",
    "all_reduce_sum",
    "all_gather_objects",
    "agree",
    "RankFailure",
    "run_tensor_parallel_main",
    "finish_tensor_parallel_main",
]
