"""Versioned on-disk storage for block-embedding indexes.

An index is a folder of arrays plus a JSON manifest (the same spirit as
``bm25s``' save format: no pickle anywhere)::

    INDEX_ROOT/
        LATEST              # text file: name of the newest version dir, e.g. "v000003"
        v000002/{embeddings.npy, manifest.json}
        v000003/{embeddings.npy, manifest.json}
        .lock               # flock()ed by writers (version allocation, LATEST, pruning)

Publication protocol (what makes concurrent readers safe):

1. the writer fills ``INDEX_ROOT/.tmp-<random>/`` (preallocated ``.npy`` memmap),
   flushes and fsyncs every file and the directory;
2. under the writer lock it allocates ``version = max(existing) + 1``, writes the
   manifest, and ``os.rename``\\ s the temp dir to ``vNNNNNN`` (atomic on POSIX);
3. it writes ``LATEST.tmp`` and ``os.replace``\\ s it over ``LATEST`` (atomic);
4. old versions beyond ``keep`` are first renamed to ``.trash-*`` and then deleted,
   so a reader sees either a complete version dir or no dir at all.

A reader that follows ``LATEST`` therefore only ever sees complete, fsynced
folders; if the version it was pointed at is pruned before it opens it,
:func:`open_index` re-reads ``LATEST`` and retries.  A reader that already holds a
memmap keeps valid data after pruning (POSIX unlink semantics).

Integrity: the manifest records the size and sha256 of every data file (``files``); :func:`open_index`
verifies them (a mismatch raises :class:`IndexCorruptError` naming the file), and a writer verifies a
new version before it prunes older ones. Versions written before checksums existed load unverified.

dtype: ``"float32"`` is stored as float32.  ``"bfloat16"`` is stored as the raw
bf16 bit patterns in a ``uint16`` ``.npy`` (half the disk/page cache); use
:func:`to_float32` to decode, or pass the uint16 array straight to
:class:`realm.index.exact.ExactIndex`, which reinterprets it as bf16.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
import numpy as np

import realm
from realm.data.errors import InputError

FORMAT_VERSION = 1
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"
PINNED_FILE = "PINNED"  # versions that resumable checkpoints refer to: never pruned
_VERSION_RE = re.compile(r"^v(\d{6,})$")
_STORAGE_DTYPE = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(np.uint16)}


class IndexStoreError(InputError):
    """Base class: an index folder is missing, corrupt or inconsistent (the message names the file;
    an :class:`~realm.data.errors.InputError`, so the CLI reports it in one line with exit code 2)."""

    def __init__(self, message: str):
        self.path, self.line, self.message = "", None, message
        ValueError.__init__(self, message)


class IndexCorruptError(IndexStoreError):
    """Manifest missing/unparsable, or the array disagrees with the manifest."""


class IndexMismatchError(IndexStoreError):
    """The index was built for a different corpus or embedding size than expected."""


@dataclasses.dataclass
class IndexManifest:
    """Metadata describing one index version (stored as ``manifest.json``)."""

    version: int
    corpus_hash: str
    num_blocks: int
    dim: int
    dtype: str = "float32"  # logical dtype: "float32" | "bfloat16" (stored as uint16 bits)
    encoder: str = ""  # path/name of the encoder checkpoint that built the embeddings
    encoder_step: int = 0
    created_at: str = ""  # ISO-8601 UTC
    format_version: int = FORMAT_VERSION
    realm_version: str = realm.__version__
    extra: dict = dataclasses.field(default_factory=dict)
    files: dict = dataclasses.field(default_factory=dict)  # name -> {"size": bytes, "sha256": hex}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "IndexManifest":
        names = {f.name for f in dataclasses.fields(cls)}
        required = {"version", "corpus_hash", "num_blocks", "dim", "format_version"}
        missing = required - d.keys()
        if missing:
            raise IndexCorruptError(f"manifest {where} lacks fields {sorted(missing)}")
        if d["format_version"] != FORMAT_VERSION:
            raise IndexCorruptError(
                f"manifest {where} has format_version={d['format_version']}, "
                f"this code reads format_version={FORMAT_VERSION}")
        m = cls(**{k: v for k, v in d.items() if k in names})
        if m.dtype not in _STORAGE_DTYPE:
            raise IndexCorruptError(f"manifest {where} has unknown dtype {m.dtype!r}")
        return m


# ----------------------------------------------------------------- bf16 helpers
def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round-to-nearest-even); return the uint16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    out = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Decode uint16 bfloat16 bit patterns to float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_float32(embeddings: np.ndarray, manifest: IndexManifest) -> np.ndarray:
    """Return the embeddings as float32 (decoding bf16 bits if needed; loads into RAM)."""
    if manifest.dtype == "bfloat16":
        return bf16_bits_to_float32(embeddings)
    return np.asarray(embeddings, dtype=np.float32)


# ----------------------------------------------------------------- helpers
def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_path = _fsync_path  # public: checkpoints are published with the same protocol


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def file_record(path: Path) -> dict:
    """``{"size", "sha256"}`` of one file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def verify_files(folder: Path, files: dict, error=IndexCorruptError) -> None:
    """Check every recorded file's size and sha256; raise ``error`` naming the first file that differs."""
    for name, want in files.items():
        path = folder / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is gone")
        if not path.is_file():
            raise error(f"{path}: missing (the manifest records it)")
        size = path.stat().st_size
        if size != want.get("size"):
            raise error(f"{path}: {size} bytes, the manifest records {want.get('size')}; the file is damaged")
        if file_record(path)["sha256"] != want.get("sha256"):
            raise error(f"{path}: sha256 differs from the manifest's; the file is damaged")


