"""jsonl_objects against the plain reference (json.loads of every non-blank line), and its errors."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realm.data.errors import InputError
from realm.data.jsonl import jsonl_objects

values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
lines = st.lists(st.one_of(st.dictionaries(st.text(max_size=8), values, max_size=4).map(json.dumps),
                           st.sampled_from(["", "   ", "\t"])), max_size=12)


@settings(max_examples=60, deadline=None)
@given(lines)
def test_matches_plain_reference(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("jsonl") / "x.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    reference = [(i, json.loads(r)) for i, r in enumerate(rows, start=1) if r.strip()]
    assert list(jsonl_objects(path)) == reference


@pytest.mark.parametrize("content, line, message", [
    (b'{"a": 1}\n{"a": \n', 2, "malformed JSON"),
    (b'{"a": 1}\n\n[1, 2]\n', 3, "expected a JSON object, got list"),
    (b'"text"\n', 1, "expected a JSON object, got str"),
    (b'{"a": "\xff"}\n', 1, "not valid UTF-8: byte 7"),
])
def test_errors_name_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        list(jsonl_objects(path))
    assert str(err.value).startswith(f"{path}:{line}: ") and message in str(err.value)
