"""Typed configuration: dataclasses, YAML presets, ``key=value`` overrides.

Each component reads only its own section (``cfg.corpus``, ``cfg.retriever`` ...), never the whole
run config. Presets live in ``realm/configs/*.yaml`` and may set any subset of keys; command-line
overrides use dotted paths (``corpus.block_len=128``). Unknown keys are an error, never ignored; a key
that was removed (:data:`RETIRED`) is dropped with a warning, so that older run folders still load.
Every value is checked against :data:`RULES` (ranges and choices per field) when the config is resolved
(:func:`validate`, called by :func:`load_config` and :func:`load_saved_config`): a bad value raises
:class:`ConfigError` naming the key and what is allowed (the CLI prints it and exits with code 2).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "configs"
log = logging.getLogger(__name__)

# keys that configs written by older versions may hold: removed field -> why (dropped with a warning)
RETIRED: dict[str, str] = {
    "ict.log_every": "never read: ICT logs every step to metrics.jsonl",
    "pretrain.log_every": "never read: pretraining logs every step to metrics.jsonl",
}


class ConfigError(ValueError):
    """A preset or override names an unknown key or a value of the wrong type."""


@dataclass
class WorldConfig:
    entities: int = 300  # number of fictional entities in the built-in world
    seed: int = 0
    style: str = "encyclopedia"  # encyclopedia | people
    recap: int = 0  # facts each article restates after its lead (0: every fact told once; realm.data.world)


@dataclass
class CorpusConfig:
    block_len: int = 64  # max body wordpieces per block (the paper uses 288 incl. title)
    title_len: int = 16  # max title wordpieces kept in front of the body
    vocab_size: int = 8192  # a corpus-trained vocab <= 8k keeps embedding + softmax cheap on CPU
    min_frequency: int = 2
    lowercase: bool = True
    tokenizer: str | None = None  # an existing HF tokenizer folder instead of training one


@dataclass
class EncoderConfig:
    """A BERT encoder's shape (HF ``BertConfig`` fields under shorter names)."""

    layers: int = 2
    hidden: int = 128
    heads: int = 2
    intermediate: int = 512
    dropout: float = 0.0  # dropout costs 1.3-2x on CPU; short runs do well without it
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    max_positions: int = 512
    # attention kernel while training: sdpa (torch's fused kernel) | eager (plain matmul + softmax). With bf16
    # autocast on CPU, eager is ~1.3x faster for small encoders (bench/RESULTS-train.md); the numbers differ
    # in rounding, so the presets keep sdpa
    attention: str = "sdpa"
    init_from: str | None = None  # a local HF BERT folder to start from instead of random weights


@dataclass
class RetrieverConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    proj_dim: int = 128  # Embed(x) = LayerNorm(W [CLS]) in R^128, as in REALM
    share_encoders: bool = True  # query and document encoders share BERT weights
    use_pooler: bool = False  # project BERT's pooler output (dense+tanh of [CLS]) as HF's port does
    pooling: str = "cls"  # cls (REALM) | mean (masked mean of the last layer, as sentence-transformers models)
    query_len: int = 32


@dataclass
class IndexConfig:
    batch_size: int = 256
    bf16: bool = True  # bf16 autocast while embedding (AMX: 2-4x faster on this CPU)
    backend: str = "exact"  # exact | exact-int8 | faiss-flat | faiss-hnsw | faiss-ivfpq: every dense search
    # (realm.retrieval.backends)
    keep_versions: int = 3


@dataclass
class ICTConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 30
    remove_prob: float = 0.9  # probability that the query sentence is removed from its block
    checkpoint_every: int = 100  # 0 = only at the end
    bf16: bool = False  # bf16 autocast for the query and block passes (the loss stays fp32)


