"""The ``quantization_config`` of a compressed-tensors NVFP4 checkpoint: parse it, match
modules against it, and write it (reference sheet §5).

Parsing is lenient about what does not change the numbers (missing ``scale_dtype``,
``observer``, ``version``, extra keys) and strict about what does: any format other than
``nvfp4-pack-quantized``, weights that are not 4-bit float groups of 16, asymmetric weights,
quantized outputs, a KV-cache scheme or a transform are refused with a message naming the
field and the file.

Targets and ignores take three forms, as in vLLM and compressed-tensors:

* a class name (``"Linear"``): the module's class or one of its bases has that name;
* ``"re:<pattern>"``: a regular expression on the module name, anchored at the start
  (``re.match``, as vLLM does);
* anything else: the exact module name.

When several groups target one module the most specific target wins (exact name, then
regex, then class name), then the group listed first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

NVFP4_FORMAT = "nvfp4-pack-quantized"
QUANT_METHOD = "compressed-tensors"
# The compressed-tensors release whose config layout we write (reference sheet §5).
WRITTEN_VERSION = "0.12.0"
SCHEMES = ("NVFP4", "NVFP4A16")
# A group without its own "format" inherits the top-level one; these top-level values
# only say "look at the groups".
_MIXED_FORMATS = (None, "mixed-precision")


class QuantizationConfigError(ValueError):
    """A ``quantization_config`` we cannot run, with the reason and where it came from."""


@dataclass(frozen=True)
class QuantGroup:
    """One ``config_groups`` entry: which modules it targets and whether activations are FP4."""

    name: str
    targets: tuple[str, ...]
    weight_only: bool  # NVFP4A16: ``input_activations`` is null

    @property
    def scheme(self) -> str:
        return "NVFP4A16" if self.weight_only else "NVFP4"


@dataclass
class NVFP4Config:
    """A parsed NVFP4 ``quantization_config``; ``raw`` is the dict it came from."""

    groups: list[QuantGroup]
    ignore: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
    source: str = "quantization_config"

    # -- matching ----------------------------------------------------------------------------
    def group_for(self, name: str, module) -> QuantGroup | None:
        """The group that quantizes module ``name``, or ``None`` (not targeted, or ignored)."""
        if any(target_matches(t, name, module) for t in self.ignore):
            return None
        best, best_rank = None, None
        for group in self.groups:
            for target in group.targets:
                if target_matches(target, name, module):
                    rank = _specificity(target)
                    if best_rank is None or rank < best_rank:
                        best, best_rank = group, rank
        return best

    def is_ignored(self, name: str, module) -> bool:
        return any(target_matches(t, name, module) for t in self.ignore)

    @property
    def schemes(self) -> list[str]:
        return sorted({g.scheme for g in self.groups})

    def to_dict(self) -> dict[str, Any]:
        """The dict to write back into ``config.json`` (the original one when parsed)."""
        if self.raw:
            return dict(self.raw)
        return build_quantization_config(
            "NVFP4A16" if all(g.weight_only for g in self.groups) else "NVFP4",
            ignore=list(self.ignore),
            targets=[t for g in self.groups for t in g.targets],
        )


def _specificity(target: str) -> int:
    if target.startswith("re:"):
        return 1
    return 2 if _looks_like_class_name(target) else 0


def _looks_like_class_name(target: str) -> bool:
    return "." not in target and target[:1].isupper()


def _class_names(module) -> set[str]:
    return {cls.__name__ for cls in type(module).__mro__} if module is not None else set()


def target_matches(target: str, name: str, module=None) -> bool:
    """Does ``target`` (class name, ``re:`` regex or exact name) select module ``name``?"""
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    if target == name:
        return True
    return module is not None and target in _class_names(module)


# -- parsing ---------------------------------------------------------------------------------
def _fail(source: str, message: str) -> QuantizationConfigError:
    return QuantizationConfigError(f"{source}: {message}")


def _as_targets(value, source: str, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(source, f"{what} must be a string or a list of strings, got {value!r}")


def _check_fp4_args(args: Any, source: str, what: str) -> None:
    """``weights``/``input_activations`` must describe FP4 E2M1 in groups of 16."""
    if not isinstance(args, dict):
        raise _fail(source, f"{what} must be an object, got {args!r}")
    problems = []
    if args.get("num_bits", 4) != 4:
        problems.append(f"num_bits={args.get('num_bits')!r} (need 4)")
    if str(args.get("type", "float")).lower() != "float":
        problems.append(f"type={args.get('type')!r} (need 'float')")
    if args.get("group_size", 16) != 16:
        problems.append(f"group_size={args.get('group_size')!r} (need 16)")
    strategy = args.get("strategy", "tensor_group")
    if strategy not in ("tensor_group", "group"):
        problems.append(f"strategy={strategy!r} (need 'tensor_group')")
    if args.get("symmetric", True) is not True:
        problems.append("symmetric=false (NVFP4 is symmetric)")
    scale_dtype = args.get("scale_dtype")
    if scale_dtype not in (None, "torch.float8_e4m3fn", "float8_e4m3fn"):
        problems.append(f"scale_dtype={scale_dtype!r} (need torch.float8_e4m3fn)")
    if problems:
        raise _fail(source, f"{what} is not NVFP4: " + ", ".join(problems))


def parse_quantization_config(qc: Any, source: str = "quantization_config") -> NVFP4Config:
    """Parse a compressed-tensors ``quantization_config`` dict; refuse what is not NVFP4.

    ``source`` names where it came from (e.g. ``/path/config.json``) for error messages.
    """
    if not isinstance(qc, dict):
        raise _fail(source, f"quantization_config must be an object, got {type(qc).__name__}")
    method = qc.get("quant_method", QUANT_METHOD)
    if method != QUANT_METHOD:
        raise _fail(source, f"quant_method {method!r} is not supported (only {QUANT_METHOD!r} NVFP4 checkpoints)")
    top_format = qc.get("format")
    if top_format not in _MIXED_FORMATS and top_format != NVFP4_FORMAT:
        raise _fail(source, f"format {top_format!r} is not supported (only {NVFP4_FORMAT!r})")
    for key in ("kv_cache_scheme",):
        if qc.get(key):
            raise _fail(source, f"{key} is set ({qc[key]!r}); quantized KV caches are not supported")
    sparsity = qc.get("sparsity_config") or {}
    if isinstance(sparsity, dict) and sparsity.get("format", "dense") not in ("dense", None):
        raise _fail(source, f"sparsity_config format {sparsity.get('format')!r} is not supported (sparse checkpoints)")
    transform = qc.get("transform_config") or {}
    if isinstance(transform, dict) and transform.get("config_groups"):
        raise _fail(source, "transform_config is set; transformed (rotated) checkpoints are not supported")
    groups_raw = qc.get("config_groups")
    if not isinstance(groups_raw, dict) or not groups_raw:
        raise _fail(source, "config_groups is missing or empty")
    groups = []
    for gname, g in groups_raw.items():
        where = f"config_groups.{gname}"
        if not isinstance(g, dict):
            raise _fail(source, f"{where} must be an object")
        fmt = g.get("format") or top_format
        if fmt != NVFP4_FORMAT:
            raise _fail(source, f"{where}: format {fmt!r} is not supported (only {NVFP4_FORMAT!r})")
        if g.get("weights") is None:
            raise _fail(source, f"{where}: weights is null (nothing to load as NVFP4)")
        _check_fp4_args(g["weights"], source, f"{where}.weights")
        if g["weights"].get("dynamic", False):
            raise _fail(source, f"{where}.weights: dynamic weights are not supported")
        acts = g.get("input_activations")
        if acts is not None:
            _check_fp4_args(acts, source, f"{where}.input_activations")
        if g.get("output_activations") is not None:
            raise _fail(source, f"{where}: output_activations are quantized; not supported")
        targets = _as_targets(g.get("targets"), source, f"{where}.targets")
        if not targets:
            raise _fail(source, f"{where}: targets is empty")
        groups.append(QuantGroup(name=str(gname), targets=targets, weight_only=acts is None))
    ignore = _as_targets(qc.get("ignore"), source, "ignore")
    return NVFP4Config(groups=groups, ignore=ignore, raw=dict(qc), source=source)


def build_quantization_config(scheme: str, ignore: list[str] | tuple[str, ...] = (), targets=("Linear",)) -> dict:
    """The ``quantization_config`` compressed-tensors writes for ``scheme`` (§5 of the sheet)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    fp4 = {
        "num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16,
        "scale_dtype": "torch.float8_e4m3fn",
    }
    weights = dict(fp4, dynamic=False, observer="memoryless_minmax")
    acts = None
    if scheme == "NVFP4":
        acts = dict(fp4, dynamic="local", observer="static_minmax")
    return {
        "quant_method": QUANT_METHOD,
        "format": NVFP4_FORMAT,
        "quantization_status": "compressed",
        "ignore": list(ignore),
        "config_groups": {
            "group_0": {
                "targets": list(targets),
                "format": NVFP4_FORMAT,
                "weights": weights,
                "input_activations": acts,
                "output_activations": None,
            }
        },
        "kv_cache_scheme": None,
        "sparsity_config": {},
        "version": WRITTEN_VERSION,
    }
