"""What a model is: a card plus a registered architecture, roles, the one table of default
model names and the detectors' default thresholds -- on the shipped models of weights/."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import pytest
from conftest import LFW_IMAGES, PHOTOS, needs_shared

from lrface.distill.config import DistillConfig
from lrface.errors import LrfaceError, ModelFileError
from lrface.models import registry
from lrface.models.defaults import DEFAULTS, ROLES

torch = pytest.importorskip("torch", reason="torch students need the train extra")
from lrface.models import students  # noqa: E402
from lrface.models.torch_embedder import read_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
STUDENTS = ["lrface-mbf", "lrface-box", "lrface-tiny-16", "lrface-tiny-24", "lrface-tiny-32"]


@pytest.mark.parametrize("name", STUDENTS)
def test_every_shipped_student_is_a_registered_architecture_of_its_card(name):
    """The card's arch, arch_kwargs and input_size build, through the registry, a network
    that takes the shipped torch weights exactly (strict load) and embeds at its size."""
    spec = registry.get_spec(name)
    assert spec.kind == "student" and spec.arch in students.ARCHS
    net = students.create_for_input(spec.arch, spec.input_size, spec.card["arch_kwargs"])
    net.load_state_dict(read_state(registry.torch_weights(spec)))
    s = int(spec.input_size)
    assert net.eval()(torch.zeros(2, 3, s, s)).shape == (2, spec.embedding_size)


def test_input_size_is_stored_once_and_old_cards_agree():
    """A sized architecture takes the card's input_size; a card that also lists it among
    its arch_kwargs (the shipped tiny cards) must agree, else the build is refused."""
    kw = {"embedding_size": 128, "width": 32, "head_channels": 256}
    once = students.create_for_input("tiny", 24, kw)
    twice = students.create_for_input("tiny", 24, {**kw, "input_size": 24})
    assert once.input_size == twice.input_size == 24
    shapes = [p.shape for p in once.parameters()]
    assert shapes == [p.shape for p in twice.parameters()]
    with pytest.raises(ValueError, match="'input_size' says 24, but its arch_kwargs say 16"):
        students.create_for_input("tiny", 24, {**kw, "input_size": 16})
    with pytest.raises(ValueError, match="unknown student architecture 'resnet'; choose mbf, tiny"):
        students.create_student("resnet")


@pytest.mark.parametrize(
    ("student", "input_size", "arch", "size", "model_name"),
    [
        ("lrface-mbf", None, "mbf", 112, "lrface-mbf"),
        ("lrface-tiny", None, "tiny", 16, "lrface-tiny-16"),
        ("lrface-tiny", 20, "tiny", 20, "lrface-tiny-20"),
        ("lrface-tiny-24", None, "tiny", 24, "lrface-tiny-24"),
        ("lrface-tiny-32", None, "tiny", 32, "lrface-tiny-32"),
    ],
)
def test_student_names_map_through_the_registry(student, input_size, arch, size, model_name):
    cfg = DistillConfig(data="d", out="o", student=student, input_size=input_size)
    assert (cfg.arch, cfg.resolved_input_size(), cfg.model_name) == (arch, size, model_name)


def test_an_unregistered_student_name_is_refused_naming_the_choices():
    """No name parsing: a name the registry does not know is one error line, not a
    MobileFaceNet (the old fallback of anything not starting with lrface-tiny)."""
    cfg = DistillConfig(data="d", out="o", student="lrface-tiny-20")
    with pytest.raises(LrfaceError) as exc:
        cfg.check()
    msg = str(exc.value)
    assert "--student lrface-tiny-20: not a registered student" in msg and "\n" not in msg
    assert "lrface-mbf, lrface-tiny, lrface-tiny-16" in msg and "--input-size" in msg


@pytest.mark.parametrize("name", STUDENTS)
def test_shipped_cards_training_settings_give_their_architecture(name):
    """The recipe each shipped card records ("training") resolves, through the registry, to
    the card's own arch and input size."""
    card = json.loads((WEIGHTS / f"{name}.json").read_text())
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    cfg = DistillConfig(data="d", out="o", **{k: v for k, v in card["training"].items()
                                               if k in fields})  # fmt: skip
    assert (cfg.arch, cfg.resolved_input_size()) == (card["arch"], card["input_size"])