@dataclass
class ReadingConfig:
    """Reading warm start of the knowledge-augmented encoder: counterfactual span substitution.

    It plays BERT's role in ``realm experiment``: every system's encoder starts from it. Rows are
    (masked sentence, block) pairs: ``plain_share`` of them read the null block and predict the real
    span (plain masked LM); the rest read a block in which the span was replaced by another salient
    span of the same length, which becomes the target (see ``realm/training/counterfactual.py``).
    """

    steps: int = 0  # 0 = off (the shared encoder is plain masked LM for experiment.mlm_steps)
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 50
    plain_share: float = 0.25  # rows that read the null block and predict the real span
    distractor_share: float = 0.0  # rows that read another document's block without the span; real target
    evidence_share: float = 0.7  # of counterfactual rows, once the curriculum starts: another document's block
    # rows that are training questions (their text only, never an answer), 15% of tokens masked, null block:
    # the encoder learns the questions' words, which a corpus of statements may never use (realm experiment)
    question_share: float = 0.0
    curriculum_start: float = 0.6  # share of the steps (own block only) before evidence rows start
    probe_every: int = 250  # steps between reading-probe measurements (0 = only at the end)
    probe_rows: int = 200
    checkpoint_every: int = 500
    bf16: bool = True  # bf16 autocast (AMX); the loss and the probe stay in fp32


@dataclass
class PretrainConfig:
    steps: int = 400
    batch_size: int = 16
    lr: float = 5e-4
    warmup: int = 40
    top_k: int = 8  # retrieved candidates per query, including the null block
    masking: str = "salient"  # salient | uniform | span
    tagger: str = "rules"  # rules | spacy
    refresh_every: int = 100  # steps between index refreshes
    refresh_mode: str = "async"  # async (separate process) | sync (training waits)
    stale_factor: int = 1  # ablation: refresh every stale_factor x refresh_every steps
    max_staleness: int = 0  # async: wait for the builder when the index is more steps behind (0 = never)
    retriever_lr_scale: float = 1.0  # the retriever's learning rate relative to the encoder's
    retriever_freeze_steps: int = 0  # first steps: only the encoder learns (it learns to read blocks first)
    train_doc_encoder: bool = True  # false: only the query tower learns (untied), the index never goes stale
    checkpoint_every: int = 100
    bf16: bool = False
    reading_rows: int = 0  # counterfactual reading rows added to each batch (keeps the encoder reading)
    counterfactual: float = 0.0  # share of rows whose span is swapped in every retrieved block and the target
    answerable_only: bool = False  # counterfactual rows no candidate can answer (none holds the span) add no loss
    query_title: bool = False  # the retriever's query is "title [SEP] masked sentence" (the reader's stays the sentence)
    exclude: str = "block"  # never retrieved for a query: its own block (REALM) | document (every block of its article)
    evidence: str = "span"  # a counterfactual row's swap (and "evidence") in: every block holding the span (span) |
    # only blocks that also name the sentence's subject, its article's title (subject)
    ict_rows: int = 0  # ICT (sentence, own block) pairs per batch: the warm start's objective kept as an anchor
    ict_weight: float = 1.0  # weight of their in-batch ICT loss, added to the REALM loss
    probe_every: int = 0  # steps between reading-probe / dev-recall measurements (0 = off)


@dataclass
class ReaderConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    top_k: int = 5
    max_span_width: int = 10
    span_hidden: int = 256
    span_layer_norm_eps: float = 1e-3


@dataclass
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 8
    lr: float = 5e-4
    warmup: int = 30
    log_every: int = 20
    train_query_encoder: bool = True
    checkpoint_every: int = 0  # 0 = only at the end
    bf16: bool = False
    counterfactual: float = 0.0  # share of training questions whose answer is swapped in the retrieved blocks


@dataclass
class ExperimentConfig:
    """``realm experiment``: which systems to compare, and the shared "BERT" stage."""

    systems: str = "closed_book,bm25_reader,ict_reader,realm"  # comma-separated
    ablations: str = ""  # comma-separated: uniform_masks, span_masks, stale_index, no_cf_answers
    mlm_steps: int = 300  # plain MLM on the corpus: every encoder's starting point (BERT's role in the paper)
    stale_factor: int = 30  # the stale-index ablation refreshes this many times less often
    eval_batch_size: int = 16


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    world: WorldConfig = field(default_factory=WorldConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    ict: ICTConfig = field(default_factory=ICTConfig)
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)


