"""``lrface`` command line: a thin argparse layer over :mod:`lrface.api` and friends.

Exit status (every command):

* **0** success: the command did everything it was asked (``verify``: same person).
* **1** negative answer, only where a command has one: ``verify``: different people;
  ``detect``: no face found (a line on stderr says so; ``--json`` still prints
  ``"faces": []``).  ``identify`` has none: "unknown" is a per-probe answer, exit 0.
* **2** error: nothing was done, or a batch command failed on *every* input (one
  ``error: ...`` line on stderr naming the file and the fix, after the per-file
  ``failed: PATH: reason`` lines of a batch; never a traceback).  An ``OSError`` on a
  path (disk full, name too long, a file where a directory should be, no permission) is
  such an error too (:func:`lrface.errors.os_error_message`).  Bad option values are
  refused at parse time (argparse's usage line and message) or before any work starts.
* **3** partial batch failure (``embed``, ``gallery build``, ``identify``): some inputs
  failed (``failed: PATH: reason`` on stderr, one line each), the others succeeded and
  their output was written.
* **130** interrupted (Ctrl-C).
* **143** terminated (SIGTERM, as ``kill`` or a job scheduler sends it): worker processes
  are stopped, ``embed --out DIR`` keeps every finished shard (rerun the same command to
  resume), nothing half-written is left; one ``terminated`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrface import __version__
from lrface.argconfig import add_arguments, from_namespace
from lrface.cli.options import (
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
    WatchOptions,
)
from lrface.errors import LrfaceError, Terminated, os_error_message
from lrface.serve.options import ServeOptions

if TYPE_CHECKING:
    from lrface.batch.ray_engine import RayEngine
    from lrface.eval.benchmark import BenchmarkConfig
    from lrface.faces.routing import ModelRouter
    from lrface.models.interface import Embedder

log = logging.getLogger("lrface")


def cmd_verify(a: VerifyOptions) -> int:
    from lrface.api import verify

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
        precision=a.precision,
        crop_mode=a.crop_mode,
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
    from lrface.faces.align import align_face
    from lrface.faces.detect import load_detector, resolve_detector
    from lrface.faces.pipeline import CropOptions, detect_faces
    from lrface.io.fileio import atomic_write, check_writable
    from lrface.io.outputs import check_crop_targets

    CropOptions(detector=a.detector, det_thresh=a.det_thresh, size=a.size)  # validates
    if a.save_crops:
        check_writable(a.save_crops, "dir", "--save-crops directory")
    image, found = detect_faces(a.image, a.detector, a.det_thresh)
    faces = found.faces
    if a.save_crops:
        import cv2

        out = Path(a.save_crops)
        targets = [out / f"{Path(a.image).stem}_face{i}.png" for i in range(len(faces))]
        check_crop_targets(targets, a.size)
        out.mkdir(parents=True, exist_ok=True)
        for target, f in zip(targets, faces):
            _, buf = cv2.imencode(".png", align_face(image, f.landmarks, a.size))
            with atomic_write(target) as fh:
                fh.write(buf.tobytes())
    if a.json:
        rows = [{**f.to_dict(), **found.to_dict()} for f in faces]
        print(json.dumps({"image": a.image, "faces": rows}, indent=2))
    else:
        how = f" (pass {found.found_by}, {found.detector})" if faces else ""
        print(f"{a.image}: {len(faces)} face(s){how}")
        for i, f in enumerate(faces):
            d = f.to_dict()
            print(f"  [{i}] box {d['box']} score {d['score']:.3f}")
    if not faces:
        det = load_detector(a.detector, a.det_thresh)
        print(
            f"{a.image}: no face found (detector {resolve_detector(a.detector)}, threshold "
            f"{det.det_thresh:g}; passes tried: {', '.join(found.tried)}); if it shows a "
            "face, lower --det-thresh or try another --detector",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_failures(failures: Sequence[tuple[str, str]]) -> None:
    """``failed: PATH: reason`` per failure, one line each (names escaped: path_text)."""
    from lrface.io.pathnames import path_text

    for path, msg in failures:
        print(f"failed: {path_text(path)}: {path_text(msg)}", file=sys.stderr)


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
    """A :class:`lrface.batch.ray_engine.RayEngine` for ``embed --engine ray`` (imports Ray only
    here)."""
    from lrface.batch.ray_engine import RayEngine

    return RayEngine(
        emb,
        address=a.ray_address,
        actors=a.ray_actors,
        cpus_per_actor=a.ray_cpus_per_actor,
        gpus_per_actor=a.ray_gpus_per_actor,
        model_dir=a.model_dir,
    )


def cmd_embed(a: EmbedOptions) -> int:
    from lrface.batch.embed import collect_paths, parse_shard
    from lrface.faces.routing import ModelRouter
    from lrface.io.outputs import check_output

    options = a.crop_options()
    check_output(a.out, "embeddings" if a.out.endswith(".npz") else "embeddings-dir")
    paths = collect_paths(a.inputs)
    if not paths:
        raise LrfaceError(
            f"{' '.join(a.inputs)}: no image files found; pass images, directories holding "
            "images, or .txt lists of paths"
        )
    shard_of = parse_shard(a.shard) if a.shard else None
    if a.engine == "ray" and a.model is None:
        raise LrfaceError(
            "--engine ray embeds every face with one model: pass --model (e.g. --model "
            "lrface-mbf); per-face model choice runs with --engine local"
        )
    emb = ModelRouter(a.model, batch_size=a.batch_size, precision=a.precision)
    engine = _ray_engine(a, emb.embedder(a.model)) if a.model and a.engine == "ray" else None
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
    out: str, paths: list[str], emb: ModelRouter, opts: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``(summary, failures)`` of embedding ``paths`` into ``out``: a resumable directory,
    or a single ``.npz`` (embedded into ``out + ".work"`` beside it, then packed with the
    model and settings as ``meta`` and each face's model and crop, and the work directory
    removed)."""
    from lrface.batch.embed import (
        embed_paths,
        load_embeddings,
        load_face_info,
        output_meta,
        write_npz,
    )

    if not out.endswith(".npz"):
        summary = embed_paths(paths, emb, out, **opts)
        return summary, load_embeddings(out)[2]
    work = Path(out + ".work")
    summary = embed_paths(paths, emb, work, **opts)
    names, e, failures = load_embeddings(work)
    faces = load_face_info(work)
    forced = {"model": emb.forced or "", "crop": ""}  # shards of an engine record none
    rows = [faces.get(n, forced) for n in names]
    write_npz(out, names, e, failures, meta=output_meta(work), faces=rows)
    shutil.rmtree(work, ignore_errors=True)
    summary["out_dir"] = out
    return summary, failures


