"""Model registry: lookup order, sha256 verification, error messages, `models list`."""

import json
import shutil

import pytest
from conftest import SHARED

from lrface.cli.main import main
from lrface.errors import ModelFileError
from lrface.io.fileio import sha256_file
from lrface.models import registry

TEACHER_FILE = SHARED / "models" / "mobilefacenet_arcface.onnx"
SCRFD_FILE = SHARED / "models" / "scrfd_2.5g_bnkps.onnx"


def _spec():
    return registry.get_spec("scrfd-2.5g")


def test_lookup_order(tmp_path, monkeypatch):
    explicit, envdir, home = tmp_path / "explicit", tmp_path / "env", tmp_path / "home"
    for d in (explicit, envdir, home / "models"):
        d.mkdir(parents=True)
        shutil.copy(SCRFD_FILE, d / SCRFD_FILE.name)
    monkeypatch.setenv("LRFACE_HOME", str(home))
    monkeypatch.setenv("LRFACE_MODEL_DIR", str(envdir))
    assert registry.locate(_spec(), explicit) == explicit / SCRFD_FILE.name
    assert registry.locate(_spec()) == envdir / SCRFD_FILE.name
    monkeypatch.delenv("LRFACE_MODEL_DIR")
    assert registry.locate(_spec()) == home / "models" / SCRFD_FILE.name
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
    bad = tmp_path / SCRFD_FILE.name
    data = bytearray(SCRFD_FILE.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 mismatch") as exc:
        registry.locate(_spec(), tmp_path)
    assert "lrface models fetch scrfd-2.5g" in str(exc.value)


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


# ---------------------------------------------------------------------- tampered files
# One verified-load path: every weights file is checked against its card or registry
# entry; no corrupt or unverifiable file is loaded and nothing falls back silently.

WEIGHTS = registry.PACKAGE_WEIGHTS


def _copy_student(dest, student="lrface-tiny-16", **card_changes):
    """A copy of a shipped ONNX student (card + weights) in ``dest``; card edited."""
    dest.mkdir(parents=True, exist_ok=True)
    card = json.loads((WEIGHTS / f"{student}.json").read_text())
    shutil.copy(WEIGHTS / card["weights_file"], dest / card["weights_file"])
    for k, v in card_changes.items():
        if v is None:
            card.pop(k, None)
        else:
            card[k] = v
    (dest / f"{student}.json").write_text(json.dumps(card))
    return dest / f"{student}.json", dest / card["weights_file"]


def _flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_every_registry_entry_and_shipped_card_has_a_sha256():
    for name, spec in registry.all_models().items():
        assert spec.sha256 and len(spec.sha256) == 64, name
        if spec.pack:
            assert spec.pack_sha256 and len(spec.pack_sha256) == 64, name
    for card in WEIGHTS.glob("*.json"):
        spec = registry.spec_from_card(card)
        assert sha256_file(WEIGHTS / spec.file) == spec.sha256, card


def test_bit_flipped_student_is_refused_by_verify_without_fallback(tmp_path, capsys, same_pair):
    import cv2

    card, weights = _copy_student(tmp_path / "md", "lrface-mbf")
    _flip_byte(weights)
    small = tmp_path / "small.png"  # a 36x36 face: verify embeds it with lrface-mbf
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(same_pair[1])), (36, 36)))
    # --model-dir holding a (tampered) lrface-mbf takes precedence over the shipped copy ...
    rc = main(["verify", str(same_pair[0]), str(small), "--model-dir", str(card.parent)])
    err = capsys.readouterr().err
    # ... and is refused: exit 2, one line naming the file and the fix, no teacher fallback
    assert rc == 2 and "sha256 mismatch" in err and str(weights) in err
    assert "git checkout weights/" in err and "Traceback" not in err


