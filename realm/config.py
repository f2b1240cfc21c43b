"""Typed configuration: dataclasses, YAML presets, ``key=value`` overrides.

Each component reads only its own section (``cfg.corpus``, ``cfg.retriever`` ...), never the whole
run config. Presets live in ``realm/configs/*.yaml`` and may set any subset of keys; command-line
overrides use dotted paths (``corpus.block_len=128``). Unknown keys are an error, never ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A preset or override names an unknown key or a value of the wrong type."""


@dataclass
class WorldConfig:
    entities: int = 300  # number of fictional entities in the built-in world
    seed: int = 0
    style: str = "encyclopedia"  # encyclopedia | people


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
    backend: str = "exact"  # exact | faiss-flat | faiss-hnsw
    keep_versions: int = 3


@dataclass
class ICTConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 30
    remove_prob: float = 0.9  # probability that the query sentence is removed from its block
    log_every: int = 20


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
    log_every: int = 10
    bf16: bool = False
    reading_rows: int = 0  # counterfactual reading rows added to each batch (keeps the encoder reading)
    counterfactual: float = 0.0  # share of rows whose span is swapped in every retrieved block and the target
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
        if f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
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
    data = yaml.safe_load(path.read_text()) or {}
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
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_saved_config(path: str | Path, cls: type = RunConfig) -> Any:
    """Read a resolved config written by :func:`save_config` (e.g. from a run folder)."""
    return from_dict(cls, yaml.safe_load(Path(path).read_text()) or {})
