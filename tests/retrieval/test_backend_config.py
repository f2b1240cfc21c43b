"""``index.backend`` reaches every dense search of a run: ``realm experiment ... index.backend=faiss-hnsw``
uses FAISS HNSW for REALM pretraining's index, zero-shot recall, fine-tuning's retrieval and evaluation;
the servable export records it and ``realm evaluate`` serves with it."""

import json

import pytest

import realm.retrieval.backends as backends
from realm.cli import main
from realm.data.world import generate_world, write_world
from realm.index.faiss_index import FaissIndex


@pytest.mark.slow
def test_experiment_searches_with_the_configured_backend(tmp_path, monkeypatch, capsys):
    kinds = []
    init = FaissIndex.__init__

    def spy(self, embeddings, kind="flat", *args, **kwargs):
        kinds.append(kind)
        init(self, embeddings, kind, *args, **kwargs)

    def no_exact(*args, **kwargs):
        raise AssertionError("an exact index was built although index.backend=faiss-hnsw")

    monkeypatch.setattr(FaissIndex, "__init__", spy)
    monkeypatch.setattr(backends, "ExactIndex", no_exact)
    paths = write_world(generate_world(40, seed=5), tmp_path / "w")
    out = tmp_path / "exp"
    assert main(["experiment", "--corpus", str(paths["corpus"]), "--train", str(paths["qa-train"]),
                 "--dev", str(paths["qa-dev"]), "--test", str(paths["qa-test"]), "--out", str(out),
                 "--preset", "tiny", "threads=1", "pretrain.refresh_mode=sync", "experiment.systems=realm",
                 "index.backend=faiss-hnsw"]) == 0
    # pretraining (initial + 2 refreshes + final are followed: >= 3), the system's one retrieval (zero-shot
    # recall, fine-tuning, dev/test evaluation) and the retrieval table's 3 dense rows: all HNSW
    assert set(kinds) == {"hnsw"} and len(kinds) >= 7
    assert json.loads((out / "model" / "run.json").read_text())["backend"] == "faiss-hnsw"
    report = json.loads((out / "results.json").read_text())
    assert [s["system"] for s in report["systems"]] == ["realm"]
    kinds.clear()
    capsys.readouterr()
    assert main(["evaluate", str(out / "model"), "--qa", str(paths["qa-dev"]), "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert kinds == ["hnsw"] and result["questions"] == report["questions"]["dev"]
