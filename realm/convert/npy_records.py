"""``block_records.npy`` of a ``RealmForOpenQA`` checkpoint, read without running pickle code.

``RealmRetriever.save_pretrained`` (transformers <= 4.40.2) calls ``np.save`` on an *object* array of
``bytes``. ``np.save`` pickles such an array, and ``np.load(allow_pickle=True)`` would unpickle it,
which can call any function. :func:`load_records` parses the pickle with an unpickler that resolves
only the four globals that such a pickle names, and refuses every other one before anything is called:

- ``numpy.core.multiarray._reconstruct`` (files written with numpy 1.x: pickle protocol 3) or
  ``numpy._core.multiarray._reconstruct`` (numpy 2.x: protocol 4). Both are the same function;
- ``numpy.ndarray`` and ``numpy.dtype``.

The ``bytes`` themselves are pickle opcodes, not calls. The result must be a 1-D object array whose
elements are all ``bytes``, of the shape named in the ``.npy`` header. Fixed-width ``|S`` arrays
contain no pickle and load with ``np.load(allow_pickle=False)``.

:func:`save_records` writes the array back in the flavour it was read in (protocol and module name),
so that an import followed by an export reproduces the file byte for byte.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

RECONSTRUCT_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1.x, numpy 2.x names
ALLOWED_GLOBALS = {(m, "_reconstruct"): _reconstruct for m in RECONSTRUCT_MODULES} | {
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
NATIVE_FLAVOUR = (4, "numpy._core.multiarray")  # what np.save writes with the numpy 2.x in use


class UnsafeRecordsError(ValueError):
    """The file's pickle needs more than an object array of ``bytes``: it was not unpickled."""


class _RecordsUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`; remembers which ``_reconstruct`` name the file used."""

    def __init__(self, fp, path: Path):
        super().__init__(fp)
        self.path = path
        self.module: str | None = None

    def find_class(self, module: str, name: str):
        fn = ALLOWED_GLOBALS.get((module, name))
        if fn is None:
            raise UnsafeRecordsError(f"{self.path}: the pickle refers to {module}.{name}, which an object array of "
                                     f"bytes never does; refused without running it")
        if name == "_reconstruct":
            self.module = module
        return fn

    def persistent_load(self, pid):
        raise UnsafeRecordsError(f"{self.path}: the pickle uses a persistent id; refused")


def _header(fp, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npy.read_magic(fp)
    if version == (1, 0):
        return npy.read_array_header_1_0(fp)
    if version == (2, 0):
        return npy.read_array_header_2_0(fp)
    raise ValueError(f"{path}: .npy format version {version} is not supported (1.0 and 2.0 are)")


def load_records(path: str | Path, allow_pickle: bool = False) -> tuple[np.ndarray, dict]:
    """The records array and how it was stored: ``{"dtype", "pickle_protocol", "pickle_module"}``.

    Fixed-width arrays load without pickle. Object arrays of ``bytes`` load through the restricted
    unpickler. Anything else raises :class:`UnsafeRecordsError`, unless ``allow_pickle`` is set, in which
    case ``np.load(allow_pickle=True)`` reads it (trusted files only: it can run code).
    """
    path = Path(path)
    with open(path, "rb") as fp:
        shape, fortran, dtype = _header(fp, path)
        if not dtype.hasobject:
            fp.seek(0)
            records = np.load(fp, allow_pickle=False)
            return records, {"dtype": records.dtype.str}
        start = fp.tell()
        proto = fp.read(2)
        fp.seek(start)
        unpickler = _RecordsUnpickler(fp, path)
        try:
            records = unpickler.load()
            problem = _check(records, shape)
        except UnsafeRecordsError as e:
            records, problem = None, str(e)
        except Exception as e:  # noqa: BLE001 - a malformed pickle: report it, never fall through silently
            records, problem = None, f"{path}: not a readable object-array pickle ({type(e).__name__}: {e})"
    if problem is None:
        protocol = proto[1] if proto[:1] == pickle.PROTO else None
        return records, {"dtype": "|O", "pickle_protocol": protocol, "pickle_module": unpickler.module}
    if not allow_pickle:
        raise UnsafeRecordsError(problem if problem.startswith(str(path)) else f"{path}: {problem}")
    records = np.load(path, allow_pickle=True)  # the caller vouched for this file
    return records, {"dtype": records.dtype.str}


def _check(records, shape) -> str | None:
    if not isinstance(records, np.ndarray) or records.dtype != object:
        return f"holds a {type(records).__name__} ({getattr(records, 'dtype', '')}), not an object array"
    if records.ndim != 1 or records.shape != tuple(shape):
        return f"holds an array of shape {records.shape}; the header says {tuple(shape)} (1-D expected)"
    if set(map(type, records.tolist())) <= {bytes}:  # map/set run in C: fast on 13M records
        return None
    bad = next((i for i, r in enumerate(records) if type(r) is not bytes), None)
    if bad is not None:
        return f"record {bad} is a {type(records[bad]).__name__}, not bytes"
    return None


def save_records(path: str | Path, texts: list[bytes], info: dict) -> None:
    """Write ``texts`` as ``np.save`` does, in the dtype and pickle flavour that ``info`` recorded.

    An object array is pickled with ``info``'s protocol and ``_reconstruct`` module name (numpy 1.x
    wrote protocol 3 with ``numpy.core.multiarray``; numpy 2.x writes protocol 4 with
    ``numpy._core.multiarray``). Any other flavour is written the way the numpy in use writes it.
    """
    if not info.get("dtype", "").endswith("O"):  # fixed width: the recorded one, unless a text no longer fits
        dtype = np.dtype(info.get("dtype") or "S")
        longest = max((len(t) for t in texts), default=0)
        np.save(path, np.array(texts, dtype=dtype if dtype.itemsize >= longest else "S"), allow_pickle=False)
        return
    records = np.empty(len(texts), dtype=object)
    records[:] = texts
    flavour = (info.get("pickle_protocol"), info.get("pickle_module"))
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, npy.header_data_from_array_1_0(records))
    if flavour == (3, "numpy.core.multiarray"):  # protocol 3 names a global as text: rename that one line
        body = pickle.dumps(records, protocol=3)
        native, old = b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n"
        if body.count(native) != 1:
            raise RuntimeError("unexpected pickle of an object array: cannot write numpy 1.x's flavour")
        buf.write(body.replace(native, old))
    else:
        buf.write(pickle.dumps(records, protocol=NATIVE_FLAVOUR[0]))
    Path(path).write_bytes(buf.getvalue())
