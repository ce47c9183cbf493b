"""``lrface`` command line: a thin argparse layer over :mod:`lrface.api` and friends.

Exit status (every command):

* **0** success: the command did everything it was asked (``verify``: same person).
* **1** negative answer, only where a command has one: ``verify``: different people;
  ``detect``: no face found (a line on stderr says so; ``--json`` still prints
  ``"faces": []``).  ``identify`` has none: "unknown" is a per-probe answer, exit 0.
* **2** error: nothing was done, or a batch command failed on *every* input (one
  ``error: ...`` line on stderr naming the file and the fix, after the per-file
  ``failed: PATH: reason`` lines of a batch; never a traceback).  Bad option values are
  refused at parse time (argparse's usage line and message) or before any work starts.
* **3** partial batch failure (``embed``, ``gallery build``, ``identify``): some inputs
  failed (``failed: PATH: reason`` on stderr, one line each), the others succeeded and
  their output was written.
* **130** interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import LrfaceError

if TYPE_CHECKING:
    from .eval.benchmark import BenchmarkConfig
    from .models.interface import Embedder
    from .pipeline import CropOptions
    from .ray import RayEngine

log = logging.getLogger("lrface")


def finite_threshold(text: str) -> float:
    """argparse type for ``--threshold``: a finite cosine in [-1, 1]."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a cosine threshold in [-1, 1]")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text} is below {low}")
    return value


_CROP_NOTE = (
    "Crops: every model (the teacher and the lrface students) expects a face aligned to the "
    "5-point ArcFace template at 112x112 (the students: that crop, reduced)."
)
_WORKERS_HELP = (
    "decode/detect/align worker processes (default 2; 0 = none); started only for 64 or "
    "more images, fewer are prepared in this process"
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", help="extra directory searched first for model files")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and providers")


def _add_detect_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="inputs are pre-cut face crops: resize them, do not detect; they must be aligned "
        "to the 5-point ArcFace template like `lrface detect --save-crops` writes them (what "
        "every model expects), or they score like the 'box' rows of benchmarks/RESULTS.md",
    )
    p.add_argument(
        "--detector",
        default="auto",
        help="auto (default: scrfd-2.5g when installed, else the shipped yunet), scrfd-2.5g, "
        "scrfd-500m, scrfd-10g, yunet",
    )
    p.add_argument("--det-thresh", type=float, default=None, help="detection score threshold")
    p.add_argument(
        "--face-index",
        type=int,
        default=None,
        help="which face to use when several are found (0 = largest, the default)",
    )


def cmd_verify(a: argparse.Namespace) -> int:
    from .api import verify

    res = verify(
        a.image1,
        a.image2,
        model=a.model,
        threshold=a.threshold,
        detect=not a.no_detect,
        face_index=a.face_index,
        face_index1=a.face_index1,
        face_index2=a.face_index2,
        detector=a.detector,
        det_thresh=a.det_thresh,
    )
    if a.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        rel = ">=" if res.same else "<"
        verdict = "same person" if res.same else "different people"
        models = (
            f"model {res.models[0]}"
            if res.models[0] == res.models[1]
            else f"models {res.models[0]} (image 1), {res.models[1]} (image 2)"
        )
        print(
            f"{verdict}: similarity {res.similarity:.3f} {rel} threshold "
            f"{res.threshold:.3f} ({models})"
        )
        for k, im in enumerate(res.images, 1):
            if im.get("faces_found", 1) > 1:
                print(
                    f"note: {im['source']}: {im['faces_found']} faces found, used face "
                    f"{im['face_index']} (largest first; pick another with --face-index{k})",
                    file=sys.stderr,
                )
    return 0 if res.same else 1


