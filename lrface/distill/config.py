"""The settings of a distillation run: :class:`DistillConfig` -- every knob with its
default and help text, once -- its checks, and the ``lrface distill`` options and recipe
files made from it.

The options are generated from the fields (:mod:`lrface.argconfig`): ``--field-name``
unless the field's metadata names another flag (``--loss`` for ``losses``, ``--width``
for ``tiny_width``...).  One option is not a field: ``--sizes MIN-MAX`` sets
``min_size`` and ``max_size``.  A recipe is a TOML file of ``field = value`` lines
(``configs/*.toml``); ``lrface distill --config FILE`` reads it and the options given on
the command line override it.  Free of torch: the CLI builds its parser from this module.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lrface.argconfig import add_arguments, arg, flag_of, given_options, load_config, option_fields
from lrface.distill import LOSS_TERMS
from lrface.errors import LrfaceError
from lrface.models.defaults import DEFAULTS

if TYPE_CHECKING:
    from lrface.models.students import Arch

__all__ = ["TARGETS", "DistillConfig", "add_distill_arguments", "config_from_args"]

TARGETS = ("view", "fused", "online", "online-fused")


def _data_specs(specs: list[str]) -> str | tuple[str, ...]:
    return specs[0] if len(specs) == 1 else tuple(specs)


def _loss_terms(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))  # unknown terms: DistillConfig.check


def _zero_is_all(flag: str) -> Any:
    def parse(text: str) -> int | None:
        try:
            return int(text) or None
        except ValueError:
            raise LrfaceError(f"{flag} {text!r}: an integer (0 = all)") from None

    return parse


def _size_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",")) if text else ()
    except ValueError:
        raise LrfaceError(f"--val-sizes {text!r}: give sizes such as 12,16 ('' = none)") from None


def _fold_list(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> ``(1, 2)``; the range (1-5) is checked where the data is loaded."""
    try:
        return tuple(int(f) for f in text.split(",") if f.strip())
    except ValueError:
        raise LrfaceError(f"--holdout-folds {text!r}: give fold numbers such as 1 or 1,2") from None


def _size_range(text: str) -> tuple[int, int]:
    """``"8-32"`` -> ``(8, 32)``; ``"16"`` -> ``(16, 16)``."""
    lo, _, hi = text.partition("-")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise LrfaceError(f"--sizes {text!r}: give a size range such as 8-32") from None


