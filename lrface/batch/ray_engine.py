"""Ray for lrface: an engine for ``lrface embed --engine ray`` and stages for your own pipelines.

Needs the optional extra ``pip install "lrface[ray]"`` (``ray[data]``); ``ray`` is imported
only when one of these objects is used, never by ``import lrface``.

**The embedding engine** (:class:`RayEngine`, ``lrface embed ... --engine ray``).
lrface's shard (``shard_size`` consecutive paths, :mod:`lrface.batch.embed`) stays the
unit of work and every guarantee of the local engine is kept: Ray only *schedules* shards
on actors and *retries* them when an actor dies.  Each actor loads the model once and
turns a shard's paths into ``(embeddings, rows, failures)`` with exactly the code the
local engine runs (:func:`lrface.faces.pipeline.prepare_crop` per path, then the same fixed
batches), so the output is byte-identical.  The driver alone writes files: each shard's
files are renamed into place atomically and only then recorded in the manifest, so
exactly-once comes from lrface's fixed shard names, atomic renames and the manifest --
not from Ray's row order or its checkpoints.  A SIGKILLed driver resumes by rerunning the
same command.

Cluster handling: with ``address=None`` and no Ray already initialised in the process, a
local cluster is started (and shut down by :meth:`RayEngine.close`); with an ``address``
(``"auto"`` or ``host:port``), or when ``ray.is_initialized()``, that cluster is used and
never stopped.  Actors never reserve every CPU of the cluster (on a 2-CPU machine a Ray
job whose actors hold all CPUs hangs instead of failing, Ray issue 44687): the default is
``floor((CPUs - 1) / cpus_per_actor)`` actors (at least 1 with fractional CPUs), and a
request that would reserve all CPUs is refused with :class:`LrfaceError`.

The model is resolved and sha256-checked on the driver (:func:`lrface.models.loader.
load_embedder`); each actor loads it by name and refuses to work unless its file hashes to
the driver's sha256 (on a multi-node cluster every node needs the model files, e.g. the
same ``LRFACE_HOME``).

**Stages for your own Ray Data pipeline** (``ds.map_batches(Stage, ...)`` with
``batch_format="numpy"``): :class:`FacePreprocessor` (a CPU stage: read + detect +
align) and :class:`FaceEmbedder` (loads the model once per actor).  Both read *paths*
(or encoded image bytes) and decode inside the stage, because ``ray.data.read_images``
fails the whole job on one corrupt file; both record a per-row ``error`` string instead
of raising on a bad image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.errors import LrfaceError
from lrface.faces.pipeline import CropOptions, CropResult, prepare_crop
from lrface.io.validation import check_resource
from lrface.models.defaults import DEFAULTS

if TYPE_CHECKING:
    from lrface.models.interface import Embedder

log = logging.getLogger("lrface")

__all__ = ["FaceEmbedder", "FacePreprocessor", "RayEngine", "import_ray"]

RAY_EXTRA = 'pip install "lrface[ray]"'
#: Shards submitted per actor ahead of the one it is working on.
IN_FLIGHT_PER_ACTOR = 2
#: Times Ray restarts a dead actor / retries a shard whose actor died.
MAX_RETRIES = 3
#: Seconds to wait for the actors to start and load the model.
STARTUP_TIMEOUT = 300


def import_ray() -> Any:
    """``import ray``, or :class:`LrfaceError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise LrfaceError(
            f"--engine ray needs Ray, which is not installed; install it with {RAY_EXTRA} "
            "or use the default --engine local"
        ) from None
    return ray


# ---------------------------------------------------------------------- shared helpers


def _load_checked(
    model: str,
    sha256: str | None,
    flip: bool,
    model_dir: str | None,
    batch_size: int,
) -> Any:
    """Load ``model`` in this (actor) process; refuse a file whose sha256 differs."""
    from lrface.models.loader import load_embedder

    emb = load_embedder(model, flip=flip, model_dir=model_dir, batch_size=batch_size)
    if sha256 is not None and emb.sha256 != sha256:
        raise LrfaceError(
            f"model {model}: this Ray node has a file with sha256 {str(emb.sha256)[:12]}..., "
            f"the driver verified {sha256[:12]}...; give every node the same model files"
        )
    return emb


def _prepare_all(items: Sequence[Any], options: CropOptions, names: Sequence[str]) -> list:
    """:class:`CropResult` per item (a path, encoded bytes or a decoded image); never raises."""
    return [
        prepare_crop(item, options) if isinstance(item, str) else _prepare_source(item, options, n)
        for item, n in zip(items, names)
    ]


def _prepare_source(source: Any, options: CropOptions, name: str) -> CropResult:
    """:func:`prepare_crop` for in-memory sources (bytes or an image array)."""
    from lrface.faces.pipeline import prepare_face

    if isinstance(source, bytearray | memoryview):
        source = bytes(source)
    try:
        face = prepare_face(source, options, name=name)
        return CropResult(face.crop, "", face.fallback)
    except LrfaceError as exc:
        msg = " ".join(str(exc).split())
        return CropResult(None, msg[len(name) + 2 :] if msg.startswith(f"{name}: ") else msg)
    except Exception as exc:  # a pathological input must not kill the pipeline
        return CropResult(None, f"internal error: {type(exc).__name__}: {exc}")


def _column(batch: dict[str, Any], names: Sequence[str], stage: str) -> tuple[str, list]:
    for name in names:
        if name in batch:
            return name, list(batch[name])
    raise LrfaceError(
        f"{stage}: the batch has none of the columns {', '.join(names)} "
        f"(it has {', '.join(batch) or 'none'}); read paths with "
        "ray.data.read_text/from_items or bytes with ray.data.read_binary_files"
    )


def _labels(batch: dict[str, Any], key: str, items: list) -> list[str]:
    if key == "path":
        return [str(x) for x in items]
    if "path" in batch:
        return [str(x) for x in batch["path"]]
    return [f"<row {i}>" for i in range(len(items))]


# ---------------------------------------------------------------------- user stages


class FacePreprocessor:
    """Ray Data CPU stage: image -> aligned face crop (read, detect, align).

    ``ds.map_batches(FacePreprocessor, fn_constructor_kwargs={"options": CropOptions(...)},
    batch_format="numpy", num_cpus=1)``.  Input column ``path`` (str) or ``bytes``
    (encoded image, e.g. from ``ray.data.read_binary_files(..., include_paths=True)``);
    output columns added: ``crop`` uint8 (n, S, S, 3) BGR (zeros where the image failed)
    and ``error`` (str; "" on success, else a one-line reason).  Never raises on a bad
    image.  ``options.size`` must be the embedding model's input size (112 for the
    shipped models).
    """

    def __init__(self, options: CropOptions | None = None) -> None:
        self.options = options or CropOptions()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        key, items = _column(batch, ("path", "bytes", "image"), "FacePreprocessor")
        results = _prepare_all(items, self.options, _labels(batch, key, items))
        s = self.options.size
        crops = np.zeros((len(results), s, s, 3), np.uint8)
        for i, r in enumerate(results):
            if r.crop is not None:
                crops[i] = r.crop
        out = dict(batch)
        out["crop"] = crops
        out["error"] = np.array([r.error for r in results], dtype=object)
        return out


class FaceEmbedder:
    """Ray Data stage: face -> L2-normalised embedding; the model is loaded once per actor.

    ``ds.map_batches(FaceEmbedder, fn_constructor_kwargs={"model": "lrface-mbf"},
    batch_format="numpy", concurrency=2, num_cpus=0.5)`` (use ``num_gpus=1`` on GPU
    nodes).  Input: a ``crop`` column (from :class:`FacePreprocessor`; rows whose
    ``error`` is non-empty are skipped), else ``path`` or ``bytes`` (read, detected and
    aligned here with ``options``).  Output columns added: ``embedding`` float32 (n, D)
    (NaN rows where the image failed) and ``error`` (str; "" on success).  Never raises on
    a bad image.

    ``sha256``: the model sha256 verified on the driver (``load_embedder(model).sha256``);
    an actor whose model file hashes differently refuses to start.
    """

    def __init__(
        self,
        model: str = DEFAULTS.lr_student,
        options: CropOptions | None = None,
        flip: bool = True,
        model_dir: str | None = None,
        sha256: str | None = None,
        batch_size: int = 64,
    ) -> None:
        self.embedder = _load_checked(model, sha256, flip, model_dir, batch_size)
        size = int(self.embedder.input_size)
        self.options = dataclasses.replace(options or CropOptions(), size=size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(next(iter(batch.values()))) if batch else 0
        if "crop" in batch:
            errors = [str(e) for e in batch.get("error", [""] * n)]
            crops = [batch["crop"][i] for i in range(n)]
        else:
            key, items = _column(batch, ("path", "bytes", "image"), "FaceEmbedder")
            results = _prepare_all(items, self.options, _labels(batch, key, items))
            errors = [r.error for r in results]
            crops = [r.crop for r in results]
        d = int(self.embedder.embedding_size)
        emb = np.full((n, d), np.nan, np.float32)
        ok = [i for i in range(n) if not errors[i]]
        if ok:
            try:
                emb[ok] = self.embedder.embed_crops([crops[i] for i in ok])
            except LrfaceError as exc:  # e.g. a malformed crop column
                msg = " ".join(str(exc).split())
                errors = [e or msg for e in errors]
        out = dict(batch)
        out.pop("crop", None)  # large; the embedding replaces it
        out["embedding"] = emb
        out["error"] = np.array(errors, dtype=object)
        return out


# ---------------------------------------------------------------------- the engine


class _ShardWorker:
    """Actor body: embeds whole shards exactly as the local engine does."""

    def __init__(
        self, model: str, sha256: str | None, flip: bool, model_dir: str | None, emb_batch: int
    ) -> None:
        self.embedder = _load_checked(model, sha256, flip, model_dir, emb_batch)

    def embed_shard(
        self, paths: list[str], start: int, options: CropOptions, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]], list[tuple[str, ...]]]:
        from lrface.batch.embed import _embed_routed
        from lrface.faces.routing import ModelRouter

        results = [prepare_crop(p, options) for p in paths]
        return _embed_routed(results, paths, start, ModelRouter(self.embedder), batch_size)

    def pid(self) -> int:
        return os.getpid()


def _check_actor_request(actors: int | None, cpus_per_actor: float, gpus_per_actor: float) -> None:
    """Raise :class:`LrfaceError` unless ``cpus_per_actor > 0``, ``gpus_per_actor >= 0`` and
    ``actors`` is None or an integer >= 1 (messages name the ``--ray-*`` options)."""
    if not (isinstance(cpus_per_actor, int | float) and cpus_per_actor > 0):
        raise LrfaceError(f"--ray-cpus-per-actor must be > 0, got {cpus_per_actor!r}")
    if not (isinstance(gpus_per_actor, int | float) and gpus_per_actor >= 0):
        raise LrfaceError(f"--ray-gpus-per-actor must be >= 0, got {gpus_per_actor!r}")
    if actors is not None and (isinstance(actors, bool) or actors < 1):
        raise LrfaceError(f"--ray-actors must be >= 1, got {actors!r}")
    for name, value in (("ray_actors", actors), ("ray_cpus_per_actor", cpus_per_actor),
                        ("ray_gpus_per_actor", gpus_per_actor)):  # fmt: skip
        if value is not None:  # the documented caps (lrface.io.validation)
            check_resource(name, value, "--" + name.replace("_", "-"))


def _init_cluster(ray: Any, address: str | None, local_cpus: int | None) -> bool:
    """``ray.init`` for a process where Ray is not initialised yet.

    With ``address`` (``"auto"`` or ``"host:port"``) connect to that cluster (a one-line
    :class:`LrfaceError` when that fails); else start a local cluster of ``local_cpus``
    logical CPUs (default ``os.cpu_count()``).  Returns True when the cluster was started
    here (and so is to be shut down by :meth:`RayEngine.close`).
    """
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            msg = " ".join(str(exc).split())[:200]
            raise LrfaceError(
                f"--ray-address {address}: cannot connect to a Ray cluster ({msg}); "
                "start one with `ray start --head` or drop --ray-address"
            ) from None
        return False
    ray.init(num_cpus=local_cpus or os.cpu_count() or 1, **kwargs)
    return True


def _actor_args(embedder: Embedder, model_dir: str | None) -> tuple[str, Any, bool, Any, int]:
    """:class:`_ShardWorker` arguments ``(model, sha256, flip, model_dir, batch size)`` that
    make an actor load the driver's model: its card path when it has one, else its name."""
    return (
        embedder.name
        if not getattr(embedder.spec, "card_path", None)
        else str(embedder.spec.card_path),
        embedder.sha256,
        bool(getattr(embedder, "flip", True)),
        model_dir,
        int(getattr(embedder, "batch_size", 64)),
    )


class RayEngine:
    """Schedules :mod:`lrface.batch.embed` shards on Ray actors (module docstring).

    Args:
        embedder: the driver's :class:`lrface.models.interface.Embedder` (already resolved
            and sha256-checked); actors load the same model by name and check its sha256.
        address: ``None`` (start a local cluster unless Ray is initialised in this
            process), ``"auto"`` or ``"host:port"`` (connect; never stopped by lrface).
        actors: actors to start (default: as many as fit without reserving every CPU).
        cpus_per_actor: logical CPUs each actor reserves (may be fractional, e.g. 0.5).
        gpus_per_actor: GPUs each actor reserves (0 for CPU inference).
        model_dir: extra model directory (as ``--model-dir``), passed to the actors.
        local_cpus: logical CPUs of a cluster started here (default ``os.cpu_count()``).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        embedder: Embedder,
        address: str | None = None,
        actors: int | None = None,
        cpus_per_actor: float = 1.0,
        gpus_per_actor: float = 0.0,
        model_dir: str | None = None,
        local_cpus: int | None = None,
    ) -> None:
        ray = import_ray()
        _check_actor_request(actors, cpus_per_actor, gpus_per_actor)
        self._ray = ray
        self.owns_cluster = False
        t0 = time.perf_counter()
        if not ray.is_initialized():
            self.owns_cluster = _init_cluster(ray, address, local_cpus)
        self._watchdog: Any = None
        self.startup_seconds = 0.0
        try:
            total = self._start_actors(embedder, actors, cpus_per_actor, gpus_per_actor, model_dir)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = round(time.perf_counter() - t0, 3)
        log.info(
            "ray: %d actor(s) x %g CPU, %g GPU on a cluster of %g CPUs (%s; %.1f s start-up)",
            self.actors,
            cpus_per_actor,
            gpus_per_actor,
            total,
            "started here" if self.owns_cluster else "existing",
            self.startup_seconds,
        )

    def _start_actors(
        self,
        embedder: Embedder,
        actors: int | None,
        cpus_per_actor: float,
        gpus_per_actor: float,
        model_dir: str | None,
    ) -> float:
        """Start the actors on the connected cluster and wait until each has loaded the model.

        Sets :attr:`actors` (the requested number, or as many as fit without reserving every
        CPU: :meth:`_count`) and ``_workers`` (the actor handles), and starts the watchdog
        for a cluster started here.  Returns the cluster's logical CPU count.  Raises
        :class:`LrfaceError` when the actors need more CPUs or GPUs than the cluster has, or
        fail to start (the caller closes the engine).
        """
        ray = self._ray
        res = ray.cluster_resources()
        total = float(res.get("CPU", 0.0))
        self.actors = self._count(actors, cpus_per_actor, total)
        gpus = float(res.get("GPU", 0.0))
        if gpus_per_actor * self.actors > gpus:
            raise LrfaceError(
                f"{self.actors} Ray actor(s) x {gpus_per_actor:g} GPU need more GPUs than "
                f"the cluster has ({gpus:g}); lower --ray-gpus-per-actor or --ray-actors"
            )
        worker = ray.remote(
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor,
            max_restarts=MAX_RETRIES,
            max_task_retries=MAX_RETRIES,
        )(_ShardWorker)
        args = _actor_args(embedder, model_dir)
        self._workers = [worker.remote(*args) for _ in range(self.actors)]
        self._started(ray)
        if self.owns_cluster:
            self._watchdog = _start_watchdog()
        return total

    def _started(self, ray: Any) -> None:
        """Wait until every actor has loaded the model; one-line errors, never a hang."""
        try:
            ray.get([w.pid.remote() for w in self._workers], timeout=STARTUP_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise LrfaceError(
                f"{self.actors} Ray actor(s) did not start within {STARTUP_TIMEOUT} s (the "
                "cluster may lack free CPUs/GPUs, see `ray status`); use fewer --ray-actors"
            ) from None
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            msg = " ".join(str(exc).split())
            tag = "LrfaceError: "
            if tag in msg:  # the actor's own one-line error, without Ray's traceback
                line = msg[msg.rfind(tag) + len(tag) :]
                raise LrfaceError(f"a Ray actor could not load the model: {line[:300]}") from None
            raise LrfaceError(f"a Ray actor failed to start: {msg[:300]}") from None

    @staticmethod
    def _count(actors: int | None, cpus: float, total: float) -> int:
        """Actors to start; refuse a request that reserves every CPU (it would hang)."""
        if actors is None:
            fit = math.floor((total - 1) / cpus + 1e-9) if total > 1 else 0
            actors = max(1, fit)
        if actors * cpus >= total:
            raise LrfaceError(
                f"{actors} Ray actor(s) x {cpus:g} CPU would reserve all {total:g} CPUs of the "
                "cluster, and Ray then hangs (Ray issue 44687); use fewer --ray-actors or a "
                "fractional --ray-cpus-per-actor such as 0.5"
            )
        return actors

    def embed_shards(
        self,
        todo: Sequence[int],
        paths: Sequence[str],
        shard_size: int,
        options: CropOptions,
        batch_size: int,
    ) -> Iterator[tuple]:
        """Yield ``(k, emb, rows, failures, faces)`` of each shard in ``todo``, as they
        complete.

        ``emb`` float32 (n_k, D), ``rows`` int64 (n_k,), ``failures`` ``(row, path,
        error)`` and ``faces`` (:data:`lrface.batch.embed.FACE_COLUMNS` per embedded row),
        exactly as the local engine computes them.  At most
        ``IN_FLIGHT_PER_ACTOR`` shards per actor are in flight (bounded driver memory).
        """
        ray = self._ray
        queue = list(todo)
        opts = ray.put(options)
        pending: dict[Any, tuple[int, Any]] = {}  # ref -> (shard, actor)

        def submit(worker: Any) -> None:
            k = queue.pop(0)
            start = k * shard_size
            chunk = list(paths[start : start + shard_size])
            pending[worker.embed_shard.remote(chunk, start, opts, batch_size)] = (k, worker)

        for _ in range(IN_FLIGHT_PER_ACTOR):
            for w in self._workers:
                if queue:
                    submit(w)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            k, worker = pending.pop(ready[0])
            emb, idx, fails, faces = _shard_result(ray, ready[0], k)
            if queue:
                submit(worker)  # the actor that just finished gets the next shard
            yield k, emb, idx, fails, faces

    def close(self) -> None:
        """Kill the actors; shut Ray down only if this engine started the cluster."""
        ray = self._ray
        for w in getattr(self, "_workers", []):
            with contextlib.suppress(Exception):  # already dead
                ray.kill(w)
        self._workers = []
        if self.owns_cluster and ray.is_initialized():
            ray.shutdown()
            self.owns_cluster = False
        if getattr(self, "_watchdog", None) is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _shard_result(ray: Any, ref: Any, k: int) -> tuple:
    """``ray.get`` of shard ``k``'s ``(float32 (n, D) emb, int64 (n,) rows, failures,
    faces)``.

    An actor that died more than ``MAX_RETRIES`` times, or an :class:`LrfaceError` raised
    in the actor, becomes a one-line :class:`LrfaceError`; other task errors propagate.
    """
    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError as exc:
        raise LrfaceError(
            f"Ray actor died {MAX_RETRIES + 1} times on shard {k} "
            f"({' '.join(str(exc).split())[:160]}); rerun the same command to resume"
        ) from None
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, LrfaceError):
            raise LrfaceError(str(cause).splitlines()[0]) from None
        raise


# Ray's per-node agents outlive a SIGKILLed driver: they notice the raylet died but then
# block reporting it to the (also dead) GCS.  For a cluster lrface started, a watchdog
# process kills what the cluster left behind once the driver is gone.
_WATCHDOG = """
import os, sys, time, psutil
driver = int(sys.argv[1])
procs = []
for arg in sys.argv[2:]:
    pid, created = arg.split(":")
    try:
        p = psutil.Process(int(pid))
        if abs(p.create_time() - float(created)) < 1e-3:
            procs.append(p)
    except psutil.Error:
        pass
while psutil.pid_exists(driver):
    time.sleep(1.0)
time.sleep(3.0)
for p in procs:
    try:
        p.kill()
    except psutil.Error:
        pass
"""


def _start_watchdog() -> Any:
    """Start the watchdog (module comment above) over this driver's Ray processes."""
    import subprocess
    import sys

    import psutil  # vendored by ray (ray/thirdparty_files), importable once ray is

    kids = psutil.Process().children(recursive=True)
    args = [f"{p.pid}:{p.create_time()}" for p in kids]
    site = os.path.dirname(os.path.dirname(psutil.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
