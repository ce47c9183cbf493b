"""insightface RecordIO packs (train.rec + train.idx) read natively, without mxnet.

The test writes packs in the exact dmlc/insightface binary layout with its own writer
(independent of the reader under test): a header record 0, image records 1..N holding
JPEGs of real LFW photos (committed in tests/data), identity records, and one image record
split in two parts because its payload contains the magic number.  Malformed packs fail
with one-line errors.  Needs no ../shared (training from a pack: test_distill_data.py).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS

from lrface.datasets.recordio import RecordCrops, RecordFile
from lrface.datasets.sources import parse_source
from lrface.errors import DatasetError

MAGIC = 0xCED7230A


def _record(payload: bytes) -> bytes:
    """One dmlc RecordIO record; a payload holding the magic at a 4-byte boundary is split
    into parts (cflag 1, 2, ..., 3) without it, as dmlc::RecordIOWriter does."""
    out, start = b"", 0
    magic = struct.pack("<I", MAGIC)
    for i in range(0, len(payload) // 4 * 4, 4):
        if payload[i : i + 4] == magic:
            out += struct.pack("<II", MAGIC, ((1 if start == 0 else 2) << 29) | (i - start))
            out += payload[start:i]
            start = i + 4
    rest = payload[start:]
    out += struct.pack("<II", MAGIC, ((3 if start else 0) << 29) | len(rest))
    return out + rest + b"\0" * (-len(rest) % 4)


def _irheader(labels, body: bytes = b"", key: int = 0) -> bytes:
    labels = np.atleast_1d(np.asarray(labels, "<f4"))
    if len(labels) == 1:
        return struct.pack("<IfQQ", 0, float(labels[0]), key, 0) + body
    return struct.pack("<IfQQ", len(labels), 0.0, key, 0) + labels.tobytes() + body


def write_insightface_pack(folder: Path, crops: np.ndarray, ids: list[int]) -> list[bytes]:
    """train.rec + train.idx in insightface's layout: header record 0 = (first identity
    record, end), image records 1..N, then one record per identity (its image range).
    Image 2 carries a second label whose bits are the magic number: a multi-part record."""
    folder.mkdir(parents=True, exist_ok=True)
    n, n_ids = len(crops), max(ids) + 1
    jpegs = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for c in crops]
    magic_float = np.frombuffer(struct.pack("<I", MAGIC), "<f4")[0]
    records = {0: _irheader([n + 1, n + 1 + n_ids])}
    for i, (jpg, y) in enumerate(zip(jpegs, ids), 1):
        labels = [y, magic_float] if i == 2 else y
        records[i] = _irheader(labels, jpg, key=i)
    for k in range(n_ids):
        members = [i for i, y in enumerate(ids, 1) if y == k]
        records[n + 1 + k] = _irheader([members[0], members[-1] + 1])
    with open(folder / "train.rec", "wb") as rec, open(folder / "train.idx", "w") as idx:
        for key, payload in records.items():
            idx.write(f"{key}\t{rec.tell()}\n")
            rec.write(_record(payload))
    (folder / "property").write_text(f"{n_ids},112,112")
    return jpegs


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """A pack of the committed LFW photos: the central 140x140 of each, resized to 112."""
    files = sorted(p for p in PHOTOS.glob("*_0*.jpg") if p.stem.rsplit("_", 1)[1].isdigit())
    names = sorted({f.stem.rsplit("_", 1)[0] for f in files})
    crops = np.stack([cv2.resize(cv2.imread(str(f))[55:195, 55:195], (112, 112)) for f in files])
    ids = [names.index(f.stem.rsplit("_", 1)[0]) for f in files]
    folder = tmp_path_factory.mktemp("faces_emore")
    jpegs = write_insightface_pack(folder, crops, ids)
    return folder, jpegs, ids


def test_recordio_pack_is_read_natively(pack):
    folder, jpegs, ids = pack
    raw = (folder / "train.rec").read_bytes()
    offsets = [int(x) for x in (folder / "train.idx").read_text().split()[1::2]]
    magic, lrec = struct.unpack_from("<II", raw, offsets[2])
    assert magic == MAGIC and lrec >> 29 == 1  # image 2 is written in two parts
    faces = RecordCrops(folder / "train.rec")
    assert faces.keys.tolist() == list(range(1, len(jpegs) + 1))
    assert faces.labels.tolist() == ids
    for i in (0, 1, len(jpegs) - 1):  # 1: the multi-part record, rejoined
        want = cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_COLOR)
        assert faces[i].shape == (112, 112, 3) and np.array_equal(faces[i], want)
    assert len(RecordCrops(folder / "train.rec", limit=5)) == 5
    assert parse_source(str(folder)).kind == "rec"
    assert parse_source(str(folder / "train.rec")).kind == "rec"


def test_malformed_recordio_files_fail_in_one_line(pack, tmp_path):
    folder, _, _ = pack
    raw = (folder / "train.rec").read_bytes()
    idx = (folder / "train.idx").read_text()
    offsets = [int(line.split("\t")[1]) for line in idx.splitlines()]

    def broken(rec: bytes, index: str) -> Path:
        d = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        (d / "train.rec").write_bytes(rec)
        (d / "train.idx").write_text(index)
        return d / "train.rec"

    bad_magic = bytearray(raw)
    bad_magic[offsets[3]] ^= 0xFF
    n_images = len(pack[1])
    images_only = "".join(idx.splitlines(keepends=True)[: n_images + 1])
    cases = [
        (broken(bytes(bad_magic), idx), "bad magic"),
        (broken(raw[: offsets[5] + 40], idx), "past the end"),  # truncated download
        # the last image record cut short (its .idx entry still inside the file)
        (broken(raw[: offsets[n_images] + 100], images_only), "truncated"),
        (broken(raw, idx + f"99\t{len(raw) + 100}\n"), "past the end"),
        (broken(raw, "0 x\n"), "not '<key>"),
    ]
    for rec, msg in cases:
        with pytest.raises(DatasetError, match=msg) as e:
            f = RecordCrops(rec)
            f[len(f) - 1]
        assert "\n" not in str(e.value) and str(rec.parent) in str(e.value)
    (tmp_path / "noidx").mkdir()
    shutil.copy(folder / "train.rec", tmp_path / "noidx" / "x.rec")
    with pytest.raises(DatasetError, match=r"index of x\.rec is missing"):
        RecordFile(tmp_path / "noidx" / "x.rec", tmp_path / "noidx" / "x.idx")
