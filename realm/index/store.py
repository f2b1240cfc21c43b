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

Sharded versions (``format_version`` 2, written by :mod:`realm.index.sharded`) hold the rows in several
``shard-RRRRR-of-WWWWW.npy`` files instead of ``embeddings.npy``; the manifest's ``shards`` lists them in row
order (``file``, ``start``, ``rows``) and ``files`` records each one's size and sha256.

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

FORMAT_VERSION = 1  # one embeddings.npy
SHARDED_FORMAT_VERSION = 2  # the rows split over shard files (realm.index.sharded); ``shards`` lists them
READABLE_FORMAT_VERSIONS = (FORMAT_VERSION, SHARDED_FORMAT_VERSION)
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
    shards: list = dataclasses.field(default_factory=list)  # format 2: [{"file", "start", "rows"}] in row order

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not d["shards"]:  # format 1 manifests read exactly as before
            del d["shards"]
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "IndexManifest":
        names = {f.name for f in dataclasses.fields(cls)}
        required = {"version", "corpus_hash", "num_blocks", "dim", "format_version"}
        missing = required - d.keys()
        if missing:
            raise IndexCorruptError(f"manifest {where} lacks fields {sorted(missing)}")
        if d["format_version"] not in READABLE_FORMAT_VERSIONS:
            raise IndexCorruptError(
                f"manifest {where} has format_version={d['format_version']}, "
                f"this code reads format_version in {list(READABLE_FORMAT_VERSIONS)}")
        m = cls(**{k: v for k, v in d.items() if k in names})
        if m.dtype not in _STORAGE_DTYPE:
            raise IndexCorruptError(f"manifest {where} has unknown dtype {m.dtype!r}")
        if m.format_version == SHARDED_FORMAT_VERSION:
            check_shards(m, where)
        return m

    def shard_list(self) -> list[dict]:
        """``[{"file", "start", "rows"}]`` in row order; a format-1 index is one shard, ``embeddings.npy``."""
        if self.format_version == SHARDED_FORMAT_VERSION:
            return list(self.shards)
        return [{"file": EMBEDDINGS_FILE, "start": 0, "rows": self.num_blocks}]


def check_shards(m: IndexManifest, where: str = "") -> None:
    """A sharded manifest's ``shards`` tile ``[0, num_blocks)`` in order, each a recorded file."""
    if not isinstance(m.shards, list) or not m.shards:
        raise IndexCorruptError(f"manifest {where}: format_version={SHARDED_FORMAT_VERSION} needs a non-empty 'shards' list")
    start = 0
    for i, sh in enumerate(m.shards):
        if not isinstance(sh, dict) or not {"file", "start", "rows"} <= sh.keys():
            raise IndexCorruptError(f"manifest {where}: shards[{i}] must be an object with file, start, rows")
        name = sh["file"]
        if not isinstance(name, str) or "/" in name or name.startswith(".") or name not in m.files:
            raise IndexCorruptError(f"manifest {where}: shards[{i}] file {name!r} is not a recorded file of the folder")
        if sh["start"] != start or not isinstance(sh["rows"], int) or sh["rows"] < 0:
            raise IndexCorruptError(f"manifest {where}: shards[{i}] covers rows from {sh['start']!r} "
                                    f"(x{sh['rows']!r}), expected a count of rows from {start}")
        start += sh["rows"]
    if start != m.num_blocks:
        raise IndexCorruptError(f"manifest {where}: shards hold {start} rows, num_blocks is {m.num_blocks}")


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
    remove_atomically(version_dir(root, v))


def remove_atomically(folder: Path) -> None:
    """Delete a published folder so that no reader ever sees it half-deleted: an atomic rename to
    ``.trash-NAME-xxxx`` (out of the published namespace), then the interruptible delete.
    :func:`sweep_trash` removes what a process killed in between leaves behind."""
    folder = Path(folder)
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def sweep_trash(parent: Path) -> None:
    """Delete the ``.trash-*`` folders a killed :func:`remove_atomically` left in ``parent``."""
    for stale in Path(parent).glob(".trash-*"):
        shutil.rmtree(stale, ignore_errors=True)


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
def storage_rows(rows, dim: int, dtype: str) -> np.ndarray:
    """``rows`` ([n, dim] float array or torch tensor) as stored for ``dtype`` (bf16: uint16 bits)."""
    if hasattr(rows, "detach"):  # torch tensor
        rows = rows.detach().float().cpu().numpy()
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise ValueError(f"rows must have shape [n, {dim}], got {rows.shape}")
    if dtype == "bfloat16" and rows.dtype != np.uint16:
        rows = float32_to_bf16_bits(rows)
    return rows


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
        rows = storage_rows(rows, self.dim, self.dtype)
        end = start + rows.shape[0]
        if start < 0 or end > self.num_blocks:
            raise ValueError(f"rows [{start}, {end}) outside [0, {self.num_blocks})")
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
        self.path = publish_folder(self.root, self._tmp, keep=self.keep, num_blocks=self.num_blocks, dim=self.dim,
                                   dtype=self.dtype, files=files, **self.fields)
        self._tmp = None


