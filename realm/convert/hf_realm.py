"""Import and export checkpoints of the REALM port in HF ``transformers`` (<= 4.40.2).

The port is specified in ``docs/hf-realm-port.md``. Usage is in ``docs/convert.md``.

Weight names are mapped by one table per port class (``CLASS_TABLES``). Each entry is
``(HF prefix, realm component, module table)``. A module table maps HF prefixes to the prefixes of
the realm module's own ``state_dict``. It maps to ``None`` for tensors that the port stores but never
uses in its forward. Those go to ``hf_realm/unused.safetensors``, so that an export is lossless.

Wherever the port differs from realm's defaults, the difference is carried by configs, never by
code. ``gelu_new`` and ``layer_norm_eps`` go into every ``BertConfig``, and so also into the
embedder's projection LayerNorm. The pooler use goes into ``retriever.json`` (``use_pooler``). The
span MLP's size, width and eps go into ``reader.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from realm.convert.npy_records import UnsafeRecordsError, load_records, save_records

log = logging.getLogger(__name__)

SIDECAR = "hf_realm"  # OUT/hf_realm/: source.json, unused.safetensors, the original tokenizer files
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")  # buffers in files older than 4.31


class ConversionError(ValueError):
    """A checkpoint cannot be converted faithfully (unknown class, missing weights, unexpressible model)."""


# RealmConfig defaults (docs/hf-realm-port.md §1): fill fields that a config.json omits, and the fields of
# exports of realm-native runs that realm has no counterpart for.
PORT_DEFAULTS = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu_new", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "retriever_proj_size": 128, "num_candidates": 8,
    "span_hidden_size": 256, "max_span_width": 10, "reader_layer_norm_eps": 1e-3, "reader_beam_size": 5,
    "reader_seq_len": 320, "num_block_records": 13353718, "searcher_beam_size": 5000, "pad_token_id": 1,
    "bos_token_id": 0, "eos_token_id": 2,
}
TRUNK_SHAPE = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps")
BERT_FIELDS = TRUNK_SHAPE + ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "pad_token_id")

# ---- mapping tables: (HF prefix, realm state_dict prefix | None = unused by the port's forward) ----------
EMBEDDER = (("realm.", "bert."), ("cls.dense.", "dense."), ("cls.LayerNorm.", "norm."), ("cls.predictions.", None))
ENCODER = (("realm.pooler.", None), ("realm.", "bert."), ("cls.predictions.", "cls.predictions."))
READER = (("realm.pooler.", None), ("realm.", "bert."), ("qa_outputs.", "qa_outputs."), ("cls.predictions.", None))
CLASS_TABLES = {  # (HF prefix, realm component, module table); table None = the key itself is one tensor
    "RealmEmbedder": (("", "query", EMBEDDER),),
    "RealmScorer": (("query_embedder.", "query", EMBEDDER), ("embedder.", "doc", EMBEDDER)),
    "RealmKnowledgeAugEncoder": (("", "encoder", ENCODER),),
    "RealmReader": (("", "reader", READER),),
    "RealmForOpenQA": (("embedder.", "query", EMBEDDER), ("reader.", "reader", READER),
                       ("block_emb", "block_emb", None)),
}
UNUSED_KEYS = {  # the tensors behind each ``None`` prefix
    "cls.predictions.": ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
                         "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
                         "cls.predictions.decoder.weight", "cls.predictions.bias"),
    "realm.pooler.": ("realm.pooler.dense.weight", "realm.pooler.dense.bias"),
}


def tied_keys(hf_class: str) -> list[tuple[str, str]]:
    """``(duplicate, source)`` pairs that are the same tensor in the port: in ``.bin`` files only."""
    out = []
    for prefix, _, table in CLASS_TABLES[hf_class]:
        if table is not None:
            out.append((f"{prefix}cls.predictions.decoder.bias", f"{prefix}cls.predictions.bias"))
        if table is ENCODER:
            out.append((f"{prefix}cls.predictions.decoder.weight", f"{prefix}realm.embeddings.word_embeddings.weight"))
    return out


def _read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _check_empty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ConversionError(f"{out}: exists and is not empty")


@contextlib.contextmanager
def _writing(out: Path):
    """Create ``out`` (checked empty); on failure remove what was written, so no half-made folder is left."""
    _check_empty(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in out.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        raise


def read_hf_state(folder: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """All weights of an HF folder (safetensors or ``.bin``, possibly sharded), and the file format's name."""
    folder = Path(folder)
    for name, loader in (("model.safetensors", load_file),
                         ("pytorch_model.bin", lambda p: torch.load(p, map_location="cpu", weights_only=True))):
        if (folder / name).exists():
            return loader(str(folder / name)), name
        index = folder / f"{name}.index.json"
        if index.exists():
            state = {}
            for shard in sorted(set(_read_json(index)["weight_map"].values())):
                state.update(loader(str(folder / shard)))
            return state, name
    raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin")


