import pytest
import yaml

from realm.config import (ConfigError, RunConfig, apply_override, load_config, load_saved_config, preset_path,
                          save_config, to_dict)


def test_presets_load_and_differ():
    tiny, demo = load_config("tiny"), load_config("demo")
    assert tiny.name == "tiny" and demo.name == "demo"
    assert tiny.world.entities < demo.world.entities
    # a preset sets only what it names; the rest keeps the dataclass defaults
    assert demo.pretrain.masking == RunConfig().pretrain.masking


def test_overrides_are_typed():
    cfg = load_config("tiny", ["corpus.block_len=96", "retriever.encoder.dropout=0.1", "retriever.share_encoders=false",
                               "corpus.tokenizer=/some/dir", "name=x"])
    assert cfg.corpus.block_len == 96 and isinstance(cfg.corpus.block_len, int)
    assert cfg.retriever.encoder.dropout == pytest.approx(0.1)
    assert cfg.retriever.share_encoders is False
    assert cfg.corpus.tokenizer == "/some/dir"
    cfg = load_config("tiny", ["corpus.tokenizer=none"])
    assert cfg.corpus.tokenizer is None


@pytest.mark.parametrize("override, message", [
    ("corpus.blocklen=3", "unknown config key 'corpus.blocklen'"),
    ("nosuch=1", "unknown config key 'nosuch'"),
    ("corpus.block_len=abc", "expected an integer"),
    ("corpus.block_len=1.5", "expected an integer"),
    ("retriever.share_encoders=maybe", "expected true/false"),
    ("corpus", "not of the form key=value"),
    ("corpus=3", "expected a mapping"),
])
def test_bad_overrides_fail(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config("tiny", [override])


def test_unknown_key_in_preset_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"corpus": {"block_len": 32, "bogus": 1}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'corpus.bogus'"):
        load_config(str(p))


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset_path("nope")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config("demo", ["pretrain.top_k=5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_saved_config(tmp_path / "config.yaml") == cfg


def test_retired_keys_of_old_run_configs_load_with_a_warning(tmp_path, caplog):
    data = to_dict(load_config("tiny"))
    data["pretrain"]["log_every"] = 10  # written by versions that had the field
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert load_saved_config(tmp_path / "config.yaml") == load_config("tiny")
    assert "pretrain.log_every" in caplog.text and "retired" in caplog.text
    data["pretrain"]["log_evry"] = 10  # a typo is still an error
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="unknown config key 'pretrain.log_evry'"):
        load_saved_config(tmp_path / "config.yaml")


def test_apply_override_in_place():
    cfg = RunConfig()
    apply_override(cfg, "index.backend=faiss-hnsw")
    assert cfg.index.backend == "faiss-hnsw"


def test_preset_base_merges_and_cycles_fail(tmp_path):
    from realm.config import ConfigError, load_config

    people, demo = load_config("people"), load_config("demo")
    assert people.world.style == "people" and people.world.entities == 500
    assert people.pretrain == demo.pretrain and people.reading == demo.reading  # inherited, not copied
    child = tmp_path / "child.yaml"
    child.write_text("base: demo\npretrain: {top_k: 3}\n")
    cfg = load_config(str(child))
    assert cfg.pretrain.top_k == 3 and cfg.pretrain.steps == demo.pretrain.steps  # nested keys merge
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(f"base: {b}\n")
    b.write_text(f"base: {a}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(a))
