"""HF REALM port checkpoints <-> realm: equivalence on the committed fixtures, and lossless round trips.

The fixtures (tests/fixtures/hf_realm/) were written by transformers 4.40.2 with
tools/make_hf_realm_fixtures.py. These tests read only those files. They need neither network nor
transformers 4.x. Every output is matched to 1e-5 after loading the converted realm folders from disk.
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from realm.convert import ConversionError, from_hf_realm, read_hf_state, to_hf_realm
from realm.convert.cli_commands import register
from realm.convert.hf_realm import SIDECAR, tied_keys
from tests.convert.test_npy_records import write_malicious
from realm.models.mlm import KnowledgeAugEncoder
from realm.models.reader import SpanReader
from realm.models.retriever import Retriever, relevance
from realm.training.losses import marginal_mlm_loss, mlm_log_probs_at, reader_loss

FIX = Path(__file__).parents[1] / "fixtures" / "hf_realm"
NAMES = ("embedder", "scorer", "encoder", "reader", "openqa")
RELEASED = ("scorer_safetensors", "openqa_hub")  # re-saved as released checkpoints look (see the generator)
TOL = dict(atol=1e-5, rtol=1e-5)
MIN = torch.finfo(torch.float32).min


@pytest.fixture(scope="module")
def ref():
    return load_file(str(FIX / "outputs.safetensors"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> realm folder converted from the fixture (once per module)."""
    root, cache = tmp_path_factory.mktemp("converted"), {}

    def get(name):
        if name not in cache:
            from_hf_realm(FIX / name, root / name)
            cache[name] = root / name
        return cache[name]

    return get


def case(ref, name):
    return {k.split("/", 1)[1]: v for k, v in ref.items() if k.startswith(name + "/")}


def close(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a.float(), b.float(), **TOL)