def test_users_card_with_a_bad_sha_gets_a_hint_that_fits_a_path(tmp_path, capsys, same_pair):
    """Issue 29 (8): a card passed by PATH cannot be fetched by its name; the hint names
    the card and what to do with it (re-export, or fix its sha256), never `models fetch`."""
    card, weights = _copy_student(tmp_path / "mine", name="mytiny", sha256="0" * 64)
    rc = main(["verify", str(same_pair[0]), str(same_pair[1]), "--model", str(card)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "sha256 mismatch" in err and str(weights) in err
    assert "models fetch" not in err and f"fix sha256 in {card.resolve()}" in err
    assert "re-export" in err and "git checkout" not in err  # not a shipped model
    # a bad field of the user's card: the fix names that card, not `git checkout weights/`
    card.write_text(json.dumps({**json.loads(card.read_text()), "input_size": "big"}))
    rc = main(["verify", str(same_pair[0]), str(same_pair[1]), "--model", str(card)])
    err = capsys.readouterr().err
    assert rc == 2 and "'input_size'" in err and f"fix the field in {card}" in err, err
    assert "git checkout" not in err


def test_card_fields_are_checked_against_the_model_file(tmp_path, capsys, same_pair):
    """Issue 29 (7): a card claiming 512-d for a 128-d ONNX, or another input side, is
    refused when the model loads (one line naming the card and the field) -- before
    `gallery build` embeds anything, instead of blaming the embeddings afterwards."""
    root = tmp_path / "root" / "someone"
    root.mkdir(parents=True)
    shutil.copy(same_pair[0], root / "a.jpg")
    for field, value, gives in [("embedding_size", 512, "128-d"), ("input_size", 24, "16x16")]:
        card, weights = _copy_student(tmp_path / field, name="mine", **{field: value})
        rc = main(["gallery", "build", str(root.parent), "--model", str(card), "--no-detect",
                   "--quiet", "--out", str(tmp_path / f"{field}.npz")])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"model card {card.resolve()}: field {field!r} says {value}" in err, err
        assert str(weights) in err and gives in err and f"fix {field} in the card" in err
        assert not (tmp_path / f"{field}.npz").exists()


def test_torch_card_fields_are_checked_against_the_module(tmp_path):
    """The same check for a torch student (.pt): the embedding size from a forward pass,
    an input side the architecture cannot take named as the card's input_size."""
    pytest.importorskip("torch", reason="torch students need the train extra")
    from lrface.models.loader import load_embedder

    shipped = json.loads((WEIGHTS / "lrface-tiny-16.json").read_text())
    tw = shipped.pop("torch_weights")
    for field, value in [("embedding_size", 512), ("input_size", 24)]:
        d = tmp_path / field
        d.mkdir()
        shutil.copy(WEIGHTS / tw["file"], d / tw["file"])
        card = {**shipped, "name": f"t-{field}", "runtime": "torch", "weights_file": tw["file"],
                "sha256": tw["sha256"], field: value}  # fmt: skip
        (d / "t.json").write_text(json.dumps(card))
        with pytest.raises(ModelFileError) as exc:
            load_embedder(d / "t.json")
        msg = str(exc.value)
        assert "\n" not in msg and f"field {field!r} says {value}" in msg and "t.json" in msg
    good = load_embedder(WEIGHTS / "lrface-tiny-16.pt")
    assert (good.input_size, good.embedding_size) == (16, 128)


@pytest.mark.parametrize(
    ("weights", "changes", "needle"),
    [
        ("lrface-tiny-16.pt", {"runtime": "onnx"}, "onnxruntime cannot load it"),
        ("lrface-tiny-16.onnx", {"runtime": "torch"}, "torch cannot read it as student weights"),
        ("yunet_2026may.onnx", {"runtime": "onnx"}, "field 'input_size' says 16"),
        ("lrface-tiny-16.pt", {"runtime": "torch", "arch_kwargs": {"width": 100_000}},
         "the card's architecture (tiny, {'width': 100000}) does not fit"),
        ("lrface-tiny-16.onnx", {"preprocessing": {"std": [1e-30, 1, 1]}},
         "'preprocessing.std' must be a list of 3 numbers from 0.001 to 1e4"),
    ],
)  # fmt: skip
def test_cards_that_do_not_fit_their_file_are_one_line_errors(tmp_path, weights, changes, needle):
    """Found by the `model` fuzz target (benchmarks/fuzz.py): a card naming a real file
    with its true sha256 but the wrong runtime, a detector, arch_kwargs that would
    allocate ~100 GB, or a std that overflows float32 -- each is one ModelFileError
    naming the file or card (they were onnxruntime/pickle errors, NaN embeddings, or
    a huge allocation)."""
    from lrface.models.loader import load_embedder

    card = json.loads((WEIGHTS / "lrface-tiny-16.json").read_text())
    card.pop("torch_weights")
    shutil.copy(WEIGHTS / weights, tmp_path / weights)
    card.update(name="mine", weights_file=weights, sha256=sha256_file(WEIGHTS / weights))
    card.update(changes)
    (tmp_path / "mine.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError) as exc:
        load_embedder(tmp_path / "mine.json")
    msg = str(exc.value)
    assert "\n" not in msg and needle in msg and "mine.json" in msg, msg


def test_model_dir_student_wins_over_shipped(tmp_path, monkeypatch):
    card, _ = _copy_student(tmp_path / "md", "lrface-tiny-16", name="lrface-mbf")
    monkeypatch.setenv("LRFACE_MODEL_DIR", str(card.parent))
    spec = registry.get_spec("lrface-mbf")
    assert spec.card_path == str(card.resolve()) and spec.input_size == 16


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sha256": None}, "has no 'sha256'"),
        ({"sha256": "abc"}, "must be a sha256"),
        ({"input_size": "abc"}, "'input_size' must be an integer"),
        ({"runtime": "tensorflow"}, "'runtime' must be one of onnx, torch"),
        ({"weights_file": "../../etc/passwd"}, "a file name beside the card"),
        ({"preprocessing": {"mean": [1, 2]}}, "preprocessing.mean"),
        ({"threshold": "high"}, "'threshold' must be a number"),
        ({"name": None}, "lacks field 'name'"),
    ],
)
def test_malformed_cards_are_one_line_errors(tmp_path, change, message):
    card, _ = _copy_student(tmp_path, **change)
    with pytest.raises(ModelFileError, match=message) as exc:
        registry.spec_from_card(card)
    assert str(card) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("field", ["weights_file", "name"])
def test_required_field_set_to_null_is_a_one_line_error(tmp_path, field):
    card, _ = _copy_student(tmp_path)
    data = json.loads(card.read_text())
    data[field] = None
    card.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=f"'{field}' must be a non-empty string, got None"):
        registry.spec_from_card(card)