def cmd_models(a: ModelsOptions) -> int:
    from lrface.models import registry

    if a.action == "list":
        rows = registry.model_rows(a.model_dir)
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
    from lrface.models.fetch import fetch_model

    if not a.names:
        raise LrfaceError(
            "models fetch: name the models to fetch, e.g. `lrface models fetch scrfd-10g`"
        )
    for name in a.names:
        path = fetch_model(name, progress=not a.quiet)
        print(f"{name}: {path}")
    return 0


def cmd_benchmark(a: BenchmarkOptions) -> int:
    from lrface.eval.benchmark import run_benchmark

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
    from lrface.eval.benchmark import format_table

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


def _require_torch(command: str) -> None:
    """One error line, before any work, when ``lrface COMMAND`` (distill, adapt, export:
    the training side) runs where torch is not installed (inference never needs it)."""
    import importlib.util

    from lrface.models.loader import TRAIN_EXTRA

    if importlib.util.find_spec("torch") is None:
        raise LrfaceError(
            f"lrface {command} needs torch (training and export only), which is not "
            f"installed: {TRAIN_EXTRA} torch==2.13.0 (or any torch >= 2.1)"
        )


def cmd_distill(a: DistillOptions) -> int:
    from lrface.io.outputs import check_output

    cfg = a.recipe  # --config FILE, overridden by the options given
    if cfg.out:
        check_output(cfg.out, "distill-dir")  # never into an unrelated non-empty directory
    if a.prepare_only:
        from lrface.distill.data import prepare_only

        print(json.dumps(prepare_only(cfg, progress=not a.quiet), indent=1))
        return 0
    _require_torch("distill")
    from lrface.distill.train import distill

    distill(cfg, resume=a.resume, progress=not a.quiet)
    return 0


