import pytest
import torch

from realm.config import load_config
from realm.models.inputs import Specials, block_inputs, query_inputs
from realm.models.retriever import Embedder, Retriever, relevance


def _retriever(**over):
    cfg = load_config("tiny", [f"retriever.{k}={v}" for k, v in over.items()]).retriever
    torch.manual_seed(0)
    return Retriever.build(cfg, vocab_size=50, pad_id=0), cfg


SP = Specials(cls_id=2, sep_id=3, pad_id=0, mask_id=4)


def test_projection_and_score_shapes():
    r, cfg = _retriever()
    q = r.embed_queries(query_inputs([[10, 11, 12], [13]], SP, cfg.query_len))
    d = r.embed_blocks(block_inputs([[20], []], [[21, 22, 23], [24, 25]], SP))
    assert q.shape == (2, cfg.proj_dim) and d.shape == (2, cfg.proj_dim)
    # LayerNorm output: zero mean per row
    assert torch.allclose(q.mean(-1), torch.zeros(2), atol=1e-5)
    assert relevance(q, d).shape == (2, 2)
    assert relevance(q, d.unsqueeze(0).expand(2, -1, -1)).shape == (2, 2)
    assert torch.allclose(relevance(q, d), q @ d.T)


def test_block_input_layout():
    x = block_inputs([[20, 21]], [[30, 31, 32]], SP)
    assert x["input_ids"][0].tolist() == [2, 20, 21, 3, 30, 31, 32, 3]
    assert x["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    null = block_inputs([[]], [[]], SP)
    assert null["input_ids"][0].tolist() == [2, 3, 3]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_matches_hand_computation(pooling):
    r, cfg = _retriever(pooling=pooling)
    inputs = query_inputs([[10, 11, 12], [13]], SP, cfg.query_len)
    out = r.query.bert(**inputs).last_hidden_state
    if pooling == "cls":
        h = out[:, 0]
    else:
        m = inputs["attention_mask"].unsqueeze(-1).float()
        h = (out * m).sum(1) / m.sum(1)
    expected = torch.nn.functional.layer_norm(r.query.dense(h), (cfg.proj_dim,), r.query.norm.weight, r.query.norm.bias,
                                              r.query.norm.eps)
    assert torch.allclose(r.embed_queries(inputs), expected, atol=1e-6)


def test_mean_pooling_ignores_padding():
    r, cfg = _retriever(pooling="mean")
    one = r.embed_queries(query_inputs([[10, 11]], SP, cfg.query_len))
    padded = r.embed_queries(query_inputs([[10, 11], [10, 11, 12, 13, 14]], SP, cfg.query_len))[:1]
    assert torch.allclose(one, padded, atol=1e-5)


@pytest.mark.parametrize("shared", [True, False])
def test_save_load_round_trip(tmp_path, shared):
    r, cfg = _retriever(share_encoders=str(shared).lower(), pooling="mean")
    r.eval()
    r.save(tmp_path / "r")
    r2 = Retriever.load(tmp_path / "r").eval()
    assert r2.shared == shared and r2.query.pooling == "mean"
    inputs = block_inputs([[20]], [[21, 22]], SP)
    assert torch.equal(r.embed_blocks(inputs), r2.embed_blocks(inputs))
    # the encoders are ordinary HF BERT folders
    from transformers import BertModel

    assert isinstance(BertModel.from_pretrained(str(tmp_path / "r" / "query_encoder")), BertModel)


def test_bad_pooling():
    with pytest.raises(ValueError, match="pooling"):
        Embedder(_retriever()[0].query.bert, 8, pooling="max")