@pytest.mark.parametrize("text", ["[1, 2, 3]", "{not json", "", '"a string"', "null"])
def test_cards_that_are_not_json_objects(tmp_path, text):
    card = tmp_path / "x.json"
    card.write_text(text)
    with pytest.raises(ModelFileError, match="model card") as exc:
        registry.get_spec(card)
    assert "\n" not in str(exc.value)


def test_torch_card_with_wrong_architecture_is_refused(tmp_path):
    pytest.importorskip("torch", reason="torch students need the train extra")
    from lrface.models.loader import load_embedder

    card = json.loads((WEIGHTS / "lrface-tiny-16.json").read_text())
    for field in ("weights_file", "sha256"):
        card[field] = card["torch_weights"]["file"] if field == "weights_file" else None
    card.update(runtime="torch", sha256=card["torch_weights"]["sha256"])
    shutil.copy(WEIGHTS / "lrface-tiny-16.pt", tmp_path / "lrface-tiny-16.pt")
    card.pop("torch_weights")
    bad_arch = dict(card, arch="resnet999")
    (tmp_path / "a.json").write_text(json.dumps(bad_arch))
    with pytest.raises(ModelFileError, match="'arch' must be one of mbf, tiny"):
        load_embedder(tmp_path / "a.json")
    wrong = dict(card, arch="mbf", arch_kwargs={})  # an mbf card over tiny weights
    (tmp_path / "b.json").write_text(json.dumps(wrong))
    with pytest.raises(ModelFileError, match="does not fit the weights"):
        load_embedder(tmp_path / "b.json")