def cmd_adapt(a: AdaptOptions) -> int:
    _require_torch("adapt")
    from lrface.distill.adapt import adapt
    from lrface.distill.camera_finetune import FinetuneSettings

    given = {k: v for k, v in (("steps", a.steps), ("batch_size", a.batch_size)) if v is not None}
    if a.method == "bn" and given:
        raise LrfaceError("--steps and --batch-size are used only by --method degradation-match")
    settings = FinetuneSettings(**given)
    card = adapt(a.data, a.model, a.out, progress=not a.quiet, method=a.method,
                 hr_data=a.hr_data, settings=settings)  # fmt: skip
    out = Path(a.out) / f"{card['name']}.json"
    res = {"card": str(out), "faces": card["adapted"]["faces"], "method": a.method}
    if "camera_estimate" in card["adapted"]:
        res["camera_estimate"] = card["adapted"]["camera_estimate"]["described"]
    print(json.dumps(res))
    return 0


def cmd_export(a: ExportOptions) -> int:
    from lrface.io.outputs import check_export_target
    from lrface.models.registry import PACKAGE_WEIGHTS

    if Path(a.onnx).suffix.lower() == ".json":
        raise LrfaceError(f"{a.onnx}: --onnx must not end in .json (the card is written there)")
    _require_torch("export")
    from lrface.models.export import export_onnx
    card_path = check_export_target(a.onnx, PACKAGE_WEIGHTS).with_suffix(".json")
    card = export_onnx(a.model, a.onnx, opset=a.opset, name=a.name)
    print(
        f"wrote {a.onnx} and {card_path} (max abs diff to torch "
        f"{card['export']['max_abs_diff']:.2e})"
    )
    return 0


def cmd_gallery(a: GalleryBuildOptions) -> int:
    from lrface.io.outputs import check_output
    from lrface.models.loader import load_embedder
    from lrface.search.gallery import build_gallery

    options = a.crop_options()
    ivf = a.index != "exact"
    check_output(a.out, "ivf-dir" if ivf else "gallery")  # before any embedding
    emb = load_embedder(a.model, precision=a.precision)
    if ivf:  # --nlist/--nprobe against the most rows ROOT can give, before any embedding
        from lrface.search.gallery import count_gallery_images
        from lrface.search.ivf import TRAIN_SIZE, plan_nlist

        plan_nlist(a.index, min(TRAIN_SIZE, count_gallery_images(a.root)), a.nlist, a.nprobe)
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
    if ivf:  # per-image rows in parts, merged on disk (lrface.search.ivf)
        from lrface.search.ivf import build_ivf, gallery_parts, model_meta

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

    from lrface.batch.embed import expand_inputs
    from lrface.faces.pipeline import prepare_many
    from lrface.faces.routing import ModelRouter, probe_threshold
    from lrface.io.pathnames import path_text
    from lrface.models.loader import load_embedder
    from lrface.search.ivf import open_gallery

    options = a.crop_options()
    gallery = open_gallery(a.gallery)  # an .npz (exact search) or an IVF directory
    if gallery.index_description is not None:  # an approximate index: say which
        print(f"index: {gallery.index_description}", file=sys.stderr)
    if a.templates:  # one fused template per folder, one model (the gallery's or --model)
        emb = load_embedder(a.model or gallery.model_name, precision=a.precision)
        gallery.check_model(emb)
        options = dataclasses.replace(options, size=int(emb.input_size))
        thr = a.threshold if a.threshold is not None else emb.threshold
        return _identify_templates(a, gallery, emb, thr, options)
    router = ModelRouter(a.model, precision=a.precision)  # None: each probe as verify chooses
    options = dataclasses.replace(options, size=router.input_size)
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
        ok = [(p, r) for p, r in zip(chunk_paths, chunk) if r.crop is not None]
        if not ok:
            continue
        embs, names = router.embed_faces([r for _, r in ok])
        for name in dict.fromkeys(names):  # every chosen model must search this gallery
            gallery.check_model(router.embedder(name))
        found: list[dict] = [{} for _ in ok]
        for name in dict.fromkeys(names):  # one search per model: its own threshold
            idx = [i for i, n in enumerate(names) if n == name]
            thr = (
                a.threshold
                if a.threshold is not None
                else probe_threshold(name, gallery.model_name, gallery.threshold)
            )
            hits = gallery.identify(embs[idx], top_k=a.top_k, threshold=thr, backend=a.backend)
            for i, res in zip(idx, hits):
                found[i] = res
        for (p, r), res, name in zip(ok, found, names):
            res.update(probe=p, model=name, face=r.info)
            results.append(res)
            if not a.json:
                cands = ", ".join(
                    f"{path_text(c['identity'])} {c['score']:.3f}" for c in res["candidates"]
                )
                print(
                    f"{path_text(p)}: {path_text(res['identity'])} (score {res['score']:.3f}; "
                    f"top-{a.top_k}: {cands})"
                )
    if a.json:
        print(json.dumps(results, indent=2))
    return _batch_status(len(results), len(failures), "probes")


