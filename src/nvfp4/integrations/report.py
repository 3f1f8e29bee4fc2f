"""What ``nvfp4.load`` / ``nvfp4.convert`` / ``nvfp4.quantize_model`` did, attached to the
model as ``model.nvfp4_report``."""

from __future__ import annotations

from dataclasses import dataclass, field


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{n} B"


@dataclass
class NVFP4Report:
    """A summary of a model's NVFP4 layers and how they were made or loaded."""

    source: str = ""
    layers_swapped: list[str] = field(default_factory=list)
    layers_ignored: list[str] = field(default_factory=list)
    schemes: dict[str, int] = field(default_factory=dict)  # checkpoint scheme -> layer count
    run_as: str = ""  # "W4A4", "W4A16" or a mix
    backend: str = ""
    device: str = ""
    dtype: str = ""
    quantized_weight_bytes: int = 0  # packed FP4 + FP8 block scales + global scales
    bf16_equivalent_bytes: int = 0  # the same weights in bf16
    other_weight_bytes: int = 0  # unquantized parameters (embeddings, norms, lm_head ...)
    files_read: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def compression(self) -> float:
        return self.bf16_equivalent_bytes / self.quantized_weight_bytes if self.quantized_weight_bytes else 0.0

    def __str__(self) -> str:
        lines = [f"NVFP4 model{(' from ' + self.source) if self.source else ''}"]
        schemes = ", ".join(f"{k} x{v}" for k, v in sorted(self.schemes.items())) or "none"
        lines.append(f"  layers     : {len(self.layers_swapped)} NVFP4 ({schemes}), {len(self.layers_ignored)} left unquantized"
                     + (f" ({', '.join(self.layers_ignored[:4])}{' ...' if len(self.layers_ignored) > 4 else ''})"
                        if self.layers_ignored else ""))
        lines.append(f"  runs as    : {self.run_as or '-'} on {self.device or '-'} ({self.dtype or '-'}), backend {self.backend or '-'}")
        lines.append(
            f"  weights    : {_human(self.quantized_weight_bytes)} NVFP4 vs {_human(self.bf16_equivalent_bytes)} bf16"
            f" ({self.compression:.2f}x smaller); other parameters {_human(self.other_weight_bytes)}"
        )
        if self.files_read:
            shown = ", ".join(self.files_read[:3]) + (f" (+{len(self.files_read) - 3} more)" if len(self.files_read) > 3 else "")
            lines.append(f"  files      : {shown}")
        if self.seconds:
            lines.append(f"  time       : {self.seconds:.1f} s")
        for w in self.warnings:
            lines.append(f"  warning    : {w}")
        return "\n".join(lines)