def _list_versions(root: Path) -> list[int]:
    out = []
    if root.is_dir():
        for p in root.iterdir():
            m = _VERSION_RE.match(p.name)
            if m and p.is_dir():
                out.append(int(m.group(1)))
    return sorted(out)


def _version_name(v: int) -> str:
    return f"v{v:06d}"


def version_dir(root: str | os.PathLike, version: int) -> Path:
    """The folder of index version ``version`` under ``root`` (``root/vNNNNNN``): the one place that names it."""
    return Path(root) / _version_name(int(version))


def version_number(path: str | os.PathLike) -> int:
    """The version number of a version folder (``.../v000003`` -> 3)."""
    m = _VERSION_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"{path} is not an index version folder (vNNNNNN)")
    return int(m.group(1))


def latest_version(root: str | os.PathLike) -> int | None:
    """Version number named by ``root/LATEST``, or None if nothing was published."""
    try:
        name = (Path(root) / LATEST_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    m = _VERSION_RE.match(name)
    if not m:
        raise IndexCorruptError(f"{Path(root) / LATEST_FILE} contains {name!r}, not a version name")
    return int(m.group(1))


class _WriterLock:
    """Exclusive ``flock`` on ``root/.lock`` serialising publishers (not readers)."""

    def __init__(self, root: Path):
        self.path = root / ".lock"

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def pinned_versions(root) -> set[int]:
    try:
        return {int(x) for x in (Path(root) / PINNED_FILE).read_text().split()}
    except (OSError, ValueError):
        return set()


def pin_versions(root, versions) -> None:
    """Protect ``versions`` from pruning (replacing the previous set): a checkpoint resumes with its index."""
    root = Path(root)
    with _WriterLock(root):
        _write_synced(root / (PINNED_FILE + ".tmp"), " ".join(str(int(v)) for v in sorted(set(versions))) + "\n")
        os.replace(root / (PINNED_FILE + ".tmp"), root / PINNED_FILE)


def _prune(root: Path, keep: int) -> None:
    versions = _list_versions(root)
    latest = latest_version(root)
    pinned = pinned_versions(root)
    for v in versions[: max(0, len(versions) - keep)]:
        if v == latest or v in pinned:
            continue
        _discard(root, v)


def _discard(root: Path, v: int) -> None:
    trash = root / f".trash-{_version_name(v)}-{uuid.uuid4().hex[:8]}"
    os.rename(version_dir(root, v), trash)  # atomic: readers see all or nothing
    shutil.rmtree(trash, ignore_errors=True)


def drop_versions_after(root, encoder_step: int) -> int:
    """Remove versions built from an encoder newer than ``encoder_step`` (and stray temp dirs);
    ``LATEST`` then names the newest remaining version (or is removed). Returns how many were dropped."""
    root = Path(root)
    dropped = 0
    with _WriterLock(root):
        for p in root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        for v in _list_versions(root):
            try:
                step = json.loads((version_dir(root, v) / MANIFEST_FILE).read_text()).get("encoder_step", 0)
            except (OSError, ValueError):
                step = encoder_step + 1  # unreadable: never published completely, or damaged
            if step > encoder_step:
                _discard(root, v)
                dropped += 1
        if dropped:
            left = _list_versions(root)
            if left:
                _write_synced(root / (LATEST_FILE + ".tmp"), _version_name(left[-1]) + "\n")
                os.replace(root / (LATEST_FILE + ".tmp"), root / LATEST_FILE)
            else:
                (root / LATEST_FILE).unlink(missing_ok=True)
            _fsync_path(root)
    return dropped


# ----------------------------------------------------------------- writing
class IndexWriter:
    """Context manager that builds one index version in a temp dir and publishes it.

    >>> with IndexWriter(root, num_blocks=N, dim=128, corpus_hash=h, encoder="ckpt/100") as w:
    ...     for start, rows in batches:
    ...         w.write(start, rows)
    >>> w.path  # e.g. root/v000004

    On a clean exit every row must have been written (else ``ValueError``); the folder
    is renamed to ``vNNNNNN`` and ``LATEST`` is atomically updated. On an exception the
    temp dir is removed and nothing is published. ``w.extra`` (a dict) may be updated
    inside the block; it is stored in the manifest at commit. Temp dirs left by a
    crashed process (``.tmp-*``) are not reclaimed automatically.
    """

    def __init__(self, root, num_blocks: int, dim: int, *, corpus_hash: str,
                 dtype: str = "float32", encoder: str = "", encoder_step: int = 0,
                 extra: dict | None = None, keep: int = 3):
        if dtype not in _STORAGE_DTYPE:
            raise ValueError(f"dtype must be one of {sorted(_STORAGE_DTYPE)}, got {dtype!r}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(root)
        self.num_blocks, self.dim, self.dtype, self.keep = int(num_blocks), int(dim), dtype, keep
        self.fields = dict(corpus_hash=corpus_hash, encoder=str(encoder),
                           encoder_step=int(encoder_step), extra=dict(extra or {}))
        self.extra = self.fields["extra"]  # same dict: callers may add entries before commit
        self.path: Path | None = None
        self._tmp: Path | None = None
        self._arr = None
        self._written = None

    def __enter__(self) -> "IndexWriter":
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        self._tmp.mkdir()
        self._arr = np.lib.format.open_memmap(
            self._tmp / EMBEDDINGS_FILE, mode="w+", dtype=_STORAGE_DTYPE[self.dtype],
            shape=(self.num_blocks, self.dim))
        self._written = np.zeros(self.num_blocks, dtype=bool)
        return self

    def write(self, start: int, rows) -> None:
        """Store ``rows`` ([n, dim], float array or torch tensor) at rows ``start:start+n``."""
        if hasattr(rows, "detach"):  # torch tensor
            rows = rows.detach().float().cpu().numpy()
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"rows must have shape [n, {self.dim}], got {rows.shape}")
        end = start + rows.shape[0]
        if start < 0 or end > self.num_blocks:
            raise ValueError(f"rows [{start}, {end}) outside [0, {self.num_blocks})")
        if self.dtype == "bfloat16" and rows.dtype != np.uint16:
            rows = float32_to_bf16_bits(rows)
        self._arr[start:end] = rows
        self._written[start:end] = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._commit()
        finally:
            self._arr = None
            if self._tmp is not None and self._tmp.exists():
                shutil.rmtree(self._tmp, ignore_errors=True)
        return False

    def _commit(self) -> None:
        if not self._written.all():
            missing = np.flatnonzero(~self._written)
            raise ValueError(f"{missing.size} of {self.num_blocks} rows were never written "
                             f"(first: {missing[:5].tolist()}); nothing published")
        self._arr.flush()
        self._arr = None  # close the memmap before fsync/rename
        _fsync_path(self._tmp / EMBEDDINGS_FILE)
        files = {EMBEDDINGS_FILE: file_record(self._tmp / EMBEDDINGS_FILE)}
        with _WriterLock(self.root):
            versions = _list_versions(self.root)
            version = (versions[-1] if versions else 0) + 1
            manifest = IndexManifest(
                version=version, num_blocks=self.num_blocks, dim=self.dim, dtype=self.dtype,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), files=files,
                **self.fields)
            _write_synced(self._tmp / MANIFEST_FILE,
                          json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
            _fsync_path(self._tmp)
            final = version_dir(self.root, version)
            os.rename(self._tmp, final)
            self._tmp = None
            latest_tmp = self.root / (LATEST_FILE + ".tmp")
            _write_synced(latest_tmp, final.name + "\n")
            os.replace(latest_tmp, self.root / LATEST_FILE)
            _fsync_path(self.root)
            self.path = final
            _open_version_dir(final, mmap=True, verify=True)  # older versions go only once this one reads back
            _prune(self.root, self.keep)


def write_index_version(root, embeddings, *, corpus_hash: str, dtype: str | None = None,
                        encoder: str = "", encoder_step: int = 0, extra: dict | None = None,
                        keep: int = 3, batch_rows: int = 65536) -> Path:
    """Publish ``embeddings`` ([N, d]) as a new version under ``root``; return its folder.

    ``dtype`` defaults to "bfloat16" for uint16 (bf16-bit) input and "float32" otherwise.
    Keeps the newest ``keep`` versions (never deleting the one ``LATEST`` names).
    """
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().float().cpu().numpy()
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [N, d], got shape {embeddings.shape}")
    if dtype is None:
        dtype = "bfloat16" if embeddings.dtype == np.uint16 else "float32"
    n, d = embeddings.shape
    with IndexWriter(root, n, d, corpus_hash=corpus_hash, dtype=dtype, encoder=encoder,
                     encoder_step=encoder_step, extra=extra, keep=keep) as w:
        for s in range(0, n, batch_rows):
            w.write(s, embeddings[s:s + batch_rows])
    return w.path


# ----------------------------------------------------------------- reading
def _open_version_dir(vdir: Path, mmap: bool, verify: bool = True) -> tuple[np.ndarray, IndexManifest]:
    mpath = vdir / MANIFEST_FILE
    try:
        raw = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise IndexCorruptError(f"manifest {mpath} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise IndexCorruptError(f"manifest {mpath} is not a JSON object")
    try:
        manifest = IndexManifest.from_dict(raw, where=str(mpath))
    except TypeError as e:
        raise IndexCorruptError(f"manifest {mpath} has a field of the wrong kind: {e}") from e
    if not isinstance(manifest.files, dict) or not all(isinstance(v, dict) for v in manifest.files.values()):
        raise IndexCorruptError(f"manifest {mpath}: 'files' must map file names to {{size, sha256}}")
    if verify:
        verify_files(vdir, manifest.files)
    epath = vdir / EMBEDDINGS_FILE
    try:
        arr = np.load(epath, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise IndexCorruptError(f"cannot read {epath}: {e}") from e
    want_shape = (manifest.num_blocks, manifest.dim)
    if arr.shape != want_shape or arr.dtype != _STORAGE_DTYPE[manifest.dtype]:
        raise IndexCorruptError(
            f"{epath} has shape {arr.shape} dtype {arr.dtype}, but the manifest says "
            f"shape {want_shape} dtype {manifest.dtype} "
            f"(stored as {_STORAGE_DTYPE[manifest.dtype]})")
    return arr, manifest


def open_index(path, expect_corpus_hash: str | None = None, expect_dim: int | None = None,
               mmap: bool = True, retries: int = 5, verify: bool = True) -> tuple[np.ndarray, IndexManifest]:
    """Open an index root (following ``LATEST``) or one version dir.

    Returns ``(embeddings, manifest)``; embeddings is a read-only memmap when ``mmap``
    (uint16 bf16 bits when ``manifest.dtype == "bfloat16"``; see :func:`to_float32`).
    Raises :class:`IndexMismatchError` if the corpus hash or dim differ from the expected
    ones, :class:`IndexCorruptError` for a bad manifest/array, FileNotFoundError if
    nothing is there. ``verify`` checks the recorded sizes and sha256 sums first (reads every byte).
    """
    path = Path(path)
    is_root = (path / LATEST_FILE).exists() or not (path / MANIFEST_FILE).exists()
    for attempt in range(retries + 1):
        if is_root:
            v = latest_version(path)
            if v is None:
                raise FileNotFoundError(f"{path} holds no published index (no {LATEST_FILE} "
                                        f"and no {MANIFEST_FILE})")
            vdir = version_dir(path, v)
        else:
            vdir = path
        try:
            arr, manifest = _open_version_dir(vdir, mmap, verify)
            break
        except FileNotFoundError as e:
            # pruned between reading LATEST and opening it: LATEST has moved on, retry
            if not is_root or attempt == retries:
                raise IndexCorruptError(f"index folder {vdir} is incomplete: {e}") from e
            time.sleep(0.01 * (attempt + 1))
    if expect_corpus_hash is not None and manifest.corpus_hash != expect_corpus_hash:
        raise IndexMismatchError(
            f"index at {vdir} was built for corpus_hash={manifest.corpus_hash!r}, "
            f"expected corpus_hash={expect_corpus_hash!r}; rebuild the index for this corpus")
    if expect_dim is not None and manifest.dim != expect_dim:
        raise IndexMismatchError(
            f"index at {vdir} has dim={manifest.dim}, expected dim={expect_dim} "
            f"(encoder {manifest.encoder!r} step {manifest.encoder_step})")
    return arr, manifest
