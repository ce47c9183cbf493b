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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .argconfig import add_arguments, from_namespace
from .cli_options import (
    EMBED_DESCRIPTION,
    VERIFY_DESCRIPTION,
    AdaptOptions,
    BenchmarkOptions,
    DetectOptions,
    DistillOptions,
    EmbedOptions,
    ExportOptions,
    GalleryBuildOptions,
    IdentifyOptions,
    ModelsOptions,
    VerifyOptions,
)
from .errors import LrfaceError

if TYPE_CHECKING:
    from .eval.benchmark import BenchmarkConfig
    from .models.interface import Embedder
    from .ray import RayEngine

log = logging.getLogger("lrface")


def cmd_verify(a: VerifyOptions) -> int:
    from .api import verify

    res = verify(
        a.image1,
        a.image2,
        model=a.model,
        threshold=a.threshold,
        detect=a.detect,
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


def cmd_detect(a: DetectOptions) -> int:
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


def _ray_engine(a: EmbedOptions, emb: Embedder) -> RayEngine:
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


def cmd_embed(a: EmbedOptions) -> int:
    from .batch_embed import collect_paths, parse_shard
    from .fileio import check_writable
    from .models.loader import load_embedder

    options = a.crop_options()
    paths = collect_paths(a.inputs)
    if not paths:
        raise LrfaceError(
            f"{' '.join(a.inputs)}: no image files found; pass images, directories holding "
            "images, or .txt lists of paths"
        )
    shard_of = parse_shard(a.shard) if a.shard else None
    check_writable(a.out, "file" if a.out.endswith(".npz") else "dir", "--out")
    emb = load_embedder(a.model, batch_size=a.batch_size)
    engine = _ray_engine(a, emb) if a.engine == "ray" else None  # closed below or at exit
    opts: dict[str, Any] = {
        "engine": engine,
        "options": options,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "shard_size": a.shard_size,
        "progress": not a.quiet,
        "shard_of": shard_of,
    }
    summary, failures = _embed_to(a.out, paths, emb, opts)
    if engine is not None:
        engine.close()
        summary.update(engine="ray", ray_startup_seconds=engine.startup_seconds)
    _print_failures(failures)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list | dict)}))
    return _batch_status(summary["n_embedded"], summary["n_failed"], "images")


def _embed_to(
    out: str, paths: list[str], emb: Embedder, opts: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``(summary, failures)`` of embedding ``paths`` into ``out``: a resumable directory,
    or a single ``.npz`` (embedded into ``out + ".work"`` beside it, then packed with the
    model and settings as ``meta``, and the work directory removed)."""
    from .batch_embed import embed_paths, load_embeddings, output_meta, write_npz

    if not out.endswith(".npz"):
        summary = embed_paths(paths, emb, out, **opts)
        return summary, load_embeddings(out)[2]
    work = Path(out + ".work")
    summary = embed_paths(paths, emb, work, **opts)
    names, e, failures = load_embeddings(work)
    write_npz(out, names, e, failures, meta=output_meta(work))
    shutil.rmtree(work, ignore_errors=True)
    summary["out_dir"] = out
    return summary, failures


def cmd_models(a: ModelsOptions) -> int:
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


def cmd_benchmark(a: BenchmarkOptions) -> int:
    from .eval.benchmark import run_benchmark

    config = a.config
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


def cmd_distill(a: DistillOptions) -> int:
    cfg = a.recipe  # --config FILE, overridden by the options given
    if a.prepare_only:
        from .distill.data import prepare_only

        print(json.dumps(prepare_only(cfg, progress=not a.quiet), indent=1))
        return 0
    from .distill.train import distill

    distill(cfg, resume=a.resume, progress=not a.quiet)
    return 0


def cmd_adapt(a: AdaptOptions) -> int:
    from .adapt import adapt

    card = adapt(a.data, a.model, a.out, progress=not a.quiet)
    out = Path(a.out) / f"{card['name']}.json"
    print(json.dumps({"card": str(out), "faces": card["adapted"]["faces"]}))
    return 0


def cmd_export(a: ExportOptions) -> int:
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


def cmd_gallery(a: GalleryBuildOptions) -> int:
    from .fileio import check_writable
    from .gallery import build_gallery
    from .models.loader import load_embedder

    options = a.crop_options()
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


def cmd_identify(a: IdentifyOptions) -> int:
    import dataclasses

    from .batch_embed import expand_inputs
    from .ivf import open_gallery
    from .models.loader import load_embedder
    from .pipeline import prepare_many

    options = a.crop_options()
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


#: subcommand -> (help, options dataclass (lrface.cli_options), handler, description)
COMMANDS: dict[str, tuple[str, type, Callable[[Any], int], str | None]] = {
    "verify": ("same person or not, for two images", VerifyOptions, cmd_verify,
               VERIFY_DESCRIPTION),
    "detect": ("detect faces: boxes, landmarks, scores", DetectOptions, cmd_detect, None),
    "embed": ("embed many images (resumable)", EmbedOptions, cmd_embed, EMBED_DESCRIPTION),
    "models": ("list or fetch models", ModelsOptions, cmd_models, None),
    "benchmark": ("verification/identification benchmarks", BenchmarkOptions, cmd_benchmark,
                  None),
    "distill": ("distil a low-resolution student from the teacher", DistillOptions,
                cmd_distill, None),
    "adapt": ("adapt a student to one camera's unlabelled faces", AdaptOptions, cmd_adapt,
              None),
    "export": ("export a student to ONNX with its card", ExportOptions, cmd_export, None),
    "gallery": ("build a gallery from ROOT/<identity>/<images>", GalleryBuildOptions,
                cmd_gallery, None),
    "identify": ("search probes in a gallery", IdentifyOptions, cmd_identify, None),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``lrface`` parser: one subcommand per :data:`COMMANDS` row, its options generated
    from the row's dataclass (:func:`lrface.argconfig.add_arguments`)."""
    p = argparse.ArgumentParser(prog="lrface", description="Low-resolution face recognition.")
    p.add_argument("--version", action="version", version=f"lrface {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (help, options, handler, description) in COMMANDS.items():
        s = sub.add_parser(name, help=help, description=description)
        add_arguments(s, options)
        s.set_defaults(options=options, handler=handler)
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
        return a.handler(from_namespace(a.options, a))  # parse= options raise LrfaceError
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
