"""Can a small encoder learn to copy from the second segment?  (diagnostic for issue 4)

Input ``[CLS] x [SEP] (filler) x' [SEP]``: ``x`` is 20 random tokens with one replaced by [MASK], ``x'``
is the same 20 tokens unmasked; the target is the masked token.  ``--offset fixed`` puts ``x'`` right
after the [SEP] (copying needs only a positional attention head); ``--offset random`` puts 0-29 random
tokens before it (copying needs content matching, an induction-style circuit).  The loss at chance
is ln(number of token types).

    python tools/copy_probe.py --model bert --lr 1e-3 --steps 2000 --offset fixed --types 50
    python tools/copy_probe.py --model preln --lr 1e-3 --steps 2000 --offset fixed --types 50
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def build(model: str, vocab: int, hidden: int, layers: int, heads: int):
    if model == "bert":  # HF BertForMaskedLM: post-LayerNorm, N(0, 0.02) init, tied decoder (what realm uses)
        from transformers import BertConfig, BertForMaskedLM

        m = BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=4 * hidden, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0, max_position_embeddings=128))
        return m, lambda ids: m(input_ids=ids).logits
    emb, pos = nn.Embedding(vocab, hidden), nn.Embedding(128, hidden)  # plain pre-LayerNorm transformer
    layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.0, batch_first=True, norm_first=True)
    enc, head = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False), nn.Linear(hidden, vocab)
    m = nn.ModuleList([emb, pos, enc, head])
    return m, lambda ids: head(enc(emb(ids) + pos(torch.arange(ids.shape[1]))[None]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=("bert", "preln"), default="bert")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--offset", choices=("fixed", "random"), default="fixed")
    ap.add_argument("--types", type=int, default=50, help="distinct token types in x")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    cls, sep, mask, first = 2, 3, 4, 10
    vocab = first + args.types
    model, forward = build(args.model, vocab, args.hidden, args.layers, args.heads)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    B, rows = args.batch, torch.arange(args.batch)
    print(f"chance loss ln({args.types}) = {math.log(args.types):.3f}")
    for step in range(1, args.steps + 1):
        x = torch.from_numpy(rng.integers(first, vocab, (B, 20)))
        p = torch.from_numpy(rng.integers(1, 20, B))
        q = x.clone()
        q[rows, p] = mask
        filler = torch.from_numpy(rng.integers(first, vocab, (B, int(rng.integers(0, 30)) if args.offset == "random" else 0)))
        ids = torch.cat([torch.full((B, 1), cls), q, torch.full((B, 1), sep), filler, x, torch.full((B, 1), sep)], 1)
        logits = forward(ids)[rows, p + 1]
        loss = F.cross_entropy(logits, x[rows, p])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 8) == 0:
            acc = (logits.argmax(-1) == x[rows, p]).float().mean().item()
            print(f"step {step}: loss {loss.item():.3f}, accuracy {acc:.2f}", flush=True)


if __name__ == "__main__":
    main()
