"""Install and go: the main job runs from what the repository ships, on onnxruntime alone.

Every test here runs lrface in a fresh subprocess with ``LRFACE_HOME`` pointing at an empty
directory (no ``../shared``, no SCRFD), and with ``torch`` made unimportable, so the
inference path is proven torch-free and download-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest
from conftest import PHOTOS, REPO

# Imported first in every child: any attempt to import torch raises and is recorded.
_BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys
    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                sys.stderr.write("TORCH-IMPORT-ATTEMPT\\n")
                raise ImportError("torch is blocked in this test")
            return None
    sys.meta_path.insert(0, _NoTorch())
    """
)


def _run(tmp_path: Path, code: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LRFACE", "INSIGHTFACE"))}
    env["LRFACE_HOME"] = str(tmp_path / "empty-home")
    env["INSIGHTFACE_HOME"] = str(tmp_path / "no-insightface")
    env["LRFACE_CACHE"] = str(tmp_path / "cache")
    (tmp_path / "empty-home").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )


@pytest.fixture(scope="module")
def small_copy(tmp_path_factory) -> Path:
    """Abel_Pacheco_0004 shrunk to 36x36 (the README's example)."""
    path = tmp_path_factory.mktemp("small") / "b.jpg"
    img = cv2.imread(str(PHOTOS / "Abel_Pacheco_0004.jpg"))
    cv2.imwrite(str(path), cv2.resize(img, (36, 36), interpolation=cv2.INTER_AREA))
    return path


def test_main_jobs_run_without_torch_and_without_shared(tmp_path, small_copy):
    """verify (same: 0, different: 1), detect, embed, gallery build + identify and the
    folder benchmark, all from weights/ alone, never importing torch."""
    gal = tmp_path / "gal"
    for person, files in {
        "Abel_Pacheco": ["Abel_Pacheco_0001.jpg"],
        "George_W_Bush": ["George_W_Bush_0001.jpg"],
        "Colin_Powell": ["Colin_Powell_0001.jpg"],
    }.items():
        (gal / person).mkdir(parents=True)
        for f in files:
            (gal / person / f).write_bytes((PHOTOS / f).read_bytes())
    a, w2 = PHOTOS / "Abel_Pacheco_0001.jpg", PHOTOS / "George_W_Bush_0002.jpg"
    code = f"""
    import json, sys
    from lrface.cli import main
    rcs = {{}}
    rcs["same"] = main(["verify", {str(a)!r}, {str(small_copy)!r}, "--json"])
    rcs["diff"] = main(["verify", {str(w2)!r}, {str(small_copy)!r}])
    rcs["detect"] = main(["detect", {str(PHOTOS / "t1.jpg")!r}, "--json"])
    rcs["embed"] = main(["embed", {str(a)!r}, {str(small_copy)!r}, "--out", "e.npz", "--quiet"])
    rcs["gallery"] = main(["gallery", "build", {str(gal)!r}, "--out", "g.npz", "--quiet"])
    rcs["identify"] = main(["identify", {str(small_copy)!r}, "--gallery", "g.npz",
                            "--model", "lrface-mbf", "--json"])
    print("RCS" + json.dumps(rcs))
    print("TORCH-LOADED" if "torch" in sys.modules else "NO-TORCH")
    """
    p = _run(tmp_path, code)
    assert "Traceback" not in p.stderr, p.stderr
    assert "TORCH-IMPORT-ATTEMPT" not in p.stderr and "NO-TORCH" in p.stdout
    rcs = json.loads(p.stdout.split("RCS", 1)[1].splitlines()[0])
    assert rcs == {"same": 0, "diff": 1, "detect": 0, "embed": 0, "gallery": 0, "identify": 0}
    out = json.loads(p.stdout[p.stdout.index("{") : p.stdout.index("\n}\n") + 2])
    assert out["same"] is True
    assert out["models"] == ["mobilefacenet-arcface", "lrface-mbf"]  # HR teacher, LR student
    assert out["detector"] == "yunet"
    # the one notice line: SCRFD missing, YuNet used, how to get SCRFD
    notices = [ln for ln in p.stderr.splitlines() if "lrface models fetch scrfd-2.5g" in ln]
    assert len(notices) == 1, p.stderr
    assert "Abel_Pacheco" in p.stdout  # identify found the right identity


def test_models_list_shows_what_weights_ships(tmp_path):
    p = _run(tmp_path, "from lrface.cli import main; main(['models', 'list', '--json'])")
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    weights = str(REPO / "weights")
    for name in ("mobilefacenet-arcface", "yunet", "lrface-mbf", "lrface-tiny-16"):
        assert rows[name]["found"] and rows[name]["path"].startswith(weights), rows[name]
    assert rows["lrface-mbf"]["path"].endswith(".onnx")
    assert not rows["scrfd-2.5g"]["found"]  # non-commercial: never shipped


def test_torch_student_card_without_torch_is_one_line(tmp_path):
    """A .pt student (what `lrface distill` writes) needs the train extra: one line, exit 2."""
    code = f"""
    from lrface.cli import main
    raise SystemExit(main(["verify", {str(PHOTOS / "George_W_Bush_0001.jpg")!r},
                           {str(PHOTOS / "George_W_Bush_0002.jpg")!r},
                           "--model", {str(REPO / "weights" / "lrface-tiny-16.pt")!r}]))
    """
    p = _run(tmp_path, code)
    assert p.returncode == 2, p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and 'pip install "lrface[train]"' in err[0], p.stderr
    assert "Traceback" not in p.stderr
