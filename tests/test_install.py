"""Install and go: the main job runs from what the repository ships, on onnxruntime alone.

Every test here runs lrface in a fresh subprocess with ``LRFACE_HOME`` pointing at an empty
directory (no ``../shared``, no SCRFD), and with ``torch`` made unimportable, so the
inference path is proven torch-free and download-free."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

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
def small_copy() -> Path:
    """Abel_Pacheco_0004 shrunk to 36x36 (committed; the README's main-job probe)."""
    return PHOTOS / "Abel_Pacheco_0004_36px.jpg"


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
    from lrface.cli.main import main
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
    p = _run(tmp_path, "from lrface.cli.main import main; main(['models', 'list', '--json'])")
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    weights = str(REPO / "weights")
    for name in ("mobilefacenet-arcface", "yunet", "lrface-mbf", "lrface-tiny-16"):
        assert rows[name]["found"] and rows[name]["path"].startswith(weights), rows[name]
    assert rows["lrface-mbf"]["path"].endswith(".onnx")
    assert not rows["scrfd-2.5g"]["found"]  # non-commercial: never shipped


def test_torch_student_card_without_torch_is_one_line(tmp_path):
    """A .pt student (what `lrface distill` writes) needs the train extra: one line, exit 2."""
    code = f"""
    from lrface.cli.main import main
    raise SystemExit(main(["verify", {str(PHOTOS / "George_W_Bush_0001.jpg")!r},
                           {str(PHOTOS / "George_W_Bush_0002.jpg")!r},
                           "--model", {str(REPO / "weights" / "lrface-tiny-16.pt")!r}]))
    """
    p = _run(tmp_path, code)
    assert p.returncode == 2, p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and 'pip install "lrface[train]"' in err[0], p.stderr
    assert "Traceback" not in p.stderr


def _clean_env(home: Path) -> dict[str, str]:
    """This environment without lrface's variables or PYTHONPATH (so only an installed lrface
    is importable); ``LRFACE_HOME`` an empty directory (no SCRFD: the shipped YuNet)."""
    drop = ("LRFACE", "INSIGHTFACE", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    home.mkdir(exist_ok=True)
    env.update(LRFACE_HOME=str(home), INSIGHTFACE_HOME=str(home / "no-insightface"))
    return env


def test_readme_main_job_runs_verbatim_in_the_clone(tmp_path):
    """The README's first command, copied as written, in the clone's root: the output the
    README shows (stdout line and the one notice line), exit 0."""
    readme = (REPO / "README.md").read_text()
    command = re.search(r"^(lrface verify \S+ \S+)\s+# the main job$", readme, re.M)
    assert command, "README lost its main-job command"
    after = readme[command.end() :].split("```\n", 1)[1]  # past the command's block
    block = re.search(r"```\n(.*?)\n```", after, re.S)
    assert block, "README lost the output of its main-job command"
    shown = block.group(1).splitlines()
    args = command.group(1).split()[1:]
    env = _clean_env(tmp_path / "home")
    env["PYTHONPATH"] = str(REPO)  # what `pip install -e .` gives
    p = subprocess.run(
        [sys.executable, "-m", "lrface", *args], capture_output=True, text=True, timeout=120,
        cwd=REPO, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [shown[-1]]
    assert p.stderr.splitlines() == shown[:-1]


@pytest.mark.slow  # ~20 s: builds a wheel and a venv
def test_wheel_install_carries_the_models(tmp_path):
    """`pip install .` as a wheel: the shipped models come along as package data, are
    sha256-checked, and `lrface verify` runs outside the clone; a tampered or missing
    shipped file is one line naming it."""
    src = tmp_path / "src"  # a copy: the in-tree build leaves build/ and egg-info behind
    keep = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("lrface", "weights"):
        shutil.copytree(REPO / d, src / d, ignore=keep)
    for f in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    offline = ["--no-index", "--no-deps", "--quiet"]
    subprocess.run(
        [*pip, "wheel", *offline, "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("lrface-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "--disable-pip-version-check", "install", *offline, str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    # lrface's dependencies from this interpreter's environment, after lrface itself (a
    # .pth line only appends the directory: an editable lrface installed there stays off)
    site = Path(
        subprocess.check_output([str(py), "-c", "import sysconfig; "
                                 "print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    )  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_parent_env.pth").write_text("".join(f"{d}\n" for d in sorted(ours)))
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    for name in ("Abel_Pacheco_0001.jpg", "Abel_Pacheco_0004_36px.jpg"):
        shutil.copy(PHOTOS / name, run_dir / name)
    env = _clean_env(tmp_path / "home")

    def lrface(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / "lrface"), *args], capture_output=True, text=True,
            timeout=120, cwd=run_dir, env=env,
        )  # fmt: skip

    listed = {r["name"]: r for r in json.loads(lrface("models", "list", "--json").stdout)}
    installed = site / "lrface" / "weights"
    for name in ("mobilefacenet-arcface", "lrface-mbf", "lrface-tiny-16", "yunet"):
        assert listed[name]["path"].startswith(str(installed)), listed[name]
    assert (installed / "lrface-mbf.pt").is_file()  # torch weights too, for fine-tuning
    p = lrface("verify", "Abel_Pacheco_0001.jpg", "Abel_Pacheco_0004_36px.jpg")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("same person: similarity "), p.stdout
    assert "lrface-mbf" in p.stdout and "Traceback" not in p.stderr

    yunet = installed / "yunet_2026may.onnx"
    data = bytearray(yunet.read_bytes())
    data[-1] ^= 1
    yunet.write_bytes(bytes(data))
    p = lrface("verify", "Abel_Pacheco_0001.jpg", "Abel_Pacheco_0004_36px.jpg")
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(err) == 1 and "Traceback" not in p.stderr
    assert f"{yunet}: sha256 mismatch" in err[0]

    (installed / "yunet.json").unlink()
    p = lrface("verify", "Abel_Pacheco_0001.jpg", "Abel_Pacheco_0004_36px.jpg")
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(err) == 1 and "Traceback" not in p.stderr
    assert err[0].startswith(f"error: {installed / 'yunet.json'}: the card of the shipped model")
    assert "reinstall lrface" in err[0]