def cmd_detect(a: argparse.Namespace) -> int:
    from .align import align_face
    from .detect import load_detector, resolve_detector
    from .fileio import atomic_write, check_writable
    from .pipeline import CropOptions, detect_faces

    CropOptions(detector=a.detector, det_thresh=a.det_thresh, size=a.size)  # validates
    if a.save_crops:
        check_writable(a.save_crops, "dir", "--save-crops directory")
    image, faces = detect_faces(a.image, a.detector, a.det_thresh)
    if a.save_crops:
        import cv2

        out = Path(a.save_crops)
        out.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(faces):
            _, buf = cv2.imencode(".png", align_face(image, f.landmarks, a.size))
            with atomic_write(out / f"{Path(a.image).stem}_face{i}.png") as fh:
                fh.write(buf.tobytes())
    if a.json:
        print(json.dumps({"image": a.image, "faces": [f.to_dict() for f in faces]}, indent=2))
    else:
        print(f"{a.image}: {len(faces)} face(s)")
        for i, f in enumerate(faces):
            d = f.to_dict()
            print(f"  [{i}] box {d['box']} score {d['score']:.3f}")
    if not faces:
        det = load_detector(a.detector, a.det_thresh)
        print(
            f"{a.image}: no face found (detector {resolve_detector(a.detector)}, threshold "
            f"{det.det_thresh:g}); if it shows a face, lower --det-thresh or try another "
            "--detector",
            file=sys.stderr,
        )
        return 1
    return 0


def _crop_options(a: argparse.Namespace) -> CropOptions:
    """The crop options of a command with ``_add_detect_opts`` (size: the model's, later)."""
    from .pipeline import CropOptions

    return CropOptions(
        detect=not a.no_detect,
        detector=a.detector,
        det_thresh=a.det_thresh,
        face_index=a.face_index,
    )


def _print_failures(failures: Sequence[tuple[str, str]]) -> None:
    for path, msg in failures:
        print(f"failed: {path}: {msg}", file=sys.stderr)


def _batch_status(n_ok: int, n_failed: int, what: str) -> int:
    """0 all done, 3 partial failure, 2 (with an ``error:`` line) when every input failed."""
    if n_failed and not n_ok:
        print(
            f"error: all {n_failed} {what} failed (reasons above); nothing was processed",
            file=sys.stderr,
        )
        return 2
    return 3 if n_failed else 0


def _ray_engine(a: argparse.Namespace, emb: Embedder) -> RayEngine:
    """A :class:`lrface.ray.RayEngine` for ``embed --engine ray`` (imports Ray only here)."""
    from .ray import RayEngine

    return RayEngine(
        emb,
        address=a.ray_address,
        actors=a.ray_actors,
        cpus_per_actor=a.ray_cpus_per_actor,
        gpus_per_actor=a.ray_gpus_per_actor,
        model_dir=a.model_dir,
    )


def cmd_embed(a: argparse.Namespace) -> int:
    from .batch_embed import collect_paths, embed_paths, load_embeddings, parse_shard, write_npz
    from .fileio import check_writable
    from .models.loader import load_embedder

    options = _crop_options(a)
    paths = collect_paths(a.inputs)
    if not paths:
        raise LrfaceError(
            f"{' '.join(a.inputs)}: no image files found; pass images, directories holding "
            "images, or .txt lists of paths"
        )
    shard_of = parse_shard(a.shard) if a.shard else None
    npz = a.out.endswith(".npz")
    check_writable(a.out, "file" if npz else "dir", "--out")
    emb = load_embedder(a.model, batch_size=a.batch_size)
    engine = _ray_engine(a, emb) if a.engine == "ray" else None  # closed below or at exit
    opts = {
        "engine": engine,
        "options": options,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "shard_size": a.shard_size,
        "progress": not a.quiet,
        "shard_of": shard_of,
    }
    if npz:
        # A single .npz: embed into a resumable work directory beside it, then pack.
        work = Path(a.out + ".work")
        summary = embed_paths(paths, emb, work, **opts)
        names, e, failures = load_embeddings(work)
        write_npz(a.out, names, e, failures)
        shutil.rmtree(work, ignore_errors=True)
        summary["out_dir"] = a.out
    else:
        summary = embed_paths(paths, emb, a.out, **opts)
        failures = load_embeddings(a.out)[2]
    if engine is not None:
        engine.close()
        summary.update(engine="ray", ray_startup_seconds=engine.startup_seconds)
    _print_failures(failures)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list | dict)}))
    return _batch_status(summary["n_embedded"], summary["n_failed"], "images")


