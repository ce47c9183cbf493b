"""Distillation of low-resolution students (``train.distill``); kept free of heavy imports so
the CLI can read :data:`LOSS_TERMS` without loading torch."""

from __future__ import annotations

LOSS_TERMS = ("kd", "crcd", "rkd", "nce", "arc")  # the terms DistillConfig.losses may name
