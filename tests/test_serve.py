"""`lrface serve` as a client sees it: a real uvicorn process on 127.0.0.1, real HTTP
(httpx), real photos (tests/data).  One server (2 workers, small limits) is shared by
most tests; the kill -9 test runs its own.  The operator page is driven in a real
Chromium (Selenium) when one is installed."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS

pytest.importorskip("fastapi", reason='needs the serve extra: pip install "lrface[serve]"')
httpx = pytest.importorskip("httpx", reason="needs httpx (dev extra)")

from lrface.api import embed, verify  # noqa: E402
from lrface.cli.main import main  # noqa: E402
from lrface.errors import LrfaceError  # noqa: E402
from lrface.faces.routing import BOX_MODEL, LR_STUDENT, TEACHER  # noqa: E402
from lrface.search.gallery import FlatGallery  # noqa: E402
from lrface.serve.process import ServerProcess  # noqa: E402

BUSH = (PHOTOS / "George_W_Bush_0001.jpg", PHOTOS / "George_W_Bush_0002.jpg")
POWELL = PHOTOS / "Colin_Powell_0001.jpg"
ABEL = (PHOTOS / "Abel_Pacheco_0001.jpg", PHOTOS / "Abel_Pacheco_0004.jpg")
AARON = PHOTOS / "Aaron_Eckhart_0001.jpg"
#: Abel_Pacheco_0004 shrunk to 36x36: a face of ~17 px, routed to the lrface-mbf student.
SMALL = PHOTOS / "Abel_Pacheco_0004_36px.jpg"
GROUP = PHOTOS / "t1.jpg"
#: The shared server's limits (small, so oversize requests are cheap to send).
MAX_BODY_MB, MAX_PIXELS, MAX_FILES = 2, 4_000_000, 4


def files(field: str, *paths: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    buf = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def assert_json_error(r: httpx.Response, status: int, *needles: str) -> str:
    """A refusal: ``status``, a JSON body ``{"error": one line}`` holding ``needles``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    msg = body["error"]
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def start_server(tmp: Path, key: str, *args: str) -> ServerProcess:
    key_file = tmp / "api.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return ServerProcess(
        ["--api-key-file", key_file, *args], tmp / "server.log", env={"LRFACE_API_KEY": ""}
    ).start()


@pytest.fixture(scope="module")
def key() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def server(tmp_path_factory, key):
    """The shared server: 2 workers, a new .npz gallery, small limits."""
    tmp = tmp_path_factory.mktemp("serve")
    srv = start_server(
        tmp,
        key,
        "--workers",
        "2",
        "--gallery",
        tmp / "watchlist.npz",
        "--max-body-mb",
        str(MAX_BODY_MB),
        "--max-pixels",
        str(MAX_PIXELS),
        "--max-files",
        str(MAX_FILES),
    )
    srv.gallery = tmp / "watchlist.npz"  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server, key):
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as c:
        yield c


# ---------------------------------------------------------------------- open paths, auth


def test_every_worker_loads_its_models_once(server):
    """--workers 2: two worker processes, each announcing its models loaded at start."""
    import re

    ready = re.findall(r"worker (\d+) ready, models loaded: (.*)", server.log.read_text())
    assert len({pid for pid, _ in ready}) == len(ready) == 2, ready
    assert all("mobilefacenet-arcface" in models for _, models in ready)


