"""Every artifact is verified at load: a damaged checkpoint, index version or served corpus is named and refused,
and resume falls back to the newest checkpoint that verifies."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from realm.cli import main as cli_main
from realm.index.store import IndexCorruptError, open_index, write_index_version
from realm.serving.answer import Answerer
from realm.serving.app import create_app
from realm.training.checkpoint import (CheckpointError, all_checkpoints, load_checkpoint, load_newest_good,
                                      save_checkpoint, verify_checkpoint)
from tests.serving.test_answer import build_run, corpus_subset


def _modules(seed=0):
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    return {"encoder": enc}, torch.optim.AdamW(enc.parameters(), lr=1e-3)


def _train_step(modules, opt):
    opt.zero_grad()
    modules["encoder"](torch.randn(4, 64)).pow(2).sum().backward()
    opt.step()


def _damage(path, offset=200, n=4000):
    data = bytearray(path.read_bytes())
    data[offset:offset + n] = np.random.default_rng(0).integers(0, 256, min(n, len(data) - offset), np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _saved(tmp_path, steps=(1, 2)):
    modules, opt = _modules()
    for s in steps:
        _train_step(modules, opt)
        save_checkpoint(tmp_path, s, modules, opt, {"index_version": s})
    return modules


def test_a_byte_flip_in_a_checkpoint_is_named_and_nothing_is_loaded(tmp_path):
    _saved(tmp_path)
    ckpt = tmp_path / "checkpoints" / "step_000002"
    _damage(ckpt / "encoder.safetensors")
    fresh, opt = _modules(seed=5)
    before = [p.detach().clone() for p in fresh["encoder"].parameters()]
    with pytest.raises(CheckpointError, match=r"step_000002/encoder\.safetensors.*sha256"):
        load_checkpoint(ckpt, fresh, opt)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh["encoder"].parameters()))


@pytest.mark.parametrize("damage", ["truncate", "state_json"])
def test_truncated_files_and_broken_state_are_named(tmp_path, damage):
    _saved(tmp_path, steps=(1,))
    ckpt = tmp_path / "checkpoints" / "step_000001"
    target = ckpt / ("optimizer.pt" if damage == "truncate" else "state.json")
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    else:
        target.write_text('{"step": 1, "python_rng": [')
    with pytest.raises(CheckpointError, match=target.name):
        load_checkpoint(ckpt, *_modules())
    (ckpt / "files.json").unlink()  # an old-style checkpoint without checksums: still named, no traceback
    with pytest.raises(CheckpointError, match=target.name):
        load_checkpoint(ckpt, *_modules())


def test_resume_falls_back_to_the_newest_good_checkpoint_and_says_so(tmp_path, capsys):
    _saved(tmp_path)
    _damage(tmp_path / "checkpoints" / "step_000002" / "encoder.safetensors")
    modules, opt = _modules(seed=3)
    folder, state = load_newest_good(tmp_path, modules, opt)
    assert folder.name == "step_000001" and state["step"] == 1 and state["index_version"] == 1
    err = capsys.readouterr().err
    assert "step_000002 is damaged" in err and "encoder.safetensors" in err and "step_000001" in err
    _damage(tmp_path / "checkpoints" / "step_000001" / "rng.safetensors", offset=0, n=50)
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_newest_good(tmp_path, *_modules())


def test_pruning_waits_for_the_new_checkpoint_to_verify(tmp_path, monkeypatch):
    _saved(tmp_path, steps=(1, 2))
    import realm.training.checkpoint as ck

    def broken(folder):
        raise CheckpointError(f"{folder}/encoder.safetensors: sha256 differs")

    monkeypatch.setattr(ck, "verify_checkpoint", broken)
    modules, opt = _modules()
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path, 3, modules, opt)
    assert (tmp_path / "checkpoints" / "step_000001").exists() and (tmp_path / "checkpoints" / "step_000002").exists()


def test_a_kill_while_pruning_leaves_no_half_deleted_checkpoint_in_sight(tmp_path, monkeypatch):
    """The CI kill harness caught this: a SIGKILL inside the delete of an old checkpoint left ``step_N``
    visible without some of its files. Deletion must first move the folder out of sight, atomically."""
    _saved(tmp_path, steps=(1, 2))
    import realm.index.store as st

    real_rmtree = shutil.rmtree

    def killed_midway(folder, ignore_errors=False):  # deletes one file of the pruned checkpoint, then "dies"
        if "step_000001" not in str(folder):
            return real_rmtree(folder, ignore_errors=ignore_errors)
        next(p for p in sorted(Path(folder).iterdir()) if p.name != "state.json").unlink()
        raise SystemExit("killed")

    monkeypatch.setattr(st.shutil, "rmtree", killed_midway)
    modules, opt = _modules()
    with pytest.raises(SystemExit):
        save_checkpoint(tmp_path, 3, modules, opt)
    monkeypatch.undo()
    seen = all_checkpoints(tmp_path)
    assert [p.name for p in seen] == ["step_000002", "step_000003"]
    for ckpt in seen:
        verify_checkpoint(ckpt)
    assert len(list((tmp_path / "checkpoints").glob(".trash-*"))) == 1  # the half-deleted one, out of sight
    save_checkpoint(tmp_path, 4, modules, opt)  # the next save sweeps it
    assert not list((tmp_path / "checkpoints").glob(".trash-*"))
    assert [p.name for p in all_checkpoints(tmp_path)] == ["step_000003", "step_000004"]


@pytest.mark.parametrize("damage", ["bytes", "nan"])
def test_a_damaged_index_version_is_refused(tmp_path, damage):
    v = write_index_version(tmp_path, np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32),
                            corpus_hash="h")
    path = v / "embeddings.npy"
    if damage == "bytes":
        _damage(path, offset=500, n=300)
    else:
        arr = np.load(path)
        arr[3, 3] = np.nan
        np.save(path, arr)
    with pytest.raises(IndexCorruptError, match=r"v000001/embeddings\.npy"):
        open_index(tmp_path)
    open_index(tmp_path, verify=False)  # the check is what catches it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("reliab"))


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


@pytest.mark.parametrize("damage", ["embeddings", "corpus_body", "corpus_docs", "nan_with_valid_checksum"])
def test_ask_refuses_a_damaged_index_or_corpus(served, tmp_path, capsys, damage):
    run = _copy(served, tmp_path)
    v1 = run / "index" / "v000001"
    corpus = run / json.loads((v1 / "manifest.json").read_text())["extra"]["corpus_dir"]
    if damage == "embeddings":
        _damage(v1 / "embeddings.npy", offset=300, n=400)
        named = "embeddings.npy"
    elif damage == "corpus_body":
        _damage(corpus / "body.npy", offset=0, n=64)
        named = "body.npy"
    elif damage == "corpus_docs":
        (corpus / "docs.jsonl").write_text('{"id": ')
        named = "docs.jsonl"
    else:  # a diverged encoder: NaN embeddings published with a correct checksum
        from realm.index.store import file_record

        arr = np.load(v1 / "embeddings.npy")
        arr[0, :] = np.nan
        np.save(v1 / "embeddings.npy", arr)
        m = json.loads((v1 / "manifest.json").read_text())
        m["files"]["embeddings.npy"] = file_record(v1 / "embeddings.npy")
        (v1 / "manifest.json").write_text(json.dumps(m))
        named = "non-finite"
    with pytest.raises(IndexCorruptError, match=named):
        Answerer(run)
    assert cli_main(["ask", str(run), "Where was Toran Eguley born?"]) == 2
    assert named in capsys.readouterr().err


def test_health_is_degraded_when_the_newest_index_is_damaged(served, tmp_path):
    run = _copy(served, tmp_path)
    app = create_app(run, max_k=5, watch=False)
    admin = {"Authorization": f"Bearer {app.state.admin_token}"}
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/health").json()["status"] == "ok"
        v2 = corpus_subset(run, tmp_path / "sub", keep=8)
        from realm.serving.qa_run import add_corpus_version

        add_corpus_version(run, v2, progress=False, bf16=False)
        _damage(run / "index" / "v000002" / "embeddings.npy", offset=300, n=100)
        r = c.post("/admin/reload", headers=admin)
        assert r.status_code == 500 and "v000002/embeddings.npy" in r.json()["error"]
        h = c.get("/health")
        assert h.status_code == 503 and h.json()["status"] == "degraded"
        assert "embeddings.npy" in h.json()["problem"] and h.json()["index_version"] == 1
        assert c.post("/ask", json={"question": "q"}).json()["index_version"] == 1  # the verified version


def test_corpus_dir_outside_the_run_folder_is_refused(served, tmp_path):
    run = _copy(served, tmp_path)
    outside = tmp_path / "elsewhere"
    m_path = run / "index" / "v000001" / "manifest.json"
    m = json.loads(m_path.read_text())
    shutil.copytree(run / m["extra"]["corpus_dir"], outside)
    for bad in ("../elsewhere", str(outside), ".", "corpora/../../elsewhere"):
        m["extra"]["corpus_dir"] = bad
        m_path.write_text(json.dumps(m))
        with pytest.raises(IndexCorruptError, match="not a folder inside the run folder"):
            Answerer(run)