def cmd_models(a: argparse.Namespace) -> int:
    from .models import registry

    if a.action == "list":
        rows: list[dict[str, Any]] = []
        for name, spec in sorted(registry.all_models().items()):
            path = registry.find(spec, a.model_dir)
            rows.append(
                {
                    "name": name,
                    "kind": spec.kind,
                    "found": path is not None,
                    "path": str(path) if path else None,
                    "license": spec.license,
                    "input": spec.input_size,
                    "dim": spec.embedding_size,
                    "threshold": spec.threshold,
                }
            )
        if a.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'name':24s} {'kind':10s} {'found':6s} {'license':52s} path")
            for r in rows:
                print(
                    f"{r['name']:24s} {r['kind']:10s} {'yes' if r['found'] else 'no':6s} "
                    f"{r['license'][:52]:52s} {r['path'] or '-'}"
                )
        return 0
    from .fetch import fetch_model

    if not a.names:
        raise LrfaceError(
            "models fetch: name the models to fetch, e.g. `lrface models fetch scrfd-10g`"
        )
    for name in a.names:
        path = fetch_model(name, progress=not a.quiet)
        print(f"{name}: {path}")
    return 0


def cmd_benchmark(a: argparse.Namespace) -> int:
    from .argconfig import from_namespace
    from .eval.benchmark import BenchmarkConfig, run_benchmark

    config = from_namespace(BenchmarkConfig, a)
    for flag in config.ignored_options():
        print(
            f"note: {flag} does not apply to the {config.protocol} protocol; ignored",
            file=sys.stderr,
        )
    print_benchmark(config, run_benchmark(config))
    return 0


def print_benchmark(config: BenchmarkConfig, result: dict[str, Any]) -> None:
    """Print a :func:`~lrface.eval.benchmark.run_benchmark` result: the table (or, with
    ``config.json``, the results JSON) on stdout, the files written on stderr."""
    from .eval.benchmark import format_table

    if config.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(format_table(result))
    plots = result.get("plots") or []
    print(
        f"wrote {config.out_dir / 'results.json'}"
        + (f" and {len(plots)} plot(s)" if plots else ""),
        file=sys.stderr,
    )


def cmd_distill(a: argparse.Namespace) -> int:
    from .distill.config import config_from_args

    cfg = config_from_args(a)  # --config FILE, overridden by the options given
    if a.prepare_only:
        from .distill.data import prepare_only

        print(json.dumps(prepare_only(cfg, progress=not a.quiet), indent=1))
        return 0
    from .distill.train import distill

    distill(cfg, resume=a.resume, progress=not a.quiet)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from .export import export_onnx
    from .fileio import check_writable

    if Path(a.onnx).suffix.lower() == ".json":
        raise LrfaceError(f"{a.onnx}: --onnx must not end in .json (the card is written there)")
    check_writable(a.onnx, "file", "--onnx")
    card_path = Path(a.onnx).with_suffix(".json")
    if card_path.is_dir():
        raise LrfaceError(
            f"{card_path}: is a directory, but the card goes there; choose another --onnx"
        )
    card = export_onnx(a.model, a.onnx, opset=a.opset, name=a.name)
    print(
        f"wrote {a.onnx} and {card_path} (max abs diff to torch "
        f"{card['export']['max_abs_diff']:.2e})"
    )
    return 0


