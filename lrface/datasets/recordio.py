"""insightface RecordIO packs (``train.rec`` + ``train.idx``), read without mxnet.

The training sets that face-recognition models are distilled from (MS1MV2/MS1MV3 as
``faces_emore`` / ``ms1m-retinaface-t1``, Glint360K, WebFace, CASIA-WebFace as
``faces_webface_112x112``) are distributed as an MXNet RecordIO pair:

* ``train.idx``: text, one ``<key>\\t<byte offset>`` line per record;
* ``train.rec``: the records back to back.  Each is ``uint32 magic 0xced7230a``,
  ``uint32 lrecord`` (upper 3 bits: continuation flag ``cflag``, lower 29 bits: payload
  length), the payload, then zero padding to a multiple of 4 bytes.  A payload that
  itself contains the magic number at a 4-byte boundary is split into parts
  (``cflag`` 1 = first, 2 = middle, 3 = last) and is rejoined with the magic in between.
  A payload is an ``IRHeader`` (little-endian ``<IfQQ``: ``flag``, ``label``, ``id``,
  ``id2``; when ``flag > 0`` the label is the ``flag`` float32 values that follow the
  header instead) and then the encoded image (JPEG).

insightface packs start with a header record (key 0, ``flag > 0``) whose labels are
``(first identity record, end of identity records)``: image records are keys
``1 .. label[0] - 1``, each labelled with its identity (``label`` or ``label[0]``); the
records from ``label[0]`` on describe identities and are not images.  Without such a
header (``flag == 0`` in record 0) every key is an image record.

The images are 112x112 faces already aligned to the ArcFace 5-point template, so no
detection is needed.  Crops are decoded lazily (:class:`RecordCrops`): a pack of millions
of faces is never held in memory.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import cv2
import numpy as np

from lrface.errors import DatasetError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")  # IRHeader: flag, label, id, id2 (24 bytes)
_LENGTH_MASK = (1 << 29) - 1


def read_index(idx_path: Path, rec_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, offsets)``: int64 arrays sorted by key, from a ``train.idx`` text file.

    Raises :class:`DatasetError` (one line) for a malformed line, a duplicate key, or an
    offset that points past the end of the ``.rec`` file (``rec_size`` bytes).
    """
    keys: list[int] = []
    offsets: list[int] = []
    try:
        text = idx_path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{idx_path}: cannot read the record index ({exc}); re-download train.idx"
        ) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise DatasetError(
                f"{idx_path}: line {n} is {line[:40]!r}, not '<key>\\t<offset>'; "
                "this is not an MXNet RecordIO index (re-download train.idx)"
            )
        keys.append(int(parts[0]))
        offsets.append(int(parts[1]))
    if not keys:
        raise DatasetError(f"{idx_path}: the record index is empty; re-download train.idx")
    k = np.asarray(keys, np.int64)
    o = np.asarray(offsets, np.int64)
    order = np.argsort(k, kind="stable")
    k, o = k[order], o[order]
    if (np.diff(k) == 0).any():
        dup = int(k[1:][np.diff(k) == 0][0])
        raise DatasetError(f"{idx_path}: key {dup} is listed twice; re-download train.idx")
    bad = np.flatnonzero(o + 8 > rec_size)
    if len(bad):
        i = int(bad[0])
        raise DatasetError(
            f"{idx_path}: record {int(k[i])} at offset {int(o[i])} points past the end of the "
            f"{rec_size}-byte .rec file (truncated download, or .idx of another .rec)"
        )
    return k, o


