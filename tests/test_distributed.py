"""realm.distributed: splitting, per-rank seeds, the single-process fallback, and 2 gloo ranks (collectives;
a DistributedDataParallel fine-tuning step equals one process on the same global batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from realm import distributed
from realm.config import EncoderConfig, ReaderConfig
from realm.distributed import Dist, DistributedError
from realm.models.inputs import Specials, pair_inputs
from realm.models.reader import SpanReader
from realm.training.finetune import correct_spans
from realm.training.losses import reader_loss
from realm.training.optim import optimizer_step
from tests.dist_helpers import launch

SP = Specials(cls_id=2, sep_id=3, pad_id=0, mask_id=4)
VOCAB, QUESTIONS, K, STEPS, LR = 40, 4, 2, 2, 0.05


# ------------------------------------------------------------------------------ one process
def test_row_range_tiles_rows_contiguously():
    for n in (0, 1, 5, 37):
        for world in (1, 2, 3, 8):
            ranges = [distributed.row_range(n, r, world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [e - s for s, e in ranges]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(DistributedError):
        distributed.row_range(5, 2, 2)


def test_global_batch_splits_or_says_why():
    d = Dist(rank=1, world_size=4)
    assert d.local_batch_size(32) == 8 and d.local_slice(32) == slice(8, 16)
    with pytest.raises(DistributedError, match="does not split over 4 ranks"):
        d.local_batch_size(30)
    with pytest.raises(DistributedError):
        distributed.local_batch_size(0, 1)
    assert Dist().local_slice(6) == slice(0, 6)


def test_rank_streams_are_pure_functions_of_seed_step_rank():
    a = distributed.rank_generator(3, 10, 1).integers(0, 2**31, 5)
    np.testing.assert_array_equal(a, distributed.rank_generator(3, 10, 1).integers(0, 2**31, 5))
    others = [distributed.rank_generator(*x).integers(0, 2**31, 5) for x in ((3, 10, 0), (3, 11, 1), (4, 10, 1))]
    assert all(not np.array_equal(a, o) for o in others)
    seeds = {distributed.rank_seed(s, t, r) for s in range(3) for t in range(3) for r in range(3)}
    assert len(seeds) == 27 and all(0 <= x < 2**63 for x in seeds)
    assert distributed.rank_seed(1, 2, 3) == distributed.rank_seed(1, 2, 3)


def test_without_torchrun_everything_is_single_process(monkeypatch):
    for v in distributed.ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    d = distributed.init()
    assert (d.rank, d.world_size, d.backend, d.is_main(), d.distributed) == (0, 1, None, True, False)
    model = torch.nn.Linear(2, 2)
    assert d.wrap(model) is model
    t = torch.arange(3)
    assert torch.equal(distributed.all_gather(t), t[None])
    assert [x.tolist() for x in distributed.all_gather_rows(t)] == [[0, 1, 2]]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    distributed.barrier()
    d.shutdown()


def test_incomplete_torchrun_environment_is_an_error(monkeypatch):
    for v in distributed.ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="MASTER_ADDR"):
        distributed.init()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(DistributedError, match="not an integer"):
        distributed.init()


# ------------------------------------------------------------------------------ the fine-tuning step
def tiny_reader() -> SpanReader:
    torch.manual_seed(0)
    enc = EncoderConfig(layers=1, hidden=32, heads=2, intermediate=64, max_positions=64)
    return SpanReader.build(ReaderConfig(encoder=enc, span_hidden=16, max_span_width=3), VOCAB, SP.pad_id)


def global_batch(step: int):
    """QUESTIONS questions x K retrieved blocks: token ids, the answer (a body span), retrieval logits."""
    g = np.random.default_rng([7, step])  # every rank draws the same global batch
    questions = [g.integers(5, VOCAB, g.integers(2, 6)).tolist() for _ in range(QUESTIONS)]
    bodies = [g.integers(5, VOCAB, g.integers(4, 12)) for _ in range(QUESTIONS * K)]
    answers = [[bodies[q * K][1:3].tolist()] for q in range(QUESTIONS)]  # the first block holds the answer
    has_answer = np.zeros((QUESTIONS, K), bool)
    has_answer[:, 0] = True
    return questions, bodies, answers, torch.from_numpy(g.normal(size=(QUESTIONS, K)).astype(np.float32)), has_answer


def finetune_steps(reader: SpanReader, d: Dist) -> list[float]:
    """``STEPS`` fine-tuning steps as finetune.py takes them, on this rank's share of each global batch;
    returns the gradient norms. Plain SGD: AdamW's first steps divide by |g|, which turns ulp-level
    differences of near-zero gradients (1e-8 here) into visible ones; the optimizer is elementwise and the
    same on every rank, so SGD checks what data parallelism changes: the averaged gradient."""
    model = d.wrap(reader)
    opt = torch.optim.SGD(model.parameters(), LR)
    params, norms = list(model.parameters()), []
    for step in range(STEPS):
        questions, bodies, answers, ret_logits, has_answer = global_batch(step)
        qs = d.local_slice(QUESTIONS)
        rows = slice(qs.start * K, qs.stop * K)
        q_rows = [questions[q] for q in range(qs.start, qs.stop) for _ in range(K)]
        inputs, body_start, body_end = pair_inputs(q_rows, bodies[rows], SP, max_query_len=8)
        out = model(inputs, body_start, body_end)
        b = qs.stop - qs.start
        correct = correct_spans(bodies[rows], body_start, inputs["input_ids"].shape[1], out.starts.numel(),
                                [answers[q] for q in range(qs.start, qs.stop) for _ in range(K)],
                                reader.max_span_width, np.zeros(0, np.int64))
        loss, _ = reader_loss(out.span_logits.view(b, K, -1), out.valid.view(b, K, -1), correct.view(b, K, -1),
                              ret_logits[qs], torch.from_numpy(has_answer[qs]))
        norms.append(optimizer_step(opt, loss, params))
    return norms


def _ddp_ranks(d: Dist, out: str) -> None:
    # collectives first: rows of different lengths, objects
    mine = torch.arange(3 + d.rank, dtype=torch.float32) + 10 * d.rank
    got = distributed.all_gather_rows(mine[:, None])
    assert [x.flatten().tolist() for x in got] == [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0, 13.0]]
    assert distributed.broadcast_object("from 0" if d.is_main() else None) == "from 0"
    assert distributed.all_gather_object(d.rank) == [0, 1]
    reader = tiny_reader()
    norms = finetune_steps(reader, d)
    np.savez(f"{out}/rank{d.rank}.npz", grad_norms=np.array(norms),
             **{k: v.detach().numpy() for k, v in reader.state_dict().items()})


@pytest.mark.slow  # 2 spawned ranks: ~15-20 s on this shared machine
def test_ddp_finetuning_step_equals_one_process_on_the_global_batch(tmp_path):
    launch(_ddp_ranks, 2, str(tmp_path))
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    start = tiny_reader().state_dict()
    reader = tiny_reader()
    norms = finetune_steps(reader, Dist())
    one = reader.state_dict()
    np.testing.assert_allclose(ranks[0]["grad_norms"], norms, rtol=1e-5)  # the same, global, clipped gradient
    moved = 0
    for name, want in one.items():
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])  # replicas stay identical
        np.testing.assert_allclose(ranks[0][name], want.numpy(), rtol=0, atol=1e-6, err_msg=name)
        moved += float((want - start[name]).abs().max()) > 100 * 1e-6
    assert moved > len(one) // 2  # the comparison is not trivially satisfied by parameters that never moved
