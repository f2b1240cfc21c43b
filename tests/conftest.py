import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    # the suite runs in 2 xdist workers on 2 cores: one torch thread each avoids oversubscription
    import torch

    torch.set_num_threads(1)


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


@pytest.fixture
def small_docs():
    return [
        {"id": "a", "title": "Elsa Mirrow", "text": "Elsa Mirrow was born in Varnholt on 3 May 1881. She worked as a cartographer. "
         "Her maps of the Quill Coast are still used! Did she ever marry? Records say she married Tomas Vell in 1910."},
        {"id": "b", "title": "Varnholt", "text": "Varnholt is a city in Ostrava Province.\nIt was founded in 1204 by river traders. "
         "Notable people born in Varnholt include Elsa Mirrow."},
        {"id": "c", "title": "Long one", "text": " ".join(["The archive of the Order of Quill holds many manuscripts"] * 12) + "."},
    ]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """(BlockStore, world file paths) of a 60-entity world, built once per test session."""
    from tests.helpers import tiny_world_corpus

    return tiny_world_corpus(tmp_path_factory.mktemp("tinyworld"))
