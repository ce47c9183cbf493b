"""``lrface benchmark`` as a library: :class:`BenchmarkConfig` in, results dict out.

:func:`run_benchmark` runs one evaluation protocol for one or more models and writes
``OUT/results.json`` atomically with every figure and the full protocol description
(recipe, folds, counts, models and their sha256, lrface version, UTC time, command line,
elapsed seconds); with ``plot`` it writes ROC / CMC figures beside it.  In the JSON, NaN
(an undefined metric, explained in the entry's ``notes``) is written as ``null``.  It
never prints: the CLI (:mod:`lrface.cli.main`) prints the table (:func:`format_table`) or the
JSON, the notes on options that do not apply (:meth:`BenchmarkConfig.ignored_options`)
and the paths written.

The ``lrface benchmark`` options are generated from :class:`BenchmarkConfig`'s fields
(:mod:`lrface.argconfig`): one source of defaults and help text.

Probe conditions (lfw and folder): ``degrade`` (``--degrade clean|realistic``) and
``probe_crop`` (``--probe-crop aligned|box``; see :mod:`lrface.faces.degrade`); the condition is
in the caption above the table, in ``description.condition`` and in every result entry
(``degrade``, ``probe_crop``).
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrface import __version__
from lrface.argconfig import add_arguments, arg, flag_of, option_fields
from lrface.errors import DatasetError, LrfaceError
from lrface.io.fileio import jsonable, write_json_atomic
from lrface.io.outputs import check_output

if TYPE_CHECKING:
    import argparse

    from lrface.models.interface import Embedder, HrEmbedders

PROTOCOLS = ("lfw", "tinyface", "scface", "folder")
DEFAULT_MODEL = "mobilefacenet-arcface"
DEFAULT_MODES = ("hr-hr", "hr-lr", "lr-lr")


def parse_list(text: str | None, what: str) -> list[str]:
    """``"a,b , c"`` -> ``["a", "b", "c"]``; empty -> :class:`LrfaceError`."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise LrfaceError(f"{what}: empty list")
    return items


def parse_sizes(text: str) -> list[int]:
    """``"8,12,16"`` -> ``[8, 12, 16]``; each size must be an integer in 4..1024."""
    out = []
    for t in parse_list(text, "--sizes"):
        try:
            s = int(t)
        except ValueError:
            raise LrfaceError(f"--sizes: {t!r} is not an integer") from None
        if not 4 <= s <= 1024:
            raise LrfaceError(f"--sizes: {s} is outside 4..1024 pixels")
        out.append(s)
    return out


