import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertModel

from realm.config import EncoderConfig, ReaderConfig
from realm.models.bert import build_bert
from realm.models.inputs import Specials, pair_inputs
from realm.models.reader import INVALID_SPAN_SCORE, SpanReader, reader_inputs, span_candidates, span_index

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hf_realm"
SP = Specials(cls_id=2, sep_id=3, pad_id=0, mask_id=4)
VOCAB = 50



def tiny_cfg(**kw) -> ReaderConfig:
    enc = EncoderConfig(layers=1, hidden=32, heads=2, intermediate=64, max_positions=64)
    return ReaderConfig(encoder=enc, span_hidden=16, max_span_width=4, **kw)


def tiny_reader(seed=0) -> SpanReader:
    torch.manual_seed(seed)
    reader = SpanReader.build(tiny_cfg(), VOCAB, SP.pad_id).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so the hand computation checks them
        reader.qa_outputs.layer_normalization.weight.uniform_(0.5, 1.5)
        reader.qa_outputs.layer_normalization.bias.uniform_(-0.5, 0.5)
    return reader


def batch():
    g = torch.Generator().manual_seed(1)
    queries = [torch.randint(5, VOCAB, (n,), generator=g).tolist() for n in (3, 6, 2)]
    bodies = [torch.randint(5, VOCAB, (n,), generator=g).tolist() for n in (7, 2, 11)]
    return pair_inputs(queries, bodies, SP, max_query_len=8)


def test_span_index_matches_candidate_order():
    for seq_len in (1, 5, 13):
        starts, ends, _ = span_candidates(seq_len, 0, seq_len, 10)
        for c, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            assert span_index(seq_len, s, e - s + 1) == c


class FakeStore:
    def __init__(self, bodies):
        self.bodies = bodies

    def body_ids(self, i):
        return np.asarray(self.bodies[i])


def test_reader_inputs_rows_and_truncation():
    reader = tiny_reader()
    reader.max_query_len = 6
    long = [5 + i % 40 for i in range(195)]
    store = FakeStore([list(range(5, 15)), long])  # the second body is longer than 64 positions
    questions = [[7, 8, 9, 10, 11, 12, 13], [20, 21]]
    inputs, bs, be, bodies = reader_inputs(reader, questions, np.array([[0, 1], [1, -1]]), store, SP)
    assert inputs["input_ids"].shape == (4, reader.max_len)
    assert bs.tolist() == [6, 6, 4, 4]  # question cut to max_query_len - 2 tokens
    assert [len(b) for b in bodies] == [10, 64 - 6 - 1, 64 - 6 - 1, 0]  # id -1 reads an empty body
    assert (be - bs).tolist() == [len(b) for b in bodies]
    assert inputs["input_ids"][2, 4:4 + 57].tolist() == long[:57]
    out = reader(inputs, bs, be)
    assert not out.valid[3].any() and out.valid[:3].any(-1).all()


def test_shapes_and_only_body_spans_are_candidates():
    reader = tiny_reader()
    inputs, bs, be = batch()
    n, seq_len = inputs["input_ids"].shape
    out = reader(inputs, bs, be)
    num_spans = sum(seq_len - w for w in range(4))
    assert out.span_logits.shape == (n, num_spans) and out.valid.shape == (n, num_spans)
    assert out.starts.shape == out.ends.shape == (num_spans,)
    for r in range(n):
        for c in range(num_spans):
            s, e = int(out.starts[c]), int(out.ends[c])
            inside = bs[r] <= s and e < be[r] and e - s < 4
            assert bool(out.valid[r, c]) == inside
            # question tokens, [CLS]/[SEP] and padding are never part of a candidate
            if inside:
                assert inputs["attention_mask"][r, s:e + 1].all()
                assert (inputs["token_type_ids"][r, s:e + 1] == 1).all()
                assert inputs["input_ids"][r, e] != SP.sep_id
    assert (out.span_logits[~out.valid] == INVALID_SPAN_SCORE).all()
    assert (out.span_logits[out.valid] > INVALID_SPAN_SCORE / 2).all()
    # even if every real span scores badly, the argmax stays inside the block
    with torch.no_grad():
        reader.qa_outputs.dense_output.bias.fill_(-500.0)
    best = reader(inputs, bs, be).span_logits.argmax(-1)
    assert out.valid[torch.arange(n), best].all()