# ---- equivalence ---------------------------------------------------------------------------------
@torch.no_grad()
def test_embedder_matches_port(converted, ref):
    r = Retriever.load(converted("embedder") / "retriever").eval()
    c = r.query.bert.config
    assert r.shared and r.query.use_pooler and c.hidden_act == "gelu_new"  # carried by config, not code
    assert r.query.norm.eps == c.layer_norm_eps == 1e-12 and r.query.dense.out_features == 16
    x = case(ref, "embedder")
    inputs = {k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    close(r.embed_queries(inputs), x["projected_score"])
    close(r.embed_blocks(inputs), x["projected_score"])
    out = r.query.bert(**inputs)
    close(out.last_hidden_state, x["last_hidden_state"])
    close(out.pooler_output, x["pooler_output"])
    d = case(ref, "embedder_defaults")  # no mask, no token types: padding is attended
    close(r.query(d["input_ids"]), d["projected_score"])


@pytest.mark.parametrize("name", ["scorer", "scorer_safetensors"])
@torch.no_grad()
def test_scorer_matches_port(converted, ref, name):
    if name == "scorer_safetensors":  # transformers 4.36-4.39 safetensors: no query_embedder.* key at all
        state, fmt = read_hf_state(FIX / name)
        assert fmt == "model.safetensors" and {k.split(".")[0] for k in state} == {"embedder"}
    r = Retriever.load(converted(name) / "retriever").eval()
    assert r.shared  # query_embedder.* == embedder.*, or absent: one tower
    x = case(ref, "scorer")
    q = r.embed_queries({k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    b, n, lc = x["candidate_input_ids"].shape
    c = r.embed_blocks({k: x[f"candidate_{k}"].view(-1, lc) for k in ("input_ids", "attention_mask", "token_type_ids")})
    c = c.view(b, n, -1)
    close(q, x["query_score"])
    close(c, x["candidate_score"])
    close(relevance(q, c), x["relevance_score"])


@torch.no_grad()
def test_encoder_logits_and_marginal_loss(converted, ref):
    enc = KnowledgeAugEncoder.load(converted("encoder") / "encoder").eval()
    assert enc.mlm.cls.predictions.decoder.weight is enc.bert.embeddings.word_embeddings.weight
    assert enc.mlm.config.hidden_act == "gelu_new"  # also the MLM transform's activation
    x = case(ref, "encoder")
    inputs = {k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    logits = enc.mlm(**inputs).logits
    close(logits, x["logits"])
    rows, length = x["input_ids"].shape
    positions = torch.arange(length).expand(rows, -1)
    close(enc.masked_logits(inputs, positions), x["logits"])  # realm's training path: gather, then the head
    bsz, n = x["relevance_score"].shape
    labels = x["labels"]
    tok_lp = mlm_log_probs_at(logits.view(bsz, n, length, -1), labels[:, None, :].expand(-1, n, -1))
    for name, m in (("encoder", x["mlm_mask"].float()), ("encoder_nomask", torch.ones(bsz, length))):
        loss, stats = marginal_mlm_loss(x["relevance_score"], tok_lp, (labels != -100) & m.bool(), null_index=None)
        # realm averages over the labelled masked tokens; the port divides by sum(mlm_mask) (B*L without one)
        port = loss * stats["num_masked_tokens"] / m.sum()
        close(port.reshape(1), ref[f"{name}/loss"])


@torch.no_grad()
def test_reader_matches_port(converted, ref):
    reader = SpanReader.load(converted("reader") / "reader").eval()
    assert reader.qa_outputs.layer_normalization.eps == 1e-3 and reader.max_span_width == 10
    x = case(ref, "reader")
    rows = x["input_ids"].shape[0]
    mask = x["block_mask"][:rows]
    bs = mask.int().argmax(-1)
    be = bs + mask.sum(-1)
    out = reader({k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids")}, bs, be)
    assert torch.equal(out.starts, x["candidate_starts"]) and torch.equal(out.ends, x["candidate_ends"])
    valid = x["span_logits"] > MIN / 2
    assert torch.equal(out.valid, valid)
    close(out.span_logits[valid], x["span_logits"][valid])
    rel = x["relevance_score"]
    joint = out.span_logits + rel[:rows, None]
    close(joint[valid], x["reader_logits"][valid])
    # prediction: the global argmax over eligible (block, span)
    flat = int(torch.where(valid, joint, torch.tensor(float("-inf"))).argmax())
    block, cand = divmod(flat, joint.shape[1])
    assert [block, cand] == [int(x["block_idx"]), int(x["candidate"])]
    assert out.starts[cand] == x["start_pos"] and out.ends[cand] == x["end_pos"]
    pred = reader.predict({k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids")}, bs, be,
                          rel[None, :rows])  # the model's own API gives the same answer
    assert [int(pred.block[0]), int(pred.start[0]), int(pred.end[0])] == [block, int(x["start_pos"]),
                                                                          int(x["end_pos"])]
    close(pred.score, x["reader_logits"][block, cand].reshape(1))
    # losses (B = 1): reader over the R read blocks, retriever over all K scores
    for name in ("reader", "reader_noanswer"):
        y = case(ref, name)
        sp, ep = y["start_positions"][:rows], y["end_positions"][:rows]
        correct = ((out.starts[None, None] == sp[:, :, None]) & (out.ends[None, None] == ep[:, :, None])).any(1)
        assert torch.equal(correct & valid, y["reader_correct"])
        loss, stats = reader_loss(out.span_logits[None], out.valid[None], correct[None], rel[None, :rows],
                                  y["has_answers"][None, :rows], retriever_logits=rel[None],
                                  retriever_has_answer=y["has_answers"][None])
        close(stats["reader_loss"].reshape(1), y["reader_loss"])
        close(stats["retriever_loss"].reshape(1), y["retriever_loss"])
        close(loss.reshape(1), y["loss"])


@pytest.mark.parametrize("name", ["openqa", "openqa_hub"])
@torch.no_grad()
def test_openqa_run_matches_port(converted, ref, name):
    from realm.data.qa import QAExample
    from realm.evaluation.qa import predict
    from realm.models.inputs import Specials, query_inputs
    from realm.models.reader import reader_inputs
    from realm.retrieval import DenseRetrieval
    from realm.serving.qa_run import IndexedCorpus, read_run_info

    run = converted(name)  # openqa_hub: an object-array block_records.npy, loaded without --allow-pickle
    x = case(ref, "openqa")
    hf_state, _ = read_hf_state(FIX / name)
    records = np.load(FIX / "openqa" / "block_records.npy", allow_pickle=False)
    indexed = IndexedCorpus.load(run)
    store, emb = indexed.store, indexed.embeddings
    assert read_run_info(run)["top_k"] == 3
    assert len(store) == len(records) and np.array_equal(emb, hf_state["block_emb"].numpy())
    assert [store.block_text(i).encode() for i in range(len(store))] == records.tolist()
    retriever, reader = Retriever.load(run / "retriever").eval(), SpanReader.load(run / "reader").eval()
    tok = store.tokenizer
    sp = Specials.of(tok)
    question = "what is the capital of france ?"
    q_ids = tok.encode(question)
    assert [sp.cls_id, *q_ids, sp.sep_id] == x["input_ids"][0].tolist()
    q = retriever.embed_queries(query_inputs([q_ids], sp, retriever.query_len))
    close(q, x["question_projection"])
    scores = relevance(q, torch.from_numpy(emb))
    close(scores, x["block_scores"])
    top = scores[0].topk(3).indices
    assert torch.equal(top, x["retrieved_block_ids"])
    inputs, bs, be, _ = reader_inputs(reader, [q_ids], top.numpy()[None], store, sp)
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(inputs[k], x[f"reader_{k}"]), k
    body = torch.zeros_like(x["reader_block_mask"])
    for r in range(3):
        body[r, bs[r]:be[r]] = True
    assert torch.equal(body, x["reader_block_mask"])
    pred = reader.predict(inputs, bs, be, scores[0, top][None])  # the reader's API: the port's answer
    assert [int(pred.block[0]), int(pred.start[0]), int(pred.end[0])] == [
        int(x["block_idx"]), int(x["start_pos"]), int(x["end_pos"])]
    assert pred.answer_ids[0] == x["predicted_answer_ids"].tolist()
    # the whole realm QA path (retrieve from the index, read, pick the best span) gives the port's answer
    pred = predict(DenseRetrieval(retriever, store, emb), reader, [QAExample(question, ("paris", "the capital"))], k=3)[0]
    block_idx = int(x["block_idx"])
    assert pred["block"] == int(x["retrieved_block_ids"][block_idx])
    assert pred["token_start"] == int(x["start_pos"]) - int(bs[block_idx])
    assert pred["token_end"] == int(x["end_pos"]) - int(bs[block_idx])
    assert tok.encode(pred["prediction"]) == x["predicted_answer_ids"].tolist()


# ---- round trips -------------------------------------------------------------------------------
def assert_same_state(a: dict, b: dict, skip=()):
    a = {k: v for k, v in a.items() if k not in skip}
    b = {k: v for k, v in b.items() if k not in skip}
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", NAMES + RELEASED)
def test_round_trip_is_byte_identical(converted, tmp_path, name):
    summary = to_hf_realm(converted(name), tmp_path / "hf")
    src, fmt = read_hf_state(FIX / name)
    back, fmt_back = read_hf_state(tmp_path / "hf")
    assert fmt_back == fmt and summary["tensors"] == len(src)
    assert_same_state(src, back)  # every key, incl. the tied duplicates a .bin holds
    files = sorted(p.name for p in (FIX / name).iterdir())
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == files
    for f in files:  # weights, config.json, tokenizer files (tokenizer.json included), block_records.npy
        assert (FIX / name / f).read_bytes() == (tmp_path / "hf" / f).read_bytes(), f
    if name == "scorer":  # the .bin shares storage as the port's state_dict does
        assert _storages(back) == _storages(src) == 49


def _json(path):
    return json.loads(Path(path).read_text())


def _storages(state):
    return len({t.untyped_storage().data_ptr() for t in state.values()})


def test_cross_format_exports_differ_only_in_tied_keys(converted, tmp_path):
    src, _ = read_hf_state(FIX / "scorer")
    to_hf_realm(converted("scorer"), tmp_path / "st", fmt="safetensors")
    st, fmt = read_hf_state(tmp_path / "st")
    assert fmt == "model.safetensors"
    dups = {d for d, _ in tied_keys("RealmScorer")}
    assert dups == {"embedder.cls.predictions.decoder.bias", "query_embedder.cls.predictions.decoder.bias"}
    # a shared scorer as safetensors: one tower (embedder.*), as transformers 4.36-4.39 write it
    tower = {k for k in src if k.startswith("embedder.")}
    assert st.keys() == tower - dups
    assert_same_state({k: src[k] for k in tower}, st, skip=dups)
    assert (tmp_path / "st" / "model.safetensors").read_bytes() == \
        (FIX / "scorer_safetensors" / "model.safetensors").read_bytes()
    from_hf_realm(tmp_path / "st", tmp_path / "again")
    assert Retriever.load(tmp_path / "again" / "retriever").shared
    to_hf_realm(tmp_path / "again", tmp_path / "bin2", fmt="bin")  # and back to the port's .bin, both prefixes
    assert_same_state(src, read_hf_state(tmp_path / "bin2")[0])

    enc, _ = read_hf_state(FIX / "encoder")
    to_hf_realm(converted("encoder"), tmp_path / "bin", fmt="bin")
    b, _ = read_hf_state(tmp_path / "bin")
    assert b.keys() - enc.keys() == {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    assert torch.equal(b["cls.predictions.decoder.weight"], enc["realm.embeddings.word_embeddings.weight"])
    assert_same_state(enc, b, skip={"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"})


def test_separate_query_tower_is_kept(tmp_path):
    state, _ = read_hf_state(FIX / "scorer")
    state = {k: v.clone() for k, v in state.items()}
    state["query_embedder.cls.dense.bias"] += 1.0
    src = tmp_path / "scorer2"
    shutil.copytree(FIX / "scorer", src)
    (src / "pytorch_model.bin").unlink()
    torch.save(state, src / "pytorch_model.bin")
    from_hf_realm(src, tmp_path / "run")
    r = Retriever.load(tmp_path / "run" / "retriever")
    assert not r.shared
    assert torch.equal(r.query.dense.bias, state["query_embedder.cls.dense.bias"])
    assert torch.equal(r.doc.dense.bias, state["embedder.cls.dense.bias"])
    to_hf_realm(tmp_path / "run", tmp_path / "hf")
    assert_same_state(state, read_hf_state(tmp_path / "hf")[0])


def test_export_of_a_run_without_import_record(converted, tmp_path, ref):
    """A realm run that never came from the port (no hf_realm/): config derived, unused heads neutral."""
    run = tmp_path / "run"
    shutil.copytree(converted("openqa"), run)
    shutil.rmtree(run / SIDECAR)
    to_hf_realm(run, tmp_path / "hf")
    cfg, orig = _json(tmp_path / "hf" / "config.json"), _json(FIX / "openqa" / "config.json")
    derived = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "hidden_act", "layer_norm_eps", "max_position_embeddings", "retriever_proj_size", "span_hidden_size",
               "max_span_width", "reader_layer_norm_eps", "num_block_records", "reader_beam_size", "pad_token_id")
    assert {k: cfg[k] for k in derived} == {k: orig[k] for k in derived}
    src, _ = read_hf_state(FIX / "openqa")
    out, _ = read_hf_state(tmp_path / "hf")
    unused = {k for k in src if ".cls.predictions." in k or k == "reader.realm.pooler.dense.weight"
              or k == "reader.realm.pooler.dense.bias"}
    assert out.keys() == src.keys()
    assert_same_state(src, out, skip=unused)
    assert (tmp_path / "hf" / "vocab.txt").read_bytes() == (FIX / "openqa" / "vocab.txt").read_bytes()
    assert _json(tmp_path / "hf" / "tokenizer_config.json")["tokenizer_class"] == "RealmTokenizer"
    from tokenizers import Tokenizer  # tokenizer.json: what RealmTokenizerFast reads; same ids as the port's

    enc = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json")).encode("what is the capital of france ?")
    assert enc.ids == case(ref, "openqa")["input_ids"][0].tolist()
    from_hf_realm(tmp_path / "hf", tmp_path / "again")  # and it imports again, to the same outputs
    x = case(ref, "embedder")
    r = Retriever.load(tmp_path / "again" / "retriever").eval()
    with torch.no_grad():
        q = r.embed_queries({k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        q0 = Retriever.load(converted("openqa") / "retriever").eval().embed_queries(
            {k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    assert torch.equal(q, q0)


def test_empty_block_records_are_set_aside_and_restored(tmp_path):
    src = tmp_path / "openqa"
    shutil.copytree(FIX / "openqa", src)
    records = np.load(src / "block_records.npy", allow_pickle=False).tolist()
    records[2] = b"  "
    np.save(src / "block_records.npy", np.array(records, dtype=bytes))
    summary = from_hf_realm(src, tmp_path / "run")
    assert summary["dropped_records"] == 1
    from realm.serving.qa_run import IndexedCorpus

    indexed = IndexedCorpus.load(tmp_path / "run")
    block_emb = read_hf_state(src)[0]["block_emb"].numpy()
    assert len(indexed.store) == 5 and np.array_equal(indexed.embeddings, np.delete(block_emb, 2, axis=0))
    assert [d["id"] for d in indexed.store.docs] == ["0", "1", "3", "4", "5"]
    to_hf_realm(tmp_path / "run", tmp_path / "hf")
    assert np.load(tmp_path / "hf" / "block_records.npy").tolist() == records
    assert_same_state(read_hf_state(src)[0], read_hf_state(tmp_path / "hf")[0])


def test_rejections(converted, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(FIX / "embedder", bad)
    state = load_file(str(bad / "model.safetensors"))
    state["cls.something_else.weight"] = torch.zeros(2)
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(ConversionError, match="unexpected weights"):
        from_hf_realm(bad, tmp_path / "o1")
    with pytest.raises(ConversionError, match="not empty"):
        from_hf_realm(FIX / "embedder", converted("embedder"))
    cfg = _json(FIX / "embedder" / "config.json") | {"model_type": "bert"}
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="model_type"):
        from_hf_realm(bad, tmp_path / "o2")
    evil = tmp_path / "evil"  # block records whose pickle would call os.mkdir: refused, never run
    shutil.copytree(FIX / "openqa_hub", evil)
    write_malicious(evil / "block_records.npy", tmp_path / "pwned")
    with pytest.raises(ConversionError, match=r"refers to posix\.mkdir.*--allow-pickle only if you trust"):
        from_hf_realm(evil, tmp_path / "o3")
    assert not (tmp_path / "pwned").exists()
    assert list((tmp_path / "o3").iterdir()) == []  # a failed conversion leaves no half-made run
    # the port always projects the pooler output: a raw-[CLS] retriever cannot be exported faithfully
    run = tmp_path / "cls"
    shutil.copytree(converted("embedder"), run)
    meta = _json(run / "retriever" / "retriever.json") | {"use_pooler": False}
    (run / "retriever" / "retriever.json").write_text(json.dumps(meta))
    with pytest.raises(ConversionError, match="pooler"):
        to_hf_realm(run, tmp_path / "o4")


def test_cli_commands(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="realm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", "from-hf-realm", str(FIX / "reader"), str(tmp_path / "run")])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["written"] == ["reader"]
    args = parser.parse_args(["convert", "to-hf-realm", str(tmp_path / "run"), str(tmp_path / "hf"), "--format", "bin"])
    assert args.func(args) == 0
    assert (tmp_path / "hf" / "pytorch_model.bin").exists()
    args = parser.parse_args(["convert", "to-hf-realm", str(tmp_path / "run"), str(tmp_path / "hf")])
    assert args.func(args) == 2  # not empty: a clean error, not a traceback
    assert "not empty" in capsys.readouterr().err