def split_state(hf_class: str, state: dict[str, torch.Tensor]) -> tuple[dict[str, dict], dict[str, dict]]:
    """HF state dict -> ``({component: realm state dict}, {component: {HF-local key: unused tensor}})``."""
    state = {k: v for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES)}
    for dup, src in tied_keys(hf_class):
        t = state.pop(dup, None)
        if t is not None and src in state and not torch.equal(t, state[src]):
            log.warning("%s differs from %s; the port ties them, so %s is used", dup, src, src)
    comps: dict[str, dict] = {}
    unused: dict[str, dict] = {}
    unknown = []
    for key, t in state.items():
        for prefix, comp, table in CLASS_TABLES[hf_class]:
            if table is None:
                if key == prefix:
                    comps.setdefault(comp, {})[""] = t
                    break
                continue
            local = key[len(prefix):]
            hit = next(((h, r) for h, r in table if local.startswith(h)), None) if key.startswith(prefix) else None
            if hit is not None:
                if hit[1] is None:
                    unused.setdefault(comp, {})[local] = t
                else:
                    comps.setdefault(comp, {})[hit[1] + local[len(hit[0]):]] = t
                break
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"{hf_class}: {len(unknown)} unexpected weights, e.g. {unknown[:5]}")
    if hf_class == "RealmScorer" and "query" not in comps:
        # In the port, query_embedder IS embedder unless another module was passed. transformers 4.36-4.39
        # save_pretrained(safe_serialization=True) therefore drops every query_embedder.* tensor: one tower.
        for side in (comps, unused):
            if "doc" in side:
                side["query"] = side.pop("doc")
    for side in (comps, unused):  # a RealmScorer whose towers are the same module -> one shared tower
        if "doc" in side and _same(side["doc"], side.get("query", {})):
            del side["doc"]
    return comps, unused


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- realm modules ---------------------------------------------------------------------------------
def bert_config(cfg: dict):
    from transformers import BertConfig

    return BertConfig(**{k: cfg[k] for k in BERT_FIELDS})


def _bert(cfg: dict, pooler: bool):
    from transformers import BertModel

    model = BertModel(bert_config(cfg), add_pooling_layer=pooler)
    model.config._attn_implementation = "sdpa"
    return model


