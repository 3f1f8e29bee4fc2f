"""What ``nvfp4 inspect`` reports about a checkpoint, from config.json and safetensors alone.

No model is built: tensor names, shapes and dtypes come from the safetensors headers; only
the small scale tensors (global scales, and the FP8 block scales when scanning) are read.
Problems that would make a model produce wrong numbers become warnings:

* non-finite or zero global scales (NaN/Inf logits at run time, reference sheet §9-10);
* NaN FP8 block scales (garbage padding, vllm#38148);
* fused shards (q/k/v, gate/up) whose weight or input global scales differ: nvfp4 handles
  them exactly per shard, vLLM keeps only the max() (reference sheet §6);
* missing or mis-shaped companion tensors of a quantized layer;
* a config that says W4A4 without input global scales, or the other way round.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

QUANT_SUFFIXES = ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale")
# Projections that vLLM fuses into one layer, so their global scales meet (reference sheet §6).
FUSED_SETS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"))
_MAX_LISTED = 5


@dataclass
class ScaleStats:
    count: int = 0
    minimum: float | None = None
    median: float | None = None
    maximum: float | None = None
    non_finite: int = 0
    zero: int = 0

    @classmethod
    def of(cls, values: list[float]) -> "ScaleStats":
        finite = [v for v in values if v == v and abs(v) != float("inf")]
        return cls(
            count=len(values),
            minimum=min(finite) if finite else None,
            median=statistics.median(finite) if finite else None,
            maximum=max(finite) if finite else None,
            non_finite=len(values) - len(finite),
            zero=sum(1 for v in finite if v == 0),
        )


@dataclass
class QuantizedLayer:
    name: str
    out_features: int
    in_features: int
    scheme: str  # "W4A4" (has input_global_scale) or "W4A16"
    weight_global_scale: float | None
    input_global_scale: float | None
    bytes: int  # its tensors on disk


@dataclass
class CheckpointSummary:
    path: str
    model_type: str | None
    architectures: list[str]
    quant_method: str | None
    format: str | None
    status: str | None
    version: str | None
    groups: list[dict]
    ignore: list[str]
    config_problem: str | None
    files: list[dict]
    total_bytes: int
    layers: list[QuantizedLayer]
    unquantized: list[dict]  # other tensors: name, shape, dtype
    quantized_bytes: int
    quantized_bf16_bytes: int  # the quantized layers' weights as bf16
    other_bytes: int
    weight_global_scales: ScaleStats
    input_global_scales: ScaleStats
    scanned_block_scales: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def schemes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.scheme] = counts.get(layer.scheme, 0) + 1
        return counts

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schemes"] = self.schemes
        return d


def _nbytes(shape, dtype: str) -> int:
    sizes = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
    n = 1
    for s in shape:
        n *= int(s)
    return n * sizes.get(dtype, 1)


def _headers(files) -> dict[str, tuple[list[int], str, Path]]:
    """``name -> (shape, safetensors dtype string, file)`` from the headers only."""
    from safetensors import safe_open

    meta = {}
    for file in files.files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                if files.weight_map.get(key, file) != file:
                    continue
                sl = handle.get_slice(key)
                meta[key] = (list(sl.get_shape()), sl.get_dtype(), file)
    return meta


def _read_scalars(names: list[str], meta, progress: bool) -> dict[str, list[float]]:
    """Read small tensors (global scales); returns their values as Python floats."""
    from safetensors import safe_open
    from tqdm.auto import tqdm

    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(meta[n][2], []).append(n)
    values = {}
    with tqdm(total=len(names), desc="reading global scales", unit="tensor", disable=not progress, leave=False) as bar:
        for file, keys in by_file.items():
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                for key in keys:
                    values[key] = [float(v) for v in handle.get_tensor(key).float().reshape(-1).tolist()]
                    bar.update(1)
    return values


def _nan_block_scales(names: list[str], meta, progress: bool) -> list[str]:
    from safetensors import safe_open
    from tqdm.auto import tqdm

    bad = []
    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(meta[n][2], []).append(n)
    with tqdm(total=len(names), desc="scanning block scales", unit="tensor", disable=not progress, leave=False) as bar:
        for file, keys in by_file.items():
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                for key in keys:
                    t = handle.get_tensor(key)
                    if not bool(torch.isfinite(t.float()).all()):
                        bad.append(key)
                    bar.update(1)
    return bad


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _config_part(config: dict, config_path: Path):
    """The quantization_config's fields, its groups, and why we could not run it (if so)."""
    qc = config.get("quantization_config") or config.get("compression_config")
    if not isinstance(qc, dict):
        raise ValueError(
            f"{config_path}: no quantization_config, so this is not a quantized checkpoint "
            "(`nvfp4 quantize SRC DST` makes an NVFP4 one)"
        )
    problem, groups, ignore = None, [], list(qc.get("ignore") or [])
    try:
        from ..checkpoint.config import parse_quantization_config

        parsed = parse_quantization_config(qc, source=str(config_path))
        groups = [{"name": g.name, "targets": list(g.targets), "scheme": g.scheme} for g in parsed.groups]
        ignore = list(parsed.ignore)
    except ImportError:  # pragma: no cover - the parser ships with nvfp4
        problem = "cannot parse (nvfp4.checkpoint is missing)"
    except ValueError as err:
        problem = str(err)
        for gname, g in (qc.get("config_groups") or {}).items():
            if isinstance(g, dict):
                acts = g.get("input_activations")
                groups.append({"name": gname, "targets": list(g.get("targets") or []),
                               "scheme": "NVFP4A16" if acts is None else "NVFP4"})
    return qc, groups, ignore, problem


