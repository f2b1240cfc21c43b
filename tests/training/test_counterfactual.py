"""Counterfactual span substitution: every function against a plain reference."""

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from realm.training.counterfactual import (AnswerBank, EvidenceFinder, SpanBank, answer_kind, counterfactual_row,
                                           draw_kinds, make_rows, occurrences, substitute)

tokens = st.lists(st.integers(0, 4), min_size=0, max_size=30)
spans = st.lists(st.integers(0, 4), min_size=1, max_size=3)


def _occurrences_ref(body, span, continuation=()):
    """Left-to-right scan over Python lists."""
    out, i, n = [], 0, len(span)
    while i + n <= len(body):
        nxt_cont = i + n < len(body) and body[i + n] in continuation
        if body[i:i + n] == span and not nxt_cont:
            out.append(i)
            i += n
        else:
            i += 1
    return out


def _substitute_ref(body, span, repl, continuation=()):
    out, last = [], 0
    for s in _occurrences_ref(body, span, continuation):
        out += body[last:s] + repl
        last = s + len(span)
    return out + body[last:]


@settings(max_examples=300, deadline=None)
@given(tokens, spans, st.lists(st.integers(5, 9), min_size=0, max_size=4), st.sets(st.integers(0, 4), max_size=2))
def test_occurrences_and_substitute_match_reference(body, span, repl, cont):
    continuation = np.array(sorted(cont), dtype=np.int64)
    assert occurrences(np.array(body), np.array(span), continuation) == _occurrences_ref(body, span, cont)
    got = substitute(np.array(body, dtype=np.int64), np.array(span), np.array(repl, dtype=np.int64), continuation)
    assert got.tolist() == _substitute_ref(body, span, repl, cont)


def test_substitute_same_length_keeps_positions_and_removes_span():
    body = np.array([1, 7, 8, 2, 7, 8, 3])
    out = substitute(body, np.array([7, 8]), np.array([5, 6]))
    assert out.tolist() == [1, 5, 6, 2, 5, 6, 3]
    assert occurrences(out, np.array([7, 8])) == []


def test_span_bank_replacement_same_length_and_different():
    bank = SpanBank([[1, 2], [3, 4], [1, 2], [5], [6, 7, 8]])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        r = bank.replacement(np.array([1, 2]), rng)
        assert len(r) == 2 and r.tolist() != [1, 2]
        seen.add(tuple(r))
    assert seen == {(3, 4)}
    assert bank.replacement(np.array([5]), rng) is None  # the only 1-token span is the span itself
    assert bank.replacement(np.array([9, 9, 9, 9]), rng) is None
    assert len(bank) == 4


