import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realm.config import CorpusConfig
from realm.data.blocks import pack_document, split_sentences
from realm.data.corpus import build_corpus
from tests.conftest import write_jsonl


def test_split_sentences():
    text = "First one. Second! Third?  \nA line\n\nLast (with brackets.) end"
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second!", "Third?", "A line", "Last (with brackets.)", "end"]


@given(st.lists(st.integers(1, 30), min_size=1, max_size=20), st.integers(4, 40))
@settings(max_examples=200, deadline=None)
def test_pack_document_against_reference(sent_lens, block_len):
    """Every token lands in exactly one block, in order, blocks <= block_len, sentences kept whole when they fit."""
    spans, pos = [], 0
    for n in sent_lens:
        spans.append((pos, pos + n))
        pos += n
    word_start = [True] * (pos + 1)
    blocks = pack_document(spans, word_start, block_len)
    covered = [t for b in blocks for t in range(b.tok_start, b.tok_end)]
    assert covered == list(range(pos))
    assert all(b.tok_end - b.tok_start <= block_len for b in blocks)
    # sentence boundaries: a block starts at a sentence start unless it continues a sentence longer than a block
    starts = {s for s, _ in spans}
    for b in blocks:
        if b.tok_start not in starts:
            owner = next((s, e) for s, e in spans if s < b.tok_start < e)
            assert owner[1] - owner[0] > block_len
    # greedy: the next block's first piece would not have fit
    for b, nxt in zip(blocks, blocks[1:]):
        assert nxt.sentences[0][1] - b.tok_start > block_len


def test_pack_cuts_long_sentence_on_word_starts():
    word_start = [True, False, False, True, False, True, True, False, True]  # words: 0-2, 3-4, 5, 6-7, 8
    blocks = pack_document([(0, 9)], word_start, 4)
    assert [(b.tok_start, b.tok_end) for b in blocks] == [(0, 3), (3, 6), (6, 9)]


@pytest.fixture
def corpus(tmp_path, small_docs):
    src = write_jsonl(tmp_path / "c.jsonl", small_docs)
    store, _ = build_corpus(src, tmp_path / "cdir", CorpusConfig(block_len=16, title_len=4, vocab_size=300, min_frequency=1),
                            progress=False)
    return store


def test_blocks_map_back_to_exact_source_text(corpus):
    tok = corpus.tokenizer
    assert len(corpus) > 3
    for i in range(len(corpus)):
        info = corpus.block_info(i)
        doc = next(d for d in corpus.docs if d["id"] == info["doc_id"])
        assert doc["text"][info["char_start"]:info["char_end"]] == info["text"]
        # retokenizing the block's text gives exactly its stored ids
        assert tok.encode(info["text"]) == corpus.body_ids(i).tolist()
        assert 0 < corpus.body_len[i] <= 16
        assert corpus.title_ids(i).tolist() == tok.encode(doc["title"])[:4]


def test_blocks_cover_every_token_of_every_document(corpus):
    tok = corpus.tokenizer
    for d_idx, doc in enumerate(corpus.docs):
        rows = np.flatnonzero(np.asarray(corpus.block_doc) == d_idx)
        joined = [t for r in rows for t in corpus.body_ids(int(r)).tolist()]
        assert joined == tok.encode(doc["text"])


def test_sentences_index(corpus):
    tok = corpus.tokenizer
    for row, (b, s, e) in enumerate(np.asarray(corpus.sentences)):
        doc = corpus.docs[int(corpus.block_doc[b])]
        cs, ce = corpus.sentence_chars[row]
        assert tok.encode(doc["text"][cs:ce]) == corpus.body_ids(int(b))[s:e].tolist()
    assert len(corpus.block_sentences(0)) >= 1


