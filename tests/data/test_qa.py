import pytest

from realm.data.errors import InputError, SkipReport
from realm.data.qa import exact_match, has_answer, normalize_answer, read_qa
from tests.conftest import write_jsonl


@pytest.mark.parametrize("text, expected", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  an   apple, a pear ", "apple pear"),
    ("3 May 1881.", "3 may 1881"),
    ("Theatre of the Absurd", "theatre of absurd"),  # 'the' inside 'Theatre' is not an article
    ("U.S.A.", "usa"),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_any_gold():
    assert exact_match("the Varnholt", ["Ostrava", "Varnholt"])
    assert not exact_match("Varnholt city", ["Varnholt"])


def test_has_answer_whole_tokens():
    assert has_answer("Elsa was born in Varnholt, in 1881.", ["varnholt"])
    assert not has_answer("Elsa was born in Varnholtia.", ["Varnholt"])
    assert has_answer("She married Tomas Vell.", ["tomas vell"])
    assert not has_answer("anything", ["", "  "])


def test_read_qa_formats(tmp_path):
    p = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "Where?", "answer": ["Varnholt"]},
        {"question": "When?", "answers": ["1881", "3 May 1881"]},
        {"question": "Who?", "answer": "Elsa"},
        "",
    ])
    qa = read_qa(p)
    assert [q.answers for q in qa] == [("Varnholt",), ("1881", "3 May 1881"), ("Elsa",)]
    assert qa[1].source.endswith("qa.jsonl:2")


@pytest.mark.parametrize("line, message", [
    ('{"question": "Where?", "answer": ["x"]', "malformed JSON"),
    ('{"answer": ["x"]}', "missing field 'question'"),
    ('{"question": "  ", "answer": ["x"]}', "empty question"),
    ('{"question": "Where?"}', "missing field 'answer'"),
    ('{"question": "Where?", "answer": []}', "empty answer list"),
    ('{"question": "Where?", "answer": [" "]}', "empty answer list"),
    ('{"question": "Where?", "answer": [3]}', "bad answer"),
    ('[1, 2]', "expected a JSON object"),
])
def test_read_qa_bad_lines_name_file_and_line(tmp_path, line, message):
    p = write_jsonl(tmp_path / "qa.jsonl", [{"question": "ok?", "answer": ["x"]}, line])
    with pytest.raises(InputError) as e:
        read_qa(p)
    assert str(e.value).startswith(f"{p}:2: ") and message in str(e.value)
    skip = SkipReport()
    assert len(read_qa(p, skip)) == 1 and skip.total == 1


def test_read_qa_non_utf8(tmp_path):
    p = tmp_path / "qa.jsonl"
    p.write_bytes(b'{"question": "caf\xe9?", "answer": ["x"]}\n')
    with pytest.raises(InputError, match=r"qa.jsonl:1: not valid UTF-8"):
        read_qa(p)


def test_no_gold_answers_means_no_match():
    from realm.data.qa import exact_match, has_answer
    assert not has_answer("Paris is the capital", ())
    assert not exact_match("Paris", [])
    assert has_answer("Paris is the capital", ["paris"]) and exact_match("the Paris", ["Paris"])
