"""Does a knowledge-augmented encoder read its retrieved blocks?  (diagnostic for issue 4)

For salient-span masked sentences of a corpus, retrieve the top k-1 blocks with a retriever (the
sentence's own block excluded, as in pretraining), add the null block, and report:

  evidence rate       fraction of queries with a retrieved block that contains the masked span
  evidence advantage  within a query: mean log p(y|z,x) of evidence blocks minus that of the others
  retriever push      mean of p(z|y,x) - p(z|x) (the gradient REALM sends to the score f(x,z)),
                      for evidence blocks, other blocks and the null block

An encoder that reads shows an advantage of several nats; ~0 means p(z|y,x) ~ p(z|x), so REALM
pretraining sends the retriever no signal.

    python tools/reader_probe.py CORPUS RETRIEVER ENCODER [ENCODER ...] [--k 5] [--batches 8]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from realm.data.blocks import BlockStore
from realm.index.build import embed_blocks
from realm.index.exact import ExactIndex
from realm.models.inputs import Specials, pair_inputs, query_inputs, store_block_inputs
from realm.models.mlm import KnowledgeAugEncoder
from realm.models.retriever import Retriever
from realm.training.checkpoint import step_generator
from realm.training.losses import evidence_advantage
from realm.training.mlm_examples import MaskedSentencePool, contains_span


@torch.no_grad()
def probe(store: BlockStore, retriever: Retriever, encoder: KnowledgeAugEncoder, k: int, batches: int,
          batch_size: int = 16, seed: int = 3) -> dict:
    sp = Specials.of(store.tokenizer)
    retriever.eval()
    encoder.eval()
    index = ExactIndex(embed_blocks(retriever.doc, store, progress=False))
    pool = MaskedSentencePool(store, "salient", max_tokens=retriever.query_len - 2, progress=False)
    push = {"evidence": [], "other": [], "null": []}
    advs, with_evidence, n = [], 0, 0
    for step in range(batches):
        queries = pool.sample(step_generator(seed, step), batch_size)
        q = retriever.query(**query_inputs([x.input_ids for x in queries], sp, retriever.query_len))
        _, ids = index.search(q, k - 1, exclude=[[x.block] for x in queries])
        for qi, (x, row) in enumerate(zip(queries, ids)):
            cands = [int(b) for b in row] + [-1]
            bodies = [store.body_ids(b) if b >= 0 else () for b in cands]
            evidence = torch.tensor([b >= 0 and contains_span(store.body_ids(b), x.targets) for b in cands])
            real = torch.tensor([b >= 0 for b in cands])
            log_pz = torch.log_softmax(retriever.doc(**store_block_inputs(store, cands, sp)) @ q[qi], 0)
            pin, _, _ = pair_inputs([x.input_ids] * k, bodies, sp, retriever.query_len)
            pos = torch.from_numpy(x.positions + 1)[None].repeat(k, 1)
            tlp, _ = encoder.target_log_probs(pin, pos, torch.from_numpy(x.targets)[None].repeat(k, 1))  # [k, M]
            post = torch.softmax(log_pz[:, None] + tlp, 0).mean(1)
            for z in range(k):
                kind = "null" if not real[z] else "evidence" if evidence[z] else "other"
                push[kind].append(float(post[z] - log_pz[z].exp()))
            adv, cnt = evidence_advantage(tlp[None], torch.ones(1, tlp.shape[1], dtype=torch.bool), evidence[None],
                                          real[None])
            if cnt:
                advs.append(float(adv))
            n += 1
            with_evidence += bool(evidence.any())
    return {"queries": n, "evidence_rate": with_evidence / n,
            "evidence_advantage_nats": float(np.mean(advs)) if advs else None, "compared": len(advs),
            **{f"push_{kind}": float(np.mean(v)) if v else None for kind, v in push.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("retriever")
    ap.add_argument("encoders", nargs="+")
    ap.add_argument("--k", type=int, default=5, help="candidates per query, the null block included")
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(2)
    store = BlockStore(args.corpus)
    retriever = Retriever.load(args.retriever)
    print("| encoder | queries | evidence rate | evidence advantage (nats) | push: evidence | other | null |")
    print("|---|---|---|---|---|---|---|")
    for path in args.encoders:
        r = probe(store, retriever, KnowledgeAugEncoder.load(path), args.k, args.batches)
        adv = "–" if r["evidence_advantage_nats"] is None else f"{r['evidence_advantage_nats']:+.3f} ({r['compared']})"
        print(f"| {path} | {r['queries']} | {r['evidence_rate']:.2f} | {adv} | {r['push_evidence']:+.4f} | "
              f"{r['push_other']:+.4f} | {r['push_null']:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
