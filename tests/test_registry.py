"""Model registry: lookup order, sha256 verification, error messages, `models list`."""

import json
import shutil

import pytest
from conftest import SHARED

from lrface.cli import main
from lrface.errors import ModelFileError
from lrface.models import registry

TEACHER_FILE = SHARED / "models" / "mobilefacenet_arcface.onnx"


def _spec():
    return registry.get_spec("mobilefacenet-arcface")


def test_lookup_order(tmp_path, monkeypatch):
    explicit, envdir, home = tmp_path / "explicit", tmp_path / "env", tmp_path / "home"
    for d in (explicit, envdir, home / "models"):
        d.mkdir(parents=True)
        shutil.copy(TEACHER_FILE, d / TEACHER_FILE.name)
    monkeypatch.setenv("LRFACE_HOME", str(home))
    monkeypatch.setenv("LRFACE_MODEL_DIR", str(envdir))
    assert registry.locate(_spec(), explicit) == explicit / TEACHER_FILE.name
    assert registry.locate(_spec()) == envdir / TEACHER_FILE.name
    monkeypatch.delenv("LRFACE_MODEL_DIR")
    assert registry.locate(_spec()) == home / "models" / TEACHER_FILE.name
    dirs = registry.search_dirs(explicit)
    assert (
        dirs[0] == explicit and dirs[1] == home / "models" and dirs[2] == registry.PACKAGE_WEIGHTS
    )


def test_insightface_pack_layout_is_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "if"))
    pack = tmp_path / "if" / "models" / "buffalo_m"
    pack.mkdir(parents=True)
    shutil.copy(SHARED / "models" / "scrfd_2.5g_bnkps.onnx", pack / "scrfd_2.5g_bnkps.onnx")
    spec = registry.get_spec("scrfd-2.5g")
    assert registry.locate(spec) == pack / "scrfd_2.5g_bnkps.onnx"


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_HOME", str(tmp_path))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "if"))
    with pytest.raises(ModelFileError) as exc:
        registry.locate(registry.get_spec("arcface-r50"))
    msg = str(exc.value)
    assert "w600k_r50.onnx" in msg and str(tmp_path / "models") in msg
    assert "buffalo_l.zip" in msg and "\n" not in msg


def test_sha256_mismatch(tmp_path, monkeypatch):
    bad = tmp_path / TEACHER_FILE.name
    data = bytearray(TEACHER_FILE.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 mismatch") as exc:
        registry.locate(_spec(), tmp_path)
    assert "lrface models fetch mobilefacenet-arcface" in str(exc.value)


def test_unknown_model():
    with pytest.raises(ModelFileError, match="unknown model"):
        registry.get_spec("no-such-model")


def test_models_list_cli(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert main(["models", "--json"]) == 0  # `lrface models` alone lists too
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == set(rows)
    assert main(["models", "fetch"]) == 2
    assert "name the models to fetch" in capsys.readouterr().err
    for name in (
        "mobilefacenet-arcface",
        "scrfd-2.5g",
        "scrfd-500m",
        "yunet",
        "arcface-r50",
        "scrfd-10g",
    ):
        assert name in rows and rows[name]["license"]
    assert rows["mobilefacenet-arcface"]["found"] is True
    assert rows["arcface-r50"]["found"] is False