def test_hand_computed_span_score():
    reader = tiny_reader()
    inputs, bs, be = batch()
    out = reader(inputs, bs, be)
    q = reader.qa_outputs
    hidden = reader.bert(**inputs).last_hidden_state
    for r, c in [(0, int(out.valid[0].nonzero()[3])), (2, int(out.valid[2].nonzero()[-1]))]:
        i, j = int(out.starts[c]), int(out.ends[c])
        proj_i = hidden[r, i] @ q.dense_intermediate.weight.T + q.dense_intermediate.bias
        proj_j = hidden[r, j] @ q.dense_intermediate.weight.T + q.dense_intermediate.bias
        half = proj_i.numel() // 2
        x = torch.clamp(proj_i[:half] + proj_j[half:], min=0.0)  # ReLU(start_i + end_j)
        x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-3)
        x = x * q.layer_normalization.weight + q.layer_normalization.bias
        score = x @ q.dense_output.weight[0] + q.dense_output.bias[0]
        assert torch.allclose(out.span_logits[r, c], score, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    reader = tiny_reader()
    reader.max_query_len = 12
    inputs, bs, be = batch()
    reader.save(tmp_path / "reader")
    assert (tmp_path / "reader" / "encoder" / "model.safetensors").exists()
    keys = set(load_file(str(tmp_path / "reader" / "span_scorer.safetensors")))
    assert keys == {f"qa_outputs.{n}.{p}" for n in ("dense_intermediate", "layer_normalization", "dense_output")
                    for p in ("weight", "bias")}
    loaded = SpanReader.load(tmp_path / "reader").eval()
    assert loaded.max_span_width == 4 and loaded.max_query_len == 12
    with torch.no_grad():
        assert torch.equal(reader(inputs, bs, be).span_logits, loaded(inputs, bs, be).span_logits)


def test_from_bert_copies_backbone():
    torch.manual_seed(0)
    bert = build_bert(tiny_cfg().encoder, VOCAB, SP.pad_id, pooler=True)
    reader = SpanReader.from_bert(bert, tiny_cfg())
    assert reader.bert.pooler is None
    w = reader.bert.embeddings.word_embeddings.weight
    assert torch.equal(w, bert.embeddings.word_embeddings.weight)
    with torch.no_grad():
        w.add_(1.0)
    assert not torch.equal(w, bert.embeddings.word_embeddings.weight)


def test_matches_hf_realm_reader_fixture():
    """The HF port's RealmReader weights load 1:1 and give the same span logits."""
    if not (FIXTURES / "reader" / "model.safetensors").exists():
        pytest.skip("no HF fixture")
    hf = json.loads((FIXTURES / "reader" / "config.json").read_text())
    config = BertConfig(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                        num_hidden_layers=hf["num_hidden_layers"], num_attention_heads=hf["num_attention_heads"],
                        intermediate_size=hf["intermediate_size"], hidden_act=hf["hidden_act"],
                        max_position_embeddings=hf["max_position_embeddings"], type_vocab_size=hf["type_vocab_size"],
                        layer_norm_eps=hf["layer_norm_eps"], pad_token_id=hf["pad_token_id"])
    state = load_file(str(FIXTURES / "reader" / "model.safetensors"))
    bert = BertModel(config, add_pooling_layer=False)
    bert.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("realm.") and ".pooler." not in k})
    reader = SpanReader(bert, hf["max_span_width"], hf["span_hidden_size"], hf["reader_layer_norm_eps"]).eval()
    reader.qa_outputs.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("qa_outputs.")})
    out = load_file(str(FIXTURES / "outputs.safetensors"))
    rows = out["reader/input_ids"].shape[0]
    mask = out["reader/block_mask"][:rows].bool()
    bs = mask.int().argmax(-1)
    be = bs + mask.sum(-1)
    inputs = {k: out[f"reader/{k}"] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        mine = reader(inputs, bs, be)
    assert torch.equal(mine.starts, out["reader/candidate_starts"])
    assert torch.equal(mine.ends, out["reader/candidate_ends"])
    ref = out["reader/span_logits"]
    ref_valid = ref > torch.finfo(torch.float32).min / 2
    assert torch.equal(mine.valid, ref_valid)
    assert torch.allclose(mine.span_logits[ref_valid], ref[ref_valid], atol=1e-4)


# ---- predict: against a brute-force joint argmax -------------------------------------------
def _span_score(reader, hidden, r, i, j) -> float:
    """The reader's span score, written out: dense_output(LayerNorm(ReLU(start_i + end_j)))."""
    q = reader.qa_outputs
    a = hidden[r, i] @ q.dense_intermediate.weight.T + q.dense_intermediate.bias
    b = hidden[r, j] @ q.dense_intermediate.weight.T + q.dense_intermediate.bias
    half = a.numel() // 2
    x = torch.clamp(a[:half] + b[half:], min=0.0)
    x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + q.layer_normalization.eps)
    x = x * q.layer_normalization.weight + q.layer_normalization.bias
    return float(x @ q.dense_output.weight[0] + q.dense_output.bias[0])


