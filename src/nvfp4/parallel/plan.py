"""Can this model be split N ways, and what does each rank hold? Decided from the config
alone, before anything is read or allocated.

Attention: query heads are split evenly (``heads % tp == 0``); KV heads are split when
``tp <= kv_heads`` (``kv_heads % tp == 0``) and replicated when ``tp > kv_heads``
(``tp % kv_heads == 0``; ranks ``r*rep .. (r+1)*rep - 1`` hold KV head ``r``), as in vLLM.
MLP: ``intermediate_size`` is split evenly. Row-parallel layers (``o_proj``, ``down_proj``)
split their input: when quantized, each rank's ``K/tp`` must be a multiple of the NVFP4
group of 16, otherwise the FP8 block scales would straddle two ranks.

Every problem is collected and reported at once, naming the layer(s) and the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..numerics import GROUP_SIZE

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class TensorParallelSplitError(ValueError):
    """The model cannot be split across the requested number of ranks (same on every rank)."""

    same_on_every_rank = True


def kv_head_partition(total_kv_heads: int, tp: int, name: str = "k_proj/v_proj") -> tuple[int, int]:
    """``(kv_heads_per_rank, replicas)``: split when ``tp <= kv``, else replicate."""
    if tp <= total_kv_heads:
        if total_kv_heads % tp:
            raise TensorParallelSplitError(
                f"{name}: {total_kv_heads} KV heads cannot be split evenly across {tp} ranks"
            )
        return total_kv_heads // tp, 1
    if tp % total_kv_heads:
        raise TensorParallelSplitError(
            f"{name}: {total_kv_heads} KV heads cannot be replicated evenly across {tp} ranks "
            f"({tp} is not a multiple of {total_kv_heads})"
        )
    return 1, tp // total_kv_heads


@dataclass(frozen=True)
class TPPlan:
    """What every rank holds (the same on every rank; only the slice index differs)."""

    tp: int
    model_type: str
    hidden_size: int
    num_layers: int
    head_dim: int
    num_heads: int
    num_kv_heads: int
    heads_per_rank: int
    kv_heads_per_rank: int
    kv_head_replicas: int
    intermediate_size: int
    intermediate_per_rank: int

    @property
    def kv_groups_per_rank(self) -> int:
        """HF's ``num_key_value_groups`` on one rank (query heads per local KV head)."""
        return self.heads_per_rank // self.kv_heads_per_rank

    def kv_head_of_rank(self, rank: int) -> int:
        """The first global KV head that ``rank`` holds."""
        return (rank // self.kv_head_replicas) * self.kv_heads_per_rank

    def describe(self) -> str:
        kv = (
            f"{self.kv_heads_per_rank} KV head(s) per rank"
            if self.kv_head_replicas == 1
            else f"each of {self.num_kv_heads} KV head(s) replicated on {self.kv_head_replicas} ranks"
        )
        return (
            f"tp={self.tp}: {self.heads_per_rank} of {self.num_heads} query heads per rank, {kv}, "
            f"MLP {self.intermediate_per_rank} of {self.intermediate_size} per rank; embeddings, norms and "
            f"lm_head replicated"
        )


def _layer_list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def plan_tensor_parallel(config, tp: int, quantized_row_layers: dict[str, list[str]] | None = None) -> TPPlan:
    """Check that ``config`` (a transformers config) splits ``tp`` ways; return the plan.

    ``quantized_row_layers`` maps ``"o_proj"``/``"down_proj"`` to the names of the layers of
    that kind that are NVFP4 in the checkpoint (their ``K/tp`` must be a multiple of 16).
    Raises ``TensorParallelSplitError`` listing every problem.
    """
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        raise ValueError(f"tp must be a positive integer, got {tp!r}")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    model_type = getattr(text, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise TensorParallelSplitError(
            f"tensor parallelism supports the model types {SUPPORTED_MODEL_TYPES}; this checkpoint is "
            f"{model_type!r}"
        )
    hidden = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    kv = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    inter = int(text.intermediate_size)
    layers = int(text.num_hidden_layers)
    quantized_row_layers = quantized_row_layers or {}
    attn = "model.layers.*.self_attn"
    mlp = "model.layers.*.mlp"

    problems: list[str] = []
    if heads % tp:
        problems.append(f"{attn}.q_proj: {heads} attention heads cannot be split evenly across {tp} ranks")
    kv_per_rank, replicas = 1, 1
    try:
        kv_per_rank, replicas = kv_head_partition(kv, tp, f"{attn}.k_proj/v_proj")
    except TensorParallelSplitError as exc:
        problems.append(str(exc))
    if inter % tp:
        problems.append(
            f"{mlp}.gate_proj/up_proj/down_proj: intermediate_size {inter} cannot be split evenly across {tp} ranks"
        )
    for kind, k in (("o_proj", heads * head_dim), ("down_proj", inter)):
        names = quantized_row_layers.get(kind) or []
        if names and k % tp == 0 and (k // tp) % GROUP_SIZE:
            problems.append(
                f"{_layer_list(names)} (row-parallel, NVFP4): input size {k} / {tp} ranks = {k // tp} per rank, "
                f"not a multiple of the NVFP4 group size {GROUP_SIZE}"
            )
    if problems:
        raise TensorParallelSplitError(
            f"this {model_type} model cannot be split across tp={tp} ranks:\n  - " + "\n  - ".join(problems)
        )
    return TPPlan(
        tp=tp, model_type=model_type, hidden_size=hidden, num_layers=layers, head_dim=head_dim,
        num_heads=heads, num_kv_heads=kv, heads_per_rank=heads // tp, kv_heads_per_rank=kv_per_rank,
        kv_head_replicas=replicas, intermediate_size=inter, intermediate_per_rank=inter // tp,
    )