@dataclass
class DistillConfig:
    """Every knob of a distillation run (all stored in the card's ``training`` entry, but
    ``data`` and ``out``).  Each field with help text is an ``lrface distill`` option."""

    data: str | tuple[str, ...] = field(
        metadata=arg(
            "training faces; repeat for several sources. KIND (detected when left out): "
            "lfw (an LFW copy: its train split), labelled (ROOT/<identity>/<images>), "
            "unlabelled (a folder of photos or a .txt list of paths), rec (insightface "
            "train.rec + train.idx). weight=W: draw each face of this source W times as "
            "often as a weight-1 face (default 1)",
            metavar="[KIND:]PATH[:weight=W]",
            parse=_data_specs,
            repeat=True,
        )
    )
    out: str = field(
        metadata=arg(
            "output directory: last.pt, best.pt, log.csv, history.json, data_report.json, "
            "<name>.pt and its card <name>.json",
            metavar="DIR",
        )
    )
    teacher: str = field(
        default=DEFAULTS.teacher,
        metadata=arg(f"teacher model (default {DEFAULTS.teacher})", metavar="NAME"),
    )
    student: str = field(
        default=DEFAULTS.lr_student,
        metadata=arg("lrface-mbf, lrface-tiny-16/24/32", metavar="NAME"),
    )
    name: str | None = field(
        default=None, metadata=arg("model name in the card (default: --student)")
    )
    input_size: int | None = field(
        default=None,
        metadata=arg(
            "student input side (default: 112 for lrface-mbf, the size in a tiny student's "
            "name, else 16)",
            metavar="S",
        ),
    )
    min_size: int = 8  # --sizes MIN-MAX: LR sides drawn for training
    max_size: int = 32
    p_hr: float = field(
        default=0.1, metadata=arg("probability of a full-resolution view", metavar="P")
    )
    epochs: int = field(default=3, metadata=arg("training epochs (default 3)", metavar="N"))
    batch_size: int = field(
        default=64,
        metadata=arg("batch size, over all torchrun processes (default 64)", metavar="N"),
    )
    lr: float = field(
        default=2e-4,
        metadata=arg("AdamW learning rate, cosine decay after the warm-up", metavar="LR"),
    )
    weight_decay: float = field(default=5e-4, metadata=arg("AdamW weight decay", metavar="W"))
    warmup_steps: int = field(default=50, metadata=arg("linear lr warm-up steps", metavar="N"))
    losses: tuple[str, ...] = field(
        default=("kd", "crcd"),
        metadata=arg(
            f"comma list of {', '.join(LOSS_TERMS)} (default kd,crcd)",
            flag="--loss",
            metavar="TERM[,TERM...]",
            parse=_loss_terms,
        ),
    )
    beta: float = field(default=1.0, metadata=arg("CRCD weight", metavar="W"))
    gamma: float = field(default=1.0, metadata=arg("RKD weight", metavar="W"))
    nce_weight: float = field(default=0.1, metadata=arg("instance InfoNCE weight", metavar="W"))
    nce_tau: float = field(default=0.05, metadata=arg("InfoNCE temperature", metavar="T"))
    arc_weight: float = field(
        default=0.1,
        metadata=arg(
            "weight of the ArcFace term over the training identities (teacher prototypes)",
            metavar="W",
        ),
    )
    arc_margin: float = field(
        default=0.3, metadata=arg("ArcFace angular margin (rad)", metavar="M")
    )
    arc_scale: float = field(default=32.0, metadata=arg("ArcFace logit scale", metavar="S"))
    arc_max_size: int | None = field(
        default=None,
        metadata=arg(
            "apply the arc term only to views reduced to at most this side (px)", metavar="S"
        ),
    )
    crcd_tau: float = field(default=0.1, metadata=arg("CRCD critic temperature", metavar="T"))
    crcd_negatives: int | None = field(
        default=16,
        metadata=arg(
            "0 = all in-batch negatives",
            metavar="K",
            parse=_zero_is_all("--crcd-negatives"),
        ),
    )
    crcd_anchors: int | None = field(
        default=1024,
        metadata=arg(
            "anchor pairs per step; 0 = all", metavar="N", parse=_zero_is_all("--crcd-anchors")
        ),
    )
    crcd_hidden: int = field(
        default=256, metadata=arg("hidden width of the CRCD relation heads", metavar="N")
    )
    crcd_neg_reduction: str = field(
        default="mean",
        metadata=arg("CRCD negatives: their mean or sum", choices=("mean", "sum")),
    )
    crcd_warmup_steps: int = field(
        default=100,
        metadata=arg("steps of relation-head warm-up", flag="--crcd-warmup", metavar="N"),
    )
    seed: int = field(
        default=0,
        metadata=arg("seed of the data order, augmentations and initialisation", metavar="N"),
    )
    limit: int | None = field(
        default=None, metadata=arg("use only the first N images of each source", metavar="N")
    )
    val_sizes: tuple[int, ...] = field(
        default=(12, 16),
        metadata=arg(
            "hr-lr sizes validated each epoch ('' = none)", metavar="S[,S...]", parse=_size_list
        ),
    )
    val_every: int = field(
        default=1, metadata=arg("validate every N epochs (and the last)", metavar="N")
    )
    workers: int = field(
        default=0, metadata=arg("data-loader worker processes (0: none)", metavar="N")
    )
    threads: int | None = field(default=None, metadata=arg("torch CPU threads", metavar="N"))
    max_steps: int | None = field(
        default=None, metadata=arg("stop after N optimiser steps (smoke tests)", metavar="N")
    )
    test_pairs: str | None = field(
        default=None,
        metadata=arg("LFW pairs.txt whose test identities are refused", metavar="PATH"),
    )
    save_rank_weights: bool = field(
        default=False,
        metadata=arg("debug: every torchrun rank writes rank<r>.pt at the end"),
    )
    tiny_width: int = field(
        default=64, metadata=arg("tiny students: stem width", flag="--width", metavar="N")
    )
    tiny_head: int = field(
        default=512,
        metadata=arg("tiny students: head width", flag="--head-channels", metavar="N"),
    )
    tiny_blocks: int = field(
        default=3,
        metadata=arg("tiny students: blocks per stage", flag="--blocks", metavar="N"),
    )
    mbf_expand: int = field(
        default=1,
        metadata=arg(
            "lrface-mbf: inner width multiplier of the bottlenecks (2: ~1.8M parameters, "
            "widened from the teacher or a narrower --init without changing its function)",
            metavar="N",
        ),
    )
    init: str | None = field(
        default=None,
        metadata=arg("start from this student (registered name or .pt weights)", metavar="NAME|PT"),
    )
    holdout_folds: tuple[int, ...] = field(
        default=(),
        metadata=arg(
            "LFW folds (among 1-5, e.g. '1') whose identities are kept out of training; "
            "their pairs become the validation set (default: folds 1-5 pairs of training "
            "images)",
            metavar="F[,F...]",
            parse=_fold_list,
        ),
    )
    calib_identities: int | None = field(
        default=None,
        metadata=arg(
            "identities of a labelled folder held out of training (seeded by --seed) to "
            "calibrate the card's thresholds when no LFW source validates the run (default: "
            "a fifth of those with >= 2 photos, 2 to 100; 0 = none)",
            metavar="N",
        ),
    )
    targets: str = field(
        default="view",
        metadata=arg(
            "teacher target per view (cached), the flip-fused target for every view "
            "(cached), online: the teacher embeds each augmented HR view, or online-fused: "
            "its flip-fused embedding of each augmented HR view",
            choices=TARGETS,
        ),
    )
    mixup: float = field(
        default=0.0,
        metadata=arg(
            "with online targets: probability that a view blends two training faces "
            "(weight uniform 0-1; the teacher embeds the blend), default 0",
            metavar="P",
        ),
    )
    p_box: float = field(
        default=0.0,
        metadata=arg(
            "probability that a view is the detector's box around the face (square, 1.1x, "
            "jittered as on small faces; no landmarks), as deployment cuts small faces; "
            "the target stays the teacher's aligned HR embedding (lrface.distill.views), "
            "default 0",
            metavar="P",
        ),
    )
    p_given: float = field(
        default=0.0,
        metadata=arg(
            "probability that a view is a pre-cut crop read as '--crop-mode auto' reads it: "
            "the jittered detector box, reduced (and degraded), searched for landmarks inside "
            "it and aligned by them (lrface.faces.given_crop; a crop without landmarks stays "
            "the box); drawn after --p-box (their sum at most 1), default 0",
            metavar="P",
        ),
    )
    p_realistic: float = field(
        default=0.0,
        metadata=arg(
            "probability that a reduced view gets the realistic degradation of "
            "'benchmark --degrade realistic' (blur, motion blur, sensor noise, JPEG q30-70) "
            "instead of the light training extras, default 0",
            metavar="P",
        ),
    )
    lr_teacher: str | None = field(
        default=None,
        metadata=arg(
            "a second teacher that sees what the student sees: its flip-fused embedding of "
            "the student's own LR input (resized as that model is deployed) is a further "
            "KD target (e.g. lrface-mbf for a tiny student); default none",
            metavar="MODEL",
        ),
    )
    lr_teacher_weight: float = field(
        default=1.0, metadata=arg("weight of the --lr-teacher KD term (default 1)", metavar="W")
    )
    weights_license: str | None = field(
        default=None,
        metadata=arg(
            "the licence the trained weights carry, written to the card (e.g. "
            "'non-commercial research only (UTKFace)'); default: Apache-2.0 when the only "
            "source is an LFW copy, else 'inherits the terms of the training data' naming "
            "the sources",
            flag="--weights-license",
            metavar="TEXT",
        ),
    )
    test_guard: bool = field(
        default=True,
        metadata=arg(
            "do not drop unlabelled/.rec faces that resemble LFW test-split images "
            "(recorded in the card; test figures of such a run are not clean)",
            flag="--no-test-guard",
        ),
    )
    guard_threshold: float | None = field(
        default=None,
        metadata=arg(
            "cosine at or above which an unlabelled/.rec face counts as a possible LFW "
            "test-split identity and is dropped (default: the calibrated constant)",
            metavar="COS",
        ),
    )

    def student_entry(self) -> tuple[Arch, dict[str, Any]]:
        """``(architecture, arch_kwargs)`` that ``student`` names in the registry of
        :mod:`lrface.models.students` (``lrface-mbf``, ``lrface-tiny``,
        ``lrface-tiny-16``...); an unregistered name raises :class:`LrfaceError`."""
        # torch is imported only when a run resolves its student, not to build the parser
        from lrface.models.students import student_names

        names = student_names()
        if self.student not in names:
            raise LrfaceError(
                f"--student {self.student}: not a registered student; choose one of "
                f"{', '.join(names)} (another input side: --input-size)"
            )
        arch, kwargs = names[self.student]
        return arch, dict(kwargs)

    @property
    def arch(self) -> str:
        """The registered architecture of ``student`` (``mbf``, ``tiny``)."""
        return self.student_entry()[0].name

    @property
    def online_targets(self) -> bool:
        """The teacher embeds each augmented HR view during training (``--targets online*``)."""
        return self.targets.startswith("online")

    @property
    def model_name(self) -> str:
        """The name in the card and of ``<out>/<name>.pt``: ``name``, else the student's
        (a student name that fixes no input side gets ``-<input size>``:
        ``lrface-tiny`` -> ``lrface-tiny-16``)."""
        if self.name:
            return self.name
        arch, kwargs = self.student_entry()
        if not arch.sized or "input_size" in kwargs:
            return self.student
        return f"{self.student}-{self.resolved_input_size()}"

    def resolved_input_size(self) -> int:
        """The student's input side: ``input_size``, else the one its student name stands
        for (``lrface-tiny-24``: 24), else its architecture's (MobileFaceNet: 112; a tiny
        student: 16)."""
        if self.input_size:
            return self.input_size
        arch, kwargs = self.student_entry()
        return int(kwargs.get("input_size") or arch.input_size or arch.default_size or 0)

    def check(self) -> None:
        """Refuse contradictory settings (one-line :class:`LrfaceError`) before any work;
        the data settings are checked where the data is loaded."""
        from lrface.io.validation import check_resource

        self.student_entry()  # an unregistered --student is refused before any work
        check_resource("batch_size", self.batch_size, "--batch-size")  # the one table of caps
        check_resource("workers", self.workers, "--workers")
        if self.threads is not None:
            check_resource("threads", self.threads, "--threads")
        if self.targets not in TARGETS:
            raise LrfaceError(f"targets={self.targets!r}: use {', '.join(TARGETS)}")
        if not 0.0 <= self.mixup <= 1.0 or (self.mixup and not self.online_targets):
            raise LrfaceError(
                f"--mixup {self.mixup}: a probability in [0, 1], and blended views need "
                "--targets online or online-fused (the teacher must embed the blend)"
            )
        views = (("--p-box", self.p_box), ("--p-given", self.p_given))
        for flag, p in (*views, ("--p-realistic", self.p_realistic)):
            if not 0.0 <= p <= 1.0 or (p and self.online_targets):
                raise LrfaceError(
                    f"{flag} {p}: a probability in [0, 1], with cached targets (--targets "
                    "view or fused; online targets embed the augmented aligned view)"
                )
        if self.p_box + self.p_given > 1.0:
            raise LrfaceError(
                f"--p-box {self.p_box} + --p-given {self.p_given}: both cut views from the "
                "detector's box; their sum must be at most 1"
            )
        if self.mbf_expand < 1 or (self.mbf_expand > 1 and self.arch != "mbf"):
            raise LrfaceError(
                f"--mbf-expand {self.mbf_expand}: an integer >= 1, for lrface-mbf students "
                "only (tiny students: --width / --head-channels / --blocks)"
            )
        tiny = [flag_of(f) for f in option_fields(DistillConfig)
                if f.name.startswith("tiny_") and getattr(self, f.name) != f.default]  # fmt: skip
        if tiny and self.arch != "tiny":
            raise LrfaceError(
                f"{' / '.join(tiny)}: settings of tiny students (lrface-tiny*); "
                f"--student {self.student} is not one"
            )
        if self.calib_identities is not None and self.calib_identities < 0:
            raise LrfaceError(f"--calib-identities {self.calib_identities}: an integer >= 0")
        if self.lr_teacher is not None and not self.lr_teacher_weight > 0:
            raise LrfaceError(f"--lr-teacher-weight {self.lr_teacher_weight}: a number > 0")
        unknown = sorted(set(self.losses) - set(LOSS_TERMS))
        if unknown:
            raise LrfaceError(f"--loss: unknown term(s) {unknown}; use {', '.join(LOSS_TERMS)}")

    def training_card(self) -> dict[str, Any]:
        """The card's ``training`` entry: every field but ``data`` and ``out`` (tuples as
        lists); a recipe file with these keys reproduces the run."""
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(self).items()
            if k not in ("data", "out")
        }