# --------------------------------------------------------------------------------------------
# Building configs from dicts, presets and overrides


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``key=value`` string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return f
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {tp}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) nested dict; unknown keys fail."""
    obj = cls()
    update(obj, data, prefix)
    return obj


def update(obj: Any, data: dict, prefix: str = "") -> None:
    """Recursively set fields of dataclass ``obj`` from ``data``; unknown keys raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    types_ = _field_types(type(obj))
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path in RETIRED:
            log.warning("config key '%s' is retired and ignored (%s)", path, RETIRED[path])
            continue
        if key not in types_:
            valid = ", ".join(sorted(types_))
            raise ConfigError(f"unknown config key '{path}' (valid keys here: {valid})")
        tp = types_[key]
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            update(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _coerce(value, tp, path))


def apply_override(cfg: Any, override: str) -> None:
    """Apply one ``dotted.key=value`` override in place."""
    if "=" not in override:
        raise ConfigError(f"override '{override}' is not of the form key=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    target_types = _field_types(type(cfg))
    if parts[0] not in target_types:
        raise ConfigError(
            f"unknown config key '{key}' (valid top-level keys: {', '.join(sorted(target_types))})"
        )
    update(cfg, nested)


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset '{name}' (available: {', '.join(names)})")
    return path


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def preset_data(preset: str, _chain: tuple[str, ...] = ()) -> tuple[Path, dict]:
    """(path, the preset's keys): a preset may name ``base: OTHER`` and set only what differs from it."""
    path = preset_path(preset)
    if str(path) in _chain:
        raise ConfigError(f"{path}: 'base' presets form a cycle ({' -> '.join(_chain)})")
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    base = data.pop("base", None)
    if base is not None:
        data = _merge(preset_data(str(base), (*_chain, str(path)))[1], data)
    return path, data


def load_config(preset: str = "demo", overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Defaults <- preset YAML (<- its ``base`` preset first) <- overrides, in that order."""
    path, data = preset_data(preset)
    try:
        cfg = from_dict(RunConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    for override in overrides:
        apply_override(cfg, override)
    validate(cfg)
    return cfg


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_saved_config(path: str | Path, cls: type = RunConfig) -> Any:
    """Read a resolved config written by :func:`save_config` (e.g. from a run folder)."""
    try:
        cfg = from_dict(cls, _read_yaml(Path(path)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if cls is RunConfig:
        validate(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Validation: one rule per field, checked when a config is resolved


def _int(lo: int, hi: int | None = None):
    allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    return (lambda v: lo <= v and (hi is None or v <= hi)), allowed


def _num(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
    allowed = f"a number in {left}{lo}, {'inf)' if hi is None else f'{hi}{right}'}"

    def ok(v):
        above = v > lo if lo_open else v >= lo
        below = hi is None or (v < hi if hi_open else v <= hi)
        return math.isfinite(v) and above and below

    return ok, allowed


def _choice(*options: str):
    return (lambda v: v in options), "one of " + ", ".join(options)


def _csv(*options: str, allow_empty: bool = True):
    def ok(v):
        items = [x.strip() for x in v.split(",") if x.strip()]
        return (allow_empty or bool(items)) and all(x in options for x in items)

    return ok, "a comma-separated subset of " + ", ".join(options)


_DEVICE = ((lambda v: v == "cpu" or v == "mps" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit())),
           "cpu, cuda, cuda:N or mps")
_ENCODER = {"layers": _int(1, 48), "hidden": _int(8, 8192), "heads": _int(1, 128), "intermediate": _int(1),
            "dropout": _num(0, 1, hi_open=True),
            "hidden_act": _choice("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh"),
            "layer_norm_eps": _num(0, 1, lo_open=True), "max_positions": _int(8, 65536),
            "attention": _choice("sdpa", "eager")}

RULES: dict[str, tuple] = {
    "seed": _int(0), "device": _DEVICE, "threads": _int(0, 1024),
    "world.entities": _int(1, 1_000_000), "world.seed": _int(0), "world.style": _choice("encyclopedia", "people"),
    "corpus.block_len": _int(8, 8192), "corpus.title_len": _int(0, 512), "corpus.vocab_size": _int(100, 1_000_000),
    "corpus.min_frequency": _int(1),
    **{f"retriever.encoder.{k}": r for k, r in _ENCODER.items()},
    "retriever.proj_dim": _int(1, 8192), "retriever.pooling": _choice("cls", "mean"), "retriever.query_len": _int(4),
    "index.batch_size": _int(1), "index.backend": _choice("exact", "exact-int8", "faiss-flat", "faiss-hnsw", "faiss-ivfpq"),
    "index.keep_versions": _int(1),
    "ict.steps": _int(1), "ict.batch_size": _int(2), "ict.lr": _num(0, 1, lo_open=True), "ict.warmup": _int(0),
    "ict.remove_prob": _num(0, 1), "ict.checkpoint_every": _int(0),
    "pretrain.steps": _int(1), "pretrain.batch_size": _int(1), "pretrain.lr": _num(0, 1, lo_open=True),
    "pretrain.warmup": _int(0), "pretrain.top_k": _int(2, 1024), "pretrain.masking": _choice("salient", "uniform", "span"),
    "pretrain.tagger": _choice("rules", "spacy"), "pretrain.refresh_every": _int(1),
    "pretrain.refresh_mode": _choice("async", "sync"), "pretrain.stale_factor": _int(1), "pretrain.max_staleness": _int(0),
    "pretrain.retriever_lr_scale": _num(0, 1000), "pretrain.retriever_freeze_steps": _int(0),
    "pretrain.checkpoint_every": _int(1), "pretrain.reading_rows": _int(0),
    "pretrain.counterfactual": _num(0, 1), "pretrain.probe_every": _int(0),
    "reading.steps": _int(0), "reading.batch_size": _int(1), "reading.lr": _num(0, 1, lo_open=True),
    "reading.warmup": _int(0), "reading.plain_share": _num(0, 1), "reading.distractor_share": _num(0, 1),
    "reading.question_share": _num(0, 1),
    "reading.evidence_share": _num(0, 1), "reading.curriculum_start": _num(0, 1), "reading.probe_every": _int(0),
    "reading.probe_rows": _int(1), "reading.checkpoint_every": _int(0),
    **{f"reader.encoder.{k}": r for k, r in _ENCODER.items()},
    "reader.top_k": _int(1, 1024), "reader.max_span_width": _int(1), "reader.span_hidden": _int(1),
    "reader.span_layer_norm_eps": _num(0, 1, lo_open=True),
    "finetune.steps": _int(1), "finetune.batch_size": _int(1), "finetune.lr": _num(0, 1, lo_open=True),
    "finetune.warmup": _int(0), "finetune.log_every": _int(1), "finetune.checkpoint_every": _int(0),
    "finetune.counterfactual": _num(0, 1),
    "experiment.systems": _csv("closed_book", "bm25_reader", "ict_reader", "realm", allow_empty=False),
    "experiment.ablations": _csv("uniform_masks", "span_masks", "stale_index", "no_cf_answers"),
    "experiment.mlm_steps": _int(0), "experiment.stale_factor": _int(1), "experiment.eval_batch_size": _int(1),
}


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field with a rule in :data:`RULES` and the relations between fields.

    Raises :class:`ConfigError` with one line: the key, the value, and what is allowed."""
    for key, (ok, allowed) in RULES.items():
        value = _get(cfg, key)
        if value is None:
            continue
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")
    for enc in ("retriever.encoder", "reader.encoder"):
        hidden, heads = _get(cfg, f"{enc}.hidden"), _get(cfg, f"{enc}.heads")
        if hidden % heads:
            raise ConfigError(f"{enc}.heads={heads} is not allowed: expected a divisor of {enc}.hidden={hidden}")
    if cfg.reading.plain_share + cfg.reading.distractor_share > 1:
        raise ConfigError(f"reading.plain_share + reading.distractor_share = "
                          f"{cfg.reading.plain_share + cfg.reading.distractor_share} is not allowed: expected at most 1")
    if cfg.retriever.query_len > cfg.retriever.encoder.max_positions:
        raise ConfigError(f"retriever.query_len={cfg.retriever.query_len} is not allowed: expected at most "
                          f"retriever.encoder.max_positions={cfg.retriever.encoder.max_positions}")
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={cfg.device!r} is not allowed: CUDA is not available on this machine "
                              f"(expected cpu)")
    return cfg