def publish_folder(root: Path, tmp: Path, *, keep: int, **manifest_fields) -> Path:
    """Steps 2-4 of the publication protocol for a filled, fsynced temp folder ``tmp`` under ``root``:
    allocate the version, write the manifest (``manifest_fields`` + version, created_at), rename, point
    ``LATEST`` at it, read it back verified, prune. Returns the version folder."""
    with _WriterLock(root):
        versions = _list_versions(root)
        version = (versions[-1] if versions else 0) + 1
        manifest = IndexManifest(version=version, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 **manifest_fields)
        _write_synced(tmp / MANIFEST_FILE, json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
        _fsync_path(tmp)
        final = version_dir(root, version)
        os.rename(tmp, final)
        latest_tmp = root / (LATEST_FILE + ".tmp")
        _write_synced(latest_tmp, final.name + "\n")
        os.replace(latest_tmp, root / LATEST_FILE)
        _fsync_path(root)
        _open_version_dir(final, mmap=True, verify=True)  # older versions go only once this one reads back
        _prune(root, keep)
    return final


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
def _open_version_dir(vdir: Path, mmap: bool, verify: bool = True,
                      rows: tuple[int, int] | None = None) -> tuple[np.ndarray, IndexManifest]:
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
    lo, hi = (0, manifest.num_blocks) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= lo <= hi <= manifest.num_blocks:
        raise ValueError(f"rows [{lo}, {hi}) are outside the index's [0, {manifest.num_blocks})")
    shards = [sh for sh in manifest.shard_list() if sh["start"] < hi and sh["start"] + sh["rows"] > lo]
    if verify:  # only the files this reader uses
        used = {sh["file"] for sh in shards} if rows is not None else manifest.files.keys()
        verify_files(vdir, {n: r for n, r in manifest.files.items() if n in used})
    parts = [load_shard(vdir, manifest, sh, mmap)[max(lo - sh["start"], 0):hi - sh["start"]] for sh in shards]
    if not parts:
        return np.empty((0, manifest.dim), _STORAGE_DTYPE[manifest.dtype]), manifest
    # rows from several shards: one array in memory (a memmap cannot span files)
    arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return arr, manifest


def load_shard(vdir: Path, manifest: IndexManifest, shard: dict, mmap: bool = True) -> np.ndarray:
    """One shard file of a version folder (``shard`` from :meth:`IndexManifest.shard_list`), shape-checked."""
    epath = vdir / shard["file"]
    try:
        arr = np.load(epath, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise IndexCorruptError(f"cannot read {epath}: {e}") from e
    want_shape = (shard["rows"], manifest.dim)
    if arr.shape != want_shape or arr.dtype != _STORAGE_DTYPE[manifest.dtype]:
        raise IndexCorruptError(
            f"{epath} has shape {arr.shape} dtype {arr.dtype}, but the manifest says "
            f"shape {want_shape} dtype {manifest.dtype} "
            f"(stored as {_STORAGE_DTYPE[manifest.dtype]})")
    return arr


def open_index(path, expect_corpus_hash: str | None = None, expect_dim: int | None = None,
               mmap: bool = True, retries: int = 5, verify: bool = True,
               rows: tuple[int, int] | None = None) -> tuple[np.ndarray, IndexManifest]:
    """Open an index root (following ``LATEST``) or one version dir.

    Returns ``(embeddings, manifest)``; embeddings is a read-only memmap when ``mmap``
    (uint16 bf16 bits when ``manifest.dtype == "bfloat16"``; see :func:`to_float32`).
    Raises :class:`IndexMismatchError` if the corpus hash or dim differ from the expected
    ones, :class:`IndexCorruptError` for a bad manifest/array, FileNotFoundError if
    nothing is there. ``verify`` checks the recorded sizes and sha256 sums first (reads every byte).
    ``rows=(start, end)`` returns only those rows, reading (and verifying) only the shard files that hold
    them; a range inside one shard stays a memmap, one spanning shards is read into memory.
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
            arr, manifest = _open_version_dir(vdir, mmap, verify, rows)
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
