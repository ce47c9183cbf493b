"""The options of every ``lrface`` command: one frozen dataclass per command.

Each field is one option (:func:`lrface.argconfig.arg`: its default, help text, metavar
and check are written here once); :func:`lrface.cli.build_parser` generates each
subcommand's options from its class and the command function receives an instance
(:func:`lrface.argconfig.from_namespace`).  Options shared by several commands are defined
once, as mixins -- :class:`CommonOptions` (``--model-dir``, ``-v``), :class:`DetectorOptions`
(``--detector``, ``--det-thresh``), :class:`CropFlags` (those and ``--no-detect``,
``--face-index``; :meth:`CropFlags.crop_options` makes the pipeline's
:class:`~lrface.pipeline.CropOptions`) -- or as field helpers (``--json``, ``--quiet``,
``--workers``, ``--threshold``).  ``benchmark`` and ``distill`` keep their library
configs (:class:`~lrface.eval.benchmark.BenchmarkConfig`,
:class:`~lrface.distill.config.DistillConfig`) as :func:`~lrface.argconfig.nested` fields.

Checks at parse time (``type=``: argparse's usage line and ``error: argument ...``, exit
status 2) are the argparse types below; the crop options are checked by ``CropOptions``
before any work (one ``error:`` line, exit 2).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .argconfig import arg, from_namespace, nested
from .distill.config import DistillConfig, add_distill_arguments, config_from_args
from .eval.benchmark import BenchmarkConfig, add_benchmark_arguments

if TYPE_CHECKING:
    from .pipeline import CropOptions

__all__ = [
    "AdaptOptions",
    "BenchmarkOptions",
    "CommonOptions",
    "CropFlags",
    "DetectOptions",
    "DetectorOptions",
    "DistillOptions",
    "EmbedOptions",
    "ExportOptions",
    "GalleryBuildOptions",
    "IdentifyOptions",
    "ModelsOptions",
    "Verbose",
    "VerifyOptions",
    "finite_threshold",
]


# ---------------------------------------------------------------- argparse types


def finite_threshold(text: str) -> float:
    """argparse type for ``--threshold``: a finite cosine in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a cosine threshold in [-1, 1]")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text} is below {low}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


# ---------------------------------------------------------------- shared options

CROP_NOTE = (
    "Crops: every model (the teacher and the lrface students) expects a face aligned to the "
    "5-point ArcFace template at 112x112 (the students: that crop, reduced)."
)


def _json(help: str = "print JSON instead of text") -> Any:
    return field(default=False, metadata=arg(help))


def _quiet() -> Any:
    return field(default=False, metadata=arg("no progress bars"))


def _workers() -> Any:
    return field(
        default=2,
        metadata=arg(
            "decode/detect/align worker processes (default 2; 0 = none); started only for 64 "
            "or more images, fewer are prepared in this process",
            type=_non_negative_int,
        ),
    )


def _threshold(default: str) -> Any:
    return field(
        default=None,
        metadata=arg(f"cosine threshold in [-1, 1] (default: {default})", type=finite_threshold),
    )


def _verbose() -> Any:
    return field(default=False, metadata=arg("log progress and providers", short="-v"))


@dataclass(frozen=True, kw_only=True)
class Verbose:
    """Logging."""

    verbose: bool = _verbose()


@dataclass(frozen=True, kw_only=True)
class CommonOptions:
    """Common options."""

    model_dir: str | None = field(
        default=None, metadata=arg("extra directory searched first for model files")
    )
    verbose: bool = _verbose()


@dataclass(frozen=True, kw_only=True)
class DetectorOptions:
    """Face detection."""

    detector: str = field(
        default="auto",
        metadata=arg(
            "auto (default: scrfd-2.5g when installed, else the shipped yunet), scrfd-2.5g, "
            "scrfd-500m, scrfd-10g, yunet"
        ),
    )
    det_thresh: float | None = field(default=None, metadata=arg("detection score threshold"))


@dataclass(frozen=True, kw_only=True)
class CropFlags(DetectorOptions):
    """Face detection and crop."""

    detect: bool = field(
        default=True,
        metadata=arg(
            "inputs are pre-cut face crops: resize them, do not detect; they must be aligned "
            "to the 5-point ArcFace template like `lrface detect --save-crops` writes them "
            "(what every model expects), or they score like the 'box' rows of "
            "benchmarks/RESULTS.md",
            flag="--no-detect",
        ),
    )
    face_index: int | None = field(
        default=None,
        metadata=arg("which face to use when several are found (0 = largest, the default)"),
    )

    def crop_options(self) -> CropOptions:
        """These options as the pipeline's (validated) ``CropOptions``; the crop size is
        the model's, set later."""
        from .pipeline import CropOptions

        return CropOptions(
            detect=self.detect,
            detector=self.detector,
            det_thresh=self.det_thresh,
            face_index=self.face_index,
        )


