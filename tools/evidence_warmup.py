"""Try to teach a knowledge-augmented encoder to read before REALM pretraining  (diagnostic for issue 4).

Masked-LM on (salient-span masked sentence, block) pairs: even rows get an *evidence* block (another
block whose body contains the masked span, found by string match; ``--mode own``: the sentence's own
block, an exact copy), odd rows a random block. If the encoder learns to read, accuracy on the
evidence rows pulls away from the random rows; check the result with ``tools/reader_probe.py``.

    python tools/evidence_warmup.py CORPUS ENCODER OUT [--steps 2000] [--lr 5e-4] [--mode evidence|own]
"""

from __future__ import annotations

import argparse
import time

import torch

from realm.data.blocks import BlockStore
from realm.models.inputs import Specials, pair_inputs
from realm.models.mlm import KnowledgeAugEncoder
from realm.training.closed_book import mlm_batch
from realm.training.mlm_examples import MaskedSentencePool, contains_span
from realm.training.optim import make_optimizer
from realm.training.run import begin_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("encoder", help="a KnowledgeAugEncoder (or HF BERT) folder to start from")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mode", choices=("evidence", "own"), default="evidence")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = BlockStore(args.corpus)
    sp = Specials.of(store.tokenizer)
    pool = MaskedSentencePool(store, "salient", max_tokens=30, progress=False)
    bodies = [list(store.body_ids(i)) for i in range(len(store))]
    by_token: dict[int, list[int]] = {}
    for i, body in enumerate(bodies):
        for t in set(body):
            by_token.setdefault(t, []).append(i)
    enc = KnowledgeAugEncoder.load(args.encoder).train()
    opt = make_optimizer(enc.parameters(), args.lr)
    t0 = time.time()
    for step in range(args.steps):
        _, rng = begin_step(opt, step, 0, args.lr, 30, args.steps)
        queries = pool.sample(rng, args.batch)
        blocks, is_evidence = [], []
        for j, x in enumerate(queries):
            if args.mode == "own":
                found = [x.block]
            else:
                found = [i for i in by_token.get(int(x.targets[0]), []) if i != x.block and contains_span(bodies[i], x.targets)]
            use = j % 2 == 0 and bool(found)
            blocks.append(bodies[found[int(rng.integers(len(found)))]] if use else bodies[int(rng.integers(len(bodies)))])
            is_evidence.append(use)
        pin, _, _ = pair_inputs([x.input_ids for x in queries], blocks, sp, 32)
        _, pos, tgt, mask = mlm_batch(queries, sp, 32)  # the sentence sits at the same positions in a pair
        tlp, logits = enc.target_log_probs(pin, pos, tgt)
        loss = -(tlp * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            acc = ((logits.argmax(-1) == tgt) & mask).float().sum(1) / mask.sum(1)
            ev = torch.tensor(is_evidence)
            print(f"step {step}: loss {loss.item():.3f}, accuracy on evidence rows {acc[ev].mean():.2f}, "
                  f"on random rows {acc[~ev].mean():.2f} ({time.time() - t0:.0f} s)", flush=True)
    enc.save(args.out)


if __name__ == "__main__":
    main()