@needs_shared
def test_an_architecture_registered_in_one_place_is_a_student(tmp_path, monkeypatch):
    """Adding an architecture is one decorated class: it is then built by name, resolved
    by ``distill --student``, trained (one step, on LFW train-split identities), written
    to a card naming it, and loaded and run from that card like any model."""
    from lrface.cli.main import main
    from lrface.models.loader import load_embedder

    @students.register("test-linear", {"test-linear-8": {"input_size": 8}}, default_size=8)
    class Linear(torch.nn.Module):
        def __init__(self, input_size: int = 8, embedding_size: int = 128) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3 * input_size * input_size, embedding_size)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    try:
        net = students.create_for_input("test-linear", 8, {"embedding_size": 4})
        assert net(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
        cfg = DistillConfig(data="d", out="o", student="test-linear-8")
        assert (cfg.arch, cfg.resolved_input_size(), cfg.model_name) == (
            "test-linear", 8, "test-linear-8"
        )
        with pytest.raises(ValueError, match="registered twice"):
            students.register("test-linear", {})(Linear)
        with pytest.raises(LrfaceError, match="--width: settings of tiny students"):
            DistillConfig(data="d", out="o", student="test-linear-8", tiny_width=32).check()

        monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
        root = tmp_path / "people"
        for name in ("Abdullah_Gul", "Adam_Sandler", "Adrien_Brody", "Akhmed_Zakayev"):
            (root / name).mkdir(parents=True)
            for f in sorted((LFW_IMAGES / name).iterdir())[:3]:
                shutil.copy(f, root / name / f.name)
        out = tmp_path / "run"
        args = f"--data {root} --out {out} --student test-linear-8 --epochs 1 --batch-size 4 \
            --loss kd --max-steps 1 --calib-identities 0 --threads 1 --quiet"
        assert main(["distill", *args.split(), "--val-sizes", ""]) == 0
        card = json.loads((out / "test-linear-8.json").read_text())
        assert (card["arch"], card["arch_kwargs"], card["input_size"]) == (
            "test-linear", {"embedding_size": 128}, 8
        )
        emb = load_embedder(out / "test-linear-8.json")
        assert emb.embed_crops([cv2.imread(str(PHOTOS / "Abel_Pacheco_0004_36px.jpg"))]).shape == (
            1, 128
        )
    finally:
        students.ARCHS.pop("test-linear")


def test_every_default_is_an_installed_model_of_its_role():
    """Each entry of the one defaults table names a model of the role ROLES gives it
    (``auto``: a detector choice that resolves to one)."""
    from lrface.faces.detect import resolve_detector

    models = registry.all_models()
    assert set(ROLES) == {f.name for f in dataclasses.fields(DEFAULTS)}
    for entry, role in ROLES.items():
        name = getattr(DEFAULTS, entry)
        name = resolve_detector(name) if name == "auto" else name
        assert role in registry.KINDS and models[name].kind == role, (entry, name)


def test_commands_read_their_defaults_from_the_table():
    from lrface.cli.options import AdaptOptions, GalleryBuildOptions, WatchOptions
    from lrface.eval.benchmark import BenchmarkConfig
    from lrface.faces import detect, routing
    from lrface.serve.options import ServeOptions

    defaults = {f.name: f.default for cls in (AdaptOptions, GalleryBuildOptions, ServeOptions,
                WatchOptions) for f in dataclasses.fields(cls) if f.name in ("model",
                "gallery_model", "detector")}  # fmt: skip
    assert (
        DEFAULTS.teacher, DEFAULTS.lr_student, DEFAULTS.box_student
    ) == (routing.TEACHER, routing.LR_STUDENT, routing.BOX_MODEL)
    assert DEFAULTS.detector == detect.DEFAULT_DETECTOR
    bench = BenchmarkConfig("lfw", "d")
    assert bench.models == (DEFAULTS.teacher,) and bench.detector == DEFAULTS.benchmark_detector
    cfg = DistillConfig(data="d", out="o")
    assert (cfg.teacher, cfg.student) == (DEFAULTS.teacher, DEFAULTS.lr_student)
    assert {f.name: f.default for f in dataclasses.fields(GalleryBuildOptions)}["model"] == (
        DEFAULTS.teacher
    )
    assert set(defaults.values()) <= {DEFAULTS.teacher, DEFAULTS.adapt_student,
                                      DEFAULTS.watch_detector, DEFAULTS.detector, None}  # fmt: skip


def _model_name_defaults(path: Path, names: set[str]) -> list[str]:
    """``file:line`` of each registry model name written as a default in ``path``: a
    ``default=`` keyword, a parameter default or a module-level constant."""
    tree = ast.parse(path.read_text())
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "default":
            found.append(node.value)
        elif isinstance(node, ast.arguments):
            found.extend(node.defaults + [d for d in node.kw_defaults if d is not None])
    module_level = (n for n in tree.body if isinstance(n, ast.Assign | ast.AnnAssign))
    found.extend(n.value for n in module_level if n.value is not None)
    return [
        f"{path.name}:{v.lineno}"
        for v in found
        if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value in names
    ]


def test_no_module_spells_a_default_model_name():
    """Every default model name comes from lrface.models.defaults: no other module writes
    a registry name (or ``auto``) as a default."""
    names = {*registry.all_models(), *students.student_names()}
    offenders = [
        hit
        for path in sorted((REPO / "lrface").rglob("*.py"))
        if path.name != "defaults.py"
        for hit in _model_name_defaults(path, names)
    ]
    assert offenders == []


def test_detector_entries_carry_their_default_threshold(tmp_path):
    """Every detector of the registry has its default score threshold; a detector card may
    set its own (the loaded detector uses it), and a bad one is a one-line error."""
    from lrface.faces.detect import load_detector

    detectors = {n: s for n, s in registry.all_models().items() if s.kind == "detector"}
    assert {"yunet", "scrfd-2.5g", "scrfd-500m", "scrfd-10g"} <= set(detectors)
    assert all(0.0 < s.det_thresh < 1.0 for s in detectors.values())
    assert detectors["yunet"].det_thresh == registry.DETECTOR_THRESHOLDS["yunet"] == 0.6
    assert detectors["scrfd-2.5g"].det_thresh == registry.DETECTOR_THRESHOLDS["scrfd"] == 0.5
    assert load_detector("yunet").det_thresh == 0.6

    card = json.loads((WEIGHTS / "yunet.json").read_text())
    shutil.copy(WEIGHTS / card["weights_file"], tmp_path / card["weights_file"])
    (tmp_path / "strict.json").write_text(json.dumps({**card, "name": "strict", "det_thresh": 0.9}))
    strict = load_detector(str(tmp_path / "strict.json"))
    assert strict.det_thresh == 0.9
    image = cv2.imread(str(PHOTOS / "George_W_Bush_0001.jpg"))
    loose = load_detector("yunet").detect(image)
    assert loose and all(f.score >= 0.6 for f in loose)
    assert all(f.score >= 0.9 for f in strict.detect(image))
    (tmp_path / "bad.json").write_text(json.dumps({**card, "name": "bad", "det_thresh": 1.5}))
    with pytest.raises(ModelFileError, match="'det_thresh' must be a number in"):
        registry.spec_from_card(tmp_path / "bad.json")


def test_verify_reads_the_cross_model_threshold_from_any_student_card(tmp_path, monkeypatch):
    """A student against the teacher its card names (either order): that card's
    threshold_vs_teacher -- for any teacher, not one built-in name; a student against a
    model that is not its teacher has no calibrated threshold."""
    from lrface.api import cross_model_threshold

    mbf = registry.get_spec("lrface-mbf")
    assert cross_model_threshold(DEFAULTS.teacher, "lrface-mbf") == (
        mbf.threshold_vs_teacher, f"lrface-mbf card (vs {DEFAULTS.teacher})"
    )
    teacher = json.loads((WEIGHTS / "mobilefacenet-arcface.json").read_text())
    student = json.loads((WEIGHTS / "lrface-tiny-16.json").read_text())
    for card in (teacher, student):
        shutil.copy(WEIGHTS / card["weights_file"], tmp_path / card["weights_file"])
    student.pop("torch_weights")
    (tmp_path / "my-teacher.json").write_text(json.dumps({**teacher, "name": "my-teacher"}))
    mine = {**student, "name": "my-student", "threshold_vs_teacher": 0.123,
            "teacher": {"name": "my-teacher", "sha256": teacher["sha256"]}}  # fmt: skip
    (tmp_path / "my-student.json").write_text(json.dumps(mine))
    monkeypatch.setenv("LRFACE_MODEL_DIR", str(tmp_path))
    assert cross_model_threshold("my-student", "my-teacher") == (
        0.123, "my-student card (vs my-teacher)"
    )
    assert cross_model_threshold("my-teacher", "my-student")[0] == 0.123
    with pytest.raises(LrfaceError, match="no threshold is calibrated for this pair"):
        cross_model_threshold("my-student", DEFAULTS.teacher)
    with pytest.raises(LrfaceError, match="no threshold is calibrated for this pair"):
        cross_model_threshold("lrface-mbf", "lrface-tiny-16")