# ---------------------------------------------------------------- one class per command


@dataclass(frozen=True, kw_only=True)
class VerifyOptions(CropFlags, CommonOptions):
    """``lrface verify``."""

    image1: str = field(metadata=arg("first image", positional=True))
    image2: str = field(metadata=arg("second image", positional=True))
    model: str | None = field(
        default=None,
        metadata=arg(
            "one recogniser for both faces (default: per face, the lrface-mbf student for "
            "faces under 64 px, the teacher above)"
        ),
    )
    threshold: float | None = _threshold("the calibrated one for the models used")
    face_index1: int | None = field(
        default=None, metadata=arg("face to use in image1 (0 = largest)")
    )
    face_index2: int | None = field(
        default=None, metadata=arg("face to use in image2 (0 = largest)")
    )
    json: bool = _json("print the result (scores, models, each face's crop) as JSON")


VERIFY_DESCRIPTION = (
    "Same person or not, for two images. " + CROP_NOTE + " verify aligns every face, small "
    "ones included, with the detector's 5 landmarks: on LFW at 16 px lrface-mbf scores "
    "97.4 % on aligned probes and 82.7 % on detector-box crops (benchmarks/RESULTS.md). "
    '--json gives each face\'s crop ("crop": "aligned-5pt"; "given" with --no-detect).'
)


@dataclass(frozen=True, kw_only=True)
class DetectOptions(DetectorOptions, CommonOptions):
    """``lrface detect``."""

    image: str = field(metadata=arg("image to search for faces", positional=True))
    json: bool = _json("print the faces (box, landmarks, score) as JSON")
    save_crops: str | None = field(
        default=None, metadata=arg("write aligned crops here", metavar="DIR")
    )
    size: int = field(
        default=112, metadata=arg("side of saved crops (default 112)", type=_positive_int)
    )


@dataclass(frozen=True, kw_only=True)
class EmbedOptions(CropFlags, CommonOptions):
    """``lrface embed``."""

    inputs: tuple[str, ...] = field(
        metadata=arg(
            "images, directories, or .txt lists of paths", positional=True, nargs="+", parse=tuple
        )
    )
    out: str = field(metadata=arg("FILE.npz, or a directory for a resumable sharded output"))
    model: str = field(default="lrface-mbf", metadata=arg("recogniser (default lrface-mbf)"))
    batch_size: int = field(
        default=256, metadata=arg("crops per inference batch (default 256)", type=_positive_int)
    )
    workers: int = _workers()
    shard: str | None = field(
        default=None,
        metadata=arg(
            "i/N (i from 0): only shard i of N of the path list; merge shard outputs with "
            "lrface.batch_embed.merge_outputs"
        ),
    )
    shard_size: int = field(default=1024, metadata=arg("files per output shard"))
    engine: str = field(
        default="local",
        metadata=arg(
            "local (default: this process and --workers) or ray (shards on Ray actors; "
            'needs pip install "lrface[ray]"; same output files)',
            choices=("local", "ray"),
        ),
    )
    ray_address: str | None = field(
        default=None,
        metadata=arg(
            "Ray cluster to use (auto or host:port; never stopped by lrface); default: start "
            "a local one for this run"
        ),
    )
    ray_actors: int | None = field(
        default=None,
        metadata=arg(
            "Ray actors (default: as many as fit without reserving every CPU)",
            type=_positive_int,
        ),
    )
    ray_cpus_per_actor: float = field(
        default=1.0, metadata=arg("logical CPUs per actor, may be fractional (default 1)")
    )
    ray_gpus_per_actor: float = field(default=0.0, metadata=arg("GPUs per actor (default 0)"))
    quiet: bool = _quiet()


EMBED_DESCRIPTION = (
    "Embed many images (resumable). " + CROP_NOTE + " Detected faces, small ones included, "
    "are aligned with their 5 landmarks; --no-detect crops must already be aligned that "
    "way, or they score like the 'box' rows of benchmarks/RESULTS.md."
)


@dataclass(frozen=True, kw_only=True)
class ModelsOptions(CommonOptions):
    """``lrface models``."""

    action: str = field(
        default="list",
        metadata=arg("default: list", positional=True, nargs="?", choices=("list", "fetch")),
    )
    names: tuple[str, ...] = field(
        default=(),
        metadata=arg("models to fetch", positional=True, nargs="*", parse=tuple),
    )
    json: bool = _json("print the model list as JSON")
    quiet: bool = _quiet()


def _benchmark_config(namespace: argparse.Namespace) -> BenchmarkConfig:
    return from_namespace(BenchmarkConfig, namespace)


