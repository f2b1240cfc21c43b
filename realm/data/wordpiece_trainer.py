"""A deterministic WordPiece vocabulary learner (BPE merges over ``##``-continued pieces).

HF ``tokenizers``' trainer breaks frequency ties in hash-map order, which differs between
processes, so the same corpus gives different vocabularies. This learner breaks ties by the pair's
code-point order, so a corpus always gives the same vocabulary. Normalisation and
pre-tokenisation are BERT's, from ``tokenizers`` (deterministic).

Algorithm (Sennrich et al. 2016 BPE, with WordPiece's ``##`` continuation prefix, as HF's
WordPiece trainer): words start as characters (``w``, ``##o``, ``##r``...); repeatedly merge the most
frequent adjacent pair (count >= ``min_frequency``) into a new vocabulary entry until the
vocabulary holds ``vocab_size`` entries. Pair counts are updated incrementally.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

from tokenizers import normalizers, pre_tokenizers

PREFIX = "##"


def _merge(a: str, b: str) -> str:
    return a + b[len(PREFIX):]


def count_words(texts: Iterable[str], lowercase: bool = True) -> Counter:
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=lowercase,
                                      lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    return counts


def learn_vocab(word_counts: Counter, vocab_size: int, min_frequency: int = 2, special_tokens=()) -> list[str]:
    """Special tokens, then the character alphabet, then merged pieces in merge order."""
    words = sorted(word_counts)  # a fixed order: everything below is deterministic
    freqs = [word_counts[w] for w in words]
    seqs = [[w[0]] + [PREFIX + c for c in w[1:]] for w in words]
    vocab = list(special_tokens)
    seen = set(vocab)
    for sym in sorted({s for seq in seqs for s in seq}):
        if sym not in seen:
            vocab.append(sym)
            seen.add(sym)
    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pair_count[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:  # stale heap entry
            continue
        if -neg < min_frequency:
            break
        new = _merge(*pair)
        if new not in seen:
            vocab.append(new)
            seen.add(new)
        touched: dict[tuple[str, str], None] = {}
        for i in sorted(where.pop(pair, ())):
            seq, f = seqs[i], freqs[i]
            for p in zip(seq, seq[1:]):
                pair_count[p] -= f
                touched[p] = None
            out, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and (seq[j], seq[j + 1]) == pair:
                    out.append(new)
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            seqs[i] = out
            for p in zip(out, out[1:]):
                pair_count[p] += f
                where[p].add(i)
                touched[p] = None
        pair_count.pop(pair, None)
        for p in touched:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_count.pop(p, None)
    return vocab
