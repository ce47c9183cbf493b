"""The options of every ``lrface`` command: one frozen dataclass per command.

Each field is one option (:func:`lrface.argconfig.arg`: its default, help text, metavar
and check are written here once); :func:`lrface.cli.main.build_parser` generates each
subcommand's options from its class and the command function receives an instance
(:func:`lrface.argconfig.from_namespace`).  Options shared by several commands (the mixins
``CommonOptions``, ``DetectorOptions``, ``CropFlags``, the field helpers and the argparse
types) are defined once in :mod:`lrface.options`; ``serve``'s class lives with the service
(:class:`lrface.serve.options.ServeOptions`).  ``benchmark`` and ``distill`` keep their library
configs (:class:`~lrface.eval.benchmark.BenchmarkConfig`,
:class:`~lrface.distill.config.DistillConfig`) as :func:`~lrface.argconfig.nested` fields.

Checks at parse time (``type=``: argparse's usage line and ``error: argument ...``, exit
status 2) are the argparse types of :mod:`lrface.options`; the crop options are checked by
``CropOptions`` before any work (one ``error:`` line, exit 2).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from lrface.argconfig import arg, from_namespace, nested
from lrface.distill.config import DistillConfig, add_distill_arguments, config_from_args
from lrface.eval.benchmark import BenchmarkConfig, add_benchmark_arguments
from lrface.models.defaults import DEFAULTS
from lrface.options import (
    CROP_NOTE,
    CommonOptions,
    CropFlags,
    DetectorOptions,
    Verbose,
    at_most,
    json_flag,
    limited,
    non_negative_int,
    positive_int,
    precision_option,
    quiet_flag,
    threshold_option,
    workers_option,
)

__all__ = [
    "AdaptOptions",
    "BenchmarkOptions",
    "DetectOptions",
    "DistillOptions",
    "EmbedOptions",
    "ExportOptions",
    "GalleryBuildOptions",
    "IdentifyOptions",
    "ModelsOptions",
    "VerifyOptions",
    "WatchOptions",
]


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
            "lrface-mbf student for aligned faces under 80 px and for box crops, the teacher "
            "above)"
        ),
    )
    threshold: float | None = threshold_option("the calibrated one for the models used")
    face_index1: int | None = field(
        default=None, metadata=arg("face to use in image1 (0 = largest)")
    )
    face_index2: int | None = field(
        default=None, metadata=arg("face to use in image2 (0 = largest)")
    )
    json: bool = json_flag("print the result (scores, models, each face's crop) as JSON")
    precision: str | None = precision_option()


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
    json: bool = json_flag("print the faces (box, landmarks, score) as JSON")
    save_crops: str | None = field(
        default=None, metadata=arg("write aligned crops here", metavar="DIR")
    )
    size: int = field(
        default=112,
        metadata=arg("side of saved crops (default 112)" + at_most("size"), type=limited("size")),
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
            "lrface-mbf for aligned faces under 80 px and for box crops, the teacher above)"
        ),
    )
    precision: str | None = precision_option()
    batch_size: int = field(
        default=256,
        metadata=arg(
            "crops per inference batch (default 256)" + at_most("batch_size"),
            type=limited("batch_size"),
        ),
    )
    workers: int = workers_option()
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
            "files per output shard (default 1024)" + at_most("shard_size"),
            type=limited("shard_size"),
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
            + at_most("ray_actors"),
            type=limited("ray_actors"),
        ),
    )
    ray_cpus_per_actor: float = field(
        default=1.0,
        metadata=arg(
            "logical CPUs per actor, may be fractional (default 1)"
            + at_most("ray_cpus_per_actor"),
            type=limited("ray_cpus_per_actor", float),
        ),
    )
    ray_gpus_per_actor: float = field(
        default=0.0,
        metadata=arg(
            "GPUs per actor (default 0)" + at_most("ray_gpus_per_actor"),
            type=limited("ray_gpus_per_actor", float),
        ),
    )
    quiet: bool = quiet_flag()


EMBED_DESCRIPTION = (
    "Embed many images (resumable). " + CROP_NOTE + " Without --model each face goes to "
    "the model verify would choose (lrface.choose_model: aligned faces under 80 px -> "
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
    json: bool = json_flag("print the model list as JSON")
    quiet: bool = quiet_flag()


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
    quiet: bool = quiet_flag()


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
            "student to adapt (name, card or .pt; default "
            f"{DEFAULTS.adapt_student}); --method bn needs BatchNorm layers (lrface-mbf "
            "has them folded and is refused)"
        ),
    )
    out: str = field(metadata=arg("output folder: <model>-adapted.pt and its card"))
    method: str = field(
        default="bn",
        metadata=arg(
            "bn (default: re-estimate batch-norm statistics on the camera's faces) or "
            "degradation-match (estimate the camera's blur/noise/JPEG from its faces, then "
            "distil the student on --hr-data faces degraded that way; needs --hr-data)",
            choices=("bn", "degradation-match"),
        ),
    )
    hr_data: str | None = field(
        default=None,
        metadata=arg(
            "degradation-match only: HR faces to distil on, a distill --data source (an LFW "
            "copy = its train split, or unlabelled:FOLDER); guarded against LFW test "
            "identities as in distill",
            metavar="[KIND:]PATH",
        ),
    )
    steps: int | None = field(
        default=None,
        metadata=arg("degradation-match only: fine-tuning steps (default 600)", metavar="N"),
    )
    batch_size: int | None = field(
        default=None,
        metadata=arg("degradation-match only: views per step (default 128)", metavar="B"),
    )
    quiet: bool = quiet_flag()


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
    precision: str | None = precision_option()
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
        metadata=arg("IVF: rows per part file" + at_most("part_size"), type=limited("part_size")),
    )
    nlist: int | None = field(
        default=None,
        metadata=arg("IVF: inverted lists" + at_most("nlist"), type=limited("nlist")),
    )
    nprobe: int | None = field(
        default=None,
        metadata=arg("IVF: lists visited per probe" + at_most("nprobe"), type=limited("nprobe")),
    )
    workers: int = workers_option()
    quiet: bool = quiet_flag()


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
    precision: str | None = precision_option()
    top_k: int = field(
        default=5,
        metadata=arg(
            "candidates per probe (default 5)" + at_most("top_k"), type=limited("top_k")
        ),
    )
    threshold: float | None = threshold_option("the model's")
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
    json: bool = json_flag("print the results as JSON")
    workers: int = workers_option()


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
        default=1, metadata=arg("process every N-th frame (default 1: all)", type=positive_int)
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
            "face size: lrface-mbf under 80 px, the teacher above)"
        ),
    )
    top_k: int = field(
        default=5,
        metadata=arg(
            "candidates per track (default 5)" + at_most("top_k"), type=limited("top_k")
        ),
    )
    threshold: float | None = threshold_option(
        "the gallery's for its own model; the student card's threshold_vs_teacher for "
        "student templates in a teacher gallery"
    )
    min_frames: int = field(
        default=3,
        metadata=arg(
            "shortest track reported, in processed frames (default 3)", type=positive_int
        ),
    )
    max_faces: int = field(
        default=16,
        metadata=arg(
            "best faces (by quality) fused into each track's template (default 16)",
            type=positive_int,
        ),
    )
    max_misses: int = field(
        default=10,
        metadata=arg(
            "processed frames a track may go unseen before it ends (default 10)",
            type=non_negative_int,
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
    quiet: bool = quiet_flag()