@dataclass(frozen=True, kw_only=True)
class BenchmarkOptions(Verbose):
    """``lrface benchmark``: the fields of ``BenchmarkConfig`` (``--model-dir`` among them)."""

    config: BenchmarkConfig = field(metadata=nested(add_benchmark_arguments, _benchmark_config))


@dataclass(frozen=True, kw_only=True)
class DistillOptions(CommonOptions):
    """``lrface distill``: the recipe (``DistillConfig``) and how to run it."""

    # --config FILE, the fields of DistillConfig and --sizes; the options given override
    # the file's values
    recipe: DistillConfig = field(metadata=nested(add_distill_arguments, config_from_args))
    resume: str | None = field(default=None, metadata=arg("checkpoint (last.pt) to continue from"))
    prepare_only: bool = field(
        default=False,
        metadata=arg(
            "detect, align, embed with the teacher and guard every source (all cached), "
            "write OUT/data_report.json, print the data summary, and stop before training"
        ),
    )
    quiet: bool = _quiet()


@dataclass(frozen=True, kw_only=True)
class ExportOptions(CommonOptions):
    """``lrface export``."""

    model: str = field(metadata=arg("student to export (name, card or weights path)"))
    onnx: str = field(metadata=arg("output .onnx file (the card goes beside it, .json)"))
    name: str | None = field(
        default=None,
        metadata=arg("model name in the new card (default: the source's + -onnx)"),
    )
    opset: int = field(default=17, metadata=arg("ONNX opset (default 17)"))


@dataclass(frozen=True, kw_only=True)
class AdaptOptions(CommonOptions):
    """``lrface adapt``."""

    data: str = field(
        metadata=arg("the camera's face photos or crops, unlabelled: a folder or a .txt list")
    )
    model: str = field(
        default="lrface-tiny-16",
        metadata=arg(
            "student with BatchNorm layers to adapt (name, card or .pt; default "
            "lrface-tiny-16; lrface-mbf has them folded and is refused)"
        ),
    )
    out: str = field(metadata=arg("output folder: <model>-adapted.pt and its card"))
    quiet: bool = _quiet()


@dataclass(frozen=True, kw_only=True)
class GalleryBuildOptions(CropFlags, CommonOptions):
    """``lrface gallery build``."""

    action: str = field(
        metadata=arg("build: enrol ROOT into --out", positional=True, choices=("build",))
    )
    root: str = field(metadata=arg("ROOT/<identity>/<images>", positional=True))
    model: str = field(
        default="mobilefacenet-arcface",
        metadata=arg("recogniser (default mobilefacenet-arcface)"),
    )
    out: str = field(metadata=arg("FILE.npz, or a directory for an IVF index"))
    aggregate: str = field(
        default="mean",
        metadata=arg(
            "mean (default: one template per identity, the mean of its images) or all "
            "(every image matched, an identity scores its best)",
            choices=("mean", "all"),
        ),
    )
    index: str = field(
        default="exact",
        metadata=arg(
            "exact (default: one .npz, exact search) or an on-disk FAISS IVF directory for "
            "galleries that do not fit in RAM (identities ranked by their best image; "
            "approximate: see the recall in RESULTS.md)",
            choices=("exact", "ivf-sq8", "ivf-pq"),
        ),
    )
    part_size: int = field(
        default=100_000, metadata=arg("IVF: rows per part file", type=_positive_int)
    )
    nlist: int | None = field(default=None, metadata=arg("IVF: inverted lists", type=_positive_int))
    nprobe: int | None = field(
        default=None, metadata=arg("IVF: lists visited per probe", type=_positive_int)
    )
    workers: int = _workers()
    quiet: bool = _quiet()


@dataclass(frozen=True, kw_only=True)
class IdentifyOptions(CropFlags, CommonOptions):
    """``lrface identify``."""

    probes: tuple[str, ...] = field(
        metadata=arg(
            "probe images, directories, or .txt lists of paths",
            positional=True,
            nargs="+",
            parse=tuple,
        )
    )
    gallery: str = field(metadata=arg("gallery: an .npz or an IVF directory"))
    model: str | None = field(
        default=None,
        metadata=arg(
            "probe model (default: the gallery's; a student in the teacher's space may "
            "search a teacher gallery)"
        ),
    )
    top_k: int = field(
        default=5, metadata=arg("candidates per probe (default 5)", type=_positive_int)
    )
    threshold: float | None = _threshold("the model's")
    backend: str = field(
        default="auto",
        metadata=arg("search backend (default auto)", choices=("auto", "numpy", "faiss")),
    )
    json: bool = _json("print the results as JSON")
    workers: int = _workers()