def summarize_checkpoint(path: str | Path, *, scan_block_scales: bool = True, progress: bool = True) -> CheckpointSummary:
    """Everything ``nvfp4 inspect`` prints, as data. Raises ValueError for unreadable input."""
    from ..checkpoint.reader import find_checkpoint_files, read_config

    config, config_path = read_config(path)
    qc, groups, ignore, problem = _config_part(config, config_path)
    files = find_checkpoint_files(Path(path))
    meta = _headers(files)
    warnings: list[str] = []
    if problem:
        warnings.append(f"nvfp4 cannot run this config: {problem}")

    prefixes = sorted({k[: -len(".weight_packed")] for k in meta if k.endswith(".weight_packed")})
    quant_names = {f"{p}.{s}" for p in prefixes for s in QUANT_SUFFIXES}
    scalar_names = [n for n in quant_names if n in meta and n.endswith("global_scale")]
    values = _read_scalars(sorted(scalar_names), meta, progress)

    layers, missing, misshaped = [], [], []
    for p in prefixes:
        shape, _, _ = meta[f"{p}.weight_packed"]
        if len(shape) != 2:
            misshaped.append(f"{p}.weight_packed {shape}")
            continue
        n, k = shape[0], shape[1] * 2
        for need in ("weight_scale", "weight_global_scale"):
            if f"{p}.{need}" not in meta:
                missing.append(f"{p}.{need}")
        scale = meta.get(f"{p}.weight_scale")
        if scale is not None and list(scale[0]) != [n, k // 16]:
            misshaped.append(f"{p}.weight_scale {scale[0]} (expected {[n, k // 16]})")
        if scale is not None and scale[1] != "F8_E4M3":
            misshaped.append(f"{p}.weight_scale dtype {scale[1]} (expected F8_E4M3)")
        gw = values.get(f"{p}.weight_global_scale")
        gx = values.get(f"{p}.input_global_scale")
        for name, v in ((f"{p}.weight_global_scale", gw), (f"{p}.input_global_scale", gx)):
            if v is not None and len(v) != 1:
                misshaped.append(f"{name} has {len(v)} values (expected 1)")
        size = sum(_nbytes(meta[x][0], meta[x][1]) for x in (f"{p}.{s}" for s in QUANT_SUFFIXES) if x in meta)
        layers.append(QuantizedLayer(p, n, k, "W4A4" if gx is not None else "W4A16",
                                     gw[0] if gw else None, gx[0] if gx else None, size))
    unquantized = [
        {"name": k, "shape": s, "dtype": d} for k, (s, d, _) in sorted(meta.items()) if k not in quant_names
    ]
    quantized_bytes = sum(layer.bytes for layer in layers)
    other_bytes = sum(_nbytes(u["shape"], u["dtype"]) for u in unquantized)
    quantized_bf16 = sum(layer.out_features * layer.in_features * 2 for layer in layers)

    gws = [v for p in prefixes for v in values.get(f"{p}.weight_global_scale", [])]
    gxs = [v for p in prefixes for v in values.get(f"{p}.input_global_scale", [])]
    bad = [n for n in sorted(values) if any(not (abs(v) < float("inf")) or v == 0 for v in values[n])]
    if bad:
        warnings.append(f"{len(bad)} non-finite or zero global scale(s) (outputs would be NaN/Inf): {_listed(bad)}")
    if missing:
        warnings.append(f"{len(missing)} quantized layer tensor(s) missing: {_listed(missing)}")
    if misshaped:
        warnings.append(f"{len(misshaped)} tensor(s) with unexpected shape or dtype: {_listed(misshaped)}")
    warnings += _fused_scale_warnings(prefixes, values)
    schemes = {g["scheme"] for g in groups}
    with_gx = sum(1 for layer in layers if layer.scheme == "W4A4")
    if schemes == {"NVFP4"} and with_gx < len(layers):
        warnings.append(f"the config says W4A4 (NVFP4) but {len(layers) - with_gx} of {len(layers)} quantized "
                        "layers have no input_global_scale")
    if schemes == {"NVFP4A16"} and with_gx:
        warnings.append(f"the config says weight-only (NVFP4A16) but {with_gx} layers carry an input_global_scale "
                        "(it will be ignored)")
    if not layers:
        warnings.append("no quantized layers found (no *.weight_packed tensors)")
    scanned = False
    if scan_block_scales and layers:
        scale_names = [f"{p}.weight_scale" for p in prefixes if f"{p}.weight_scale" in meta]
        nan_scales = _nan_block_scales(scale_names, meta, progress)
        scanned = True
        if nan_scales:
            warnings.append(f"{len(nan_scales)} weight_scale tensor(s) hold NaN FP8 block scales: {_listed(nan_scales)}")
    return CheckpointSummary(
        path=str(path),
        model_type=config.get("model_type"),
        architectures=list(config.get("architectures") or []),
        quant_method=qc.get("quant_method"),
        format=qc.get("format"),
        status=qc.get("quantization_status"),
        version=qc.get("version"),
        groups=groups,
        ignore=ignore,
        config_problem=problem,
        files=[{"name": f.name, "bytes": f.stat().st_size} for f in files.files],
        total_bytes=sum(f.stat().st_size for f in files.files),
        layers=layers,
        unquantized=unquantized,
        quantized_bytes=quantized_bytes,
        quantized_bf16_bytes=quantized_bf16,
        other_bytes=other_bytes,
        weight_global_scales=ScaleStats.of(gws),
        input_global_scales=ScaleStats.of(gxs),
        scanned_block_scales=scanned,
        warnings=warnings,
    )


def _fused_scale_warnings(prefixes: list[str], values: dict[str, list[float]]) -> list[str]:
    present = set(prefixes)
    out = []
    for kind, label in (("weight_global_scale", "weight"), ("input_global_scale", "input")):
        unequal, total = [], 0
        for parent in sorted({p.rsplit(".", 1)[0] for p in prefixes if "." in p}):
            for names in FUSED_SETS:
                members = [f"{parent}.{n}" for n in names if f"{parent}.{n}" in present]
                scales = [values.get(f"{m}.{kind}") for m in members]
                if len(members) < 2 or any(s is None for s in scales):
                    continue
                total += 1
                flat = [s[0] for s in scales]
                if len(set(flat)) > 1:
                    detail = ", ".join(f"{m.rsplit('.', 1)[1]}={v:g}" for m, v in zip(members, flat))
                    unequal.append(f"{parent} ({detail})")
        if unequal:
            out.append(
                f"{len(unequal)} of {total} fused groups (q/k/v, gate/up) have unequal {label} global scales; "
                f"nvfp4 runs them exactly per shard, vLLM keeps only the max(): {_listed(unequal)}"
            )
    return out
