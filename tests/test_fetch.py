"""`lrface models fetch` end to end against a local HTTP server (never the internet)."""

import hashlib
import http.server
import io
import threading
import zipfile
from functools import partial

import pytest
from conftest import SHARED

from lrface.errors import ModelFileError
from lrface.io.fileio import sha256_file
from lrface.models import registry
from lrface.models.fetch import fetch_model


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_single_file_checks_sha256(server, tmp_path, monkeypatch):
    root, url = server
    src = SHARED / "models" / "yunet_2026may.onnx"
    (root / src.name).write_bytes(src.read_bytes())
    dest = tmp_path / "models"
    path = fetch_model("yunet", dest_dir=dest, progress=False, url=f"{url}/{src.name}")
    assert path == dest / src.name
    assert sha256_file(path) == registry.get_spec("yunet").sha256
    # a corrupted upstream file is refused and nothing is left behind
    (root / "bad.onnx").write_bytes(b"not the model")
    with pytest.raises(ModelFileError, match="sha256"):
        fetch_model("yunet", dest_dir=tmp_path / "other", progress=False, url=f"{url}/bad.onnx")
    assert not list((tmp_path / "other").glob("*.onnx"))


def test_fetch_pack_unpacks_in_insightface_layout(server, tmp_path):
    root, url = server
    det = (SHARED / "models" / "scrfd_2.5g_bnkps.onnx").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("buffalo_m/scrfd_2.5g_bnkps.onnx", det)
        z.writestr("buffalo_m/readme.txt", "pack")
    (root / "buffalo_m.zip").write_bytes(buf.getvalue())
    dest = tmp_path / "models"
    path = fetch_model("scrfd-2.5g", dest_dir=dest, progress=False, url=f"{url}/buffalo_m.zip")
    assert path == dest / "buffalo_m" / "scrfd_2.5g_bnkps.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == registry.get_spec("scrfd-2.5g").sha256
    assert not (dest / "buffalo_m.zip").exists()


def test_fetch_404_and_no_direct_url(server, tmp_path):
    _, url = server
    with pytest.raises(ModelFileError, match="404"):
        fetch_model("yunet", dest_dir=tmp_path, progress=False, url=f"{url}/missing.onnx")
    with pytest.raises(ModelFileError, match="no direct download URL"):
        fetch_model("mobilefacenet-arcface", dest_dir=tmp_path, progress=False)


def test_pack_zip_from_the_registry_url_is_verified(server, tmp_path, monkeypatch):
    """The real buffalo_m layout (the detector is det_2.5g.onnx inside it); the zip itself is
    checked against the registry's sha256 when fetched from the registry's URL."""
    import dataclasses

    root, url = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("det_2.5g.onnx", (SHARED / "models" / "scrfd_2.5g_bnkps.onnx").read_bytes())
    (root / "buffalo_m.zip").write_bytes(buf.getvalue())
    good = hashlib.sha256(buf.getvalue()).hexdigest()
    spec = registry.MODELS["scrfd-2.5g"]
    for sha, ok in ((good, True), ("0" * 64, False)):
        monkeypatch.setitem(
            registry.MODELS,
            "scrfd-2.5g",
            dataclasses.replace(spec, url=f"{url}/buffalo_m.zip", pack_sha256=sha),
        )
        dest = tmp_path / sha[:4]
        if ok:
            path = fetch_model("scrfd-2.5g", dest_dir=dest, progress=False)
            assert path == dest / "buffalo_m" / "det_2.5g.onnx"
        else:
            with pytest.raises(ModelFileError, match="sha256"):
                fetch_model("scrfd-2.5g", dest_dir=dest, progress=False)
            assert not (dest / "buffalo_m").exists()
