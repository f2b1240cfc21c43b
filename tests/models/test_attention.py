"""The attention kernel switch: eager (matmul + softmax) and sdpa read padded rows alike."""

import pytest
import torch

from realm.config import ConfigError, EncoderConfig, load_config
from realm.models.bert import build_bert, use_attention
from realm.models.mlm import KnowledgeAugEncoder


def _padded_inputs(vocab: int = 50):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padded rows: the kernels must ignore the padding alike
    mask[2, 4:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_eager_and_sdpa_agree_on_padded_rows():
    torch.manual_seed(0)
    enc = KnowledgeAugEncoder.build(EncoderConfig(layers=2, hidden=32, heads=4, intermediate=64), 50).eval()
    inputs, positions = _padded_inputs(), torch.tensor([[1, 2], [3, 6], [1, 3]])
    with torch.no_grad():
        ref = enc.masked_logits(inputs, positions)
        assert use_attention(enc, "eager") is enc and enc.mlm.config._attn_implementation == "eager"
        out = enc.masked_logits(inputs, positions)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_encoder_config_chooses_the_kernel_and_rejects_others():
    bert = build_bert(EncoderConfig(layers=1, hidden=16, heads=2, intermediate=32, attention="eager"), 50)
    assert bert.config._attn_implementation == "eager"
    assert load_config("tiny", ["reader.encoder.attention=eager"]).reader.encoder.attention == "eager"
    with pytest.raises(ConfigError, match="reader.encoder.attention"):
        load_config("tiny", ["reader.encoder.attention=flash"])
    with pytest.raises(ValueError, match="not one of"):
        use_attention(bert, "flash")
