"""Does the knowledge-augmented encoder read the block it is given?  A fixed probe set.

Built once per corpus from salient-span masked sentences (a fixed seed), two kinds of probe row, each
read twice: once with its block and once with a random block that does not contain the span:

  ``evidence``  real evidence: another document's block that contains the masked span; target = the span.
                REALM's retriever learns only if this block raises p(y|z,x) (its gradient is
                p(z|y,x) - p(z|x)).
  ``cf``        the sentence's own block with the span replaced by another salient span of the same
                length (:mod:`realm.training.counterfactual`); target = the replacement.

Advantage (nats) = mean over rows of [mean over masked tokens of log p(y|block, x) - the same with the
random block]. The same sentence is read both times, so whatever the model memorised cancels. Accuracy =
share of rows whose every masked token is predicted (argmax) exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from realm.models.bert import autocast
from realm.models.inputs import Specials, pair_inputs
from realm.training.checkpoint import step_generator
from realm.training.counterfactual import EvidenceFinder, SpanBank, counterfactual_row, occurrences
from realm.training.mlm_examples import masked_targets

PROBE_SEED = 20_201_202


@dataclass
class ProbeRows:
    queries: list  # MaskedQuery
    bodies: list[np.ndarray]  # the block read
    random_bodies: list[np.ndarray]  # a random block without the span
    targets: list[np.ndarray]


class ReadingProbe:
    def __init__(self, store, pool, rows: int = 200, seed: int = PROBE_SEED, bank: SpanBank | None = None,
                 finder: EvidenceFinder | None = None, query_len: int = 32):
        self.sp, self.query_len = Specials.of(store.tokenizer), query_len
        bank = bank or SpanBank.from_pool(pool)
        finder = finder or EvidenceFinder.from_store(store)
        bodies = finder.bodies
        rng = step_generator(seed, 0)
        self.sets: dict[str, ProbeRows] = {"evidence": ProbeRows([], [], [], []), "cf": ProbeRows([], [], [], [])}
        for _ in range(50 * rows):
            if all(len(s.queries) >= rows for s in self.sets.values()):
                break
            q = pool.mask(int(rng.integers(len(pool))), rng)
            if q is None:
                continue
            rand = int(rng.integers(len(bodies)))
            if occurrences(bodies[rand], q.targets) or store.block_doc[rand] == store.block_doc[q.block]:
                continue
            ev = self.sets["evidence"]
            if len(ev.queries) < rows:
                found = finder.find(q.targets, q.block)
                if found:
                    self._add(ev, q, bodies[found[int(rng.integers(len(found)))]], bodies[rand], q.targets)
                    continue
            cf = self.sets["cf"]
            if len(cf.queries) < rows:
                row = counterfactual_row(q, bodies[q.block], bank, rng, "own")
                if row is not None and not occurrences(bodies[rand], row.targets):
                    self._add(cf, q, row.body, bodies[rand], row.targets)

    @staticmethod
    def _add(s: ProbeRows, q, body, random_body, targets) -> None:
        s.queries.append(q)
        s.bodies.append(np.asarray(body))
        s.random_bodies.append(np.asarray(random_body))
        s.targets.append(np.asarray(targets))

    @torch.no_grad()
    def _score(self, encoder, s: ProbeRows, bodies, device, bf16, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Per row: (mean target log-prob, all tokens right)."""
        mean_lp, right = [], []
        for a in range(0, len(s.queries), batch):
            qs = s.queries[a:a + batch]
            inputs, _, _ = pair_inputs([q.input_ids for q in qs], bodies[a:a + batch], self.sp, self.query_len)
            pos, tgt, mask = masked_targets(qs, s.targets[a:a + batch])
            with autocast(device, bf16):
                lp, logits = encoder.target_log_probs({k: v.to(device) for k, v in inputs.items()}, pos.to(device),
                                                      tgt.to(device))
            lp, logits = lp.float().cpu(), logits.float().cpu()
            mean_lp.append(((lp * mask).sum(1) / mask.sum(1)).numpy())
            right.append(((logits.argmax(-1) == tgt) | ~mask).all(1).numpy())
        return np.concatenate(mean_lp), np.concatenate(right)

    def measure(self, encoder, device="cpu", bf16: bool = False) -> dict[str, float]:
        """``probe/{evidence,cf}_{advantage,acc,random_acc}``; the encoder's train/eval mode is restored."""
        was = encoder.training
        encoder.eval()
        out: dict[str, float] = {}
        try:
            for name, s in self.sets.items():
                if not s.queries:
                    continue
                lp, acc = self._score(encoder, s, s.bodies, device, bf16)
                lp_r, acc_r = self._score(encoder, s, s.random_bodies, device, bf16)
                out[f"probe/{name}_advantage"] = float(np.mean(lp - lp_r))
                out[f"probe/{name}_acc"] = float(np.mean(acc))
                out[f"probe/{name}_random_acc"] = float(np.mean(acc_r))
        finally:
            encoder.train(was)
        return out

    def sizes(self) -> dict[str, int]:
        return {name: len(s.queries) for name, s in self.sets.items()}
