"""Config validation in one place: every bad value exits with code 2 and one line naming the key and what is allowed."""

import pytest

from realm.cli import main as cli_main
from realm.config import RULES, ConfigError, RunConfig, load_config, save_config, load_saved_config, validate

BAD = [
    ("corpus.block_len=0", "corpus.block_len", "[8, 8192]"),
    ("corpus.block_len=-1", "corpus.block_len", "[8, 8192]"),
    ("corpus.title_len=-2", "corpus.title_len", "[0, 512]"),
    ("pretrain.top_k=0", "pretrain.top_k", "[2, 1024]"),
    ("pretrain.top_k=-3", "pretrain.top_k", "[2, 1024]"),
    ("pretrain.batch_size=0", "pretrain.batch_size", ">= 1"),
    ("pretrain.checkpoint_every=0", "pretrain.checkpoint_every", ">= 1"),
    ("pretrain.steps=nan", "pretrain.steps", "integer"),
    ("pretrain.steps=inf", "pretrain.steps", "integer"),
    ("pretrain.steps=-5", "pretrain.steps", ">= 1"),
    ("pretrain.steps=0", "pretrain.steps", ">= 1"),
    ("ict.steps=-1", "ict.steps", ">= 1"),
    ("pretrain.lr=-1", "pretrain.lr", "(0, 1]"),
    ("pretrain.lr=nan", "pretrain.lr", "finite"),
    ("pretrain.masking=bogus", "pretrain.masking", "salient, uniform, span"),
    ("pretrain.refresh_mode=bogus", "pretrain.refresh_mode", "async, sync"),
    ("retriever.encoder.heads=3", "retriever.encoder.heads", "divisor of retriever.encoder.hidden=64"),
    ("index.keep_versions=0", "index.keep_versions", ">= 1"),
    ("threads=-1", "threads", "[0, 1024]"),
    ("experiment.systems=realm,bogus", "experiment.systems", "subset"),
    ("retriever.encoder.dropout=1.5", "retriever.encoder.dropout", "[0, 1)"),
]


@pytest.mark.parametrize("override, key, allowed", BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_refused_naming_key_and_range(override, key, allowed):
    with pytest.raises(ConfigError) as e:
        load_config("tiny", [override])
    msg = str(e.value)
    assert "\n" not in msg and key in msg and allowed in msg


@pytest.mark.parametrize("override", ["corpus.block_len=0", "pretrain.checkpoint_every=0", "pretrain.steps=nan"])
def test_cli_exits_2_with_one_line(tmp_path, capsys, override):
    code = cli_main(["pretrain", "--corpus", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--preset", "tiny",
                     override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and override.split("=")[0] in err


def test_cuda_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda'.*CUDA is not available"):
        load_config("tiny", ["device=cuda"])
    with pytest.raises(ConfigError, match="device='tpu'"):
        load_config("tiny", ["device=tpu"])


def test_invalid_yaml_preset_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\npretrain: {steps: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_config(str(bad))


def test_presets_and_defaults_pass_and_every_rule_names_a_real_field(tmp_path):
    for preset in ("tiny", "demo"):
        cfg = load_config(preset)
        save_config(cfg, tmp_path / "c.yaml")
        assert load_saved_config(tmp_path / "c.yaml") == cfg
    validate(RunConfig())
    for key in RULES:
        obj = RunConfig()
        for part in key.split("."):
            obj = getattr(obj, part)  # raises if a rule names a field that does not exist


def test_world_with_zero_entities_exits_2(tmp_path, capsys):
    assert cli_main(["world", "--entities", "0", "--out", str(tmp_path / "w")]) == 2
    assert "--entities" in capsys.readouterr().err