def build_component(comp: str, cfg: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The realm module of ``comp`` (query/doc, encoder, reader) with ``state`` loaded (strict)."""
    from transformers import BertForMaskedLM

    from realm.models.reader import SpanReader
    from realm.models.retriever import Embedder

    may_miss: tuple[str, ...] = ()
    if comp in ("query", "doc"):
        module = Embedder(_bert(cfg, True), cfg["retriever_proj_size"], use_pooler=True)  # §3: the pooler output
    elif comp == "encoder":
        module = BertForMaskedLM(bert_config(cfg))
        module.config._attn_implementation = "sdpa"
        may_miss = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")  # tied in the model
    elif comp == "reader":
        module = SpanReader(_bert(cfg, False), cfg["max_span_width"], cfg["span_hidden_size"],
                            cfg["reader_layer_norm_eps"], min(cfg["reader_seq_len"], cfg["max_position_embeddings"]))
    else:
        raise ConversionError(f"unknown component {comp!r}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in may_miss]
    if missing or unexpected:
        raise ConversionError(f"{comp}: missing weights {missing[:5]}, unexpected {unexpected[:5]}")
    return module.eval()


# ---- import -----------------------------------------------------------------------------------------
def from_hf_realm(src: str | Path, out: str | Path, hf_class: str | None = None, allow_pickle: bool = False,
                  progress: bool = False) -> dict:
    """Convert an HF REALM folder into realm folders under ``out`` (a servable QA run for RealmForOpenQA)."""
    from realm.models.mlm import KnowledgeAugEncoder
    from realm.models.retriever import Retriever

    src, out = Path(src), Path(out)
    if not (src / "config.json").exists():
        raise FileNotFoundError(f"{src}: not an HF model folder (no config.json)")
    raw = _read_json(src / "config.json")
    if raw.get("model_type") != "realm":
        raise ConversionError(f"{src}: model_type {raw.get('model_type')!r}, expected 'realm'")
    hf_class = hf_class or (raw.get("architectures") or [None])[0]
    if hf_class not in CLASS_TABLES:
        raise ConversionError(f"{src}: class {hf_class!r} is not one of {sorted(CLASS_TABLES)}; pass --as")
    _check_empty(out)
    cfg = {**PORT_DEFAULTS, **raw}
    state, weights_file = read_hf_state(src)
    comps, unused = split_state(hf_class, state)
    expected = {c for _, c, _ in CLASS_TABLES[hf_class]} - {"doc"}
    if not expected <= comps.keys():
        raise ConversionError(f"{src}: no weights for {sorted(expected - comps.keys())} of a {hf_class}")
    with _writing(out):
        has_tokenizer = _import_tokenizer(src, out / "tokenizer")
        written = []
        if "query" in comps:
            doc = build_component("doc", cfg, comps["doc"]) if "doc" in comps else None
            # query_len: the port embeds questions untruncated, so only the position table limits them
            query = build_component("query", cfg, comps["query"])
            Retriever(query, doc, cfg["max_position_embeddings"]).save(out / "retriever")
            written.append("retriever")
        if "encoder" in comps:
            KnowledgeAugEncoder(build_component("encoder", cfg, comps["encoder"])).save(out / "encoder")
            written.append("encoder")
        if "reader" in comps:
            build_component("reader", cfg, comps["reader"]).save(out / "reader")
            written.append("reader")
        info = {"format_version": 1, "hf_class": hf_class, "config": raw, "weights_file": weights_file,
                "source": str(src)}
        if weights_file.startswith("pytorch_model"):  # torch.save keeps the key order: an export restores it
            info["key_order"] = list(state)
        if "block_emb" in comps:
            if not has_tokenizer:
                raise ConversionError(f"{src}: a RealmForOpenQA needs vocab.txt to build its corpus")
            info.update(_import_blocks(src, out, cfg, comps["block_emb"][""], unused, allow_pickle, progress))
            written += ["corpora", "index", "run.json"]
        side = out / SIDECAR
        side.mkdir()
        flat = {f"{comp}/{k}": t for comp, d in unused.items() for k, t in d.items()}
        save_file(_unshare(flat), str(side / "unused.safetensors"))
        for name in TOKENIZER_FILES:
            if (src / name).exists():
                shutil.copyfile(src / name, side / name)
        (side / "source.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"hf_class": hf_class, "out": str(out), "written": written, "shared_towers": "doc" not in comps,
            "unused_tensors": len(flat), "dropped_records": len(info.get("dropped_records", []))}


def _import_tokenizer(src: Path, dest: Path) -> bool:
    """A realm-loadable (fast) copy of the checkpoint's BERT vocabulary; False when there is none."""
    from transformers import BertTokenizer

    if not (src / "vocab.txt").exists():
        log.warning("%s has no vocab.txt: no tokenizer written", src)
        return False
    tc = _read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").exists() else {}
    sm = _read_json(src / "special_tokens_map.json") if (src / "special_tokens_map.json").exists() else {}
    kw = {k: tc[k] for k in ("do_lower_case", "strip_accents", "tokenize_chinese_chars") if tc.get(k) is not None}
    for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        v = sm.get(k, tc.get(k))
        if v is not None:
            kw[k] = v["content"] if isinstance(v, dict) else v
    BertTokenizer(vocab=str(src / "vocab.txt"), **kw).save_pretrained(str(dest))
    shutil.copyfile(src / "vocab.txt", dest / "vocab.txt")
    return True


def _import_blocks(src: Path, out: Path, cfg: dict, block_emb: torch.Tensor, unused: dict, allow_pickle: bool,
                   progress: bool) -> dict:
    """block_records.npy -> a corpus (one document and one block per record) + block_emb as index v1."""
    from realm.config import CorpusConfig
    from realm.data.corpus import build_corpus
    from realm.data.tokenizer import WordPiece
    from realm.index.store import write_index_version
    from realm.serving.qa_run import FORMAT_VERSION, RUN_FILE

    try:
        records, records_info = load_records(src / "block_records.npy", allow_pickle=allow_pickle)
    except UnsafeRecordsError as e:  # more than an object array of bytes: only full pickle reads it
        raise ConversionError(f"{e}. Pass --allow-pickle only if you trust this file: full pickle can run "
                              f"code") from None
    texts = [r.decode("utf-8") if isinstance(r, bytes) else str(r) for r in records.tolist()]
    if block_emb.shape[0] != len(texts):
        raise ConversionError(f"{src}: block_emb has {block_emb.shape[0]} rows but block_records {len(texts)}")
    tok = WordPiece(out / "tokenizer")
    lengths = np.array([len(e.ids) for s in range(0, len(texts), 4096) for e in tok.encode_batch(texts[s:s + 4096])])
    keep = np.flatnonzero(lengths > 0)  # realm blocks cannot be empty: such records are set aside
    dropped = np.flatnonzero(lengths == 0)
    if keep.size == 0:
        raise ConversionError(f"{src}: every block record is empty")
    tmp = out / "corpora" / ".building"
    tmp.mkdir(parents=True)
    jsonl = out / "corpora" / ".records.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for i in keep:
            f.write(json.dumps({"id": str(i), "title": "", "text": texts[i]}, ensure_ascii=False) + "\n")
    ccfg = CorpusConfig(block_len=int(lengths.max()), title_len=0, tokenizer=str(out / "tokenizer"))
    store, _ = build_corpus(jsonl, tmp, ccfg, progress=progress)
    jsonl.unlink()
    if (len(store) != keep.size or not np.array_equal(store.block_doc, np.arange(keep.size))
            or not np.array_equal(store.body_len, lengths[keep])):
        raise ConversionError("the corpus does not hold exactly one whole block per block record")
    rel = f"corpora/{store.corpus_hash}"
    tmp.rename(out / rel)
    emb = block_emb.detach().float()
    write_index_version(out / "index", emb[torch.from_numpy(keep)], corpus_hash=store.corpus_hash,
                        encoder=str(out / "retriever"), extra={"corpus_dir": rel, "source": f"hf-realm:{src}"})
    (out / RUN_FILE).write_text(json.dumps({
        "format_version": FORMAT_VERSION, "kind": "realm-openqa", "top_k": int(cfg["reader_beam_size"]),
        "source": f"hf-realm:{src}", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    if dropped.size:
        log.warning("%d empty block records set aside (kept in %s for export)", dropped.size, SIDECAR)
        unused["block_emb"] = {"dropped": emb[torch.from_numpy(dropped)]}
    return {"corpus_hash": store.corpus_hash, "block_records_dtype": records_info["dtype"],
            "block_records_pickle": {k: records_info[k] for k in ("pickle_protocol", "pickle_module")
                                     if k in records_info},
            "dropped_records": [{"index": int(i), "text": texts[i]} for i in dropped]}


def _unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, copying any that share storage with an earlier one (safetensors refuses sharing)."""
    seen, out = set(), {}
    for k, t in state.items():
        ptr = t.untyped_storage().data_ptr()
        out[k] = t.contiguous().clone() if ptr in seen else t.contiguous()
        seen.add(ptr)
    return out


# ---- export -----------------------------------------------------------------------------------------
def _find(run: Path, comp: str) -> Path | None:
    """The realm folder of ``comp`` inside ``run``, or ``run`` itself when it is one."""
    marker = {"retriever": "retriever.json", "reader": "reader.json", "encoder": "config.json"}[comp]
    for folder in (run / comp, run):
        if (folder / marker).exists():
            if comp != "encoder" or "BertForMaskedLM" in _read_json(folder / marker).get("architectures", []):
                return folder
    return None


def _detect_class(run: Path) -> str:
    from realm.models.retriever import Retriever

    if (run / "run.json").exists():
        return "RealmForOpenQA"
    found = [c for c in ("retriever", "encoder", "reader") if _find(run, c)]
    if len(found) != 1:
        raise ConversionError(f"{run}: found {found or 'no realm model'}; pass --as CLASS")
    if found[0] == "retriever":
        return "RealmEmbedder" if Retriever.load(_find(run, "retriever")).shared else "RealmScorer"
    return {"encoder": "RealmKnowledgeAugEncoder", "reader": "RealmReader"}[found[0]]


def to_hf_realm(run: str | Path, out: str | Path, hf_class: str | None = None, fmt: str = "auto",
                tokenizer: str | Path | None = None) -> dict:
    """Write the realm models of ``run`` as an HF REALM folder ``out`` (config, weights, tokenizer files)."""
    from realm.models.mlm import KnowledgeAugEncoder
    from realm.models.reader import SpanReader
    from realm.models.retriever import Retriever

    run, out = Path(run), Path(out)
    info = _read_json(run / SIDECAR / "source.json") if (run / SIDECAR / "source.json").exists() else {}
    hf_class = hf_class or info.get("hf_class") or _detect_class(run)
    if hf_class not in CLASS_TABLES:
        raise ConversionError(f"unknown class {hf_class!r}; one of {sorted(CLASS_TABLES)}")
    _check_empty(out)
    comps = {c for _, c, _ in CLASS_TABLES[hf_class]}
    states, berts, derived, store, unused = {}, [], {}, None, _load_unused(run)

    def need(name):
        folder = _find(run, name)
        if folder is None:
            raise FileNotFoundError(f"{run}: no {name} folder, needed for a {hf_class}")
        return folder

    if comps & {"query", "doc"}:
        retriever = Retriever.load(need("retriever"))
        if not retriever.query.use_pooler:
            raise ConversionError("the retriever projects the raw [CLS] vector; the port always projects the "
                                  "pooler output, so its outputs would change")
        if hf_class == "RealmEmbedder" and not retriever.shared:
            raise ConversionError("the retriever has separate query and document towers; use --as RealmScorer")
        states["query"], states["doc"] = retriever.query.state_dict(), retriever.doc.state_dict()
        berts += [retriever.query.bert.config] + ([] if retriever.shared else [retriever.doc.bert.config])
        derived["retriever_proj_size"] = retriever.query.dense.out_features
    if "encoder" in comps:
        mlm = KnowledgeAugEncoder.load(need("encoder")).mlm
        states["encoder"] = {k: v for k, v in mlm.state_dict().items() if not k.startswith("cls.predictions.decoder.")}
        berts.append(mlm.config)
    if "reader" in comps:
        reader = SpanReader.load(need("reader"))
        states["reader"] = reader.state_dict()
        berts.append(reader.bert.config)
        ln = reader.qa_outputs.layer_normalization
        derived.update(span_hidden_size=ln.normalized_shape[0], max_span_width=reader.max_span_width,
                       reader_layer_norm_eps=ln.eps)
    if "block_emb" in comps:
        from realm.serving.qa_run import IndexedCorpus, read_run_info

        indexed = IndexedCorpus.load(run)
        store = indexed.store
        records, emb = _export_blocks(indexed, info, unused)
        states["block_emb"] = {"": torch.from_numpy(emb)}
        derived.update(num_block_records=len(records), reader_beam_size=int(read_run_info(run)["top_k"]))
    for k in TRUNK_SHAPE:
        if len({getattr(b, k) for b in berts}) > 1:
            raise ConversionError(f"the port shares one config, but the models differ in {k}")
    derived.update({k: getattr(berts[0], k) for k in BERT_FIELDS})
    cfg = info.get("config") or {**PORT_DEFAULTS, "torch_dtype": "float32", "transformers_version": "4.40.2",
                                 "reader_seq_len": min(320, derived["max_position_embeddings"]),
                                 "searcher_beam_size": min(5000, derived.get("num_block_records", 5000))}
    cfg = {**cfg, **derived, "architectures": [hf_class], "model_type": "realm"}
    state = _hf_state(hf_class, cfg, states, unused)
    shared_scorer = hf_class == "RealmScorer" and retriever.shared
    dtype = getattr(torch, cfg.get("torch_dtype") or "float32")
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    if fmt == "auto":  # the source's format for the same class; else what 4.40.2 itself can write
        bin_ = (info["weights_file"].startswith("pytorch_model") if info.get("hf_class") == hf_class
                else hf_class == "RealmScorer")
        fmt = "bin" if bin_ else "safetensors"
    if fmt not in ("safetensors", "bin"):
        raise ConversionError(f"unknown format {fmt!r} (auto, safetensors, bin)")
    with _writing(out):
        if fmt == "bin":
            for dup, src in tied_keys(hf_class):
                state[dup] = state[src].detach()  # the same storage, as in the port's state_dict
            order = info.get("key_order") if info.get("hf_class") == hf_class else None
            if order and set(order) == state.keys():
                state = {k: state[k] for k in order}
            torch.save(state, out / "pytorch_model.bin")
        else:
            if shared_scorer:  # one tower: what 4.36-4.39 write, and what the port loads as query_embedder too
                state = {k: v for k, v in state.items() if not k.startswith("query_embedder.")}
            save_file(_unshare(state), str(out / "model.safetensors"), metadata={"format": "pt"})
        (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if "block_emb" in comps:
            save_records(out / "block_records.npy", records,
                         {"dtype": info.get("block_records_dtype", "|S"), **info.get("block_records_pickle", {})})
        tok = _export_tokenizer(run, out, tokenizer, store, cfg)
    return {"hf_class": hf_class, "out": str(out), "format": fmt, "tensors": len(state), "tokenizer": tok}


def _load_unused(run: Path) -> dict[str, dict]:
    path = run / SIDECAR / "unused.safetensors"
    unused: dict[str, dict] = {}
    for key, t in (load_file(str(path)) if path.exists() else {}).items():
        comp, local = key.split("/", 1)
        unused.setdefault(comp, {})[local] = t
    return unused


def _hf_state(hf_class: str, cfg: dict, states: dict, unused: dict) -> dict[str, torch.Tensor]:
    """Realm component state dicts (+ unused tensors, or neutral stand-ins) -> the port's state dict."""
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    out = {}
    for prefix, comp, table in CLASS_TABLES[hf_class]:
        if table is None:
            out[prefix] = states[comp][""]
            continue
        for key, t in states[comp].items():
            hit = next(((hf, r) for hf, r in table if r is not None and key.startswith(r)), None)
            if hit is None:
                raise ConversionError(f"{comp}: no HF name for weight {key!r}")
            out[prefix + hit[0] + key[len(hit[1]):]] = t
        kept = unused.get(comp) or (unused.get("query", {}) if comp == "doc" else {})
        for hf_prefix in (hf for hf, r in table if r is None):
            for local in UNUSED_KEYS[hf_prefix]:
                decoder = local.endswith("decoder.weight")
                shape = (v, h) if decoder else (v,) if local == "cls.predictions.bias" \
                    else (h, h) if local.endswith("dense.weight") else (h,)
                t = kept.get(local)
                if t is None or tuple(t.shape) != shape:  # unused by the port's forward: neutral values
                    t = (states[comp]["bert.embeddings.word_embeddings.weight"].clone() if decoder
                         else torch.ones(shape) if local.endswith("LayerNorm.weight") else torch.zeros(shape))
                out[prefix + local] = t.detach()  # a tensor of its own (a shared tower shares the storage)
    return out


def _export_blocks(indexed, info: dict, unused: dict) -> tuple[list[bytes], np.ndarray]:
    """(block_records, block_emb) of a run's current index; records set aside at import are put back."""
    store, emb = indexed.store, indexed.embeddings
    if store.manifest["num_docs"] == len(store):  # one block per document: the record is the document text
        texts = [store.docs[int(d)]["text"] for d in store.block_doc]
    else:
        texts = [store.block_text(i) for i in range(len(store))]
    dropped = info.get("dropped_records", [])
    if dropped and info.get("corpus_hash") == store.corpus_hash:
        rows = [(int(store.docs[int(d)]["id"]), t, e) for d, t, e in zip(store.block_doc, texts, emb)]
        rows += [(r["index"], r["text"], e) for r, e in zip(dropped, unused["block_emb"]["dropped"].numpy())]
        rows.sort(key=lambda r: r[0])
        texts, emb = [r[1] for r in rows], np.stack([r[2] for r in rows])
    return [t.encode("utf-8") for t in texts], np.ascontiguousarray(emb, dtype=np.float32)


def _export_tokenizer(run: Path, out: Path, tokenizer, store, cfg: dict) -> str | None:
    """The port's tokenizer files: the originals kept at import, else made from a realm tokenizer folder."""
    side = run / SIDECAR
    if tokenizer is None and (side / "vocab.txt").exists():
        for name in TOKENIZER_FILES:
            if (side / name).exists():
                shutil.copyfile(side / name, out / name)
        return str(side)
    folders = [Path(tokenizer)] if tokenizer else [run / "tokenizer"] + ([store.folder / "tokenizer"] if store else [])
    folder = next((f for f in folders if f.is_dir()), None)
    if folder is None:
        log.warning("no tokenizer found (pass --tokenizer): %s has weights and config only", out)
        return None
    from realm.data.tokenizer import WordPiece

    hf = WordPiece(folder).hf
    vocab = sorted(hf.get_vocab().items(), key=lambda kv: kv[1])
    if len(vocab) != cfg["vocab_size"]:
        log.warning("tokenizer has %d entries, the model %d", len(vocab), cfg["vocab_size"])
    (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    specials = {k: str(getattr(hf, k)) for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")}
    tc = {"tokenizer_class": "RealmTokenizer", "do_lower_case": bool(getattr(hf, "do_lower_case", True)),
          "strip_accents": None, "tokenize_chinese_chars": True, "clean_up_tokenization_spaces": True,
          "model_max_length": cfg["max_position_embeddings"], **specials}
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")
    hf.backend_tokenizer.save(str(out / "tokenizer.json"))  # what RealmTokenizerFast reads first
    return str(folder)