def cmd_gallery(a: argparse.Namespace) -> int:
    from .fileio import check_writable
    from .gallery import build_gallery
    from .models.loader import load_embedder

    options = _crop_options(a)
    ivf = a.index != "exact"
    check_writable(a.out, "dir" if ivf else "file", "--out")  # before any embedding
    emb = load_embedder(a.model)
    gallery, failures = build_gallery(
        a.root,
        emb,
        aggregate=a.aggregate,
        progress=not a.quiet,
        options=options,
        workers=a.workers,
    )
    _print_failures(failures)
    if gallery.n_images == 0:
        raise LrfaceError(
            f"{a.root}: none of its {len(failures)} images could be enrolled (reasons above); "
            f"{a.out} was not written"
        )
    if ivf:  # per-image rows in parts, merged on disk (lrface.ivf)
        from .ivf import build_ivf, gallery_parts, model_meta

        built = build_ivf(
            a.out, gallery_parts(gallery, a.part_size), model_meta(gallery), gallery.threshold,
            kind=a.index, nlist=a.nlist, nprobe=a.nprobe, n_rows=gallery.n_images,
        )  # fmt: skip
        print(f"index: {built.index_description}", file=sys.stderr)
    else:
        gallery.save(a.out)
    print(
        f"enrolled {len(gallery.identities)} identities ({gallery.n_images} images) with "
        f"{emb.name} into {a.out}; {len(failures)} file(s) failed"
    )
    return _batch_status(gallery.n_images, len(failures), "images")


