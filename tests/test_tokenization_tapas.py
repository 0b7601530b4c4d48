"""TapasTokenizer against the reference's: ids, attention mask and all 7 token-type channels on
tables with numbers, dates, empty cells, long cells and truncation; table input forms; errors."""

from __future__ import annotations

import pytest
import transformers

from lightpipe.errors import InputError, InputTypeError
from lightpipe.tokenization import AutoTokenizer
from lightpipe.tokenization.tapas import TapasTokenizer, numeric_spans

from .fixtures.table import QUERIES, TABLE, reference_frame, tapas_path  # noqa: F401

CITIES = {
    "City": ["Paris", "Berlin", "Rome", "", "?"],
    "Population": ["2,100,000", "3.6", "-5", "nan", "seven"],
    "Founded": ["March 1999", "june 1996", "1967", "2010-06-07", "28 november 1967"],
    "Rank": ["first", "2nd", "3", "4th", "n/a"],
    "Notes": ["the city of 45 and 56", "", "12 june", "a-b-c / 7", "1999 - 2012"],
}
CITY_QUERIES = ["What is the population of Paris?", "Which city has less than 3 people?",
                "Which city was founded in June 1996?", "Who is first or third?",
                "rank greater than two and less than 4th", "", "?", "founded before 1990"]
LONG = {"Name": [f"name {i} the of a" for i in range(60)],
        "Year": [str(1900 + i) for i in range(60)],
        "Count": [str(i * 7) for i in range(60)]}


@pytest.fixture(scope="module")
def tokenizers(tapas_path):
    return (AutoTokenizer.from_pretrained(tapas_path),
            transformers.AutoTokenizer.from_pretrained(tapas_path))


def _check(ours, ref, table, queries, **kwargs):
    expected = ref(table=reference_frame(table), queries=queries, **kwargs)
    got = ours(table, queries, **kwargs)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key] == expected[key], key
    return got


def test_class(tokenizers):
    ours, _ = tokenizers
    assert isinstance(ours, TapasTokenizer)
    assert ours.model_max_length == 512


@pytest.mark.parametrize("table,queries", [(TABLE, QUERIES), (CITIES, CITY_QUERIES)],
                         ids=["actors", "cities"])
@pytest.mark.parametrize("kwargs", [{}, {"padding": True}, {"padding": "max_length",
                                                            "max_length": 200},
                                    {"truncation": True}, {"truncation": "drop_rows_to_fit",
                                                           "max_length": 40, "padding": True},
                                    {"truncation": True, "max_length": 28}])
def test_batch_matches_reference(tokenizers, table, queries, kwargs):
    ours, ref = tokenizers
    got = _check(ours, ref, table, queries, **kwargs)
    channels = list(zip(*[t for row in got["token_type_ids"] for t in row]))
    assert max(channels[4]) > 0 and max(channels[5]) > 0  # numeric columns were ranked
    if table is CITIES:
        assert max(channels[6]) > 0  # a question number is related to cells


@pytest.mark.parametrize("query", QUERIES + CITY_QUERIES[:3])
def test_single_query_matches_reference(tokenizers, query):
    ours, ref = tokenizers
    _check(ours, ref, CITIES, query)
    _check(ours, ref, TABLE, query, truncation=True, max_length=45)


def test_truncation_drops_rows_and_trims_cells(tokenizers):
    ours, ref = tokenizers
    for max_length in (512, 300, 120, 60):
        got = _check(ours, ref, LONG, ["what is the count of year 1950?"], truncation=True,
                     max_length=max_length, padding="max_length")
        assert len(got["input_ids"][0]) == max_length
    got = _check(ours, ref, LONG, "name of the year", truncation=True)
    assert len(got["input_ids"]) <= 512
    _check(ours, ref, LONG, ["count"], truncation=False)


def test_tensors(tokenizers):
    ours, ref = tokenizers
    expected = ref(table=reference_frame(TABLE), queries=QUERIES[0], return_tensors="pt")
    got = ours(TABLE, QUERIES[0], return_tensors="pt")
    assert got["token_type_ids"].shape == expected["token_type_ids"].shape
    assert (got["token_type_ids"] == expected["token_type_ids"]).all()
    assert (got["input_ids"] == expected["input_ids"]).all()


def test_dataframe_input(tokenizers):
    ours, ref = tokenizers
    frame = reference_frame(CITIES)
    assert ours(frame, CITY_QUERIES)["token_type_ids"] == \
        ref(table=frame, queries=CITY_QUERIES)["token_type_ids"]


def test_numeric_spans():
    assert numeric_spans("born 7 february 1967, rank 3rd of twelve") == [
        [(1967.0, 2.0, 7.0)], [3.0], [12.0]]


def test_errors(tokenizers):
    ours, _ = tokenizers
    with pytest.raises(InputTypeError, match="dict of column"):
        ours("not a table", "q")
    with pytest.raises(InputTypeError, match="strings"):
        ours({"a": [1, 2]}, "q")
    with pytest.raises(InputError, match="different lengths"):
        ours({"a": ["1", "2"], "b": ["x"]}, "q")
    with pytest.raises(InputError, match="max_length"):
        ours(TABLE, "a question", truncation=True, max_length=5)
    with pytest.raises(InputError, match="truncation"):
        ours(TABLE, "q", truncation="longest_first")


def test_save_and_reload(tokenizers, tmp_path):
    ours, ref = tokenizers
    ours.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(again, TapasTokenizer)
    expected = ref(table=reference_frame(CITIES), queries=CITY_QUERIES, padding=True,
                   truncation=True, max_length=40)
    got = again(CITIES, CITY_QUERIES, padding=True, truncation=True, max_length=40)
    assert got["input_ids"] == expected["input_ids"]
    assert got["token_type_ids"] == expected["token_type_ids"]


@pytest.mark.parametrize("settings", [{"cell_trim_length": 2}, {"max_question_length": 4},
                                      {"min_question_length": 6}, {"strip_column_names": True},
                                      {"max_row_id": 30}])
def test_settings_match_reference(tapas_path, settings):
    ours = AutoTokenizer.from_pretrained(tapas_path, **settings)
    ref = transformers.AutoTokenizer.from_pretrained(tapas_path, **settings)
    for max_length in (None, 90):
        _check(ours, ref, LONG, ["count", "what is the count of year 1950?"], truncation=True,
               max_length=max_length, padding=True)
        _check(ours, ref, CITIES, CITY_QUERIES, truncation=True, max_length=max_length,
               padding=True)
