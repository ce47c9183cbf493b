"""The student a distillation run starts from.

``lrface-mbf``: the teacher's MobileFaceNet carrying the teacher ONNX's own weights
(:func:`lrface.models.students.mobilefacenet_from_onnx`); ``lrface-tiny-*``: a
:class:`~lrface.models.students.TinyFaceNet` from scratch.  ``--init`` loads a trained
student of the same kind instead (registry name or weights file), and ``--mbf-expand``
widens a MobileFaceNet inside without changing its function (Net2WiderNet).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrface.distill.config import DistillConfig
from lrface.errors import LrfaceError
from lrface.io.fileio import sha256_file
from lrface.models import registry
from lrface.models.interface import Embedder
from lrface.models.students import (
    MBF_BLOCKS,
    MobileFaceNet,
    TinyFaceNet,
    create_for_input,
    mobilefacenet_from_onnx,
    widen_mobilefacenet,
)
from lrface.models.torch_embedder import read_state

log = logging.getLogger("lrface")


@dataclasses.dataclass
class Student:
    """The network to train, the architecture settings its card records (``arch_kwargs``)
    and the sha256 of the ``--init`` weights it started from (None: no ``--init``)."""

    net: nn.Module
    arch_kwargs: dict[str, Any]
    init_sha256: str | None = None


def build_student(cfg: DistillConfig, teacher: Embedder, verbose: bool = True) -> Student:
    """The student of ``cfg`` (module docstring), in the teacher's embedding space;
    ``verbose`` logs what was done (rank 0 of a torchrun)."""
    if cfg.arch == "mbf":
        return _mobilefacenet(cfg, teacher, verbose)
    arch_kwargs = _arch_kwargs(cfg, teacher)
    size = cfg.resolved_input_size()
    student = Student(create_for_input(cfg.arch, size, arch_kwargs), arch_kwargs)
    if cfg.init:
        state, student.init_sha256 = _init_state(cfg.init, cfg.arch, arch_kwargs, size)
        _load(student.net, state, cfg.init)
        if verbose:
            log.info("student initialised from %s", cfg.init)
    return student


def _arch_kwargs(cfg: DistillConfig, teacher: Embedder) -> dict[str, Any]:
    """The ``arch_kwargs`` of a student built from scratch: those its student name stands
    for, the teacher's embedding size and, for a tiny student, ``--width`` /
    ``--head-channels`` / ``--blocks`` when not the default.  The input side is the card's
    ``input_size`` (stored once), not one of them."""
    _, named = cfg.student_entry()
    kwargs: dict[str, Any] = {k: v for k, v in named.items() if k != "input_size"}
    kwargs["embedding_size"] = teacher.embedding_size
    if cfg.arch == "tiny":
        defaults = inspect.signature(TinyFaceNet).parameters
        for key, value in (
            ("width", cfg.tiny_width),
            ("head_channels", cfg.tiny_head),
            ("blocks", cfg.tiny_blocks),
        ):
            if value != defaults[key].default:  # default-architecture cards stay as they were
                kwargs[key] = value
    return kwargs


def _mobilefacenet(cfg: DistillConfig, teacher: Embedder, verbose: bool) -> Student:
    tspec = teacher.spec
    if tspec.runtime != "onnx" or tspec.input_size != 112:
        raise LrfaceError(
            f"{cfg.teacher}: lrface-mbf is initialised from a 112-px MobileFaceNet teacher ONNX"
        )
    net = mobilefacenet_from_onnx(registry.locate(tspec))
    init_sha256 = None
    if cfg.init:
        # the init may have another inner width than the run: it is loaded at its own
        # width, then widened below
        state, init_sha256 = _init_state(cfg.init, "mbf", {}, None)
        expand = state.get("blocks.0.expand.weight")
        width = 1 if expand is None else max(1, expand.shape[0] // (64 * MBF_BLOCKS[0][0]))
        if width != net.expand_mult:
            net = MobileFaceNet(expand_mult=width)
        _load(net, state, cfg.init)
        if verbose:
            log.info("student initialised from %s", cfg.init)
    if net.expand_mult != cfg.mbf_expand:
        if cfg.mbf_expand % net.expand_mult:
            raise LrfaceError(
                f"--init {cfg.init}: a MobileFaceNet of inner width x{net.expand_mult} "
                f"cannot become --mbf-expand {cfg.mbf_expand} (only widening is possible); "
                f"pass --mbf-expand {net.expand_mult} or a multiple of it"
            )
        net = widen_mobilefacenet(net, cfg.mbf_expand // net.expand_mult, seed=cfg.seed)
        if verbose:
            log.info("student widened to x%d inside (same function)", cfg.mbf_expand)
    arch_kwargs = {"expand_mult": cfg.mbf_expand} if cfg.mbf_expand > 1 else {}
    return Student(net, arch_kwargs, init_sha256)


def _init_state(
    init: str, arch: str, arch_kwargs: dict[str, Any], input_size: int | None
) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of a registered student (name) or a weights file, with the file's
    sha256 (recorded in the card as ``init_sha256``).  A registered student must be of
    ``arch`` with the same settings (``arch_kwargs`` and, for a sized one, ``input_size``;
    a card that lists its side among its ``arch_kwargs`` too is read the same)."""
    path = Path(init)
    if not path.is_file():
        spec = registry.get_spec(init)
        if spec.kind != "student" or spec.arch != arch:
            raise LrfaceError(
                f"--init {init}: not a {arch} student; pass a student of the same kind"
            )
        theirs = dict((spec.card or {}).get("arch_kwargs", {}))
        side = theirs.pop("input_size", spec.input_size)
        if arch != "mbf" and (theirs, side) != (arch_kwargs, input_size):
            raise LrfaceError(f"--init {init}: architecture settings differ from this run's")
        path = registry.torch_weights(spec)
    return read_state(path), sha256_file(path)


def _load(net: nn.Module, state: dict[str, torch.Tensor], init: str) -> None:
    try:
        net.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise LrfaceError(f"--init {init}: weights do not fit this student ({exc})") from None
