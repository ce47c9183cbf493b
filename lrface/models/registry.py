"""The model registry: every named model with its files, hashes, licence and preprocessing.

One table (:data:`MODELS`) describes the built-in models; shipped and user-trained
students are added from their JSON cards (``weights/*.json`` or a path given by the user).
Files are found in this order (first hit wins):

1. an explicit path, or ``model_dir`` (CLI ``--model-dir``);
2. ``$LRFACE_MODEL_DIR``;
3. ``$LRFACE_HOME/models`` (``LRFACE_HOME`` defaults to ``~/.lrface``);
4. the package's ``weights/`` directory;
5. insightface's packs, ``~/.insightface/models/*/`` (e.g. ``buffalo_l``).

A missing file raises :class:`~lrface.errors.ModelFileError` naming the file, every
directory searched and where to download it; a sha256 mismatch raises the same error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

PACKAGE_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to find, verify and feed one model.

    ``mean``/``std`` are in pixel units (0-255) and apply per channel in ``color`` order:
    ``x_norm = (x - mean) / std``.
    """

    name: str
    kind: str  # "teacher" | "recognizer" | "student" | "detector"
    file: str
    sha256: str | None
    url: str | None
    license: str
    description: str = ""
    input_size: int | None = None  # square side for recognisers; None = dynamic
    color: str = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    embedding_size: int | None = None
    threshold: float | None = None  # cosine similarity; same person if >= threshold
    threshold_note: str = ""
    pack: str | None = None  # insightface pack (zip) holding the file
    runtime: str = "onnx"  # "onnx" | "torch"
    arch: str | None = None  # torch architecture for students
    card: dict[str, Any] | None = None  # full JSON card for students
    card_path: str | None = None
    detector_type: str | None = None  # "scrfd" | "yunet"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("card", None)
        return d


_IF_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{}.zip"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="mobilefacenet-arcface",
            kind="teacher",
            file="mobilefacenet_arcface.onnx",
            sha256="e72a5710cce378dc46472b6b845cb90647634f2738d8c3e581735cf195b9866f",
            url="https://github.com/foamliu/MobileFaceNet/releases/tag/v1.0",
            license="Apache-2.0 (foamliu/MobileFaceNet)",
            description="HR teacher: MobileFaceNet, ArcFace loss, MS1M-refined; ONNX export",
            input_size=112,
            color="RGB",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            embedding_size=128,
            threshold=0.2878,
            threshold_note="max accuracy over all 6000 LFW pairs (HR, SCRFD-2.5g alignment, "
            "flip fusion); 10-fold accuracy 99.43 %",
        ),
        ModelSpec(
            name="arcface-r50",
            kind="recognizer",
            file="w600k_r50.onnx",
            sha256=None,
            url=_IF_URL.format("buffalo_l"),
            license="non-commercial research only (insightface model zoo)",
            description="insightface buffalo_l recogniser, ArcFace ResNet-50 on WebFace600K",
            input_size=112,
            color="RGB",
            mean=(127.5, 127.5, 127.5),
            std=(127.5, 127.5, 127.5),
            embedding_size=512,
            threshold=0.25,
            threshold_note="not calibrated here (file not available); insightface's usual value",
            pack="buffalo_l",
        ),
        ModelSpec(
            name="scrfd-2.5g",
            kind="detector",
            file="scrfd_2.5g_bnkps.onnx",
            sha256="bc24bb349491481c3ca793cf89306723162c280cb284c5a5e49df3760bf5c2ce",
            url=_IF_URL.format("buffalo_m"),
            license="non-commercial research only (insightface model zoo)",
            description="SCRFD-2.5GF with 5 keypoints (= det_2.5g.onnx of buffalo_m); default",
            detector_type="scrfd",
            pack="buffalo_m",
        ),
        ModelSpec(
            name="scrfd-500m",
            kind="detector",
            file="scrfd_500m_kps.onnx",
            sha256="517cb1980c72422e676738fc45431700fb7cbee56d0f825b623ee427b3e5ce58",
            url="https://github.com/deepinsight/insightface/tree/master/detection/scrfd",
            license="non-commercial research only (insightface model zoo)",
            description="SCRFD-500MF with 5 keypoints, fixed 640x640 input (fast)",
            detector_type="scrfd",
        ),
        ModelSpec(
            name="scrfd-10g",
            kind="detector",
            file="det_10g.onnx",
            sha256=None,
            url=_IF_URL.format("buffalo_l"),
            license="non-commercial research only (insightface model zoo)",
            description="SCRFD-10GF with 5 keypoints from insightface's buffalo_l pack",
            detector_type="scrfd",
            pack="buffalo_l",
        ),
        ModelSpec(
            name="yunet",
            kind="detector",
            file="yunet_2026may.onnx",
            sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
            url="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
            license="MIT (OpenCV model zoo)",
            description="YuNet face detector with 5 landmarks, via cv2.FaceDetectorYN",
            detector_type="yunet",
        ),
    ]
}


def lrface_home() -> Path:
    """``$LRFACE_HOME`` or ``~/.lrface``."""
    return Path(os.environ.get("LRFACE_HOME", "~/.lrface")).expanduser()


