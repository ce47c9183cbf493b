"""The model registry: every named model with its files, hashes, licence and preprocessing.

Shipped models (the teacher, YuNet, the students, all in ``weights/``) and models trained
with ``lrface distill`` are described by JSON cards (``weights/*.json``, ``<run>/*.json``);
models whose licence forbids shipping them (SCRFD, insightface recognisers) are the
built-in table :data:`MODELS`.  Files and cards are found in this order (first hit wins):

1. an explicit path, or ``model_dir`` (CLI ``--model-dir``);
2. ``$LRFACE_MODEL_DIR``;
3. ``$LRFACE_HOME/models`` (``LRFACE_HOME`` defaults to ``~/.lrface``);
4. the shipped models: ``lrface/weights/`` of an installed wheel, else the clone's ``weights/``;
5. insightface's packs, ``~/.insightface/models/*/`` (e.g. ``buffalo_l``).

A missing file raises :class:`~lrface.errors.ModelFileError` naming the file, every
directory searched and where to download it; a sha256 mismatch, a card without a
sha256 or a malformed card raise the same error: nothing unverified is ever loaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal, overload

from lrface.errors import ModelFileError
from lrface.io.fileio import sha256_file

log = logging.getLogger("lrface")



def _shipped_weights_dir() -> Path:
    """Where the shipped models are: ``lrface/weights/`` in an installed wheel (package
    data mapped from ``weights/`` by setup.py), else the clone's top-level ``weights/``
    (a clone on ``PYTHONPATH`` or an editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "weights"
    return installed if installed.is_dir() else package.parent / "weights"


#: The directory of the shipped models and cards (:func:`_shipped_weights_dir`).
PACKAGE_WEIGHTS = _shipped_weights_dir()
#: The models every install ships in :data:`PACKAGE_WEIGHTS` (name -> card file name).
SHIPPED_CARDS = {
    name: f"{name}.json"
    for name in (
        "mobilefacenet-arcface",
        "lrface-mbf",
        "lrface-box",
        "lrface-tiny-16",
        "lrface-tiny-24",
        "lrface-tiny-32",
        "yunet",
    )
}

#: The default score threshold of each detector type, for the detectors of :data:`MODELS`
#: and a detector card without ``det_thresh`` (the shipped ``yunet.json``).
DETECTOR_THRESHOLDS = {"scrfd": 0.5, "yunet": 0.6}

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to find, verify and feed one model.

    ``mean``/``std`` are in pixel units (0-255) and apply per channel in ``color`` order:
    ``x_norm = (x - mean) / std``.  ``sha256`` is required: lrface never loads a weights
    file it cannot verify.  Files that come inside an insightface pack name the pack
    (``pack``), the member's name inside it (``pack_file``) and the zip's sha256.
    Students exported to ONNX may also carry their torch weights (``torch_file``,
    ``torch_sha256``) for fine-tuning and re-export.  ``kind`` is the model's role
    (:data:`KINDS`); a detector carries its default score threshold (``det_thresh``).
    """

    name: str
    kind: str  # "teacher" | "recognizer" | "student" | "detector"
    file: str
    sha256: str
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
    #: students: threshold for a teacher-HR vs student-LR pair (``verify``'s mixed pairs)
    threshold_vs_teacher: float | None = None
    pack: str | None = None  # insightface pack (zip) holding the file
    pack_file: str | None = None  # the file's name inside the pack (default: ``file``)
    pack_sha256: str | None = None  # sha256 of the pack zip
    runtime: str = "onnx"  # "onnx" | "torch"
    arch: str | None = None  # torch architecture for students
    #: the full JSON card (shipped and trained models); not part of equality or the hash
    card: dict[str, Any] | None = dataclasses.field(default=None, compare=False, hash=False)
    card_path: str | None = None
    detector_type: str | None = None  # "scrfd" | "yunet"
    #: detectors: the score threshold used when none is given (in (0, 1))
    det_thresh: float | None = None
    torch_file: str | None = None  # torch weights beside an ONNX student's card
    torch_sha256: str | None = None
    precision: str = "fp32"  # "fp32" | "int8" (statically quantized, benchmarks/quantize.py)
    quantized_from: str | None = None  # int8 models: the fp32 model's name

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("card", None)
        return d


_IF_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{}.zip"
#: sha256 of insightface's v0.7 pack zips (as published for that release).
_PACK_SHA256 = {
    "buffalo_l": "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    "buffalo_m": "d98264bd8f2dc75cbc2ddce2a14e636e02bb857b3051c234b737bf3b614edca9",
}

#: Models that are not shipped in ``weights/`` (their licences forbid it): found in
#: ``$LRFACE_HOME``, insightface's packs, or fetched.  Shipped models (the teacher, YuNet,
#: the students) are described by their JSON cards in ``weights/``.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="arcface-r50",
            kind="recognizer",
            file="w600k_r50.onnx",
            sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
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
            pack_sha256=_PACK_SHA256["buffalo_l"],
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
            det_thresh=DETECTOR_THRESHOLDS["scrfd"],
            pack="buffalo_m",
            pack_file="det_2.5g.onnx",
            pack_sha256=_PACK_SHA256["buffalo_m"],
        ),
        ModelSpec(
            name="scrfd-500m",
            kind="detector",
            file="scrfd_500m_kps.onnx",
            sha256="517cb1980c72422e676738fc45431700fb7cbee56d0f825b623ee427b3e5ce58",
            url=None,
            license="non-commercial research only (insightface model zoo)",
            description="SCRFD-500MF with 5 keypoints, fixed 640x640 input (fast); no direct "
            "download: export it from insightface's detection/scrfd model zoo",
            detector_type="scrfd",
            det_thresh=DETECTOR_THRESHOLDS["scrfd"],
        ),
        ModelSpec(
            name="scrfd-10g",
            kind="detector",
            file="det_10g.onnx",
            sha256="5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
            url=_IF_URL.format("buffalo_l"),
            license="non-commercial research only (insightface model zoo)",
            description="SCRFD-10GF with 5 keypoints from insightface's buffalo_l pack",
            detector_type="scrfd",
            det_thresh=DETECTOR_THRESHOLDS["scrfd"],
            pack="buffalo_l",
            pack_sha256=_PACK_SHA256["buffalo_l"],
        ),
    ]
}


def lrface_home() -> Path:
    """``$LRFACE_HOME`` or ``~/.lrface``."""
    return Path(os.environ.get("LRFACE_HOME", "~/.lrface")).expanduser()


def search_dirs(model_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for model files and cards, in lookup order."""
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


def verify_sha256(
    path: Path, expected: str, spec_name: str, url: str | None, card_path: str | None = None
) -> None:
    """Raise :class:`ModelFileError` unless ``path`` hashes to ``expected`` (required).

    The fix the message suggests fits where the model came from (:func:`repair_hint`):
    only a registry model with a URL can be fetched; a card's model is restored or
    re-exported (``card_path``: the card that recorded ``expected``).
    """
    if not expected:
        raise ModelFileError(
            f"{path}: no sha256 is recorded for model {spec_name}, so lrface will not load "
            "it; add the file's sha256 to its card (or re-export it with `lrface export`)"
        )
    actual = sha256_file(path)
    if actual != expected:
        where = f" (card {card_path})" if card_path else ""
        raise ModelFileError(
            f"{path}: sha256 mismatch for model {spec_name}{where} (expected "
            f"{expected[:12]}..., got {actual[:12]}...): the file is corrupt, tampered with "
            f"or a different version; {repair_hint(spec_name, url, card_path)}"
        )


def is_shipped_card(card_path: str | os.PathLike[str]) -> bool:
    """True for a card in the package's ``weights/`` directory (a shipped model)."""
    try:
        return Path(card_path).resolve().parent == PACKAGE_WEIGHTS.resolve()
    except OSError:
        return False


def repair_hint(name: str, url: str | None, card_path: str | None = None) -> str:
    """How to get a good copy of model ``name``'s weights, fitting where it came from.

    A shipped card: ``git checkout weights/``.  A user's card (trained, exported, or a
    copy in a model directory): re-export, or fix ``sha256`` in that card (never ``models
    fetch``: only registry names can be fetched).  A registry model with a URL: ``lrface
    models fetch NAME``; one without: the source in ``lrface models list``.
    """
    if card_path:
        if is_shipped_card(card_path):
            return "restore it (git checkout weights/, or reinstall lrface)"
        shipped = (PACKAGE_WEIGHTS / f"{name}.json").is_file()
        copy = " or copy the shipped files back from weights/ (git checkout weights/)"
        return (
            f"re-export the model (`lrface export` or `lrface distill`){copy if shipped else ''}"
            f", or fix sha256 in {card_path} if you trust this file"
        )
    if url:
        return f"get it again with `lrface models fetch {name}` (downloads {url})"
    return "get it again from the source named in `lrface models list`"


def locate(spec: ModelSpec, model_dir: str | os.PathLike[str] | None = None) -> Path:
    """Find ``spec.file`` in the lookup order and verify its sha256.

    Models described by a card (shipped or trained) keep their weights beside the card.
    """
    if spec.card_path:
        path = Path(spec.card_path).parent / spec.file
        if not path.is_file():
            raise ModelFileError(
                f"{path}: weights of model {spec.name} are missing beside its card "
                f"{spec.card_path}; {repair_hint(spec.name, spec.url, spec.card_path)}"
            )
        verify_sha256(path, spec.sha256, spec.name, spec.url, spec.card_path)
        return path
    dirs = search_dirs(model_dir)
    for d in dirs:
        for path in _candidates(d, spec):
            if path.is_file():
                verify_sha256(path, spec.sha256, spec.name, spec.url)
                return path
    searched = ", ".join(str(d) for d in dirs)
    how = (
        f"`lrface models fetch {spec.name}` (downloads {spec.url})"
        if spec.url
        else "the source named in `lrface models list`"
    )
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


def torch_weights(spec: ModelSpec) -> Path:
    """The verified torch weights of a student (its ``.pt``), for fine-tuning and export.

    A torch student's weights file itself; for an ONNX student, the ``torch_file``
    its card names beside it.  Raises :class:`ModelFileError` when there are none.
    """
    if spec.runtime == "torch":
        return locate(spec)
    if not (spec.torch_file and spec.card_path):
        raise ModelFileError(
            f"{spec.name}: has no torch weights (an ONNX model); pass a student trained by "
            "`lrface distill` (its .pt card)"
        )
    path = Path(spec.card_path).parent / spec.torch_file
    if not path.is_file():
        raise ModelFileError(
            f"{path}: torch weights of {spec.name} are missing beside its card; "
            f"{repair_hint(spec.name, spec.url, spec.card_path)}"
        )
    verify_sha256(path, spec.torch_sha256 or "", spec.name, spec.url, spec.card_path)
    return path


def _candidates(d: Path, spec: ModelSpec) -> list[Path]:
    """``d/file``, and for files that come in an insightface pack ``d/<pack>/file`` and
    ``d/<pack>/<pack_file>`` (the name the file has inside the pack)."""
    out = [d / spec.file]
    if spec.pack:
        out.append(d / spec.pack / spec.file)
        if spec.pack_file:
            out.append(d / spec.pack / spec.pack_file)
            out.append(d / spec.pack_file)
    return out


# ---------------------------------------------------------------------- model cards

#: The roles of a model (a card's ``kind``): the HR teacher, another recogniser, a student
#: in its teacher's space (its card names the teacher), a face detector.
KINDS = ("teacher", "recognizer", "student", "detector")
PRECISIONS = ("fp32", "int8")
RUNTIMES = ("onnx", "torch")
DETECTOR_TYPES = ("scrfd", "yunet")
_MAX_CARD_BYTES = 1 << 20


class _Card:
    """Typed access to one JSON card; every bad field is a one-line ModelFileError."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data, self.path = data, path

    @property
    def fix(self) -> str:
        """How to repair this card: shipped cards are restored, a user's card re-exported."""
        if is_shipped_card(self.path):
            return "restore the card (git checkout weights/, or reinstall lrface)"
        return f"fix the field in {self.path} or re-export the model with `lrface export`"

    def fail(self, key: str, want: str, got: Any) -> ModelFileError:
        shown = repr(got)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return ModelFileError(
            f"{self.path}: model card field {key!r} must be {want}, got {shown}; {self.fix}"
        )

    def get(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise ModelFileError(f"{self.path}: model card lacks field {key!r}; {self.fix}")
            return default
        return self.data[key]

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        v = self.get(key, default, required=required)
        if v is None and required:
            raise self.fail(key, "a non-empty string", v)
        if v is not None and (not isinstance(v, str) or (required and not v.strip())):
            raise self.fail(key, "a non-empty string", v)
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> Any:
        v = self.text(key, default, required=default is None)
        if v is not None and v not in choices:
            raise self.fail(key, "one of " + ", ".join(choices), v)
        return v

    def integer(self, key: str, lo: int, hi: int, *, required: bool = False) -> int | None:
        v = self.get(key, None, required=required)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"an integer in [{lo}, {hi}]", v)
        return int(v)

    def number(self, key: str, lo: float, hi: float) -> float | None:
        v = self.get(key, None)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= float(v) <= hi:
            raise self.fail(key, f"a number in [{lo}, {hi}]", v)
        return float(v)

    @overload
    def sha(self, key: str, *, required: Literal[True]) -> str: ...
    @overload
    def sha(self, key: str, *, required: bool) -> str | None: ...

    def sha(self, key: str, *, required: bool) -> str | None:
        v = self.get(key, None)
        if v is None and required:
            raise ModelFileError(
                f"{self.path}: model card has no {key!r}; lrface loads only weights it can "
                "verify: restore the card or re-export the model with `lrface export`"
            )
        if v is not None and not (
            isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
        ):
            raise self.fail(key, "a sha256 (64 lower-case hex digits)", v)
        return v

    def triple(self, pre: dict[str, Any], key: str, default: tuple[float, ...]) -> tuple:
        v = pre.get(key, default)
        if (
            not isinstance(v, list | tuple)
            or len(v) != 3
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
            or not all(-1e4 < float(x) < 1e4 for x in v)
            or (key == "std" and not all(float(x) >= 1e-3 for x in v))
        ):
            want = "3 numbers from 0.001 to 1e4" if key == "std" else "3 numbers in (-1e4, 1e4)"
            raise self.fail(f"preprocessing.{key}", f"a list of {want}", v)
        return tuple(float(x) for x in v)

    @overload
    def filename(self, key: str, *, required: Literal[True]) -> str: ...
    @overload
    def filename(self, key: str, *, required: bool) -> str | None: ...

    def filename(self, key: str, *, required: bool) -> str | None:
        v = self.text(key, None, required=required)
        if v is not None and (Path(v).name != v or v in (".", "..")):
            raise self.fail(key, "a file name beside the card (no directories)", v)
        return v


def spec_from_card(card_path: str | os.PathLike[str]) -> ModelSpec:
    """Build a :class:`ModelSpec` from a model's JSON card (shipped, trained or exported).

    Every field is type-checked; a card that is not a JSON object, lacks a field, has a
    field of the wrong type or range, or lacks ``sha256`` raises :class:`ModelFileError`
    (one line naming the card and the fix).
    """
    card_path = Path(card_path)
    data = _read_card(card_path)
    c = _Card(data, card_path)
    kind = c.choice("kind", KINDS, "student")
    runtime = c.choice("runtime", RUNTIMES, "torch" if kind == "student" else "onnx")
    pre, color = _card_preprocessing(c)
    recogniser = kind != "detector"
    detector_type = c.choice("detector_type", DETECTOR_TYPES) if kind == "detector" else None
    arch = _card_arch(c, runtime)
    torch_w = c.get("torch_weights")
    if torch_w is not None and not isinstance(torch_w, dict):
        raise c.fail("torch_weights", "an object with file and sha256", torch_w)
    tw = _Card(torch_w or {}, card_path)
    precision = c.choice("precision", PRECISIONS, "fp32")
    quant = c.get("quantization", {})
    if not isinstance(quant, dict):
        raise c.fail("quantization", "an object", quant)
    if precision == "int8" and runtime != "onnx":
        raise c.fail("runtime", "onnx for an int8 model", runtime)
    return ModelSpec(
        name=c.text("name", required=True),
        kind=kind,
        file=c.filename("weights_file", required=True),
        sha256=c.sha("sha256", required=True),
        url=c.text("url"),
        license=c.text("license", "Apache-2.0 (weights distilled by lrface)"),
        description=c.text("description", ""),
        input_size=c.integer("input_size", 8, 1024, required=recogniser),
        color=color,
        mean=c.triple(pre, "mean", IMAGENET_MEAN),
        std=c.triple(pre, "std", IMAGENET_STD),
        embedding_size=c.integer("embedding_size", 1, 65536, required=recogniser),
        threshold=c.number("threshold", -1.0, 1.0),
        threshold_note=c.text("threshold_note", ""),
        threshold_vs_teacher=c.number("threshold_vs_teacher", -1.0, 1.0),
        runtime=runtime,
        arch=arch,
        card=data,
        card_path=str(card_path.resolve()),
        detector_type=detector_type,
        det_thresh=_card_det_thresh(c, detector_type),
        torch_file=tw.filename("file", required=False) if torch_w else None,
        torch_sha256=tw.sha("sha256", required=True) if torch_w else None,
        precision=precision,
        quantized_from=_Card(quant, card_path).text("from") if precision == "int8" else None,
    )


def _read_card(card_path: Path) -> dict[str, Any]:
    """The JSON object of the card at ``card_path`` (at most 1 MB, UTF-8); anything else
    (unreadable, too large, not JSON, not an object) raises :class:`ModelFileError`."""
    try:
        if card_path.stat().st_size > _MAX_CARD_BYTES:
            raise ModelFileError(f"{card_path}: model card is over 1 MB; not a model card")
        data = json.loads(card_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ModelFileError(
            f"{card_path}: unreadable model card ({reason}); restore it or re-export the model"
        ) from None
    if not isinstance(data, dict):
        raise ModelFileError(
            f"{card_path}: model card is a JSON {type(data).__name__}, not an object; "
            "restore it or re-export the model"
        )
    return data


def _card_preprocessing(c: _Card) -> tuple[dict[str, Any], str]:
    """``(preprocessing, color)``: the card's ``preprocessing`` object (default ``{}``) and
    its colour order, ``"RGB"`` (default) or ``"BGR"``; anything else raises."""
    pre = c.get("preprocessing", {})
    if not isinstance(pre, dict):
        raise c.fail("preprocessing", "an object", pre)
    color = pre.get("color", "RGB")
    if color not in ("RGB", "BGR"):
        raise c.fail("preprocessing.color", "RGB or BGR", color)
    return pre, color


def _card_det_thresh(c: _Card, detector_type: str | None) -> float | None:
    """A detector card's ``det_thresh`` (a score in (0, 1)), else its type's default
    (:data:`DETECTOR_THRESHOLDS`); None for a recogniser."""
    if detector_type is None:
        return None
    value = c.number("det_thresh", 0.0, 1.0)
    if value is None:
        return DETECTOR_THRESHOLDS[detector_type]
    if not 0.0 < value < 1.0:
        raise c.fail("det_thresh", "a number in (0, 1)", value)
    return value


def _card_arch(c: _Card, runtime: str) -> str | None:
    """The card's ``arch``: a name (default ``"mbf"``) for a torch model, checked against
    the registered architectures (:data:`lrface.models.students.ARCHS`) when the model is
    built; free text or None for ONNX; ``arch_kwargs`` must be an object when present."""
    arch = c.text("arch", "mbf", required=True) if runtime == "torch" else c.text("arch")
    arch_kwargs = c.get("arch_kwargs", {})
    if not isinstance(arch_kwargs, dict):
        raise c.fail("arch_kwargs", "an object", arch_kwargs)
    return arch


def model_cards(extra_dirs: list[Path] | None = None) -> dict[str, ModelSpec]:
    """Specs of every ``*.json`` card in the model directories, first hit wins, in lookup
    order: ``--model-dir``/``$LRFACE_MODEL_DIR``, ``$LRFACE_HOME/models``, ``weights/``.

    A card that does not parse is skipped here (listing must not fail on one bad file);
    loading it by name or path gives its error.
    """
    found: dict[str, ModelSpec] = {}
    dirs = [*(extra_dirs or []), *[d for d in search_dirs() if "*" not in d.name]]
    seen: set[Path] = set()
    for d in dirs:
        if d in seen or not d.is_dir():
            continue
        seen.add(d)
        for card in sorted(d.glob("*.json")):
            try:
                spec = spec_from_card(card)
            except ModelFileError:
                log.debug("skipping unreadable card %s", card)
                continue
            found.setdefault(spec.name, spec)
    return found


def student_cards(extra_dirs: list[Path] | None = None) -> dict[str, ModelSpec]:
    """The student specs among :func:`model_cards`."""
    return {n: s for n, s in model_cards(extra_dirs).items() if s.kind == "student"}


def all_models() -> dict[str, ModelSpec]:
    """Every known model: cards found in the model directories, then the built-ins."""
    out = model_cards()
    for name, spec in MODELS.items():
        out.setdefault(name, spec)
    return out


def model_rows(model_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """One row per known model, by name (``lrface models list --json``): ``name``, ``kind``,
    ``found`` (its file is present; not hashed), ``path`` (or None), ``license``, ``input``
    (crop side), ``dim`` (embedding size), ``threshold``."""
    rows: list[dict[str, Any]] = []
    for name, spec in sorted(all_models().items()):
        path = find(spec, model_dir)
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "found": path is not None,
                "path": str(path) if path else None,
                "license": spec.license,
                "input": spec.input_size,
                "dim": spec.embedding_size,
                "threshold": spec.threshold,
            }
        )
    return rows


def with_precision(spec: ModelSpec, precision: str | None) -> ModelSpec:
    """The model of ``spec`` at ``precision``: ``None`` = ``spec`` as named; ``"int8"``:
    its statically quantized copy, the card ``<name>-int8`` (``benchmarks/quantize.py``),
    found beside ``spec``'s card or in the model directories; ``"fp32"``: the float model
    (an int8 card's ``quantization.from``).  A missing copy raises
    :class:`ModelFileError` (one line naming the card looked for and the fix)."""
    if precision is None or precision == spec.precision:
        return spec
    if precision not in PRECISIONS:
        raise ModelFileError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        if not spec.quantized_from:
            raise ModelFileError(f"{spec.name}: int8 card names no fp32 model (quantization.from)")
        return get_spec(spec.quantized_from)
    if spec.kind == "detector" or spec.runtime != "onnx":
        raise ModelFileError(
            f"{spec.name}: no int8 model for a {spec.runtime} {spec.kind}; export it to ONNX "
            "(`lrface export`) and quantize that, or use --precision fp32"
        )
    name = f"{spec.name}-int8"
    if spec.card_path:
        beside = Path(spec.card_path).parent / f"{name}.json"
        if beside.is_file():
            return spec_from_card(beside)
    found = model_cards().get(name)
    if found is None:
        raise ModelFileError(
            f"{name}.json: no int8 model of {spec.name} found (beside its card or in the "
            f"model directories); make it with `python benchmarks/quantize.py --model "
            f"{spec.name}` or use --precision fp32"
        )
    return found


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
            spec = spec_from_card(card)
            if spec.file != path.name and spec.torch_file == path.name:
                return dataclasses.replace(
                    spec, runtime="torch", file=path.name, sha256=spec.torch_sha256 or ""
                )
            return spec
        raise ModelFileError(
            f"{path}: no model card {card.name} beside it; lrface needs the card "
            "(preprocessing, input size, sha256) written by `lrface distill` or `lrface export`"
        )
    if key in SHIPPED_CARDS:
        raise ModelFileError(
            f"{PACKAGE_WEIGHTS / SHIPPED_CARDS[key]}: the card of the shipped model {key} is "
            "missing, so this install lacks its model files; reinstall lrface (`pip install "
            "--force-reinstall lrface`) or, in a clone, restore them (`git checkout weights/`)"
        )
    names = ", ".join(sorted(models))
    raise ModelFileError(f"{key}: unknown model; choose one of {names} or pass a card path")