def cmd_watch(a: WatchOptions) -> int:
    from tqdm import tqdm

    from lrface.io.fileio import check_writable
    from lrface.video.frames import (
        open_video,
        save_best_crops,
        write_annotated,
        write_tracks_csv,
        write_tracks_json,
    )
    from lrface.video.watch import WatchSettings, load_watchlist, watch_frames

    settings = WatchSettings(
        every=a.every, detector=a.detector, det_thresh=a.det_thresh, model=a.model,
        top_k=a.top_k, threshold=a.threshold, min_frames=a.min_frames,
        max_faces=a.max_faces, max_misses=a.max_misses,
    )  # fmt: skip
    if Path(a.out).suffix.lower() != ".json":
        raise LrfaceError(f"{a.out}: --out is written as JSON; give it a .json name")
    for path, kind, option in (
        (a.out, "file", "--out"),
        (a.csv, "file", "--csv"),
        (a.save_crops, "dir", "--save-crops"),
        (a.annotate, "file", "--annotate"),
    ):
        if path:
            check_writable(path, kind, option)
    video = open_video(a.video)
    if a.annotate and video.is_stream:
        video.close()
        raise LrfaceError(
            f"{a.video}: --annotate re-reads the input after tracking, which a stream or "
            "camera cannot do; record it to a file first, or drop --annotate"
        )
    try:
        gallery = load_watchlist(a.gallery, progress=not a.quiet)
        bar = tqdm(total=video.n_frames, desc="watch", unit="frame", disable=a.quiet, leave=False)
        try:
            report = watch_frames(video.frames(), gallery, settings, video.fps, bar)
        finally:
            bar.close()
    finally:
        video.close()
    if a.save_crops:
        save_best_crops(a.save_crops, report.tracks)
    summary = {
        "video": a.video,
        "fps": video.fps,
        "frames_read": report.frames_read,
        "frames_processed": report.frames_processed,
        "every": a.every,
        "detector": report.detector,
        "gallery": a.gallery,
        "gallery_model": gallery.model_name,
        "short_tracks_dropped": report.short_tracks_dropped,
        "seconds": round(report.seconds, 2),
        "interrupted": report.interrupted,
        "tracks": [t.to_dict() for t in report.tracks],
    }
    write_tracks_json(a.out, summary)
    if a.csv:
        write_tracks_csv(a.csv, report.tracks)
    if a.annotate:
        write_annotated(a.video, a.annotate, report.tracks, a.every, video.fps)
    for t in report.tracks:
        when = (
            f"{_clock(t.start_s)}-{_clock(t.end_s)}"
            if t.start_s is not None and t.end_s is not None
            else f"frames {t.first_frame}-{t.last_frame}"
        )
        cands = ", ".join(f"{c['identity']} {c['score']:.3f}" for c in t.candidates)
        print(
            f"track {t.track_id}: {when} ({len(t.frames)} frames, {t.face_px:.0f} px): "
            f"{t.identity} (score {t.score:.3f}; top-{a.top_k}: {cands})"
        )
    print(
        f"{len(report.tracks)} track(s) in {report.frames_read} frames "
        f"({report.fps:.1f} frames/s; {report.short_tracks_dropped} track(s) shorter than "
        f"{a.min_frames} frames dropped); wrote {a.out}",
        file=sys.stderr,
    )
    if report.interrupted:
        print("interrupted: the tracks up to the interruption were written", file=sys.stderr)
        return 130
    return 0