def search_dirs(model_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for model files, in lookup order."""
    dirs: list[Path] = []
    if model_dir:
        dirs.append(Path(model_dir).expanduser())
    env = os.environ.get("LRFACE_MODEL_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(lrface_home() / "models")
    dirs.append(PACKAGE_WEIGHTS)
    if_root = Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser() / "models"
    if if_root.is_dir():
        dirs.extend(sorted(p for p in if_root.iterdir() if p.is_dir()))
    else:
        dirs.append(if_root / "*")
    return dirs


_VERIFIED: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (hex), cached per (path, size, mtime) within the process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]


def verify_sha256(path: Path, expected: str | None, spec_name: str, url: str | None) -> None:
    """Raise :class:`ModelFileError` if ``path`` does not hash to ``expected``."""
    if not expected:
        return
    actual = sha256_of(path)
    if actual != expected:
        where = f"; get the right file with `lrface models fetch {spec_name}` or from {url}"
        raise ModelFileError(
            f"{path}: sha256 mismatch for model {spec_name} (expected {expected[:12]}..., "
            f"got {actual[:12]}...): the file is corrupt or a different version{where}"
        )


def locate(spec: ModelSpec, model_dir: str | os.PathLike[str] | None = None) -> Path:
    """Find ``spec.file`` in the lookup order and verify its sha256."""
    if spec.card_path:  # students carry their weights beside their card
        path = Path(spec.card_path).parent / spec.file
        if not path.is_file():
            raise ModelFileError(
                f"{path}: weights of model {spec.name} are missing beside its card "
                f"{spec.card_path}; restore the file (git checkout weights/) or re-export it"
            )
        verify_sha256(path, spec.sha256, spec.name, spec.url)
        return path
    dirs = search_dirs(model_dir)
    for d in dirs:
        for path in _candidates(d, spec):
            if path.is_file():
                verify_sha256(path, spec.sha256, spec.name, spec.url)
                return path
    searched = ", ".join(str(d) for d in dirs)
    how = f"`lrface models fetch {spec.name}` or download from {spec.url}" if spec.url else ""
    raise ModelFileError(
        f"{spec.file}: model file for {spec.name} not found (searched {searched}); "
        f"get it with {how} and put it in $LRFACE_HOME/models, or pass --model-dir"
    )


def find(spec: ModelSpec, model_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Like :func:`locate` but returns ``None`` for a missing file (no hashing)."""
    if spec.card_path:
        p = Path(spec.card_path).parent / spec.file
        return p if p.is_file() else None
    for d in search_dirs(model_dir):
        for path in _candidates(d, spec):
            if path.is_file():
                return path
    return None


def _candidates(d: Path, spec: ModelSpec) -> list[Path]:
    """``d/file``, and ``d/<pack>/file`` for files that come in an insightface pack."""
    out = [d / spec.file]
    if spec.pack:
        out.append(d / spec.pack / spec.file)
    return out


def spec_from_card(card_path: str | os.PathLike[str]) -> ModelSpec:
    """Build a :class:`ModelSpec` from a student's (or exported model's) JSON card."""
    card_path = Path(card_path)
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{card_path}: unreadable model card ({exc}); re-export it") from None
    pre = card.get("preprocessing", {})
    try:
        return ModelSpec(
            name=card["name"],
            kind=card.get("kind", "student"),
            file=card["weights_file"],
            sha256=card.get("sha256"),
            url=card.get("url"),
            license=card.get("license", "Apache-2.0 (weights distilled by lrface)"),
            description=card.get("description", ""),
            input_size=int(card["input_size"]),
            color=pre.get("color", "RGB"),
            mean=tuple(pre.get("mean", IMAGENET_MEAN)),
            std=tuple(pre.get("std", IMAGENET_STD)),
            embedding_size=int(card["embedding_size"]),
            threshold=card.get("threshold"),
            threshold_note=card.get("threshold_note", ""),
            runtime=card.get("runtime", "torch"),
            arch=card.get("arch"),
            card=card,
            card_path=str(card_path.resolve()),
        )
    except KeyError as exc:
        raise ModelFileError(f"{card_path}: model card lacks field {exc}; re-export it") from None


def student_cards(extra_dirs: list[Path] | None = None) -> dict[str, ModelSpec]:
    """Student specs found as ``*.json`` cards in ``weights/`` and the model directories."""
    found: dict[str, ModelSpec] = {}
    dirs = [PACKAGE_WEIGHTS, lrface_home() / "models", *(extra_dirs or [])]
    for d in dirs:
        if not d.is_dir():
            continue
        for card in sorted(d.glob("*.json")):
            try:
                spec = spec_from_card(card)
            except ModelFileError:
                continue
            found.setdefault(spec.name, spec)
    return found


def all_models() -> dict[str, ModelSpec]:
    """Built-in models plus every student card that can be found."""
    out = dict(MODELS)
    for name, spec in student_cards().items():
        out.setdefault(name, spec)
    return out


def get_spec(name_or_path: str | os.PathLike[str]) -> ModelSpec:
    """Resolve a registry name, a card (``.json``) or a weights file with a card beside it."""
    key = str(name_or_path)
    models = all_models()
    if key in models:
        return models[key]
    path = Path(key).expanduser()
    if path.suffix == ".json" and path.is_file():
        return spec_from_card(path)
    if path.suffix in (".pt", ".onnx", ".pth") and path.exists():
        card = path.with_suffix(".json")
        if card.is_file():
            return spec_from_card(card)
        raise ModelFileError(
            f"{path}: no model card {card.name} beside it; lrface needs the card "
            "(preprocessing, input size) written by `lrface distill` or `lrface export`"
        )
    names = ", ".join(sorted(models))
    raise ModelFileError(f"{key}: unknown model; choose one of {names} or pass a card path")
