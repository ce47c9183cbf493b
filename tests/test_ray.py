"""``lrface embed --engine ray`` and the lrface.batch.ray_engine stages on a local Ray cluster,
real LFW faces.

One local cluster for the session (4 logical CPUs, so that fractional actors never reserve
all of them: Ray issue 44687); every test has a timeout so that a deadlock fails instead of
hanging CI.  Ray comes with the dev extra; the module skips only where it is not installed.
"""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LFW_IMAGES as LFW

ray = pytest.importorskip(
    "ray", reason='the ray extra is not installed (pip install "lrface[ray]")'
)

from lrface.batch.embed import embed_paths, load_embeddings  # noqa: E402
from lrface.batch.ray_engine import FaceEmbedder, FacePreprocessor, RayEngine  # noqa: E402
from lrface.errors import LrfaceError  # noqa: E402
from lrface.faces.pipeline import CropOptions  # noqa: E402

pytestmark = pytest.mark.timeout(150)

MODEL = "lrface-mbf"
SHARD, BATCH = 4, 4
NO_DETECT = CropOptions(detect=False)


@pytest.fixture(scope="session")
def cluster():
    """A local Ray cluster for the whole session; yields its GCS address."""
    ctx = ray.init(
        num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="warning"
    )
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def embedder():
    from lrface.models.loader import load_embedder

    return load_embedder(MODEL, batch_size=BATCH)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """26 real LFW photos (embedded as pre-cut crops) and a corrupt file at row 6."""
    people = sorted(d for d in LFW.iterdir() if d.name.startswith("Ba"))[:20]
    imgs = [str(p) for d in people for p in sorted(d.glob("*.jpg"))][:25]
    tmp = tmp_path_factory.mktemp("ray-in")
    bad = tmp / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths = [*imgs[:6], str(bad), *imgs[6:]]
    lst = tmp / "list.txt"
    lst.write_text("".join(p + "\n" for p in paths))
    return paths, str(bad), lst


@pytest.fixture(scope="module")
def local_run(inputs, embedder, tmp_path_factory):
    """The reference: the local engine, in this process."""
    out = tmp_path_factory.mktemp("local") / "emb"
    embed_paths(
        inputs[0], embedder, out, shard_size=SHARD, batch_size=BATCH, workers=0,
        progress=False, options=NO_DETECT,
    )  # fmt: skip
    return out


def _same_dirs(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    differ = [n for n in names if not filecmp.cmp(a / n, b / n, shallow=False)]
    assert differ == [], f"files differ: {differ}"


def test_ray_engine_byte_identical_to_local(cluster, inputs, embedder, local_run, tmp_path):
    out = tmp_path / "ray"
    with RayEngine(embedder, actors=2, cpus_per_actor=0.5) as eng:
        assert not eng.owns_cluster and eng.actors == 2
        summary = embed_paths(
            inputs[0], embedder, out, shard_size=SHARD, batch_size=BATCH, progress=False,
            options=NO_DETECT, engine=eng,
        )  # fmt: skip
    assert ray.is_initialized()  # the user's cluster is left running
    assert summary["complete"] and summary["n_failed"] == 1 and summary["n_embedded"] == 25
    _same_dirs(local_run, out)  # every file, manifest included
    _, _, failures = load_embeddings(out)
    assert [p for p, _ in failures] == [inputs[1]]


def test_cli_sigkill_driver_then_exact_resume(cluster, inputs, local_run, tmp_path):
    out = tmp_path / "cli"
    cmd = [
        sys.executable, "-m", "lrface", "embed", str(inputs[2]), "--out", str(out),
        "--no-detect", "--model", MODEL, "--batch-size", str(BATCH), "--shard-size",
        str(SHARD), "--quiet", "--engine", "ray", "--ray-address", cluster,
        "--ray-actors", "1", "--ray-cpus-per-actor", "0.5",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done, deadline = 0, time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        try:
            done = len(json.loads((out / "manifest.json").read_text())["completed_shards"])
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 2 <= done < 7
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr[-2000:]  # one bad file: partial failure
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["engine"] == "ray" and summary["shards_skipped"] >= 2
    assert f"failed: {inputs[1]}:" in res.stderr
    _same_dirs(local_run, out)
    assert ray.is_initialized()  # the cluster the CLI connected to is still up


def test_refuses_to_reserve_every_cpu(cluster, embedder):
    with pytest.raises(LrfaceError, match="reserve all 4 CPUs"):
        RayEngine(embedder, actors=4, cpus_per_actor=1.0)
    assert RayEngine._count(None, 1.0, 4.0) == 3
    assert RayEngine._count(None, 1.0, 2.0) == 1
    assert RayEngine._count(None, 0.5, 2.0) == 2


def test_stages_in_a_ray_data_pipeline(cluster, inputs, embedder):
    """Preprocess + embed as two Ray Data stages; a corrupt file is a row error, not a crash."""
    paths = inputs[0][4:9]  # includes the corrupt file
    ds = ray.data.from_items([{"path": p} for p in paths])
    ds = ds.map_batches(
        FacePreprocessor, fn_constructor_kwargs={"options": CropOptions(detect=False)},
        batch_format="numpy", batch_size=8, concurrency=1, num_cpus=0.5,
    ).map_batches(
        FaceEmbedder, fn_constructor_kwargs={"model": MODEL, "sha256": embedder.sha256},
        batch_format="numpy", batch_size=8, concurrency=1, num_cpus=0.5,
    )  # fmt: skip
    rows = {r["path"]: r for r in ds.take_all()}
    assert sorted(rows) == sorted(paths)
    bad = rows[inputs[1]]
    assert bad["error"] and np.isnan(bad["embedding"]).all()
    from lrface.faces.pipeline import prepare_crop

    good = [p for p in paths if p != inputs[1]]
    want = embedder.embed_crops([prepare_crop(p, NO_DETECT).crop for p in good])
    got = np.stack([rows[p]["embedding"] for p in good])
    assert all(rows[p]["error"] == "" for p in good)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_embedder_stage_without_ray_reads_paths_and_bytes(inputs, embedder):
    """The stage is a plain callable: paths or encoded bytes in, embedding + error out."""
    stage = FaceEmbedder(MODEL, options=CropOptions(detect=False), sha256=embedder.sha256)
    paths = [inputs[0][0], inputs[1]]
    by_path = stage({"path": np.array(paths, dtype=object)})
    assert by_path["error"][0] == "" and by_path["error"][1]
    blobs = np.array([Path(p).read_bytes() for p in paths], dtype=object)
    by_bytes = stage({"bytes": blobs})
    np.testing.assert_array_equal(by_bytes["embedding"][0], by_path["embedding"][0])
    assert by_bytes["error"][1] and np.isnan(by_bytes["embedding"][1]).all()
    with pytest.raises(LrfaceError, match="sha256"):
        FaceEmbedder(MODEL, sha256="0" * 64)


def test_actor_with_a_different_model_file_is_a_one_line_error(cluster, embedder):
    """An actor whose model file does not hash to the driver's sha256 refuses to work."""
    import types

    claimed = types.SimpleNamespace(
        name=embedder.name, spec=embedder.spec, sha256="0" * 64, flip=True, batch_size=BATCH
    )
    with pytest.raises(LrfaceError) as exc:
        RayEngine(claimed, actors=1, cpus_per_actor=0.5)
    msg = str(exc.value)
    assert "\n" not in msg and "sha256" in msg and "could not load the model" in msg, msg
