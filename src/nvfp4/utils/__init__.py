"""Small shared utilities (file-system safety)."""

from .atomic import atomic_directory, atomic_file

__all__ = ["atomic_directory", "atomic_file"]