def cmd_identify(a: argparse.Namespace) -> int:
    import dataclasses

    from .batch_embed import expand_inputs
    from .ivf import open_gallery
    from .models.loader import load_embedder
    from .pipeline import prepare_many

    options = _crop_options(a)
    gallery = open_gallery(a.gallery)  # an .npz (exact search) or an IVF directory
    if hasattr(gallery, "index_description"):
        print(f"index: {gallery.index_description}", file=sys.stderr)
    emb = load_embedder(a.model or gallery.model_name)
    gallery.check_model(emb)
    options = dataclasses.replace(options, size=int(emb.input_size))
    thr = a.threshold if a.threshold is not None else emb.threshold
    # as in `lrface embed`; a missing probe is kept and fails when it is prepared
    paths, failures = expand_inputs(a.probes, must_exist=False)
    _print_failures(failures)
    results: list[dict] = []
    done = 0
    for chunk in prepare_many(paths, options, a.workers):
        chunk_paths = paths[done : done + len(chunk)]
        done += len(chunk)
        bad = [(p, r.error) for p, r in zip(chunk_paths, chunk) if r.crop is None]
        _print_failures(bad)
        failures.extend(bad)
        ok = [(p, r.crop) for p, r in zip(chunk_paths, chunk) if r.crop is not None]
        if not ok:
            continue
        found = gallery.identify(
            emb.embed_crops([c for _, c in ok]), top_k=a.top_k, threshold=thr, backend=a.backend
        )
        for (p, _), res in zip(ok, found):
            res["probe"] = p
            results.append(res)
            if not a.json:
                cands = ", ".join(f"{c['identity']} {c['score']:.3f}" for c in res["candidates"])
                print(f"{p}: {res['identity']} (score {res['score']:.3f}; top-{a.top_k}: {cands})")
    if a.json:
        print(json.dumps(results, indent=2))
    return _batch_status(len(results), len(failures), "probes")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lrface", description="Low-resolution face recognition.")
    p.add_argument("--version", action="version", version=f"lrface {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser(
        "verify",
        help="same person or not, for two images",
        description="Same person or not, for two images. " + _CROP_NOTE + " verify aligns "
        "every face, small ones included, with the detector's 5 landmarks: on LFW at 16 px "
        "lrface-mbf scores 97.4 % on aligned probes and 82.7 % on detector-box crops "
        '(benchmarks/RESULTS.md). --json gives each face\'s crop ("crop": "aligned-5pt"; '
        '"given" with --no-detect).',
    )
    v.add_argument("image1")
    v.add_argument("image2")
    v.add_argument(
        "--model",
        default=None,
        help="one recogniser for both faces (default: per face, the lrface-mbf student for "
        "faces under 64 px, the teacher above)",
    )
    v.add_argument(
        "--threshold",
        type=finite_threshold,
        default=None,
        help="cosine threshold in [-1, 1] (default: the calibrated one for the models used)",
    )
    v.add_argument(
        "--face-index1", type=int, default=None, help="face to use in image1 (0 = largest)"
    )
    v.add_argument(
        "--face-index2", type=int, default=None, help="face to use in image2 (0 = largest)"
    )
    v.add_argument("--json", action="store_true")
    _add_detect_opts(v)
    _add_common(v)
    v.set_defaults(func=cmd_verify)

    d = sub.add_parser("detect", help="detect faces: boxes, landmarks, scores")
    d.add_argument("image")
    d.add_argument("--json", action="store_true")
    d.add_argument("--save-crops", metavar="DIR", help="write aligned crops here")
    d.add_argument(
        "--size", type=_positive_int, default=112, help="side of saved crops (default 112)"
    )
    d.add_argument(
        "--detector",
        default="auto",
        help="auto (default: scrfd-2.5g when installed, else the shipped yunet), scrfd-2.5g, "
        "scrfd-500m, scrfd-10g, yunet",
    )
    d.add_argument("--det-thresh", type=float, default=None)
    _add_common(d)
    d.set_defaults(func=cmd_detect)

    e = sub.add_parser(
        "embed",
        help="embed many images (resumable)",
        description="Embed many images (resumable). " + _CROP_NOTE + " Detected faces, small "
        "ones included, are aligned with their 5 landmarks; --no-detect crops must already be "
        "aligned that way, or they score like the 'box' rows of benchmarks/RESULTS.md.",
    )
    e.add_argument("inputs", nargs="+", help="images, directories, or .txt lists of paths")
    e.add_argument(
        "--out", required=True, help="FILE.npz, or a directory for a resumable sharded output"
    )
    e.add_argument("--model", default="lrface-mbf")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--workers", type=_non_negative_int, default=2, help=_WORKERS_HELP)
    e.add_argument(
        "--shard",
        help="i/N (i from 0): only shard i of N of the path list; "
        "merge shard outputs with lrface.batch_embed.merge_outputs",
    )
    e.add_argument("--shard-size", type=int, default=1024, help="files per output shard")
    e.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local (default: this process and --workers) or ray (shards on Ray actors; "
        'needs pip install "lrface[ray]"; same output files)',
    )
    e.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to use (auto or host:port; never stopped by lrface); default: "
        "start a local one for this run",
    )
    e.add_argument(
        "--ray-actors",
        type=_positive_int,
        default=None,
        help="Ray actors (default: as many as fit without reserving every CPU)",
    )
    e.add_argument(
        "--ray-cpus-per-actor",
        type=float,
        default=1.0,
        help="logical CPUs per actor, may be fractional (default 1)",
    )
    e.add_argument(
        "--ray-gpus-per-actor", type=float, default=0.0, help="GPUs per actor (default 0)"
    )
    e.add_argument("--quiet", action="store_true")
    _add_detect_opts(e)
    _add_common(e)
    e.set_defaults(func=cmd_embed)

    m = sub.add_parser("models", help="list or fetch models")
    m.add_argument(
        "action", nargs="?", default="list", choices=["list", "fetch"], help="default: list"
    )
    m.add_argument("names", nargs="*")
    m.add_argument("--json", action="store_true")
    m.add_argument("--quiet", action="store_true")
    _add_common(m)
    m.set_defaults(func=cmd_models)

    b = sub.add_parser("benchmark", help="verification/identification benchmarks")
    from .eval.benchmark import add_benchmark_arguments

    add_benchmark_arguments(b)  # the fields of BenchmarkConfig
    b.add_argument("-v", "--verbose", action="store_true")
    b.set_defaults(func=cmd_benchmark)

    t = sub.add_parser("distill", help="distil a low-resolution student from the teacher")
    from .distill.config import add_distill_arguments

    add_distill_arguments(t)  # --config and the fields of DistillConfig
    t.add_argument("--resume", default=None, help="checkpoint (last.pt) to continue from")
    t.add_argument(
        "--prepare-only",
        action="store_true",
        help="detect, align, embed with the teacher and guard every source (all cached), "
        "write OUT/data_report.json, print the data summary, and stop before training",
    )
    t.add_argument("--quiet", action="store_true")
    _add_common(t)
    t.set_defaults(func=cmd_distill)

    x = sub.add_parser("export", help="export a student to ONNX with its card")
    x.add_argument("--model", required=True)
    x.add_argument("--onnx", required=True)
    x.add_argument(
        "--name", default=None, help="model name in the new card (default: the source's + -onnx)"
    )
    x.add_argument("--opset", type=int, default=17)
    _add_common(x)
    x.set_defaults(func=cmd_export)

    g = sub.add_parser("gallery", help="build a gallery from ROOT/<identity>/<images>")
    g.add_argument("action", choices=["build"])
    g.add_argument("root")
    g.add_argument("--model", default="mobilefacenet-arcface")
    g.add_argument("--out", required=True)
    g.add_argument("--aggregate", default="mean", choices=["mean", "all"])
    g.add_argument(
        "--index",
        default="exact",
        choices=["exact", "ivf-sq8", "ivf-pq"],
        help="exact (default: one .npz, exact search) or an on-disk FAISS IVF directory for "
        "galleries that do not fit in RAM (identities ranked by their best image; "
        "approximate: see the recall in RESULTS.md)",
    )
    g.add_argument(
        "--part-size", type=_positive_int, default=100_000, help="IVF: rows per part file"
    )
    g.add_argument("--nlist", type=_positive_int, default=None, help="IVF: inverted lists")
    g.add_argument(
        "--nprobe", type=_positive_int, default=None, help="IVF: lists visited per probe"
    )
    g.add_argument("--workers", type=_non_negative_int, default=2, help=_WORKERS_HELP)
    g.add_argument("--quiet", action="store_true")
    _add_detect_opts(g)
    _add_common(g)
    g.set_defaults(func=cmd_gallery)

    i = sub.add_parser("identify", help="search probes in a gallery")
    i.add_argument("probes", nargs="+")
    i.add_argument("--gallery", required=True)
    i.add_argument(
        "--model",
        default=None,
        help="probe model (default: the gallery's; a student "
        "in the teacher's space may search a teacher gallery)",
    )
    i.add_argument("--top-k", type=_positive_int, default=5)
    i.add_argument(
        "--threshold",
        type=finite_threshold,
        default=None,
        help="cosine threshold in [-1, 1] (default: the model's)",
    )
    i.add_argument("--backend", default="auto", choices=["auto", "numpy", "faiss"])
    i.add_argument("--json", action="store_true")
    i.add_argument("--workers", type=_non_negative_int, default=2, help=_WORKERS_HELP)
    _add_detect_opts(i)
    _add_common(i)
    i.set_defaults(func=cmd_identify)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(a, "verbose", False) else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    saved = os.environ.get("LRFACE_MODEL_DIR")
    if getattr(a, "model_dir", None):
        os.environ["LRFACE_MODEL_DIR"] = a.model_dir
    try:
        return a.func(a)
    except LrfaceError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lrface ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if getattr(a, "model_dir", None):  # main() may run in-process (tests, notebooks)
            if saved is None:
                os.environ.pop("LRFACE_MODEL_DIR", None)
            else:
                os.environ["LRFACE_MODEL_DIR"] = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