def test_manifest_and_files(corpus):
    m = json.loads((corpus.folder / "manifest.json").read_text())
    assert m["num_docs"] == 3 and m["num_blocks"] == len(corpus) and m["block_len"] == 16
    assert len(m["corpus_hash"]) == 16 and m["tokenizer_hash"] == corpus.tokenizer.hash
    assert isinstance(corpus.body, np.memmap)
    # a different block length is a different corpus
    assert corpus.manifest["documents_hash"]


def test_existing_tokenizer_folder(tmp_path, corpus, small_docs):
    src = write_jsonl(tmp_path / "c2.jsonl", small_docs)
    store, _ = build_corpus(src, tmp_path / "c2", CorpusConfig(block_len=32, tokenizer=str(corpus.folder / "tokenizer")),
                            progress=False)
    assert store.tokenizer.hash == corpus.tokenizer.hash
    assert store.corpus_hash != corpus.corpus_hash  # other block length


def test_tokenizer_training_is_deterministic_across_processes(tmp_path, small_docs):
    """Two processes learning a vocabulary on the same corpus get the same ids (HF's trainer does not)."""
    import subprocess
    import sys

    src = write_jsonl(tmp_path / "c.jsonl", small_docs * 1)
    code = ("import sys; from realm.data.tokenizer import train_wordpiece; from realm.data.ingest import read_documents;"
            "docs=list(read_documents(sys.argv[1])); t=train_wordpiece((x for d in docs for x in (d.title, d.text)),"
            " sys.argv[2], vocab_size=200, min_frequency=1); print(t.hash)")
    hashes = {subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / f"t{i}")], capture_output=True,
                             text=True, check=True).stdout.strip() for i in range(2)}
    assert len(hashes) == 1


def test_wordpiece_learner_against_reference():
    """The incremental learner makes the same merges as a plain recount-every-time BPE."""
    from collections import Counter

    from realm.data.wordpiece_trainer import learn_vocab

    counts = Counter({"lower": 5, "lowest": 3, "newer": 6, "wider": 2, "new": 4, "low": 7})

    def reference(counts, size):
        seqs = {w: [w[0]] + ["##" + c for c in w[1:]] for w in sorted(counts)}
        vocab = sorted({s for seq in seqs.values() for s in seq})
        while len(vocab) < size:
            pairs = Counter()
            for w, seq in seqs.items():
                for p in zip(seq, seq[1:]):
                    pairs[p] += counts[w]
            if not pairs:
                break
            best = min(pairs, key=lambda p: (-pairs[p], p))
            new = best[0] + best[1][2:]
            vocab.append(new)
            for w, seq in seqs.items():
                out, j = [], 0
                while j < len(seq):
                    if j + 1 < len(seq) and (seq[j], seq[j + 1]) == best:
                        out.append(new)
                        j += 2
                    else:
                        out.append(seq[j])
                        j += 1
                seqs[w] = out
        return vocab

    for size in (12, 16, 20, 25):
        assert learn_vocab(counts, size, min_frequency=1) == reference(counts, size)


def test_tokenizer_folder_with_truncation_and_padding_loses_nothing(tmp_path, corpus, small_docs):
    """A tokenizer saved with truncation at 8 tokens and batch padding (as sentence-transformers
    models ship) must still tokenize whole documents, without [PAD] tokens."""
    import shutil

    folder = tmp_path / "tok"
    shutil.copytree(corpus.folder / "tokenizer", folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    spec["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None, "pad_id": 0,
                       "pad_type_id": 0, "pad_token": "[PAD]"}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    src = write_jsonl(tmp_path / "c.jsonl", small_docs)
    store, _ = build_corpus(src, tmp_path / "c", CorpusConfig(block_len=16, tokenizer=str(folder)), progress=False)
    for d_idx, doc in enumerate(store.docs):
        rows = np.flatnonzero(np.asarray(store.block_doc) == d_idx)
        joined = [t for r in rows for t in store.body_ids(int(r)).tolist()]
        assert joined == corpus.tokenizer.encode(doc["text"]) and len(joined) > 8
        assert store.tokenizer.pad_id not in joined