def _brute_force(reader, inputs, bs, be, ret, row_valid):
    """Every (block, start, end) inside the body, width <= max_span_width: the best span + retrieval score."""
    b, k = ret.shape
    hidden = reader.bert(**inputs).last_hidden_state
    best = []
    for q in range(b):
        top = (float("-inf"), -1, -1, -1)
        for j in range(k):
            r = q * k + j
            if not row_valid[q, j]:
                continue
            for s in range(int(bs[r]), int(be[r])):
                for e in range(s, min(int(be[r]), s + reader.max_span_width)):
                    score = _span_score(reader, hidden, r, s, e) + float(ret[q, j])
                    if score > top[0]:
                        top = (score, j, s, e)
        best.append(top)
    return best


@pytest.mark.parametrize("shift", [0.0, -1e5])  # -1e5: every valid span scores below INVALID_SPAN_SCORE
@torch.no_grad()
def test_predict_is_the_brute_force_joint_argmax(shift):
    reader = tiny_reader(seed=3)
    reader.qa_outputs.dense_output.bias += shift
    g = torch.Generator().manual_seed(5)
    b, k = 3, 4
    queries = [torch.randint(5, VOCAB, (n,), generator=g).tolist() for n in (3, 6, 2) for _ in range(k)]
    lengths = [7, 2, 11, 5, 1, 9, 4, 0, 6, 3, 8, 12]  # one empty body (nothing readable in that row)
    bodies = [torch.randint(5, VOCAB, (n,), generator=g).tolist() for n in lengths]
    inputs, bs, be = pair_inputs(queries, bodies, SP, max_query_len=8)
    ret = torch.randn(b, k, generator=g) * 3
    row_valid = torch.ones(b, k, dtype=torch.bool)
    row_valid[2] = False  # question 2: no block retrieved at all
    row_valid[1, 0] = False
    reader.train()  # predict must run without dropout and give the mode back
    pred = reader.predict(inputs, bs, be, ret, row_valid)
    assert reader.training
    reader.eval()
    expected = _brute_force(reader, inputs, bs, be, ret, row_valid)
    for q, (score, j, s, e) in enumerate(expected):
        if j < 0:
            assert int(pred.block[q]) == -1 and pred.score[q] == float("-inf") and pred.answer_ids[q] == []
            assert int(pred.start[q]) == int(pred.token_start[q]) == -1
            continue
        assert (int(pred.block[q]), int(pred.start[q]), int(pred.end[q])) == (j, s, e)
        assert abs(float(pred.score[q]) - score) <= 1e-4 * max(1.0, abs(score))
        r = q * k + j
        assert (int(pred.token_start[q]), int(pred.token_end[q])) == (s - int(bs[r]), e - int(bs[r]))
        assert pred.answer_ids[q] == bodies[r][s - int(bs[r]):e - int(bs[r]) + 1]
    assert [j for _, j, _, _ in expected] != [-1] * b  # the test reads something
    with pytest.raises(ValueError, match="reader rows"):
        reader.predict(inputs, bs, be, ret[:, :2])


# --------------------------------------------------------------------------------- span candidates
@settings(max_examples=25, deadline=None)
@given(L=st.integers(1, 12), W=st.integers(1, 5), data=st.data())
def test_span_candidates_brute_force(L, W, data):
    bs = data.draw(st.integers(0, L))
    be = data.draw(st.integers(bs, L))
    starts, ends, valid = span_candidates(L, torch.tensor([bs]), torch.tensor([be]), W)
    got = set(zip(starts.tolist(), ends.tolist()))
    expect = {(s, e) for s in range(L) for e in range(s, L) if e - s < W}
    assert got == expect and len(got) == starts.numel()
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        assert bool(valid[0, i]) == (bs <= s and e < be)  # outside the block: never valid
    assert valid.shape == (1, starts.numel())


def test_span_candidates_shapes_and_order():
    starts, ends, valid = span_candidates(5, torch.tensor([[1, 2], [0, 3]]), torch.tensor([[4, 5], [2, 4]]), 3)
    assert valid.shape == (2, 2, starts.numel())
    assert starts[:5].tolist() == [0, 1, 2, 3, 4] and (ends[:5] == starts[:5]).all()  # width-major
    assert ((ends - starts) < 3).all()
    s2, e2, v_int = span_candidates(5, 1, 4, 2)
    assert v_int.shape == s2.shape
    assert v_int.tolist() == [1 <= s and e < 4 for s, e in zip(s2.tolist(), e2.tolist())]
