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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrface import __version__
from lrface.argconfig import add_arguments, arg, flag_of, option_fields
from lrface.errors import DatasetError, LrfaceError
from lrface.io.fileio import jsonable, write_json_atomic
from lrface.io.outputs import check_output
from lrface.models.defaults import DEFAULTS

if TYPE_CHECKING:
    import argparse

    from lrface.models.interface import Embedder, HrEmbedders

DEFAULT_MODEL = DEFAULTS.teacher
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


# ---------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol of ``lrface benchmark``: everything the CLI and
    :func:`run_benchmark` know of it.

    ``name``: the ``--protocol`` value.  ``check_layout(data)``: raise
    :class:`DatasetError` (one line) unless ``data`` is the protocol's dataset root, before
    any model loads.  ``run(config, embedders, hr)``: the results dict of the protocol's
    evaluator for ``config`` (:class:`BenchmarkConfig`), the models and their HR side.
    ``options``: the :class:`BenchmarkConfig` fields that only some protocols take and
    this one does (a protocol-specific option given to another protocol is noted as
    ignored).  ``check(config)``: optional checks of option combinations.
    """

    name: str
    check_layout: Callable[[str], object]
    run: Callable[[BenchmarkConfig, Sequence[Embedder], HrEmbedders], dict[str, Any]]
    options: tuple[str, ...] = ()
    check: Callable[[BenchmarkConfig], None] | None = None


def _run_options(config: BenchmarkConfig) -> dict[str, Any]:
    """The options every evaluator takes: progress bars and the embedding cache."""
    return {"progress": config.progress, "use_cache": config.cache}


def _lfw_layout(data: str) -> object:
    from lrface.datasets.lfw import LFW

    return LFW(data)


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


def _tinyface_layout(data: str) -> object:
    from lrface.eval.protocols.tinyface import find_layout

    return find_layout(data)


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


def _scface_layout(data: str) -> object:
    from lrface.eval.protocols.scface import scan_scface

    return scan_scface(data)


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


def _folder_layout(data: str) -> object:
    from lrface.eval.protocols.folder import scan_folder

    return scan_folder(data)


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


def _check_folder(config: BenchmarkConfig) -> None:
    """Box probes are cut around a detected face: ``--probe-crop box`` needs detection."""
    from lrface.eval.protocols.conditions import check_box_needs_detection

    check_box_needs_detection(config.probe_crop, config.detect)


#: Every protocol of ``lrface benchmark``, by name: the one table the CLI reads (its
#: ``--protocol`` choices, the options that apply, the layout check and the evaluator).
PROTOCOL_TABLE: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "lfw",
            _lfw_layout,
            _run_lfw,
            options=(
                "sizes", "modes", "split", "max_pairs_per_fold", "degrade", "probe_crop"
            ),
        ),
        Protocol("tinyface", _tinyface_layout, _run_tinyface, options=("max_distractors",)),
        Protocol("scface", _scface_layout, _run_scface, options=("detect", "exclude_subjects")),
        Protocol(
            "folder",
            _folder_layout,
            _run_folder,
            options=(
                "sizes", "detect", "distractors", "nonmated_fraction", "degrade", "probe_crop"
            ),
            check=_check_folder,
        ),
    )
}  # fmt: skip
#: The protocol names (``--protocol`` choices), in table order.
PROTOCOLS = tuple(PROTOCOL_TABLE)
#: The options that only some protocols take (see :attr:`Protocol.options`).
_PROTOCOL_OPTIONS = frozenset(o for p in PROTOCOL_TABLE.values() for o in p.options)


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
    option (its help text is the field's documentation); the options that only some
    protocols take are named by each protocol (:attr:`Protocol.options`; others ignore
    them).

    Library use: ``run_benchmark(BenchmarkConfig("lfw", "/data/lfw", sizes=(8, 16)))``.
    """

    protocol: str = field(metadata=arg("evaluation protocol", choices=PROTOCOLS))
    data: str = field(
        metadata=arg("dataset root in the protocol's official layout", metavar="PATH")
    )
    models: tuple[str, ...] = field(
        default=(DEFAULT_MODEL,),
        metadata=arg(
            f"models to evaluate (registry names or card paths; default {DEFAULT_MODEL}); "
            "'auto' (lfw, --probe-crop given, --mode hr-lr): each probe through the default "
            "routing of pre-cut crops, as embed/verify/identify read them without --model",
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
        ),
    )
    modes: tuple[str, ...] = field(
        default=DEFAULT_MODES,
        metadata=arg(
            "lfw modes: hr-hr, hr-lr, lr-lr (default all)",
            flag="--mode",
            metavar="MODE[,MODE...]",
            parse=_mode_names,
        ),
    )
    split: str = field(
        default="test",
        metadata=arg(
            "lfw split: test = folds 6-10 (default), all = 10 folds, val = 1-5",
            choices=("test", "all", "val"),
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
        default=DEFAULTS.benchmark_detector,
        metadata=arg(
            f"face detector for alignment (default {DEFAULTS.benchmark_detector})",
            metavar="NAME",
        ),
    )
    max_pairs_per_fold: int | None = field(
        default=None,
        metadata=arg(
            "lfw: quick run on the first N/2 same and N/2 different pairs of each fold",
            metavar="N",
        ),
    )
    max_distractors: int | None = field(
        default=None,
        metadata=arg(
            "tinyface: use only the first N distractors", metavar="N"
        ),
    )
    exclude_subjects: tuple[int, ...] = field(
        default=(),
        metadata=arg(
            "scface: subject ids to leave out (comma list or @file)",
            metavar="IDS|@FILE",
            parse=_subject_ids,
        ),
    )
    distractors: str | None = field(
        default=None,
        metadata=arg(
            "folder: images added to the gallery as distractors",
            metavar="DIR",
        ),
    )
    nonmated_fraction: float = field(
        default=0.0,
        metadata=arg(
            "folder: fraction of identities left out of the gallery "
            "(their probes are non-mated, for DIR@FPIR)",
            metavar="F",
        ),
    )
    degrade: str = field(
        default="clean",
        metadata=arg(
            "lfw/folder: what follows the reduction of a probe: 'clean' (default, area "
            "reduction only) or 'realistic' (Gaussian + motion blur, sensor noise, JPEG "
            "q30-70; each probe's draw fixed by its index, see lrface.faces.degrade)",
            metavar="KIND",
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
        protocol = PROTOCOL_TABLE.get(self.protocol)
        applies = protocol.options if protocol else ()
        return [
            flag_of(f)
            for f in option_fields(BenchmarkConfig)
            if f.name in _PROTOCOL_OPTIONS
            and f.name not in applies
            and getattr(self, f.name) != f.default
        ]


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lrface benchmark`` options (the fields of :class:`BenchmarkConfig`)."""
    add_arguments(parser, BenchmarkConfig)


def check_options(config: BenchmarkConfig) -> None:
    """Refuse bad option values with a one-line :class:`LrfaceError` before any model loads."""
    from lrface.eval.protocols.conditions import check_condition

    protocol = PROTOCOL_TABLE.get(config.protocol)
    if protocol is None:
        raise LrfaceError(
            f"--protocol {config.protocol!r} is not known; choose one of {', '.join(PROTOCOLS)}"
        )
    check_condition(config.degrade, config.probe_crop)
    if protocol.check is not None:
        protocol.check(config)


def check_layout(protocol: Protocol, data: str) -> None:
    """Fail fast (before loading models) on a missing or wrong dataset."""
    if not Path(data).expanduser().exists():
        raise DatasetError(
            f"{data}: dataset path not found; pass --data with the {protocol.name} root"
        )
    protocol.check_layout(data)


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
    from lrface.eval.protocols.routed import ROUTED, RoutedModel
    from lrface.models.loader import load_embedder

    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC)
    check_options(config)
    check_output(config.out_dir, "benchmark-dir")  # before any model loads or embeds
    protocol = PROTOCOL_TABLE[config.protocol]  # known: check_options
    check_layout(protocol, config.data)
    flip, model_dir = config.flip, config.model_dir
    embedders = [
        RoutedModel(flip, config.precision)
        if n == ROUTED
        else load_embedder(n, flip=flip, model_dir=model_dir, precision=config.precision)
        for n in config.models
    ]
    # load_embedder is memoised: a model that is its own HR model is the same object.
    hr = resolve_hr_model(config.hr_model, embedders, config.protocol, flip, model_dir)
    result = protocol.run(config, embedders, hr)
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
