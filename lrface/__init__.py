"""lrface: low-resolution face recognition by cross-resolution distillation."""

__version__ = "0.1.0"