_SIZES_DEFAULT = f"{DistillConfig.min_size}-{DistillConfig.max_size}"


def add_distill_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that make a :class:`DistillConfig`: ``--config FILE``, one option per
    field (none required by argparse: ``--data``/``--out`` may come from the file) and
    ``--sizes``."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="recipe: a TOML file of DistillConfig fields (e.g. configs/lrface-tiny-16.toml: "
        'losses = ["kd", "nce"], min_size = 12, ...); options given here override it',
    )
    add_arguments(parser, DistillConfig, defaults=False)
    parser.add_argument(
        "--sizes",
        metavar="MIN-MAX",
        help=f"LR size range for training, e.g. 8-32 (default {_SIZES_DEFAULT}; "
        "min_size / max_size in a --config file)",
    )


def config_from_args(namespace: argparse.Namespace) -> DistillConfig:
    """The :class:`DistillConfig` of parsed ``lrface distill`` options: the ``--config``
    file's values, overridden by the options given, over the field defaults.  ``--data``
    and ``--out`` must come from one of them.  Validation sizes ``''`` (none) also mean no
    validation epochs (``val_every`` 0)."""
    values = load_config(DistillConfig, namespace.config) if namespace.config else {}
    values |= given_options(DistillConfig, namespace)
    if namespace.sizes is not None:
        values["min_size"], values["max_size"] = _size_range(namespace.sizes)
    required = [f for f in option_fields(DistillConfig) if f.default is dataclasses.MISSING]
    missing = [flag_of(f) for f in required if f.name not in values]
    if missing:
        raise LrfaceError(
            f"distill needs {' and '.join(missing)} (on the command line or in the --config file)"
        )
    if "val_sizes" in values and not values["val_sizes"]:
        values["val_every"] = 0
    return DistillConfig(**values)
