"""The recipes under torch.distributed: 2 gloo ranks train as one process does on the same global batch.

One launch of 2 spawned ranks runs ICT, REALM pretraining (its index built sharded and searched through
the ShardedIndex, with an in-line sharded refresh) and fine-tuning, each through the recipe's own code;
the tests compare the saved weights with one process's. The optimizer is plain SGD (patched in):
AdamW's first steps divide by |g|, turning ulp-level differences of near-zero gradients into visible
ones, while the optimizer is elementwise and identical on every rank, so SGD isolates what data
parallelism changes: the averaged gradient. Gradient norms (logged by rank 0) are compared as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from realm import distributed
from realm.config import load_config
from realm.data.blocks import BlockStore
from realm.data.qa import read_qa
from realm.distributed import Dist, DistributedError
from realm.training import parallel
from realm.training.checkpoint import save_checkpoint
from realm.training.logger import read_metrics
from realm.training.run import resume
from tests.dist_helpers import launch

LR = 0.5


def sgd(params, lr, weight_decay=0.01, scaled=None):
    """make_optimizer's signature, plain SGD (named groups kept: the recipes look for them)."""
    groups = [{"params": [p for p in extra if p.requires_grad], "lr_scale": s, "name": n}
              for n, (extra, s) in (scaled or {}).items()]
    taken = {id(p) for g in groups for p in g["params"]}
    groups.append({"params": [p for p in params if p.requires_grad and id(p) not in taken]})
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr)


def config():
    cfg = load_config("tiny", ["ict.steps=2", "ict.batch_size=8", f"ict.lr={LR}", "ict.warmup=0",
                               "pretrain.steps=2", "pretrain.batch_size=4", f"pretrain.lr={LR}", "pretrain.warmup=0",
                               "pretrain.refresh_mode=sync", "pretrain.refresh_every=1",
                               "pretrain.checkpoint_every=100", "finetune.steps=2", "finetune.batch_size=4",
                               f"finetune.lr={LR}", "finetune.warmup=0"])
    return cfg


def run_recipes(corpus: str, qa: str, out: str) -> None:
    """ICT, pretraining and fine-tuning in ``out/{ict,pretrain,finetune}`` on this process' ranks."""
    import realm.training.finetune as ft
    import realm.training.ict as ict
    import realm.training.pretrain as pre
    from realm.models.mlm import KnowledgeAugEncoder
    from realm.models.reader import SpanReader
    from realm.models.retriever import Retriever
    from realm.retrieval import DenseRetrieval

    saved = [(m, m.make_optimizer) for m in (ict, pre, ft)]
    for m, _ in saved:
        m.make_optimizer = sgd
    try:
        cfg, store, out = config(), BlockStore(corpus), Path(out)
        tok = store.tokenizer
        ict.train_ict(cfg, store, out / "ict", progress=False)
        pre.pretrain(cfg, store, out / "pretrain", progress=False)
        torch.manual_seed(1)
        retriever = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
        reader = SpanReader.from_bert(KnowledgeAugEncoder.build(cfg.reader.encoder, tok.vocab_size, tok.pad_id).bert,
                                      cfg.reader, cfg.retriever.query_len)
        emb = parallel.embed_all(retriever.doc, store, 64, False, "cpu")
        ft.finetune(cfg, DenseRetrieval(retriever, store, emb), reader, read_qa(qa), out / "finetune", progress=False)
    finally:  # the test process goes on to other tests
        for m, f in saved:
            m.make_optimizer = f


def _ranks(d: Dist, corpus: str, qa: str, out: str) -> None:
    run_recipes(corpus, qa, out)


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory):
    """(2-rank run folder, 1-process run folder)."""
    store, paths = tiny_corpus
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    launch(_ranks, 2, str(store.folder), str(paths["qa-train"]), str(two))
    run_recipes(str(store.folder), str(paths["qa-train"]), str(one))
    return two, one


def assert_same_weights(two: Path, one: Path, folder: str) -> None:
    files = sorted(p.relative_to(one / folder) for p in (one / folder).rglob("*.safetensors"))
    assert files
    for f in files:
        a, b = load_file(str(two / folder / f)), load_file(str(one / folder / f))
        assert a.keys() == b.keys()
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=2e-5, err_msg=f"{folder}/{f}:{k}")


def grad_norms(run: Path) -> list[float]:
    return [r["grad_norm"] for r in read_metrics(run / "metrics.jsonl") if "grad_norm" in r]