class RecordFile:
    """Random access to the records of an MXNet ``.rec`` file through its ``.idx``.

    Safe to pickle (DataLoader workers): the file is (re)opened lazily in each process.
    """

    def __init__(self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        if not self.rec_path.is_file():
            raise DatasetError(f"{self.rec_path}: record file not found")
        if not self.idx_path.is_file():
            raise DatasetError(
                f"{self.idx_path}: the index of {self.rec_path.name} is missing "
                "(a RecordIO pack needs both train.rec and train.idx)"
            )
        self.size = self.rec_path.stat().st_size
        self.keys, self.offsets = read_index(self.idx_path, self.size)
        self._pos = {int(k): i for i, k in enumerate(self.keys)}
        self._fd: int | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"] = state["_pid"] = None
        return state

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.rec_path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __contains__(self, key: int) -> bool:
        return int(key) in self._pos

    def _pread(self, n: int, offset: int, key: int) -> bytes:
        data = os.pread(self._file(), n, offset)
        if len(data) != n:
            raise DatasetError(
                f"{self.rec_path}: record {key} is truncated (needs {n} bytes at offset "
                f"{offset}, the file has {self.size}); re-download the pack"
            )
        return data

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (multi-part records rejoined)."""
        if int(key) not in self._pos:
            raise DatasetError(f"{self.idx_path}: no record with key {key}")
        offset = int(self.offsets[self._pos[int(key)]])
        parts: list[bytes] = []
        while True:
            magic, lrec = struct.unpack("<II", self._pread(8, offset, key))
            if magic != MAGIC:
                raise DatasetError(
                    f"{self.rec_path}: bad magic 0x{magic:08x} at offset {offset} (record "
                    f"{key}); not an MXNet RecordIO file, or .idx of another .rec"
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            parts.append(self._pread(length, offset + 8, key) if length else b"")
            offset += 8 + length + (-length % 4)
            if cflag in (0, 3):
                break
            if cflag not in (1, 2):
                raise DatasetError(f"{self.rec_path}: record {key} has invalid flag {cflag}")
        return _MAGIC_BYTES.join(parts)

    def read_prefix(self, key: int, n: int) -> bytes:
        """At least the first ``n`` bytes of record ``key``'s payload (all of it if
        shorter): the header without reading the image."""
        if int(key) not in self._pos:
            raise DatasetError(f"{self.idx_path}: no record with key {key}")
        offset = int(self.offsets[self._pos[int(key)]])
        magic, lrec = struct.unpack("<II", self._pread(8, offset, key))
        if magic != MAGIC or lrec >> 29 != 0:  # bad magic or a multi-part record
            return self.read(key)
        length = lrec & _LENGTH_MASK
        if offset + 8 + length > self.size:
            raise DatasetError(
                f"{self.rec_path}: record {key} is truncated (needs {length} bytes at offset "
                f"{offset + 8}, the file has {self.size}); re-download the pack"
            )
        return self._pread(min(n, length), offset + 8, key)


def unpack(payload: bytes, where: str = "record") -> tuple[int, np.ndarray, bytes]:
    """``(flag, labels, image bytes)`` of a record payload.

    ``labels``: float32 (max(flag, 1),) -- the scalar ``label`` when ``flag == 0``.
    """
    if len(payload) < _HEADER.size:
        raise DatasetError(f"{where}: {len(payload)} bytes, shorter than its 24-byte header")
    flag, label, _, _ = _HEADER.unpack_from(payload)
    body = payload[_HEADER.size :]
    if flag == 0:
        return 0, np.array([label], np.float32), body
    if flag > (1 << 20) or len(body) < 4 * flag:
        raise DatasetError(f"{where}: header announces {flag} labels; the record is corrupt")
    labels = np.frombuffer(body[: 4 * flag], np.float32).copy()
    return flag, labels, body[4 * flag :]


class RecordCrops:
    """The aligned faces of an insightface pack: a lazily decoded sequence of uint8 BGR
    (112, 112, 3) crops, with the record keys and identity labels of the images.

    ``keys``: int64 (N,) record keys of the image records; ``labels``: int64 (N,) identity
    of each image.  ``limit`` keeps the first N image records.
    """

    def __init__(self, rec_path: str | os.PathLike[str], limit: int | None = None) -> None:
        rec_path = Path(rec_path)
        self.records = RecordFile(rec_path, rec_path.with_suffix(".idx"))
        keys = self.records.keys
        flag, head, _ = unpack(self.records.read(int(keys[0])), f"{rec_path}: record 0")
        if flag > 0 and int(keys[0]) == 0:
            if len(head) < 2 or not 1 <= head[0] <= head[1]:
                raise DatasetError(
                    f"{rec_path}: header record 0 has labels {head.tolist()[:4]}, not "
                    "(first identity record, end); not an insightface pack"
                )
            stop = int(head[0])  # image records are 1 .. stop - 1
            image_keys = keys[(keys >= 1) & (keys < stop)]
            if len(image_keys) != stop - 1:
                raise DatasetError(
                    f"{rec_path}: the header announces {stop - 1} image records but the "
                    f"index lists {len(image_keys)}; re-download train.idx"
                )
        else:  # no header record: every record is an image
            image_keys = keys
        if limit:
            image_keys = image_keys[:limit]
        if not len(image_keys):
            raise DatasetError(f"{rec_path}: the pack holds no image records")
        self.keys = np.asarray(image_keys, np.int64)
        self.labels = np.array([self._label(int(k)) for k in self.keys], np.int64)

    def _label(self, key: int) -> int:
        """Identity of image record ``key``, from its header alone (the image is not read)."""
        head = self.records.read_prefix(key, _HEADER.size + 4)
        if len(head) < _HEADER.size:
            raise DatasetError(
                f"{self.records.rec_path}: record {key} is {len(head)} bytes, shorter than "
                "its 24-byte header; the pack is corrupt"
            )
        flag, label, _, _ = _HEADER.unpack_from(head)
        if flag > 0:
            if len(head) < _HEADER.size + 4:
                raise DatasetError(
                    f"{self.records.rec_path}: record {key} announces {flag} labels but "
                    "holds none; the pack is corrupt"
                )
            (label,) = struct.unpack_from("<f", head, _HEADER.size)
        if not np.isfinite(label) or label < 0:
            raise DatasetError(
                f"{self.records.rec_path}: record {key} has identity label {label}; "
                "expected a class number >= 0"
            )
        return int(label)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> np.ndarray:
        key = int(self.keys[int(i)])
        where = f"{self.records.rec_path}: record {key}"
        _, _, img = unpack(self.records.read(key), where)
        crop = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR)
        if crop is None:
            raise DatasetError(f"{where}: the image bytes are not a readable JPEG/PNG")
        if crop.shape[0] != crop.shape[1]:
            raise DatasetError(
                f"{where}: a {crop.shape[1]}x{crop.shape[0]} image; insightface packs hold "
                "square aligned faces (112x112)"
            )
        if crop.shape[0] != 112:
            crop = cv2.resize(
                crop,
                (112, 112),
                interpolation=cv2.INTER_AREA if crop.shape[0] > 112 else cv2.INTER_CUBIC,
            )
        return crop

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def find_pack(path: str | os.PathLike[str]) -> Path | None:
    """The ``.rec`` file of ``path``: the file itself (with its ``.idx`` beside it) or
    ``path/train.rec`` when the folder holds ``train.rec`` and ``train.idx``; else None."""
    p = Path(path)
    if p.is_file() and p.suffix == ".rec":
        return p
    if p.is_dir() and (p / "train.rec").is_file() and (p / "train.idx").is_file():
        return p / "train.rec"
    return None
