#!/usr/bin/env python3
"""Generate tiny reference checkpoints + outputs from the HF `transformers` REALM port (v4.40.2).

WHY
    The project imports checkpoints written by the REALM port that `transformers` shipped up to
    v4.40.2 (`RealmEmbedder`, `RealmScorer`, `RealmKnowledgeAugEncoder`, `RealmReader`,
    `RealmForOpenQA`). That port is gone from transformers 5.x, which the project itself uses, so
    equivalence is proven against *committed* fixtures produced by this script. The project's own
    tests never import transformers 4.x; only this generator does.

WHAT IT WRITES (default: tests/fixtures/hf_realm/, about 0.9 MB in total)
    embedder/  encoder/  reader/  openqa/
        config.json + model.safetensors   (save_pretrained(..., safe_serialization=True))
    scorer/    config.json + pytorch_model.bin (4.40.2 cannot write a RealmScorer as safetensors:
               its query_embedder shares every tensor with embedder; the .bin is a plain state dict,
               readable with torch.load(..., weights_only=True); same weights as embedder/)
        vocab.txt + tokenizer_config.json + special_tokens_map.json   (RealmTokenizer, 100 words)
    openqa/block_records.npy             (RealmRetriever.save_pretrained; fixed-width bytes, dtype
                                          'S', loads with np.load(..., allow_pickle=False))
    outputs.safetensors                  every fixed input and every reference output, keys
                                          "<case>/<name>" (cases: embedder, scorer, encoder,
                                          encoder_nomask, reader, reader_noanswer, openqa)
    inputs.json                          manifest: per case, the call made, each tensor's role,
                                          shape and dtype; the texts; sensitivity checks;
                                          package versions

HOW TO RUN (throw-away env, NOT the project's venv; the project uses transformers 5.x):
    python3 -m venv /tmp/hf440
    /tmp/hf440/bin/pip install torch==2.13.0          # first: the CPU build on this disk
    /tmp/hf440/bin/pip install transformers==4.40.2   # pulls tokenizers 0.19.1, safetensors, numpy
    /tmp/hf440/bin/python tools/make_hf_realm_fixtures.py [--out tests/fixtures/hf_realm]

    Everything is seeded; rerunning with the same package versions rewrites identical values.
    The spec these fixtures pin down is docs/hf-realm-port.md.

WEIGHTS
    The port's own init (N(0, 0.02), LayerNorm = (1, 0), zero biases) would hide mistakes such as
    a swapped LayerNorm weight/bias or a wrong epsilon, so every parameter is re-drawn: Linear /
    Embedding weights N(0, 0.2) (the projection heads N(0, 0.03), so that the LayerNorm right after
    them sees a small variance and its epsilon matters), biases N(0, 0.05), LayerNorm weights
    1 + N(0, 0.2), LayerNorm biases N(0, 0.1). Config keeps the port's defaults for hidden_act
    (gelu_new), layer_norm_eps (1e-12) and reader_layer_norm_eps (1e-3): a converter must carry them.

AS RELEASED (--released scorer | openqa): two more folders, re-saved from the ones above the way
released checkpoints look. Same weights, same records, so the reference outputs above apply to them.
    scorer_safetensors/  RealmScorer.from_pretrained('scorer').save_pretrained(d, safe_serialization=True)
                         + RealmTokenizerFast.save_pretrained (adds tokenizer.json). Needs transformers
                         4.36-4.39 (tested 4.39.3 + tokenizers 0.15.2): those drop every shared
                         query_embedder.* tensor and keep only embedder.*; 4.40.2 raises instead.
    openqa_hub/          RealmForOpenQA.from_pretrained('openqa').save_pretrained(d, safe_serialization=False)
                         (pytorch_model.bin, as stock 4.40.2 must); block_records.npy and the
                         tokenizer files written by RealmRetriever(records, RealmTokenizerFast)
                         .save_pretrained(d) with records an OBJECT array of bytes (what
                         convert_tfrecord_to_np gives, so what the hub uploads hold). Run with
                         transformers 4.40.2 and numpy 1.26.4: np.save then pickles with protocol 3
                         and numpy.core.multiarray._reconstruct, like every file written before numpy 2.

    PYTHONPATH=/tmp/tf4.39.3:/tmp/tok0152 /tmp/hf440/bin/python tools/make_hf_realm_fixtures.py --released scorer
    PYTHONPATH=/tmp/np126 /tmp/hf440/bin/python tools/make_hf_realm_fixtures.py --released openqa
    (each a `pip install --no-deps --target DIR` of transformers==4.39.3 / tokenizers==0.15.2 / numpy==1.26.4)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

import transformers
from safetensors.torch import save_file
from transformers import (
    RealmConfig,
    RealmEmbedder,
    RealmForOpenQA,
    RealmKnowledgeAugEncoder,
    RealmReader,
    RealmRetriever,
    RealmScorer,
    RealmTokenizer,
)

# ----------------------------------------------------------------------------------------------
# Vocabulary: 100 entries, BERT-like layout ([PAD]=0, an [unused0] at 1 because the port's config
# default pad_token_id is 1, then [UNK] [CLS] [SEP] [MASK]).
SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    ". , ? ' - ( ) the a an is was of in by to and for on at as with from that it its "
    "what who where which when how capital city country river france paris germany berlin italy "
    "rome spain madrid europe seine flows through largest hamlet play william shakespeare english "
    "writer born 1564 1616 died wrote famous tower eiffel built 1889 king queen year first "
    "population million people language french german water north south east west old new "
    "##s ##ed ##ing ##er ##ly ##est"
).split()
VOCAB = SPECIALS + WORDS
assert len(VOCAB) == len(set(VOCAB)), "duplicate vocab entry"
VOCAB += [f"[unused{i}]" for i in range(1, 100 - len(VOCAB) + 1)]
assert len(VOCAB) == 100, len(VOCAB)

BLOCKS = [
    "paris is the capital of france .",
    "berlin is the capital of germany .",
    "rome is the capital of italy .",
    "the seine river flows through paris .",
    "hamlet is a play by william shakespeare .",
    "shakespeare was an english writer born in 1564 .",
]
QUESTION = "what is the capital of france ?"
ANSWERS = ["paris", "the capital"]

CONFIG_KW = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
    retriever_proj_size=16,  # default 128; shrunk -> a converter must read it from config
    span_hidden_size=24,  # default 256; shrunk -> read from config
    num_candidates=4,  # default 8; RealmScorer / KnowledgeAugEncoder reshape with it
    max_span_width=10,  # default
    reader_beam_size=3,
    reader_seq_len=32,
    num_block_records=len(BLOCKS),
    searcher_beam_size=5,
    # hidden_act, layer_norm_eps, reader_layer_norm_eps, type_vocab_size, pad_token_id: defaults
)

HEAD_LINEARS = ("cls.dense.", "qa_outputs.dense_intermediate.", "predictions.transform.dense.")


def make_config() -> RealmConfig:
    return RealmConfig(**CONFIG_KW)


def make_tokenizer(tmp: str) -> RealmTokenizer:
    path = os.path.join(tmp, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    return RealmTokenizer(path)


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter (and the openqa block_emb is set separately)."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    for name, p in model.named_parameters():  # named_parameters dedups tied params
        if id(p) in seen:
            continue
        seen.add(id(p))
        is_ln = "LayerNorm" in name or "layer_normalization" in name
        if is_ln and name.endswith("weight"):
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        elif is_ln:
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        elif name.endswith("bias"):
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
        else:
            std = 0.03 if any(h in name for h in HEAD_LINEARS) else 0.2
            p.copy_(std * torch.randn(p.shape, generator=g))


def save_model(model, tok, out: str, name: str, safe: bool = True) -> str:
    d = os.path.join(out, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    if safe:
        # 4.40.2's RealmReader (also inside RealmForOpenQA) does not declare its MLM decoder bias as
        # tied, so save_pretrained(safe_serialization=True) raises on the shared tensor pair
        # cls.predictions.{bias,decoder.bias}. Declaring it (as RealmEmbedder already does) lets the
        # port write safetensors; the file then has cls.predictions.bias only -- exactly like the
        # embedder's. from_pretrained restores decoder.bias (same Parameter).
        for m in model.modules():
            if isinstance(m, RealmReader):
                m._tied_weights_keys = ["cls.predictions.decoder.bias"]
    model.save_pretrained(d, safe_serialization=safe)
    tok.save_pretrained(d)
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf_realm"))
    ap.add_argument("--released", choices=("scorer", "openqa"), help="re-save a fixture the way released "
                    "checkpoints look (see AS RELEASED in the docstring)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    if args.released:
        return save_as_released(out, args.released)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)

    tmp = tempfile.mkdtemp()
    tok = make_tokenizer(tmp)
    config = make_config()
    T: dict[str, torch.Tensor] = {}  # everything that goes into outputs.safetensors
    manifest: dict = {"cases": {}}

    def put(case: str, role: str, **tensors):
        entry = manifest["cases"].setdefault(case, {"inputs": {}, "outputs": {}})
        for k, v in tensors.items():
            if v is None:
                entry[role][k] = None
                continue
            v = torch.as_tensor(v).detach().clone().contiguous()
            dt = str(v.dtype).replace("torch.", "")
            if v.dim() == 0:
                v = v.reshape(1)
                entry[role][k] = f"{dt} [] (0-d in the port, stored as [1])"
            else:
                entry[role][k] = f"{dt} {list(v.shape)}"
            T[f"{case}/{k}"] = v

    # ------------------------------------------------------------------ embedder
    torch.manual_seed(1)
    emb = RealmEmbedder(config)
    perturb(emb, 101)
    d = save_model(emb, tok, out, "embedder")
    emb = RealmEmbedder.from_pretrained(d).eval()
    enc_in = tok(
        [BLOCKS[0], "rome", BLOCKS[4]],
        [BLOCKS[3], BLOCKS[2], ""],
        padding="max_length",
        max_length=20,
        return_tensors="pt",
    )
    with torch.no_grad():
        o = emb(**enc_in)
    put(
        "embedder",
        "inputs",
        input_ids=enc_in.input_ids,
        attention_mask=enc_in.attention_mask,
        token_type_ids=enc_in.token_type_ids,
    )
    put("embedder", "outputs", projected_score=o.projected_score)
    manifest["cases"]["embedder"]["call"] = (
        "RealmEmbedder.from_pretrained('embedder').eval()(input_ids, attention_mask, token_type_ids).projected_score"
    )
    with torch.no_grad():  # also the untouched [CLS] row and the pooler output, for debugging
        ro = emb.realm(**enc_in)
    put("embedder", "outputs", last_hidden_state=ro.last_hidden_state, pooler_output=ro.pooler_output)

    # embedder case with no token_type_ids / attention_mask given (defaults: zeros / ones)
    with torch.no_grad():
        o2 = emb(input_ids=enc_in.input_ids[:, :12])
    put("embedder_defaults", "inputs", input_ids=enc_in.input_ids[:, :12])
    put("embedder_defaults", "outputs", projected_score=o2.projected_score)
    manifest["cases"]["embedder_defaults"]["call"] = (
        "RealmEmbedder(...)(input_ids) -- no mask, no token types (padding is attended!)"
    )

    # ------------------------------------------------------------------ scorer
    torch.manual_seed(2)
    scorer = RealmScorer(config)
    scorer.embedder.load_state_dict(emb.state_dict())  # the same weights as embedder/
    # 4.40.2 refuses safetensors for RealmScorer (query_embedder shares every tensor with embedder and
    # is not declared tied): its save_pretrained only works as pytorch_model.bin, which is therefore
    # what real scorer checkpoints look like. Keys: embedder.* AND query_embedder.* (same storage).
    d = save_model(scorer, tok, out, "scorer", safe=False)
    scorer = RealmScorer.from_pretrained(d).eval()
    q = tok(["capital of france ?", "who wrote hamlet ?"], padding="max_length", max_length=10, return_tensors="pt")
    cands = tok.batch_encode_candidates(
        [BLOCKS[:4], [BLOCKS[4], BLOCKS[5], "", BLOCKS[3]]], max_length=12, return_tensors="pt"
    )
    with torch.no_grad():
        so = scorer(
            input_ids=q.input_ids,
            attention_mask=q.attention_mask,
            token_type_ids=q.token_type_ids,
            candidate_input_ids=cands.input_ids,
            candidate_attention_mask=cands.attention_mask,
            candidate_token_type_ids=cands.token_type_ids,
        )
    put(
        "scorer",
        "inputs",
        input_ids=q.input_ids,
        attention_mask=q.attention_mask,
        token_type_ids=q.token_type_ids,
        candidate_input_ids=cands.input_ids,
        candidate_attention_mask=cands.attention_mask,
        candidate_token_type_ids=cands.token_type_ids,
    )
    put(
        "scorer",
        "outputs",
        relevance_score=so.relevance_score,
        query_score=so.query_score,
        candidate_score=so.candidate_score,
    )
    manifest["cases"]["scorer"]["call"] = (
        "RealmScorer.from_pretrained('scorer').eval()(input_ids, attention_mask, token_type_ids, "
        "candidate_input_ids, candidate_attention_mask, candidate_token_type_ids)"
    )

    # ------------------------------------------------------------------ knowledge-augmented encoder
    torch.manual_seed(3)
    kae = RealmKnowledgeAugEncoder(config)
    perturb(kae, 303)
    kae.tie_weights()
    d = save_model(kae, tok, out, "encoder")
    kae = RealmKnowledgeAugEncoder.from_pretrained(d).eval()
    B, N, L = 2, config.num_candidates, 16
    queries = ["paris is the capital of france .", "hamlet is a play by william shakespeare ."]
    masked_words = [("paris",), ("william", "shakespeare")]
    q_masked = []
    for text, mw in zip(queries, masked_words):
        q_masked.append(" ".join("[MASK]" if w in mw else w for w in text.split()))
    cand_bodies = [[BLOCKS[3], BLOCKS[1], BLOCKS[2], ""], [BLOCKS[5], BLOCKS[0], "", BLOCKS[4]]]
    pairs_a = [q_masked[b] for b in range(B) for _ in range(N)]
    pairs_b = [cand_bodies[b][n] for b in range(B) for n in range(N)]
    ji = tok(pairs_a, pairs_b, padding="max_length", truncation="only_second", max_length=L, return_tensors="pt")
    qi = tok(queries, padding="max_length", max_length=L, return_tensors="pt")  # unmasked -> labels
    mask_id = tok.mask_token_id
    first = ji.input_ids.view(B, N, L)[:, 0]  # query part is identical across candidates
    is_masked = first == mask_id
    labels = torch.where(is_masked, qi.input_ids, torch.full_like(qi.input_ids, -100))
    mlm_mask = is_masked.long()
    relevance = torch.randn(B, N, generator=torch.Generator().manual_seed(33)) * 2.0
    with torch.no_grad():
        ko = kae(
            input_ids=ji.input_ids,
            attention_mask=ji.attention_mask,
            token_type_ids=ji.token_type_ids,
            relevance_score=relevance,
            labels=labels,
            mlm_mask=mlm_mask,
        )
        ko2 = kae(
            input_ids=ji.input_ids,
            attention_mask=ji.attention_mask,
            token_type_ids=ji.token_type_ids,
            relevance_score=relevance,
            labels=labels,
        )
    put(
        "encoder",
        "inputs",
        input_ids=ji.input_ids,
        attention_mask=ji.attention_mask,
        token_type_ids=ji.token_type_ids,
        relevance_score=relevance,
        labels=labels,
        mlm_mask=mlm_mask,
    )
    put("encoder", "outputs", loss=ko.loss, logits=ko.logits)
    manifest["cases"]["encoder"]["call"] = (
        "RealmKnowledgeAugEncoder.from_pretrained('encoder').eval()(input_ids[B*N,L], attention_mask, "
        "token_type_ids, relevance_score[B,N], labels[B,L], mlm_mask[B,L])"
    )
    put(
        "encoder_nomask",
        "inputs",
        input_ids=ji.input_ids,
        attention_mask=ji.attention_mask,
        token_type_ids=ji.token_type_ids,
        relevance_score=relevance,
        labels=labels,
    )
    put("encoder_nomask", "outputs", loss=ko2.loss)
    manifest["cases"]["encoder_nomask"]["call"] = (
        "same as encoder but mlm_mask=None: the mean then runs over ALL B*L positions (ignored labels contribute 0)"
    )

    # ------------------------------------------------------------------ reader
    torch.manual_seed(4)
    reader = RealmReader(config)
    perturb(reader, 404)
    d = save_model(reader, tok, out, "reader")
    reader = RealmReader.from_pretrained(d).eval()
    retr = RealmRetriever(np.array([b.encode() for b in BLOCKS]), tok)  # helper for block_has_answer
    S, R, RL = config.searcher_beam_size, config.reader_beam_size, 24
    ri = tok(
        [QUESTION] * S,
        [BLOCKS[i] for i in (3, 0, 1, 2, 4)],
        padding="max_length",
        truncation=True,
        max_length=RL,
        return_special_tokens_mask=True,
    )
    answer_ids = [tok(a, add_special_tokens=False).input_ids for a in ANSWERS]
    ri = ri.convert_to_tensors("pt")  # in place, as RealmRetriever.__call__ does
    has_answers, start_pos, end_pos = retr.block_has_answer(ri, answer_ids)
    block_mask = ri.special_tokens_mask.bool().logical_not() & ri.token_type_ids.bool()
    rel = torch.randn(S, generator=torch.Generator().manual_seed(44))
    has_answers = torch.tensor(has_answers)
    start_pos, end_pos = torch.tensor(start_pos), torch.tensor(end_pos)

    captured = {}

    def hook(_m, _inp, outp):
        captured["span_logits"] = outp[0].clone()  # before the in-place `+= retriever logits`
        captured["logits_ref"] = outp[0]  # same object: after forward it holds the final logits
        captured["starts"], captured["ends"] = outp[1].clone(), outp[2].clone()

    h = reader.qa_outputs.register_forward_hook(hook)
    with torch.no_grad():
        rdo = reader(
            input_ids=ri.input_ids[:R],
            attention_mask=ri.attention_mask[:R],
            token_type_ids=ri.token_type_ids[:R],
            relevance_score=rel,
            block_mask=block_mask,
            start_positions=start_pos,
            end_positions=end_pos,
            has_answers=has_answers,
        )
    put(
        "reader",
        "inputs",
        input_ids=ri.input_ids[:R],
        attention_mask=ri.attention_mask[:R],
        token_type_ids=ri.token_type_ids[:R],
        relevance_score=rel,
        block_mask=block_mask,
        start_positions=start_pos,
        end_positions=end_pos,
        has_answers=has_answers,
    )
    put(
        "reader",
        "outputs",
        loss=rdo.loss,
        retriever_loss=rdo.retriever_loss,
        reader_loss=rdo.reader_loss,
        retriever_correct=rdo.retriever_correct,
        reader_correct=rdo.reader_correct,
        block_idx=rdo.block_idx,
        candidate=rdo.candidate,
        start_pos=rdo.start_pos,
        end_pos=rdo.end_pos,
        span_logits=captured["span_logits"],
        reader_logits=captured["logits_ref"],
        candidate_starts=captured["starts"],
        candidate_ends=captured["ends"],
    )
    manifest["cases"]["reader"]["call"] = (
        "RealmReader.from_pretrained('reader').eval()(input_ids[R,L], attention_mask, token_type_ids, "
        "relevance_score[S], block_mask[S,L], start_positions[S,A], end_positions[S,A], has_answers[S]); "
        "span_logits/reader_logits/candidate_* captured from qa_outputs (before/after adding the retrieval score); "
        "masked spans hold finfo(float32).min (+ retrieval score)"
    )
    rdo_q = rdo

    ns = torch.full((S, 1), -1)
    with torch.no_grad():
        rdo2 = reader(
            input_ids=ri.input_ids[:R],
            attention_mask=ri.attention_mask[:R],
            token_type_ids=ri.token_type_ids[:R],
            relevance_score=rel,
            block_mask=block_mask,
            start_positions=ns,
            end_positions=ns,
            has_answers=torch.zeros(S, dtype=torch.bool),
        )
    h.remove()
    put("reader_noanswer", "inputs", start_positions=ns, end_positions=ns, has_answers=torch.zeros(S, dtype=torch.bool))
    put(
        "reader_noanswer",
        "outputs",
        loss=rdo2.loss,
        retriever_loss=rdo2.retriever_loss,
        reader_loss=rdo2.reader_loss,
        reader_correct=rdo2.reader_correct,
    )
    manifest["cases"]["reader_noanswer"]["call"] = (
        "reader inputs of case 'reader' with these label tensors replaced: "
        "nothing correct -> both losses multiplied by 0"
    )

    # ------------------------------------------------------------------ open QA
    torch.manual_seed(5)
    oqa = RealmForOpenQA(config)
    perturb(oqa, 505)
    oqa.eval()
    bi = tok(BLOCKS, padding=True, return_tensors="pt")
    with torch.no_grad():
        block_emb = oqa.embedder(**bi).projected_score
    oqa.block_emb.copy_(block_emb)
    block_records = np.array([b.encode() for b in BLOCKS])  # dtype |S..: no pickle needed
    d = save_model(oqa, tok, out, "openqa")
    RealmRetriever(block_records, tok).save_pretrained(d)
    np.load(os.path.join(d, "block_records.npy"), allow_pickle=False)  # proves: no pickle
    retriever = RealmRetriever.from_pretrained(d)
    oqa = RealmForOpenQA.from_pretrained(d, retriever=retriever).eval()
    qin = tok([QUESTION], return_tensors="pt")
    ans = [tok(a, add_special_tokens=False).input_ids for a in ANSWERS]
    cap2 = {}

    def pre(_m, _args, kwargs):
        cap2.update({k: v for k, v in kwargs.items() if torch.is_tensor(v)})

    h = oqa.reader.register_forward_pre_hook(pre, with_kwargs=True)
    with torch.no_grad():
        qo = oqa(
            input_ids=qin.input_ids,
            attention_mask=qin.attention_mask,
            token_type_ids=qin.token_type_ids,
            answer_ids=ans,
            return_dict=True,
        )
        qproj = oqa.embedder(**qin).projected_score
        scores = torch.einsum("BD,QD->QB", oqa.block_emb, qproj)
        retrieved = torch.topk(scores, k=config.reader_beam_size, dim=-1).indices.squeeze(0)
    h.remove()
    put(
        "openqa",
        "inputs",
        input_ids=qin.input_ids,
        attention_mask=qin.attention_mask,
        token_type_ids=qin.token_type_ids,
    )
    ro = qo.reader_output
    put(
        "openqa",
        "outputs",
        predicted_answer_ids=qo.predicted_answer_ids,
        question_projection=qproj,
        block_scores=scores,
        retrieved_block_ids=retrieved,
        reader_input_ids=cap2["input_ids"],
        reader_attention_mask=cap2["attention_mask"],
        reader_token_type_ids=cap2["token_type_ids"],
        reader_relevance_score=cap2["relevance_score"],
        reader_block_mask=cap2["block_mask"],
        reader_start_positions=cap2["start_positions"],
        reader_end_positions=cap2["end_positions"],
        reader_has_answers=cap2["has_answers"],
        loss=ro.loss,
        retriever_loss=ro.retriever_loss,
        reader_loss=ro.reader_loss,
        retriever_correct=ro.retriever_correct,
        reader_correct=ro.reader_correct,
        block_idx=ro.block_idx,
        candidate=ro.candidate,
        start_pos=ro.start_pos,
        end_pos=ro.end_pos,
    )
    manifest["cases"]["openqa"]["call"] = (
        "RealmForOpenQA.from_pretrained('openqa', retriever=RealmRetriever.from_pretrained('openqa')).eval()"
        "(input_ids[1,Lq], attention_mask, token_type_ids, answer_ids=texts.answer_ids, return_dict=True); "
        "eval mode => searcher beam = reader_beam_size; reader_* = the kwargs the reader was called with"
    )
    manifest["cases"]["openqa"]["answer_ids"] = ans

    # ------------------------------------------------------------------ sensitivity checks
    # Show the fixtures tell apart the usual reimplementation mistakes (max |diff| vs reference).
    sens = {}
    with torch.no_grad():
        ro_ = emb.realm(**enc_in)
        raw_cls = emb.cls(ro_.last_hidden_state[:, 0])
        sens["embedder: raw [CLS] instead of pooler"] = (raw_cls - o.projected_score).abs().max().item()
        ln = emb.cls.LayerNorm
        ln.eps = 1e-5
        sens["embedder: cls.LayerNorm eps 1e-5 instead of 1e-12"] = (
            (emb(**enc_in).projected_score - o.projected_score).abs().max().item()
        )
        ln.eps = config.layer_norm_eps
        for mod in emb.modules():
            if hasattr(mod, "intermediate_act_fn"):
                mod.intermediate_act_fn = torch.nn.GELU()
        sens["embedder: exact erf GELU instead of gelu_new"] = (
            (emb(**enc_in).projected_score - o.projected_score).abs().max().item()
        )
        rln = reader.qa_outputs.layer_normalization
        h = reader.qa_outputs.register_forward_hook(hook)
        for eps in (1e-12, 1e-5):
            rln.eps = eps
            reader(
                input_ids=ri.input_ids[:R],
                attention_mask=ri.attention_mask[:R],
                token_type_ids=ri.token_type_ids[:R],
                relevance_score=rel,
                block_mask=block_mask,
            )
            sel = captured["span_logits"] > -1e30  # eligible spans only
            sens[f"reader: span LayerNorm eps {eps} instead of 1e-3"] = (
                (captured["span_logits"][sel] - T["reader/span_logits"][sel]).abs().max().item()
            )
        h.remove()
        rln.eps = config.reader_layer_norm_eps
        t = kae.cls.predictions.transform
        t.transform_act_fn = torch.nn.GELU()
        kl = kae(input_ids=ji.input_ids, attention_mask=ji.attention_mask, token_type_ids=ji.token_type_ids).logits
        sens["encoder: exact GELU in MLM transform only"] = (kl - ko.logits).abs().max().item()
    manifest["sensitivity_max_abs_diff"] = sens

    # ------------------------------------------------------------------ write
    meta = {
        "generator": "tools/make_hf_realm_fixtures.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    # one metadata key only: safetensors writes its metadata map in hash order, so several keys would
    # make the bytes differ from run to run (the values never do)
    save_file(
        T,
        os.path.join(out, "outputs.safetensors"),
        metadata={"generator": "; ".join(f"{k}={v}" for k, v in meta.items())},
    )
    manifest.update(
        versions=meta,
        config=CONFIG_KW,
        texts={
            "blocks": BLOCKS,
            "question": QUESTION,
            "answers": ANSWERS,
            "vocab_size": len(VOCAB),
            "encoder_queries": queries,
            "encoder_masked_queries": q_masked,
            "encoder_candidate_bodies": cand_bodies,
            "reader_blocks_order": [3, 0, 1, 2, 4],
        },
        key_format="outputs.safetensors key = '<case>/<name>'; 0-d tensors are stored with shape [1]",
        checkpoints={
            n: f"{n}/ (config.json, model.safetensors, vocab.txt, tokenizer_config.json, special_tokens_map.json)"
            for n in ("embedder", "encoder", "reader", "openqa")
        }
        | {
            "scorer": "scorer/ (config.json, pytorch_model.bin -- not safetensors, see generator docstring; "
            "tokenizer files)"
        },
    )
    with open(os.path.join(out, "inputs.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    shutil.rmtree(tmp)
    print(json.dumps(sens, indent=1))
    print(
        "reader:",
        {
            k: (v.tolist() if torch.is_tensor(v) else v)
            for k, v in rdo_q.items()
            if k in ("loss", "retriever_loss", "reader_loss", "block_idx", "candidate", "start_pos", "end_pos")
        },
    )
    print("openqa predicted:", tok.decode(qo.predicted_answer_ids), "retrieved:", retrieved.tolist())
    return 0


def save_as_released(out: str, which: str) -> int:
    """``scorer_safetensors/`` or ``openqa_hub/`` from the committed ``scorer/`` / ``openqa/`` folders."""
    from transformers import RealmTokenizerFast

    src = os.path.join(out, which)
    d = os.path.join(out, {"scorer": "scorer_safetensors", "openqa": "openqa_hub"}[which])
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    tok = RealmTokenizerFast.from_pretrained(src)
    if which == "scorer":
        RealmScorer.from_pretrained(src).save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
    else:
        # stock 4.40.2 cannot write a RealmForOpenQA as safetensors (see save_model): pytorch_model.bin,
        # which is also what the hub uploads hold
        RealmForOpenQA.from_pretrained(src).save_pretrained(d, safe_serialization=False)
        fixed = np.load(os.path.join(src, "block_records.npy"), allow_pickle=False)
        records = np.empty(len(fixed), dtype=object)
        records[:] = fixed.tolist()  # bytes objects, as tf's as_numpy_iterator yields them
        RealmRetriever(records, tok).save_pretrained(d)
    versions = {"transformers": transformers.__version__, "numpy": np.__version__, "torch": torch.__version__}
    print(d, sorted(os.listdir(d)), versions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