def _clock(seconds: float) -> str:
    """``mm:ss.s`` of a time in seconds."""
    m, s = divmod(float(seconds), 60.0)
    return f"{int(m):02d}:{s:04.1f}"


def _identify_templates(
    a: IdentifyOptions, gallery: Any, emb: Embedder, thr: float | None, options: Any
) -> int:
    """``identify --templates``: one fused template per probe folder, searched once."""
    from lrface.io.images import list_images
    from lrface.search.templates import build_template

    if a.workers != IdentifyOptions.workers:  # the default; any other value would be ignored
        raise LrfaceError("--workers does not apply to --templates; drop it")
    results: list[dict] = []
    failures: list[tuple[str, str]] = []
    for probe in a.probes:
        if not Path(probe).is_dir():
            raise LrfaceError(
                f"{probe}: --templates takes one folder of images per probe subject; "
                "pass folders, or drop --templates to search single images"
            )
        images = [str(p) for p in list_images(probe)]
        if not images:
            failures.append((probe, "holds no image files"))
            _print_failures(failures[-1:])
            continue
        try:
            tpl = build_template(images, emb, options)
        except LrfaceError as exc:
            failures.append((probe, str(exc)))
            _print_failures(failures[-1:])
            continue
        _print_failures(tpl.failures)  # images left out of an otherwise usable template
        res = gallery.identify(tpl.embedding, top_k=a.top_k, threshold=thr, backend=a.backend)[0]
        res.update(probe=probe, n_images=len(tpl.sources), n_failed=len(tpl.failures))
        results.append(res)
        if not a.json:
            cands = ", ".join(f"{c['identity']} {c['score']:.3f}" for c in res["candidates"])
            print(
                f"{probe} ({len(tpl.sources)} images): {res['identity']} (score "
                f"{res['score']:.3f}; top-{a.top_k}: {cands})"
            )
    if a.json:
        print(json.dumps(results, indent=2))
    n_bad_images = sum(r["n_failed"] for r in results)
    if results and (failures or n_bad_images):
        return 3
    return _batch_status(len(results), len(failures), "probe folders")


def cmd_serve(a: ServeOptions) -> int:
    from lrface.serve.server import run_server

    return run_server(a)


#: subcommand -> (help, options dataclass (lrface.cli.options), handler, description)
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
    "watch": ("faces in a video: tracked, fused, identified against a gallery", WatchOptions,
              cmd_watch, None),
    "serve": ("HTTP service: verify, embed, identify, enrol (needs lrface[serve])",
              ServeOptions, cmd_serve, None),
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


def _on_stop_signal(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM in the main thread: kill the worker processes at once
    (:func:`lrface.io.workers.abort_pools`), then unwind the command with KeyboardInterrupt
    or :class:`~lrface.errors.Terminated` (its ``finally`` blocks keep outputs resumable)."""
    from lrface.io.workers import abort_pools

    abort_pools()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _catch_stop_signals() -> dict[int, Any]:
    """Install :func:`_on_stop_signal` for SIGINT and SIGTERM (main thread only); returns
    the handlers it replaced, for :func:`main` to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    saved: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        saved[sig] = signal.signal(sig, _on_stop_signal)
    return saved


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
    saved_handlers = _catch_stop_signals()
    try:
        return a.handler(from_namespace(a.options, a))  # parse= options raise LrfaceError
    except LrfaceError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except BrokenPipeError:  # e.g. `lrface ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a path of the user's: full disk, name too long, file in the way
        print(f"error: {' '.join(os_error_message(exc).split())}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)
        if getattr(a, "model_dir", None):  # main() may run in-process (tests, notebooks)
            if saved is None:
                os.environ.pop("LRFACE_MODEL_DIR", None)
            else:
                os.environ["LRFACE_MODEL_DIR"] = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