def test_health_page_and_docs_need_no_key(server):
    r = httpx.get(server.url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and 'id="verify-form"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert httpx.get(server.url + "/static/page.js").status_code == 200
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {
        "/verify",
        "/embed",
        "/identify",
        "/detect",
        "/healthz",
        "/models",
        "/gallery/identities",
        "/gallery/identities/{identity}",
    } <= set(spec["paths"])
    assert httpx.get(server.url + "/docs").status_code == 200


def test_api_key_is_required(server, key):
    url = server.url
    assert_json_error(httpx.get(url + "/models"), 401, "missing API key")
    assert_json_error(
        httpx.get(url + "/models", headers={"X-API-Key": key[:-1] + "!"}), 401, "invalid API key"
    )
    assert_json_error(httpx.get(url + "/models", headers={"Authorization": f"Basic {key}"}), 401)
    # refused before the body is read: a body far above the limit still gets 401, not 413
    r = httpx.post(url + "/embed", files=files("images", *BUSH), headers={"X-API-Key": "x" * 20})
    assert_json_error(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(url + "/models", headers={"X-API-Key": key})
    assert r.status_code == 200
    rows = {m["name"]: m for m in r.json()}
    assert rows["mobilefacenet-arcface"]["found"] and "path" not in rows["lrface-mbf"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--host", "0.0.0.0", "--no-auth"], "refusing to serve a non-loopback address"),
        (["--host", "192.168.1.20"], "no API key"),
        (["--no-auth", "--api-key-file", "KEYFILE"], "--no-auth was given but an API key"),
        (["--api-key-file", "SHORTKEY"], "fewer than 16"),
        (["--api-key-file", "MISSING"], "cannot read the API key file"),
        (["--no-auth", "--detector", "bogus"], "unknown detector"),
        (["--no-auth", "--gallery", "GALLERYDIR"], "no such gallery"),
    ],
)
def test_bad_configuration_refused_before_binding(capsys, monkeypatch, tmp_path, argv, needle):
    monkeypatch.delenv("LRFACE_API_KEY", raising=False)
    (tmp_path / "key").write_text(secrets.token_urlsafe(24))
    (tmp_path / "short").write_text("abc123")
    subs = {
        "KEYFILE": tmp_path / "key",
        "SHORTKEY": tmp_path / "short",
        "MISSING": tmp_path / "nope",
        "GALLERYDIR": tmp_path / "not-a-gallery",
    }
    rc = main(["serve", *(str(subs.get(a, a)) for a in argv)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and needle in err, err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- happy paths


def test_verify_answers_as_the_cli(client):
    r = client.post(
        "/verify",
        files=files("image1", *BUSH[:1]) + files("image2", BUSH[1]),
        data={"crops": "true"},
    )
    assert r.status_code == 200, r.text
    got = r.json()
    want = verify(*BUSH).to_dict()  # the library in this process, same pair
    crops = [im.pop("crop_png") for im in got["images"]]
    for im, p in zip(want["images"], BUSH):
        im["source"] = p.name  # the server names an upload by its file name
    assert got == want and got["same"] is True
    for c in crops:
        assert decode_data_url(c).shape == (112, 112, 3)
    r = client.post("/verify", files=files("image1", BUSH[0]) + files("image2", POWELL))
    assert r.status_code == 200 and r.json()["same"] is False


def test_detect_and_embed(client, aligned_crop):
    r = client.post("/detect", files=files("image", GROUP))
    assert r.status_code == 200
    assert len(r.json()["faces"]) == 6 and r.json()["image"] == "t1.jpg"
    r = client.post("/embed", files=[*files("images", *ABEL), ("images", ("x.jpg", b"no", "a/b"))])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "per-face" and out["embedding_size"] == 128
    assert [e["source"] for e in out["embeddings"]] == [p.name for p in ABEL]
    assert [e["model"] for e in out["embeddings"]] == [TEACHER, TEACHER]  # 250 px photos
    assert out["failed"] == [{"source": "x.jpg", "error": out["failed"][0]["error"]}]
    assert "not a readable image" in out["failed"][0]["error"]
    got = np.array([e["embedding"] for e in out["embeddings"]], np.float32)
    # each face with the model verify would choose, as lrface.embed
    np.testing.assert_allclose(got, embed(list(ABEL)), atol=1e-5)
    # the CLI's --no-detect mode: a pre-cut aligned crop, only resized
    r = client.post(
        "/embed",
        files=[("images", ("crop.png", png(aligned_crop), "image/png"))],
        data={"detect": "false", "model": "mobilefacenet-arcface"},
    )
    assert r.status_code == 200, r.text
    want = embed([aligned_crop], model="mobilefacenet-arcface", detect=False)
    np.testing.assert_allclose(r.json()["embeddings"][0]["embedding"], want[0], atol=1e-5)


def test_enrol_identify_remove(client, server):
    r = client.post(
        "/gallery/identities", data={"identity": "Abel Pacheco"}, files=files("images", ABEL[0])
    )
    assert r.status_code == 200, r.text
    assert r.json()["identity"] == "Abel Pacheco" and r.json()["enrolled"] == 1
    r = client.post(
        "/gallery/identities", data={"identity": "Colin Powell"}, files=files("images", POWELL)
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/identify", files=files("images", ABEL[1], AARON), data={"top_k": "2", "crops": "true"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    abel, aaron = out["results"]
    assert abel["probe"] == ABEL[1].name and abel["identity"] == "Abel Pacheco"
    assert abel["model"] == aaron["model"] == TEACHER and out["model"] == "per-face"
    threshold = out["thresholds"][TEACHER]
    assert abel["score"] >= threshold > aaron["score"] and aaron["identity"] == "unknown"
    assert len(abel["candidates"]) == 2 and abel["candidates"][0]["identity"] == "Abel Pacheco"
    assert decode_data_url(abel["crop_png"]).shape == (112, 112, 3)
    assert abel["face"]["source"] == ABEL[1].name and abel["face"]["face_size_px"] > 64
    listed = {
        e["identity"]: e["images"] for e in client.get("/gallery/identities").json()["identities"]
    }
    assert listed["Abel Pacheco"] == 1 and listed["Colin Powell"] == 1
    # on disk, as `lrface identify` would read it
    assert {"Abel Pacheco", "Colin Powell"} <= set(FlatGallery.load(server.gallery).identities)
    r = client.delete("/gallery/identities/Colin Powell")
    assert r.status_code == 200 and r.json()["removed"] == 1
    assert_json_error(client.delete("/gallery/identities/Colin Powell"), 404, "not enrolled")
    r = client.post("/identify", files=files("images", POWELL))
    names = [c["identity"] for c in r.json()["results"][0]["candidates"]]
    assert "Colin Powell" not in names
    assert client.delete("/gallery/identities/Abel Pacheco").status_code == 200  # for later tests


def _as_uploaded(result: dict, paths: tuple[Path, ...]) -> dict:
    """A CLI ``--json`` result with its paths named as the server names an upload (by
    its file name)."""
    names = {str(p): p.name for p in paths}
    out = dict(result)
    for key in ("probe", "source"):
        if key in out:
            out[key] = names[out[key]]
    if "face" in out:
        out["face"] = _as_uploaded(out["face"], paths)
    return out


def _cli_json(capsys, argv: list[str]) -> list:
    capsys.readouterr()
    assert main(argv) == 0
    import json

    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("forced", [None, LR_STUDENT])
def test_embed_and_identify_route_each_face_as_the_cli(client, server, tmp_path, capsys, forced):
    """/embed and /identify choose each face's model as `lrface embed` / `lrface identify`
    (a 17 px face -> lrface-mbf, 128 px faces -> the teacher), or take the one forced by
    the `model` field as --model; answers compared with the CLI on the same photos and
    the same gallery file."""
    probes = (SMALL, ABEL[1], AARON)
    model = ["--model", forced] if forced else []
    data = {"model": forced} if forced else {}
    want_models = [forced] * 3 if forced else [LR_STUDENT, TEACHER, TEACHER]

    r = client.post("/embed", files=files("images", *probes), data=data)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == (forced or "per-face")
    assert [e["model"] for e in out["embeddings"]] == want_models
    npz = tmp_path / "probes.npz"
    assert main(["embed", *map(str, probes), "--out", str(npz), "--quiet", *model]) == 0
    with np.load(npz, allow_pickle=False) as z:
        assert list(z["face_models"]) == want_models
        assert [e["face"]["crop"] for e in out["embeddings"]] == list(z["face_crops"])
        got = np.array([e["embedding"] for e in out["embeddings"]], np.float32)
        np.testing.assert_allclose(got, z["embeddings"], atol=1e-5)

    r = client.post(
        "/gallery/identities", data={"identity": "Abel Pacheco"}, files=files("images", ABEL[0])
    )
    assert r.status_code == 200, r.text
    try:
        r = client.post("/identify", files=files("images", *probes), data={"top_k": "1", **data})
        assert r.status_code == 200, r.text
        out = r.json()
        cli = _cli_json(
            capsys,
            ["identify", "--gallery", str(server.gallery), *map(str, probes), "--json",
             "--top-k", "1", *model],
        )  # fmt: skip
    finally:
        assert client.delete("/gallery/identities/Abel Pacheco").status_code == 200
    assert [res["model"] for res in out["results"]] == want_models
    assert out["model"] == (forced or "per-face") and out["gallery_model"] == TEACHER
    assert set(out["thresholds"]) == set(want_models)
    if not forced:  # the student's probe is decided at its calibrated threshold vs the teacher
        assert out["thresholds"][LR_STUDENT] != out["thresholds"][TEACHER]
    assert len(cli) == len(out["results"]) == 3
    for got, want in zip(out["results"], cli):
        want = _as_uploaded(want, probes)
        assert got["score"] == pytest.approx(want.pop("score"), abs=1e-5)
        assert got["candidates"][0]["score"] == pytest.approx(
            want["candidates"][0].pop("score"), abs=1e-5
        )
        got = {k: v for k, v in got.items() if k != "score"}
        got["candidates"] = [{"identity": c["identity"]} for c in got["candidates"]]
        assert got == want
    small, abel, aaron = out["results"]
    assert small["identity"] == abel["identity"] == "Abel Pacheco"
    assert aaron["identity"] == "unknown"
    assert small["face"]["face_size_px"] < 64 < abel["face"]["face_size_px"]


def test_embed_crop_modes_as_the_cli(client, tmp_path):
    """detect=false with crop_mode (CLI --no-detect --crop-mode): the 36 px photo read as
    a box crop goes to lrface-box, as an aligned crop to lrface-mbf, as `lrface embed`."""
    for mode, want in (("box", BOX_MODEL), ("aligned", LR_STUDENT)):
        r = client.post(
            "/embed", files=files("images", SMALL), data={"detect": "false", "crop_mode": mode}
        )
        assert r.status_code == 200, r.text
        (row,) = r.json()["embeddings"]
        assert row["model"] == want and row["face"]["crop_mode"] == mode
        npz = tmp_path / f"{mode}.npz"
        argv = ["embed", str(SMALL), "--out", str(npz), "--quiet", "--no-detect"]
        assert main([*argv, "--crop-mode", mode]) == 0
        with np.load(npz, allow_pickle=False) as z:
            assert list(z["face_models"]) == [want]
            np.testing.assert_allclose([row["embedding"]], z["embeddings"], atol=1e-5)
    r = client.post("/embed", files=files("images", SMALL), data={"crop_mode": "box"})
    assert_json_error(r, 422, "--crop-mode box applies to pre-cut crops")


# ---------------------------------------------------------------------- bad requests


def test_bad_uploads_get_one_json_error_each(client, server):
    jpeg = BUSH[0].read_bytes()
    grey = png(np.full((200, 200, 3), 127, np.uint8))
    big = png(np.zeros((2100, 2100, 3), np.uint8))  # 4.4 MP, above the 4 MP limit; ~20 kB
    pair = files("image1", BUSH[0])
    cases = [
        (
            dict(files=[*pair, ("image2", ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg"))]),
            422,
            "cut.jpg: JPEG data is truncated",
        ),
        (dict(files=[*pair, ("image2", ("empty.jpg", b"", "image/jpeg"))]), 422, "empty"),
        (
            dict(files=[*pair, ("image2", ("notes.txt", b"hello", "text/plain"))]),
            422,
            "notes.txt: not a readable image",
        ),
        (
            dict(files=[*pair, ("image2", ("grey.png", grey, "image/png"))]),
            422,
            "grey.png: no face found",
        ),
        (
            dict(files=[*pair, ("image2", ("big.png", big, "image/png"))]),
            422,
            "big.png: 2100x2100",
            "above the 4 MP limit",
        ),
        (dict(files=pair), 422, "image2: Field required"),
        (
            dict(files=pair + files("image2", BUSH[1]), data={"face_index": "two"}),
            422,
            "face_index",
        ),
        (
            dict(files=pair + files("image2", BUSH[1]), data={"face_index": "7"}),
            422,
            "--face-index 7 out of range",
        ),
        (
            dict(files=pair + files("image2", BUSH[1]), data={"model": "/etc/passwd"}),
            422,
            "not a recogniser known to this server",
        ),
        (dict(files=pair + files("image2", BUSH[1]), data={"threshold": "nan"}), 422, "threshold"),
        (
            dict(files=pair + files("image2", BUSH[1]), data={"detector": "../x.onnx"}),
            422,
            "unknown detector",
        ),
        (
            dict(
                content=b"garbage--xyz",
                headers={"content-type": "multipart/form-data; boundary=xyz"},
            ),
            400,
            "malformed request body",
        ),
    ]
    for kwargs, status, *needles in cases:
        assert_json_error(client.post("/verify", **kwargs), status, *needles)
    # limits: body (declared and chunked), files per request
    over = [("images", (f"{i}.jpg", os.urandom(700_000), "image/jpeg")) for i in range(3)]
    assert_json_error(client.post("/embed", files=over), 413, "above the server's 2 MB limit")

    def chunked():
        yield b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
        for _ in range(MAX_BODY_MB + 1):
            yield os.urandom(1 << 20)
        yield b"\r\n--b--\r\n"

    r = client.post(
        "/embed", content=chunked(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert "content-length" not in r.request.headers
    assert_json_error(r, 413, "above the server's 2 MB limit")
    assert_json_error(
        client.post("/embed", files=files("images", *[ABEL[0]] * 5)),
        422,
        "5 images, more than this server's 4",
    )
    assert_json_error(
        client.post(
            "/gallery/identities", data={"identity": "unknown"}, files=files("images", ABEL[0])
        ),
        422,
        "reserved",
    )
    r = client.post(
        "/gallery/identities",
        data={"identity": "Half"},
        files=[*files("images", ABEL[0]), ("images", ("g.png", grey, "image/png"))],
    )
    assert_json_error(r, 422, "g.png: no face found", "nothing was enrolled")
    assert "Half" not in {
        e["identity"] for e in client.get("/gallery/identities").json()["identities"]
    }
    assert_json_error(client.get("/nowhere"), 404)
    assert_json_error(client.put("/verify"), 405)
    assert httpx.get(server.url + "/healthz").status_code == 200  # still serving


def test_timeout_answers_503_and_writes_nothing(tmp_path, key):
    """--timeout: a request past it stops before its next step with 503 (the app in this
    process, started and stopped through its lifespan like uvicorn does)."""
    import asyncio

    from lrface.serve.app import create_app
    from lrface.serve.options import ServeOptions

    gallery = tmp_path / "g.npz"
    app = create_app(ServeOptions(gallery=str(gallery), timeout=1e-6), key)

    async def requests() -> list[httpx.Response]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://app",
                headers={"X-API-Key": key},
            ) as c,
        ):
            return [
                await c.post(
                    "/gallery/identities", data={"identity": "Late"}, files=files("images", ABEL[0])
                ),
                await c.post("/verify", files=files("image1", BUSH[0]) + files("image2", BUSH[1])),
            ]

    enrol, pair = asyncio.run(requests())
    assert_json_error(enrol, 503, "limit", "nothing was written")
    assert enrol.headers["retry-after"] == "1"
    assert_json_error(pair, 503, "limit")
    assert FlatGallery.load(gallery).identities == []


def test_a_request_queued_past_its_deadline_never_starts(key):
    """A request still waiting for the worker's inference thread at --timeout is taken
    out of the queue and answered 503 at its deadline (not when the thread frees up)."""
    import asyncio

    from lrface.serve.app import create_app
    from lrface.serve.options import ServeOptions

    app = create_app(ServeOptions(timeout=1.0), key)
    release = threading.Event()

    async def queued_verify() -> tuple[httpx.Response, float]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://app",
                headers={"X-API-Key": key},
            ) as c,
        ):
            busy = app.state.engine.executor.submit(release.wait, 60)  # the worker busy
            t0 = time.monotonic()
            r = await c.post("/verify", files=files("image1", BUSH[0]) + files("image2", BUSH[1]))
            waited = time.monotonic() - t0
            release.set()
            busy.result()
            return r, waited

    r, waited = asyncio.run(queued_verify())
    assert_json_error(r, 503, "1 s limit", "the worker was free")
    assert 0.9 < waited < 30


# ---------------------------------------------------------------------- concurrency, crashes


def test_concurrent_enrol_and_identify(client, server):
    """Enrolments in both workers at once, searches beside them: none lost, none fails."""
    names = [f"Concurrent {i}" for i in range(6)]
    photos = [ABEL[0], BUSH[0], POWELL, AARON, ABEL[1], BUSH[1]]

    def enrol(i: int) -> httpx.Response:
        return client.post(
            "/gallery/identities", data={"identity": names[i]}, files=files("images", photos[i])
        )

    def search(_: int) -> httpx.Response:
        return client.post("/identify", files=files("images", BUSH[1]))

    with ThreadPoolExecutor(10) as pool:
        jobs = [pool.submit(enrol, i) for i in range(6)] + [
            pool.submit(search, i) for i in range(4)
        ]
        answers = [j.result() for j in jobs]
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    listed = {
        e["identity"]: e["images"] for e in client.get("/gallery/identities").json()["identities"]
    }
    assert all(listed.get(n) == 1 for n in names), listed
    on_disk = FlatGallery.load(server.gallery)
    assert set(names) <= set(on_disk.identities)
    # every worker searches the latest gallery: two searches, both see every new identity
    for _ in range(2):
        r = client.post("/identify", files=files("images", BUSH[1]), data={"top_k": "100"})
        seen = {c["identity"] for c in r.json()["results"][0]["candidates"]}
        assert set(names) <= seen
    for n in names:  # later tests search the same server
        assert client.delete(f"/gallery/identities/{n}").status_code == 200


def _post_until_killed(url: str, auth: dict, batch: list, sent: threading.Event) -> None:
    """Enrol ``batch`` as "Victim"; the server may be killed under the request."""
    sent.set()
    with contextlib.suppress(httpx.HTTPError):  # the server died under it: expected
        httpx.post(
            url + "/gallery/identities",
            headers=auth,
            data={"identity": "Victim"},
            files=batch,
            timeout=120,
        )


def test_kill9_during_enrol_leaves_before_or_after(tmp_path, key):
    """kill -9 the server while it enrols: after a restart the gallery holds the identity
    with all its images or not at all, and a killed writer's temporary file is gone."""
    gallery = tmp_path / "g.npz"
    srv = start_server(tmp_path, key, "--gallery", gallery, "--max-files", "8")
    auth = {"X-API-Key": key}
    try:
        r = httpx.post(
            srv.url + "/gallery/identities",
            headers=auth,
            data={"identity": "Base"},
            files=files("images", POWELL),
            timeout=120,
        )
        assert r.status_code == 200, r.text
        batch = files("images", *ABEL, *BUSH, AARON)
        for delay in (0.3, 1.5):
            sent = threading.Event()
            t = threading.Thread(target=_post_until_killed, args=(srv.url, auth, batch, sent))
            t.start()
            sent.wait()
            time.sleep(delay)
            srv.kill()
            t.join()
            (tmp_path / f".{gallery.name}.killed.part").write_bytes(b"half a write")
            srv = ServerProcess(srv.args, srv.log, env={"LRFACE_API_KEY": ""}).start()
            assert not (tmp_path / f".{gallery.name}.killed.part").exists()
            g = FlatGallery.load(gallery)
            assert g.identities[0] == "Base" and len(g.sources_of("Base")) == 1
            assert g.identities[1:] in ([], ["Victim"])
            if "Victim" in g:
                assert g.sources_of("Victim") == [p[1][0] for p in batch]
                r = httpx.delete(srv.url + "/gallery/identities/Victim", headers=auth)
                assert r.status_code == 200
    finally:
        srv.stop()


_WRITER = """
import sys, numpy as np
from lrface.serve.store import GalleryStore
from lrface.serve.limits import Deadline
store = GalleryStore(sys.argv[1], "unused", "mean")
store.prepare()
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
for i in range(len(store.current().identities) - 1, 10**6):
    e = rng.normal(size=(3, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    store.write(lambda g: g.add(f"id-{i:05d}", e, ["a", "b", "c"]), Deadline(60))
"""


SEED_IMAGES = 40


def _unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    e = rng.normal(size=(n, 8)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _new_gallery(path: Path, kind: str, rng: np.random.Generator) -> None:
    """A gallery of 8-d embeddings holding one identity, "seed", of :data:`SEED_IMAGES`
    images (an IVF index trains on at least 39 rows)."""
    rows = _unit_rows(rng, SEED_IMAGES)
    sources = [f"s{i}" for i in range(SEED_IMAGES)]
    if kind == "npz":
        g = FlatGallery("m", None, 8)
        g.add("seed", rows, sources)
        g.save(path)
    else:
        pytest.importorskip("faiss", reason="IVF galleries need faiss-cpu (dev extra)")
        from lrface.search.ivf import build_ivf

        model = {"name": "m", "sha256": None, "embedding_size": 8, "teacher": None}
        build_ivf(path, [(["seed"] * SEED_IMAGES, rows, sources)], model, 0.3, nlist=1)


@pytest.mark.parametrize("kind", ["npz", "ivf"])
def test_store_survives_kill9_at_any_moment(tmp_path, kind):
    """A writer enrolling as fast as it can, killed at random moments: the gallery always
    opens, holds seed, id-0, id-1, ... in order, each complete (3 images)."""
    from lrface.search.ivf import open_gallery

    path = tmp_path / ("g.npz" if kind == "npz" else "g_ivf")
    rng = np.random.default_rng(0)
    _new_gallery(path, kind, rng)
    counts = []
    for round_ in range(5):
        cmd = [sys.executable, "-c", _WRITER, str(path), str(round_)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.4)))
        proc.kill()
        proc.wait()
        g = open_gallery(path)
        names = g.identities
        assert names == ["seed"] + [f"id-{i:05d}" for i in range(len(names) - 1)]
        counts_of = g.image_counts()
        assert counts_of.pop("seed") == SEED_IMAGES and set(counts_of.values()) <= {3}
        counts.append(len(names))
    assert counts == sorted(counts) and counts[-1] > 1


@pytest.mark.parametrize("kind", ["npz", "ivf"])
def test_store_writes_are_seen_by_every_worker(tmp_path, kind):
    """Two stores on one gallery (two workers): a write through one is searched by the
    other; a change that raises writes nothing (an .npz: not even what it changed before
    raising); remove drops the identity everywhere."""
    from lrface.serve.limits import Deadline
    from lrface.serve.store import GalleryStore

    path = tmp_path / ("g.npz" if kind == "npz" else "g_ivf")
    rng = np.random.default_rng(1)
    _new_gallery(path, kind, rng)
    a, b = (GalleryStore(path, "unused", "mean") for _ in range(2))
    a.prepare()
    b.prepare()
    assert b.current().identities == ["seed"]
    new = np.repeat(_unit_rows(rng, 1), 2, axis=0)  # one direction: its template is exact
    a.write(lambda g: g.add("Ann", new, ["x", "y"]), Deadline(30))
    assert b.current().identities == ["seed", "Ann"]
    hit = b.current().identify(new[:1], threshold=0.5, top_k=1)[0]
    assert hit["identity"] == "Ann" and hit["score"] > 0.5

    def bad(g):
        if kind == "npz":  # in memory until saved: even a change already made is dropped
            g.add("Bob", new, ["x", "y"])
        raise LrfaceError("refused")

    with pytest.raises(LrfaceError):
        b.write(bad, Deadline(30))
    assert a.current().identities == ["seed", "Ann"]
    assert b.write(lambda g: g.remove("Ann"), Deadline(30)) == 2
    assert a.current().identities == ["seed"]


# ---------------------------------------------------------------------- the operator page


def _chromium() -> tuple[str, str] | None:
    browser = next(
        (
            shutil.which(b)
            for b in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(b)
        ),
        None,
    )
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_operator_page_in_a_real_browser(server, key, tmp_path):
    found = _chromium()
    if found is None:
        note = os.environ.get("LRFACE_CHROMIUM_NOTE", "")
        pytest.skip(
            "no Chromium with chromedriver found (Debian: apt-get install chromium "
            "chromium-driver)" + (f"; {note}" if note else "")
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (dev extra)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(found[1]))
    wait = WebDriverWait(driver, 120)
    el = lambda i: driver.find_element(By.ID, i)  # noqa: E731
    try:
        driver.get(server.url + "/")
        el("api-key").send_keys(key)
        # verify two photos: verdict and the two aligned crops
        el("verify-image1").send_keys(str(BUSH[0]))
        el("verify-image2").send_keys(str(BUSH[1]))
        el("verify-run").click()
        wait.until(ec.visibility_of_element_located((By.ID, "verify-result")))
        assert el("verify-verdict").text.startswith("same person: similarity")
        crops = el("verify-crops").find_elements(By.TAG_NAME, "img")
        assert len(crops) == 2
        assert all(
            driver.execute_script("return arguments[0].naturalWidth", c) == 112 for c in crops
        )
        # enrol, then find the person with another photo, then remove them
        el("enrol-identity").send_keys("Page Person")
        el("enrol-images").send_keys(str(ABEL[0]))
        el("enrol-run").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "identities"), "Page Person (1 image)"))
        el("identify-probe").send_keys(str(ABEL[1]))
        el("identify-run").click()
        wait.until(
            ec.text_to_be_present_in_element((By.ID, "identify-decision"), "match: Page Person")
        )
        rows = el("identify-candidates").find_elements(By.TAG_NAME, "tr")
        assert rows and rows[0].text.split()[1:3] == ["Page", "Person"]
        assert driver.execute_script("return arguments[0].naturalWidth", el("identify-crop")) == 112
        el("identities").find_element(
            By.CSS_SELECTOR, "button[data-identity='Page Person']"
        ).click()
        wait.until(ec.alert_is_present()).accept()
        wait.until_not(ec.text_to_be_present_in_element((By.ID, "identities"), "Page Person"))
        # an error is shown as the server's one line
        el("verify-image2").send_keys(str(PHOTOS / "README.md"))
        el("verify-run").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "not a readable image"))
    finally:
        driver.quit()
    listed = httpx.get(server.url + "/gallery/identities", headers={"X-API-Key": key}).json()
    assert "Page Person" not in {e["identity"] for e in listed["identities"]}


# ---------------------------------------------------------------------- the worker's turn


def test_worker_turns_are_granted_in_arrival_order():
    """FairLock: waiters get the lock in the order they asked, a waiter that times out
    leaves the queue without taking it, and the lock is free again after the last."""
    from lrface.serve.turns import FairLock

    lock = FairLock()
    assert lock.acquire(timeout=0)
    order: list[int] = []
    queued = threading.Semaphore(0)

    def waiter(i: int) -> None:
        queued.release()
        assert lock.acquire(timeout=30)
        order.append(i)
        lock.release()

    threads = []
    for i in range(8):  # each waiter is queued before the next one starts
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        queued.acquire()
        deadline = time.monotonic() + 10
        while len(lock._waiters) <= i and time.monotonic() < deadline:
            time.sleep(0.001)
        threads.append(t)
    assert not lock.acquire(timeout=0.05)  # held, 8 ahead: times out, leaves the queue
    assert len(lock._waiters) == 8
    lock.release()
    for t in threads:
        t.join(30)
    assert order == list(range(8))
    assert lock.acquire(timeout=0)  # free again
    lock.release()
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()