@pytest.mark.slow  # 2 spawned ranks + one process, three recipes: ~40-60 s on this shared machine
def test_ddp_ict_step_equals_one_process_on_the_global_batch(runs):
    two, one = runs
    assert_same_weights(two / "ict", one / "ict", "retriever")
    np.testing.assert_allclose(grad_norms(two / "ict"), grad_norms(one / "ict"), rtol=1e-4)
    assert len(grad_norms(one / "ict")) == 2


@pytest.mark.slow
def test_ddp_pretraining_step_equals_one_process_on_the_global_batch(runs):
    """Through pretrain(): the 2 ranks built the index in 2 shards, searched it as a ShardedIndex and
    refreshed it in-line after step 1; one process used the one-file index and ExactIndex."""
    two, one = runs
    for folder in ("retriever", "encoder"):
        assert_same_weights(two / "pretrain", one / "pretrain", folder)
    np.testing.assert_allclose(grad_norms(two / "pretrain"), grad_norms(one / "pretrain"), rtol=1e-4)
    versions = sorted((two / "pretrain" / "index").glob("v*/manifest.json"))
    manifests = [json.loads(p.read_text()) for p in versions]
    assert manifests and all(m["format_version"] == 2 and len(m["shards"]) == 2 for m in manifests)
    assert [r["index/version"] for r in read_metrics(two / "pretrain" / "metrics.jsonl")] == \
        [r["index/version"] for r in read_metrics(one / "pretrain" / "metrics.jsonl")] == [1, 2]


@pytest.mark.slow
def test_ddp_finetuning_step_equals_one_process_on_the_global_batch(runs, tiny_corpus):
    from realm.models.mlm import KnowledgeAugEncoder
    from realm.models.reader import SpanReader
    from realm.models.retriever import Retriever

    two, one = runs
    for folder in ("reader", "retriever"):
        assert_same_weights(two / "finetune", one / "finetune", folder)
    np.testing.assert_allclose(grad_norms(two / "finetune"), grad_norms(one / "finetune"), rtol=1e-4)
    cfg, tok = config(), tiny_corpus[0].tokenizer
    torch.manual_seed(1)  # the starting reader, built as run_recipes built it
    Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id)
    reader = SpanReader.from_bert(KnowledgeAugEncoder.build(cfg.reader.encoder, tok.vocab_size, tok.pad_id).bert,
                                  cfg.reader, cfg.retriever.query_len)
    trained = SpanReader.load(one / "finetune" / "reader").state_dict()
    moved = sum(float((trained[k] - v).abs().max()) > 1e-3 for k, v in reader.state_dict().items())
    assert moved > len(trained) // 2  # the comparison is not satisfied by parameters that never moved


# ------------------------------------------------------------------------------ one process
def test_mean_scale_turns_rank_means_into_the_global_mean():
    """(1/W) Σ_r mean_r * mean_scale(n_r, N) equals the mean over all items (what DDP's averaging sees)."""
    g = np.random.default_rng(0)
    for world in (1, 2, 3, 5):
        values = [g.normal(size=g.integers(0, 6)) for _ in range(world)]
        total = sum(len(v) for v in values)
        if total == 0:
            continue
        means = [v.mean() if len(v) else 0.0 for v in values]
        got = sum(m * parallel.mean_scale(len(v), total, world) for m, v in zip(means, values)) / world
        np.testing.assert_allclose(got, np.concatenate(values).mean(), rtol=1e-12)


def test_resume_refuses_another_world_size(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), 0.1)
    save_checkpoint(tmp_path, 3, {"m": model}, opt, {"world_size": 2})
    with pytest.raises(DistributedError, match="2 process.*this one has 1.*--nproc-per-node 2"):
        resume(tmp_path, {"m": model}, opt, "test")
    save_checkpoint(tmp_path, 4, {"m": model}, opt, {"world_size": 1})
    assert resume(tmp_path, {"m": model}, opt, "test")[0] == 4


def test_one_process_helpers_change_nothing():
    items = list(range(6))
    assert parallel.local_part(items) is items
    rng = np.random.default_rng(0)
    assert parallel.step_rng(rng, 0, 3) is rng
    assert parallel.global_counts(3, 4.5) == (3.0, 4.5)
    m = {"loss": 1.5, "n": None}
    assert parallel.mean_metrics(m) is m
    model = torch.nn.Linear(2, 2)
    assert parallel.Replicas({"m": model}).run(lambda x: x + 1, 1) == 2
    assert distributed.world_size() == 1
