"""The options of every ``lrface`` command: one frozen dataclass per command.

Each field is one option (:func:`lrface.argconfig.arg`: its default, help text, metavar
and check are written here once); :func:`lrface.cli.main.build_parser` generates each
subcommand's options from its class and the command function receives an instance
(:func:`lrface.argconfig.from_namespace`).  Options shared by several commands are defined
once, as mixins -- :class:`CommonOptions` (``--model-dir``, ``-v``), :class:`DetectorOptions`
(``--detector``, ``--det-thresh``), :class:`CropFlags` (those and ``--no-detect``,
``--face-index``; :meth:`CropFlags.crop_options` makes the pipeline's
:class:`~lrface.faces.pipeline.CropOptions`) -- or as field helpers (``--json``, ``--quiet``,
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

from lrface.argconfig import arg, from_namespace, nested
from lrface.distill.config import DistillConfig, add_distill_arguments, config_from_args
from lrface.eval.benchmark import BenchmarkConfig, add_benchmark_arguments
from lrface.io.validation import resource_error, resource_range
from lrface.models.defaults import DEFAULTS

if TYPE_CHECKING:
    from lrface.faces.pipeline import CropOptions

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
    "ServeOptions",
    "Verbose",
    "VerifyOptions",
    "WatchOptions",
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


def _limited(name: str, number: type = int) -> Any:
    """argparse type for the resource option ``name``: an ``int`` (or ``float``) within
    its caps in :data:`lrface.io.validation.RESOURCE_LIMITS` (the one table of them)."""

    def parse(text: str) -> Any:
        try:
            value = number(text)
        except ValueError:
            what = "an integer" if number is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        why = resource_error(name, value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    return parse


def _int_at_least(text: str, low: int) -> int:
    """argparse type: an integer >= ``low`` (options that are counts, not resources)."""
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


def _at_most(name: str) -> str:
    """`` (at most N)`` for the help of the resource option ``name``."""
    return f" (at most {resource_range(name)[1]:g})"
def _port(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    value = _int_at_least(text, 1)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


# ---------------------------------------------------------------- shared options

CROP_NOTE = (
    "Crops: every model (the teacher and the lrface students) expects a face aligned to the "
    "5-point ArcFace template at 112x112 (the students: that crop, reduced). Detected faces "
    "are aligned by their 5 landmarks (when the detector finds nothing it is retried on a "
    "grey-padded copy, then with the other detector); pre-cut crops (--no-detect) are read "
    "by --crop-mode (default auto: aligned by the landmarks found inside the crop, else "
    "embedded as a box crop)."
)


def _json(help: str = "print JSON instead of text") -> Any:
    return field(default=False, metadata=arg(help))


def _quiet() -> Any:
    return field(default=False, metadata=arg("no progress bars"))


def _workers() -> Any:
    return field(
        default=2,
        metadata=arg(
            "decode/detect/align worker processes (default 2; 0 = none; at most 4 x CPUs = "
            f"{resource_range('workers')[1]:g}); started only for 64 or more images, fewer "
            "are prepared in this process",
            type=_limited("workers"),
        ),
    )


def _threshold(default: str) -> Any:
    return field(
        default=None,
        metadata=arg(f"cosine threshold in [-1, 1] (default: {default})", type=finite_threshold),
    )


def _precision() -> Any:
    return field(
        default=None,
        metadata=arg(
            "int8: each recogniser's statically quantized copy (weights/NAME-int8.onnx, "
            "faster on CPUs; accuracy in benchmarks/RESULTS.md); fp32: the float model; "
            "default: the model as named",
            choices=("int8", "fp32"),
        ),
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
            "inputs are pre-cut face crops (one face each, any size): do not detect faces in "
            "them as in photos; read each by --crop-mode",
            flag="--no-detect",
        ),
    )
    crop_mode: str = field(
        default="auto",
        metadata=arg(
            "with --no-detect: auto (default: look for the face's landmarks inside the "
            "grey-padded, enlarged crop and align by them; none found: embed it as a box "
            "crop), aligned (the crops are already aligned to the 5-point ArcFace template, "
            "as `lrface detect --save-crops` writes them: only resized) or box (embed each "
            "crop as a box crop, no landmarks); --json says per crop which was used",
            choices=("auto", "aligned", "box"),
        ),
    )
    face_index: int | None = field(
        default=None,
        metadata=arg("which face to use when several are found (0 = largest, the default)"),
    )

    def crop_options(self) -> CropOptions:
        """These options as the pipeline's (validated) ``CropOptions``; the crop size is
        the model's, set later."""
        from lrface.faces.pipeline import CropOptions

        return CropOptions(
            detect=self.detect,
            detector=self.detector,
            det_thresh=self.det_thresh,
            face_index=self.face_index,
            crop_mode=self.crop_mode,
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
            "one recogniser for both faces (default: per face, lrface.choose_model: the "
            "lrface-mbf student for aligned faces under 64 px and for box crops, the teacher "
            "above)"
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
    precision: str | None = _precision()


VERIFY_DESCRIPTION = (
    "Same person or not, for two images. " + CROP_NOTE + " On LFW at 16 px lrface-mbf "
    "scores 97.4 % on aligned probes and 82.7 % on detector-box crops "
    '(benchmarks/RESULTS.md). --json gives each face\'s crop ("crop": aligned-5pt, given, '
    "box or whole-image), the pass and detector that found it (found_by, found_with) and "
    "the model chosen for it."
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
        default=112,
        metadata=arg("side of saved crops (default 112)" + _at_most("size"), type=_limited("size")),
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
    model: str | None = field(
        default=None,
        metadata=arg(
            "one recogniser for every face (default: per face, the model verify would choose: "
            "lrface-mbf for aligned faces under 64 px and for box crops, the teacher above)"
        ),
    )
    precision: str | None = _precision()
    batch_size: int = field(
        default=256,
        metadata=arg(
            "crops per inference batch (default 256)" + _at_most("batch_size"),
            type=_limited("batch_size"),
        ),
    )
    workers: int = _workers()
    shard: str | None = field(
        default=None,
        metadata=arg(
            "i/N (i from 0): only shard i of N of the path list; merge shard outputs with "
            "lrface.batch.embed.merge_outputs"
        ),
    )
    shard_size: int = field(
        default=1024,
        metadata=arg(
            "files per output shard (default 1024)" + _at_most("shard_size"),
            type=_limited("shard_size"),
        ),
    )
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
            "Ray actors (default: as many as fit without reserving every CPU)"
            + _at_most("ray_actors"),
            type=_limited("ray_actors"),
        ),
    )
    ray_cpus_per_actor: float = field(
        default=1.0,
        metadata=arg(
            "logical CPUs per actor, may be fractional (default 1)"
            + _at_most("ray_cpus_per_actor"),
            type=_limited("ray_cpus_per_actor", float),
        ),
    )
    ray_gpus_per_actor: float = field(
        default=0.0,
        metadata=arg(
            "GPUs per actor (default 0)" + _at_most("ray_gpus_per_actor"),
            type=_limited("ray_gpus_per_actor", float),
        ),
    )
    quiet: bool = _quiet()