def test_evidence_finder_matches_brute_force():
    rng = np.random.default_rng(1)
    bodies = [rng.integers(0, 6, size=rng.integers(3, 12)) for _ in range(40)]
    block_doc = [i // 2 for i in range(40)]  # two blocks per document
    finder = EvidenceFinder(bodies, block_doc)
    for _ in range(100):
        span = rng.integers(0, 6, size=rng.integers(1, 3))
        block = int(rng.integers(40))
        ref = [i for i, b in enumerate(bodies) if block_doc[i] != block_doc[block]
               and _occurrences_ref(b.tolist(), span.tolist())]
        assert finder.find(span, block) == ref


def _query(ids, positions, block):
    ids = np.array(ids)
    return SimpleNamespace(input_ids=ids, positions=np.array(positions), targets=ids[positions].copy(), block=block)


def test_counterfactual_row_target_is_the_replacement_found_in_the_block():
    bank = SpanBank([[20, 21], [30, 31], [40, 41]])
    q = _query([5, 20, 21, 6], [1, 2], block=0)
    body = np.array([9, 20, 21, 9, 20, 21])
    rng = np.random.default_rng(3)
    row = counterfactual_row(q, body, bank, rng, "own")
    assert row.targets.tolist() in ([30, 31], [40, 41])
    assert occurrences(row.body, np.array([20, 21])) == []
    assert occurrences(row.body, row.targets) == [1, 4]
    assert counterfactual_row(q, np.array([9, 9]), bank, rng, "own") is None  # the block lacks the span


def test_make_rows_kinds_and_fallbacks():
    bank = SpanBank([[20, 21], [30, 31]])
    bodies = [np.array([1, 20, 21]), np.array([2, 20, 21]), np.array([3, 3])]
    finder = EvidenceFinder(bodies, [0, 1, 2])
    q_ev = _query([20, 21, 7], [0, 1], block=0)  # block 1 (another document) contains the span
    q_none = _query([50, 7], [0], block=2)  # nothing contains it: plain
    rows = make_rows([q_ev, q_ev, q_ev, q_none], ["evidence", "own", "plain", "own"], lambda i: bodies[i], finder, bank,
                     np.random.default_rng(0))
    assert [r.kind for r in rows] == ["evidence", "own", "plain", "plain"]
    assert rows[0].body.tolist() == [2, 30, 31] and rows[0].targets.tolist() == [30, 31]
    assert rows[1].body.tolist() == [1, 30, 31]
    assert rows[2].body.size == 0 and rows[2].targets.tolist() == [20, 21]
    assert rows[3].targets.tolist() == [50]


def test_draw_kinds_shares():
    kinds = draw_kinds(20000, 0.25, 0.7, np.random.default_rng(0))
    share = {k: kinds.count(k) / len(kinds) for k in ("plain", "own", "evidence")}
    assert abs(share["plain"] - 0.25) < 0.02
    assert abs(share["evidence"] - 0.75 * 0.7) < 0.02
    assert draw_kinds(100, 0.0, 0.0, np.random.default_rng(0)) == ["own"] * 100


def test_answer_kind_and_bank():
    assert answer_kind("14 March 1873") == "date"
    assert answer_kind("1873") == "year"
    assert answer_kind("12,500") == "number"
    assert answer_kind("Frozo Books") == "name"
    assert answer_kind("folk rock") == "text"
    bank = AnswerBank(["1873", "1901", "Frozo Books", "Run Studios", "1873"], lambda s: [len(w) for w in s.split()])
    rng = np.random.default_rng(0)
    assert bank.replacement("1873", rng).tolist() == [4]  # "1901": the only other year
    assert bank.replacement("Frozo Books", rng).tolist() == [3, 7]  # "Run Studios"
    assert bank.replacement("folk", rng) is None


def test_swap_answers_against_a_reference(tiny_corpus):
    """Swapped rows: the answer's tokens (whole words only) replaced in every retrieved block; gold = replacement."""
    from realm.training.finetune import continuation_ids, swap_answers

    store, _ = tiny_corpus
    tok = store.tokenizer
    cont = continuation_ids(tok)
    # questions whose answer is the first salient-looking word of a block
    ids = np.array([[0, 1, 2], [3, 4, -1]])
    answers = [tok.decode(store.body_ids(0)[:2].tolist()), tok.decode(store.body_ids(3)[:1].tolist())]
    answer_ids = [[tok.encode(a)] for a in answers]
    bank = AnswerBank(["Zzyzx Quarry", "Old Mill", "Ninefold"], tok.encode)

    class Always:  # rng stand-in: always swap, pick the first candidate
        def random(self):
            return 0.0

        def integers(self, n):
            return 0

    bodies, gold, n = swap_answers(answers, answer_ids, ids, store, bank, cont, 1.0, Always())
    assert len(bodies) == 6 and len(gold) == 6
    for b in range(2):
        repl = bank.replacement(answers[b], Always())
        if repl is None:
            continue
        for j in range(3):
            z = ids[b, j]
            orig = store.body_ids(int(z)).tolist() if z >= 0 else []
            ref = _substitute_ref(orig, answer_ids[b][0], repl.tolist(), set(cont.tolist()))
            assert bodies[3 * b + j].tolist() == ref
            assert gold[3 * b + j] == [repl.tolist()]
    never = swap_answers(answers, answer_ids, ids, store, bank, cont, 0.0, np.random.default_rng(0))
    assert never[2] == 0 and never[1] == [answer_ids[0]] * 3 + [answer_ids[1]] * 3
    assert [x.tolist() for x in never[0][:3]] == [store.body_ids(i).tolist() for i in range(3)]
