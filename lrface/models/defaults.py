"""The one table of default model names: the model each command uses when none is named.

Every command, the Python API and the service read their defaults from :data:`DEFAULTS`
(nothing else in lrface spells a default model name).  Each entry is a registry name
(:mod:`lrface.models.registry`) of the role :data:`ROLES` gives it (the registry's
``kind``), except ``detector``, which may also be ``auto`` (SCRFD-2.5g when installed,
else the shipped YuNet: :func:`lrface.faces.detect.resolve_detector`).  Free of imports:
option help texts are built from it.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DefaultModels:
    """The default model of each use (see the module docstring)."""

    #: The HR recogniser, whose embedding space every student shares: faces of >= 80 px,
    #: ``gallery build``, ``benchmark``, ``serve --gallery-model``, ``distill --teacher``,
    #: ``watch``'s enrolment of a folder.
    teacher: str = "mobilefacenet-arcface"
    #: The student for aligned faces under 80 px (``choose_model``), ``serve``'s /embed,
    #: the Ray embedder and ``distill --student``.
    lr_student: str = "lrface-mbf"
    #: The student for crops without landmarks (``crop_kind == "box"``).
    box_student: str = "lrface-box"
    #: The student ``adapt`` re-estimates (one with BatchNorm layers).
    adapt_student: str = "lrface-tiny-16"
    #: The detector when none is named: ``auto`` (see the module docstring).
    detector: str = "auto"
    #: What ``auto`` prefers when its file is found ...
    preferred_detector: str = "scrfd-2.5g"
    #: ... and what it falls back to (shipped).
    fallback_detector: str = "yunet"
    #: ``benchmark``'s detector (the one every published figure was measured with).
    benchmark_detector: str = "scrfd-2.5g"
    #: ``watch``'s detector (the fastest on video frames).
    watch_detector: str = "yunet"


#: The defaults (the one table).
DEFAULTS = DefaultModels()

#: The registry role (``kind``) of each entry of :class:`DefaultModels`.
ROLES: dict[str, str] = {
    "teacher": "teacher",
    "lr_student": "student",
    "box_student": "student",
    "adapt_student": "student",
    "detector": "detector",
    "preferred_detector": "detector",
    "fallback_detector": "detector",
    "benchmark_detector": "detector",
    "watch_detector": "detector",
}