def parse_ids(text: str) -> list[int]:
    """Subject ids from ``"1,2,3"`` or ``"@file"`` (ids separated by commas/whitespace)."""
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise LrfaceError(f"{path}: cannot read subject list ({exc.strerror})") from None
    out = []
    for t in text.replace(",", " ").split():
        try:
            out.append(int(t))
        except ValueError:
            raise LrfaceError(f"--exclude-subjects: {t!r} is not an integer id") from None
    return out


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of a protocol result: one row per ``row`` label, the columns in
    order of first appearance, cells as given by the entries."""
    rows: dict[str, dict[str, str]] = {}
    cols: dict[str, None] = {}
    for e in result["results"]:
        rows.setdefault(e["row"], {}).update(e["cells"])
        cols.update(dict.fromkeys(e["cells"]))
    header = ["model", *cols]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row, cells in rows.items():
        lines.append("| " + " | ".join([row, *(cells.get(c, "") for c in cols)]) + " |")
    return "\n".join([result.get("caption", ""), "", *lines])


def _model_names(text: str) -> tuple[str, ...]:
    return tuple(parse_list(text, "--model"))


def _mode_names(text: str) -> tuple[str, ...]:
    return tuple(parse_list(text, "--mode"))


def _size_list(text: str) -> tuple[int, ...]:
    return tuple(parse_sizes(text))


def _subject_ids(text: str) -> tuple[int, ...]:
    return tuple(parse_ids(text))


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark run.  Every field but ``command_line`` is also an ``lrface benchmark``
    option (its help text is the field's documentation); ``protocols`` in a field's
    metadata names the protocols it applies to (others ignore it).

    Library use: ``run_benchmark(BenchmarkConfig("lfw", "/data/lfw", sizes=(8, 16)))``.
    """

    protocol: str = field(metadata=arg("evaluation protocol", choices=PROTOCOLS))
    data: str = field(
        metadata=arg("dataset root in the protocol's official layout", metavar="PATH")
    )
    models: tuple[str, ...] = field(
        default=(DEFAULT_MODEL,),
        metadata=arg(
            f"models to evaluate (registry names or card paths; default {DEFAULT_MODEL})",
            flag="--model",
            metavar="NAME[,NAME...]",
            parse=_model_names,
        ),
    )
    precision: str | None = field(
        default=None,
        metadata=arg(
            "int8: evaluate each --model's statically quantized copy (NAME-int8 card); "
            "fp32: the float model; default: as named.  A student's HR side (--hr-model "
            "auto: its teacher) stays as named",
            choices=("int8", "fp32"),
        ),
    )
    hr_model: str = field(
        default="auto",
        metadata=arg(
            "model for the HR side (LFW first image, gallery): 'auto' (default) = each "
            "student's teacher, the model itself otherwise (hr-hr stays model vs model); "
            "'self' = the model itself; or a model name",
            metavar="NAME",
        ),
    )
    sizes: tuple[int, ...] | None = field(
        default=None,
        metadata=arg(
            "LR sizes in pixels (lfw: 8,12,16,20,24,32; folder: 16,12)",
            metavar="S[,S...]",
            parse=_size_list,
            protocols=("lfw", "folder"),
        ),
    )
    modes: tuple[str, ...] = field(
        default=DEFAULT_MODES,
        metadata=arg(
            "lfw modes: hr-hr, hr-lr, lr-lr (default all)",
            flag="--mode",
            metavar="MODE[,MODE...]",
            parse=_mode_names,
            protocols=("lfw",),
        ),
    )
    split: str = field(
        default="test",
        metadata=arg(
            "lfw split: test = folds 6-10 (default), all = 10 folds, val = 1-5",
            choices=("test", "all", "val"),
            protocols=("lfw",),
        ),
    )
    out: str | None = field(
        default=None,
        metadata=arg(
            "output directory for results.json and plots (default ./benchmark-<protocol>)",
            metavar="DIR",
        ),
    )
    json: bool = field(
        default=False,
        metadata=arg("print the results JSON to stdout instead of the table"),
    )
    plot: bool = field(default=False, metadata=arg("write ROC / CMC PNGs to --out"))
    detect: bool = field(
        default=True,
        metadata=arg(
            "scface/folder: images are pre-cut faces, only resize them",
            flag="--no-detect",
            protocols=("scface", "folder"),
        ),
    )
    model_dir: str | None = field(
        default=None,
        metadata=arg("extra directory searched first for model files", metavar="DIR"),
    )
    flip: bool = field(
        default=True,
        metadata=arg("do not fuse the embedding of the mirrored crop", flag="--no-flip"),
    )
    detector: str = field(
        default="scrfd-2.5g",
        metadata=arg("face detector for alignment (default scrfd-2.5g)", metavar="NAME"),
    )
    max_pairs_per_fold: int | None = field(
        default=None,
        metadata=arg(
            "lfw: quick run on the first N/2 same and N/2 different pairs of each fold",
            metavar="N",
            protocols=("lfw",),
        ),
    )
    max_distractors: int | None = field(
        default=None,
        metadata=arg(
            "tinyface: use only the first N distractors", metavar="N", protocols=("tinyface",)
        ),
    )
    exclude_subjects: tuple[int, ...] = field(
        default=(),
        metadata=arg(
            "scface: subject ids to leave out (comma list or @file)",
            metavar="IDS|@FILE",
            parse=_subject_ids,
            protocols=("scface",),
        ),
    )
    distractors: str | None = field(
        default=None,
        metadata=arg(
            "folder: images added to the gallery as distractors",
            metavar="DIR",
            protocols=("folder",),
        ),
    )
    nonmated_fraction: float = field(
        default=0.0,
        metadata=arg(
            "folder: fraction of identities left out of the gallery "
            "(their probes are non-mated, for DIR@FPIR)",
            metavar="F",
            protocols=("folder",),
        ),
    )
    degrade: str = field(
        default="clean",
        metadata=arg(
            "lfw/folder: what follows the reduction of a probe: 'clean' (default, area "
            "reduction only) or 'realistic' (Gaussian + motion blur, sensor noise, JPEG "
            "q30-70; each probe's draw fixed by its index, see lrface.faces.degrade)",
            metavar="KIND",
            protocols=("lfw", "folder"),
        ),
    )
    probe_crop: str = field(
        default="aligned",
        metadata=arg(
            "lfw/folder: how a probe is cut from its photo before the reduction: 'aligned' "
            "(default, 5-point template), 'box' (the detector's box made square, 1.1x, no "
            "landmarks) or 'given' (that box crop, reduced, then read as a pre-cut crop by "
            "the default --crop-mode auto: aligned by the landmarks found inside it, else as "
            "a box); the HR side stays aligned",
            metavar="KIND",
            protocols=("lfw", "folder"),
        ),
    )
    cache: bool = field(
        default=True,
        metadata=arg("neither read nor write cached embeddings", flag="--no-cache"),
    )
    progress: bool = field(default=True, metadata=arg("no progress bars", flag="--no-progress"))
    #: recorded in results.json (default: this process's command line)
    command_line: str | None = None

    @property
    def out_dir(self) -> Path:
        """Where results.json and the plots go (``out``, default ``./benchmark-<protocol>``)."""
        return Path(self.out or f"benchmark-{self.protocol}").expanduser()

    def ignored_options(self) -> list[str]:
        """Flags given a non-default value that do not apply to ``protocol`` (the run
        ignores them; the CLI says so)."""
        return [
            flag_of(f)
            for f in option_fields(BenchmarkConfig)
            if "protocols" in f.metadata
            and self.protocol not in f.metadata["protocols"]
            and getattr(self, f.name) != f.default
        ]


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lrface benchmark`` options (the fields of :class:`BenchmarkConfig`)."""
    add_arguments(parser, BenchmarkConfig)


def check_options(config: BenchmarkConfig) -> None:
    """Refuse bad option values with a one-line :class:`LrfaceError` before any model loads."""
    from lrface.eval.protocols.conditions import check_box_needs_detection, check_condition

    if config.protocol not in PROTOCOLS:
        raise LrfaceError(
            f"--protocol {config.protocol!r} is not known; choose one of {', '.join(PROTOCOLS)}"
        )
    check_condition(config.degrade, config.probe_crop)
    if config.protocol == "folder":
        check_box_needs_detection(config.probe_crop, config.detect)


def _check_layout(protocol: str, data: str) -> None:
    """Fail fast (before loading models) on a missing or wrong dataset."""
    if not Path(data).expanduser().exists():
        raise DatasetError(f"{data}: dataset path not found; pass --data with the {protocol} root")
    if protocol == "lfw":
        from lrface.datasets.lfw import LFW

        LFW(data)
    elif protocol == "tinyface":
        from lrface.eval.protocols.tinyface import find_layout

        find_layout(data)
    elif protocol == "scface":
        from lrface.eval.protocols.scface import scan_scface

        scan_scface(data)
    else:
        from lrface.eval.protocols.folder import scan_folder

        scan_folder(data)


def _run_options(config: BenchmarkConfig) -> dict[str, Any]:
    """The options every evaluator takes: progress bars and the embedding cache."""
    return {"progress": config.progress, "use_cache": config.cache}


def _run_lfw(
    config: BenchmarkConfig, embedders: Sequence[Embedder], hr: HrEmbedders
) -> dict[str, Any]:
    """:func:`lrface.eval.protocols.lfw.evaluate_lfw` with the options of ``config``."""
    from lrface.eval.protocols.lfw import DEFAULT_SIZES, evaluate_lfw

    return evaluate_lfw(
        embedders,
        config.data,
        modes=config.modes,
        sizes=config.sizes or DEFAULT_SIZES,
        split=config.split,
        hr_embedder=hr,
        max_pairs_per_fold=config.max_pairs_per_fold,
        detector=config.detector,
        degrade=config.degrade,
        probe_crop=config.probe_crop,
        **_run_options(config),
    )


def _run_tinyface(
    config: BenchmarkConfig, embedders: Sequence[Embedder], hr: HrEmbedders
) -> dict[str, Any]:
    """:func:`lrface.eval.protocols.tinyface.evaluate_tinyface` with the options of
    ``config``."""
    from lrface.eval.protocols.tinyface import evaluate_tinyface

    return evaluate_tinyface(
        embedders,
        config.data,
        hr_embedder=hr,
        max_distractors=config.max_distractors,
        **_run_options(config),
    )


def _run_scface(
    config: BenchmarkConfig, embedders: Sequence[Embedder], hr: HrEmbedders
) -> dict[str, Any]:
    """:func:`lrface.eval.protocols.scface.evaluate_scface` with the options of ``config``."""
    from lrface.eval.protocols.scface import evaluate_scface

    return evaluate_scface(
        embedders,
        config.data,
        hr_embedder=hr,
        no_detect=not config.detect,
        exclude_subjects=config.exclude_subjects,
        detector=config.detector,
        **_run_options(config),
    )


def _run_folder(
    config: BenchmarkConfig, embedders: Sequence[Embedder], hr: HrEmbedders
) -> dict[str, Any]:
    """:func:`lrface.eval.protocols.folder.evaluate_folder` with the options of ``config``."""
    from lrface.eval.protocols.folder import FOLDER_SIZES, evaluate_folder

    return evaluate_folder(
        embedders,
        config.data,
        sizes=config.sizes or FOLDER_SIZES,
        hr_embedder=hr,
        distractors=config.distractors,
        nonmated_fraction=config.nonmated_fraction,
        no_detect=not config.detect,
        detector=config.detector,
        degrade=config.degrade,
        probe_crop=config.probe_crop,
        **_run_options(config),
    )


#: The runner of each protocol of :data:`PROTOCOLS`.
_RUNNERS = {
    "lfw": _run_lfw,
    "tinyface": _run_tinyface,
    "scface": _run_scface,
    "folder": _run_folder,
}


def _run_protocol(
    config: BenchmarkConfig, embedders: Sequence[Embedder], hr: HrEmbedders
) -> dict[str, Any]:
    """The protocol's evaluator with the options that apply to it (``config.protocol`` is
    one of :data:`PROTOCOLS`, checked by :func:`check_options`)."""
    return _RUNNERS[config.protocol](config, embedders, hr)


def _process_command_line() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def resolve_hr_model(
    choice: str | None,
    embedders: Sequence[Embedder],
    protocol: str,
    flip: bool = True,
    model_dir: str | None = None,
) -> HrEmbedders:
    """``--hr-model``: ``auto`` -> {student: its teacher}, ``self`` -> None, else one model."""
    from lrface.models.loader import load_embedder

    if choice in (None, "", "auto"):
        hr: dict[str, Embedder] = {}
        for e in embedders:
            teacher = ((e.spec.card or {}).get("teacher") or {}).get("name")
            if teacher and protocol != "tinyface":
                hr[e.name] = load_embedder(teacher, flip=flip, model_dir=model_dir)
        return hr or None
    if choice == "self":
        return None
    return load_embedder(choice, flip=flip, model_dir=model_dir)


def run_benchmark(config: BenchmarkConfig) -> dict[str, Any]:
    """Run ``config.protocol`` for every model of ``config.models``; write and return the
    results.

    Returns the (strict-JSON) dict written to ``config.out_dir / "results.json"`` (with
    ``plot``, the ROC / CMC PNGs named in its ``plots`` are written beside it).  Prints
    nothing.  Raises :class:`LrfaceError` subclasses (one-line messages) for a wrong
    dataset, model or option, before any model loads where it can.
    """
    from lrface.models.loader import load_embedder

    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC)
    check_options(config)
    check_output(config.out_dir, "benchmark-dir")  # before any model loads or embeds
    _check_layout(config.protocol, config.data)
    flip, model_dir = config.flip, config.model_dir
    embedders = [
        load_embedder(n, flip=flip, model_dir=model_dir, precision=config.precision)
        for n in config.models
    ]
    # load_embedder is memoised: a model that is its own HR model is the same object.
    hr = resolve_hr_model(config.hr_model, embedders, config.protocol, flip, model_dir)
    result = _run_protocol(config, embedders, hr)
    out_dir = config.out_dir
    plots: list[str] = []
    if config.plot:
        from lrface.eval.plots import plot_results

        plots = [p.name for p in plot_results(result, out_dir)]
    out = {
        "lrface_version": __version__,
        "command": config.command_line or _process_command_line(),
        "utc_time": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t0, 2),
        **result,
        "plots": plots,
    }
    out = jsonable(out)
    write_json_atomic(out_dir / "results.json", out)
    return out