EMBED_DESCRIPTION = (
    "Embed many images (resumable). " + CROP_NOTE + " Without --model each face goes to "
    "the model verify would choose (lrface.choose_model: aligned faces under 64 px -> "
    "lrface-mbf, larger -> the teacher, box crops -> the box model), all in the teacher's "
    "embedding space; the choice per face is recorded (--out FILE.npz: the face_models and "
    "face_crops arrays; a directory: faces-NNNNN.tsv per shard)."
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
        default=DEFAULTS.adapt_student,
        metadata=arg(
            "student with BatchNorm layers to adapt (name, card or .pt; default "
            f"{DEFAULTS.adapt_student}; lrface-mbf has them folded and is refused)"
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
        default=DEFAULTS.teacher,
        metadata=arg(f"recogniser (default {DEFAULTS.teacher})"),
    )
    precision: str | None = _precision()
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
        default=100_000,
        metadata=arg("IVF: rows per part file" + _at_most("part_size"), type=_limited("part_size")),
    )
    nlist: int | None = field(
        default=None,
        metadata=arg("IVF: inverted lists" + _at_most("nlist"), type=_limited("nlist")),
    )
    nprobe: int | None = field(
        default=None,
        metadata=arg("IVF: lists visited per probe" + _at_most("nprobe"), type=_limited("nprobe")),
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
    precision: str | None = _precision()
    top_k: int = field(
        default=5,
        metadata=arg(
            "candidates per probe (default 5)" + _at_most("top_k"), type=_limited("top_k")
        ),
    )
    threshold: float | None = _threshold("the model's")
    backend: str = field(
        default="auto",
        metadata=arg("search backend (default auto)", choices=("auto", "numpy", "faiss")),
    )
    templates: bool = field(
        default=False,
        metadata=arg(
            "each probe is a folder of one subject's images (e.g. stills of one CCTV "
            "track): its faces are fused into one quality-weighted template "
            "(lrface.search.templates) and searched once; --workers does not apply"
        ),
    )
    json: bool = _json("print the results as JSON")
    workers: int = _workers()


@dataclass(frozen=True, kw_only=True)
class WatchOptions(CommonOptions):
    """``lrface watch``."""

    video: str = field(
        metadata=arg(
            "video file, stream URL (rtsp://...) or camera index OpenCV reads", positional=True
        )
    )
    gallery: str = field(
        metadata=arg(
            "watchlist: an .npz or IVF directory from `lrface gallery build`, or a folder "
            "ROOT/<identity>/<photos> enrolled now with the teacher"
        )
    )
    out: str = field(metadata=arg("write the tracks here as JSON (FILE.json)"))
    csv: str | None = field(default=None, metadata=arg("also write the tracks as CSV here"))
    every: int = field(
        default=1, metadata=arg("process every N-th frame (default 1: all)", type=_positive_int)
    )
    detector: str = field(
        default=DEFAULTS.watch_detector,
        metadata=arg(
            f"{DEFAULTS.watch_detector} (default: shipped, the fastest: about 19 ms of CPU "
            "per 352x288 frame), "
            "auto, scrfd-2.5g (about 5x yunet's CPU time), scrfd-500m, scrfd-10g"
        ),
    )
    det_thresh: float | None = field(default=None, metadata=arg("detection score threshold"))
    model: str | None = field(
        default=None,
        metadata=arg(
            "recogniser for every track (default: as verify chooses, by the track's median "
            "face size: lrface-mbf under 64 px, the teacher above)"
        ),
    )
    top_k: int = field(
        default=5,
        metadata=arg(
            "candidates per track (default 5)" + _at_most("top_k"), type=_limited("top_k")
        ),
    )
    threshold: float | None = _threshold(
        "the gallery's for its own model; the student card's threshold_vs_teacher for "
        "student templates in a teacher gallery"
    )
    min_frames: int = field(
        default=3,
        metadata=arg(
            "shortest track reported, in processed frames (default 3)", type=_positive_int
        ),
    )
    max_faces: int = field(
        default=16,
        metadata=arg(
            "best faces (by quality) fused into each track's template (default 16)",
            type=_positive_int,
        ),
    )
    max_misses: int = field(
        default=10,
        metadata=arg(
            "processed frames a track may go unseen before it ends (default 10)",
            type=_non_negative_int,
        ),
    )
    save_crops: str | None = field(
        default=None,
        metadata=arg("write each track's best face crop here (track_<id>.png)", metavar="DIR"),
    )
    annotate: str | None = field(
        default=None,
        metadata=arg(
            "write the clip with boxes and identities here (.mp4: mp4v, .avi: MJPG; files "
            "only, not streams)",
            metavar="OUT_VIDEO",
        ),
    )
    quiet: bool = _quiet()


@dataclass(frozen=True, kw_only=True)
class ServeOptions(DetectorOptions, CommonOptions):
    """``lrface serve``: the HTTP service (:mod:`lrface.serve`).  ``--detector`` and
    ``--det-thresh`` are the defaults of requests that name none."""

    host: str = field(
        default="127.0.0.1",
        metadata=arg(
            "address to bind (default 127.0.0.1: this machine only); any other address "
            "needs an API key"
        ),
    )
    port: int = field(default=8000, metadata=arg("TCP port (default 8000)", type=_port))
    workers: int = field(
        default=1,
        metadata=arg(
            "worker processes, each with its own models (default 1)", type=_positive_int
        ),
    )
    gallery: str | None = field(
        default=None,
        metadata=arg(
            "watchlist for /identify and /gallery: an .npz (created empty if missing) or an "
            "IVF directory (`lrface gallery build`); default: none (those endpoints answer 409)"
        ),
    )
    gallery_model: str = field(
        default=DEFAULTS.teacher,
        metadata=arg(
            f"recogniser of a new --gallery .npz (default {DEFAULTS.teacher}, as `lrface "
            "gallery build`); an existing gallery keeps its own"
        ),
    )
    aggregate: str = field(
        default="mean",
        metadata=arg(
            "matching of a new --gallery .npz: mean (default) or all, as `lrface gallery build`",
            choices=("mean", "all"),
        ),
    )
    api_key_file: str | None = field(
        default=None,
        metadata=arg(
            "file holding the API key (one line, 16+ characters); default: $LRFACE_API_KEY",
            metavar="FILE",
        ),
    )
    no_auth: bool = field(
        default=False,
        metadata=arg("serve without an API key (refused unless --host is a loopback address)"),
    )
    max_body_mb: float = field(
        default=20.0,
        metadata=arg("largest request body in MB (default 20)", type=_positive_float),
    )
    max_pixels: int = field(
        default=25_000_000,
        metadata=arg(
            "largest image in pixels, checked from its header before decoding (default "
            "25000000)",
            type=_positive_int,
        ),
    )
    max_files: int = field(
        default=16,
        metadata=arg("most images in one request (default 16)", type=_positive_int),
    )
    timeout: float = field(
        default=30.0,
        metadata=arg(
            "seconds a request may take, waiting for the worker included (default 30)",
            type=_positive_float,
        ),
    )
