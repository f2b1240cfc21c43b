import pytest

from realm.data.errors import InputError, SkipReport
from realm.data.ingest import read_documents
from tests.conftest import write_jsonl


def test_jsonl_text_and_contents(tmp_path, small_docs):
    rows = small_docs[:2] + [{"id": 7, "title": "C", "contents": "Contents field works."}]
    docs = list(read_documents(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert [d.id for d in docs] == ["a", "b", "7"]
    assert docs[2].text == "Contents field works."
    assert docs[1].source.endswith("c.jsonl:2")


def test_tsv_dpr_style(tmp_path):
    p = tmp_path / "psgs.tsv"
    p.write_text('id\ttext\ttitle\n1\t"Quoted, text here."\tFirst\n2\tPlain text.\tSecond\n', encoding="utf-8")
    docs = list(read_documents(p))
    assert [(d.id, d.title, d.text) for d in docs] == [("1", "First", "Quoted, text here."), ("2", "Second", "Plain text.")]


def test_txt_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "Elsa_Mirrow.txt").write_text("Elsa was born in Varnholt.")
    (tmp_path / "sub" / "b.txt").write_text("Nested.")
    docs = list(read_documents(tmp_path))
    assert [(d.id, d.title) for d in docs] == [("Elsa_Mirrow", "Elsa Mirrow"), ("sub/b", "b")]


BAD_JSONL = [
    ('{"id": "x", "title": "t", "text": "ok"', "malformed JSON"),
    ('{"title": "t", "text": "ok"}', "missing field 'id'"),
    ('{"id": "x", "title": "t"}', "missing field 'text'"),
    ('{"id": "x", "title": "t", "text": "   "}', "empty text"),
    ('{"id": "", "title": "t", "text": "ok"}', "empty id"),
    ('{"id": "x", "title": 5, "text": "ok"}', "bad title"),
    ('{"id": "a", "title": "dup", "text": "dup"}', "duplicate id 'a'"),
    ('"just a string"', "expected a JSON object"),
]


@pytest.mark.parametrize("line, message", BAD_JSONL)
def test_bad_jsonl_names_file_and_line(tmp_path, small_docs, line, message):
    p = write_jsonl(tmp_path / "c.jsonl", [small_docs[0], line, small_docs[1]])
    with pytest.raises(InputError) as e:
        list(read_documents(p))
    assert str(e.value).startswith(f"{p}:2: ") and message in str(e.value)


def test_skip_bad_counts_everything(tmp_path, small_docs):
    p = write_jsonl(tmp_path / "c.jsonl", [small_docs[0]] + [line for line, _ in BAD_JSONL] + [small_docs[1]])
    skip = SkipReport()
    docs = list(read_documents(p, skip))
    assert [d.id for d in docs] == ["a", "b"]
    assert skip.total == len(BAD_JSONL)
    assert "skipped 8 bad records" in skip.summary()


def test_non_utf8(tmp_path, small_docs):
    p = write_jsonl(tmp_path / "c.jsonl", [small_docs[0]])
    with open(p, "ab") as f:
        f.write(b'{"id": "z", "title": "t", "text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"c.jsonl:2: not valid UTF-8"):
        list(read_documents(p))
    t = tmp_path / "bad.txt"
    t.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="not valid UTF-8"):
        list(read_documents(tmp_path))


def test_bad_tsv(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("id\ttext\ttitle\n1\tok\tT\n2\tonly two\n")
    with pytest.raises(InputError, match=r"c.tsv:3: malformed row: 2 columns"):
        list(read_documents(p))
    p.write_text("doc\tbody\n1\tx\n")
    with pytest.raises(InputError, match=r"c.tsv:1: missing field 'id'"):
        list(read_documents(p))


def test_missing_and_unknown(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_documents(tmp_path / "nope.jsonl"))
    (tmp_path / "c.csv").write_text("x")
    with pytest.raises(InputError, match="unknown corpus format"):
        list(read_documents(tmp_path / "c.csv"))
