"""table-question-answering against the reference pipeline (a DataFrame for the reference; a
dict and a DataFrame for us): every input form and argument, batched and sequential; bad
input."""

from __future__ import annotations

import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import assert_outputs_close
from ..fixtures.table import (QUERIES, TABLE, reference_frame, tapas_nopool_path,  # noqa: F401
                              tapas_path)

TASK = "table-question-answering"
SHOPS = {"Shop": ["north", "south", "east", "west"],
         "Sales": ["100", "53", "87", "7"],
         "Opened": ["march 1999", "june 1996", "1967", "2012"]}
SHOP_QUERIES = ["what is the total of sales?", "which shop opened in 1967?",
                "how many shops have more than 50 sales?"]
LONG = {"Name": [f"name {i} the of a" for i in range(60)],
        "Year": [str(1900 + i) for i in range(60)],
        "Count": [str(i * 7) for i in range(60)]}


@pytest.fixture(scope="module", params=["wtq", "sqa"])
def pipes(request, tapas_path, tapas_nopool_path):
    folder = tapas_path if request.param == "wtq" else tapas_nopool_path
    return lightpipe.pipeline(TASK, model=folder), transformers.pipeline(TASK, model=folder)


@pytest.mark.parametrize("table,queries", [(TABLE, QUERIES), (SHOPS, SHOP_QUERIES),
                                           (LONG, ["what is the count of name 3?", "year"])],
                         ids=["actors", "shops", "long"])
@pytest.mark.parametrize("kwargs", [{}, {"sequential": True}, {"padding": "max_length"},
                                    {"truncation": True},
                                    {"truncation": "drop_rows_to_fit", "sequential": True}])
def test_matches_reference(pipes, table, queries, kwargs):
    ours, ref = pipes
    frame = reference_frame(table)
    expected = ref(table=frame, query=queries, **kwargs)
    assert_outputs_close(ours(table=table, query=queries, **kwargs), expected)
    assert_outputs_close(ours(table=frame, query=queries, **kwargs), expected)
    for query in queries[:2]:
        assert_outputs_close(ours(table, query, **kwargs), ref(frame, query, **kwargs))


def test_no_padding(pipes):
    """padding=False: one query works as in the reference; several cannot be batched there
    (ragged tensors) and are a clear error here."""
    ours, ref = pipes
    frame = reference_frame(TABLE)
    for query in QUERIES[:2]:
        assert_outputs_close(ours(table=TABLE, query=query, padding=False),
                             ref(table=frame, query=query, padding=False))
    with pytest.raises(ValueError):
        ref(table=frame, query=QUERIES, padding=False)
    with pytest.raises(InputError, match="padding=True"):
        ours(table=TABLE, query=QUERIES, padding=False)


def test_answers_vary(pipes):
    """The fixture model must pick different cells for different queries, or parity proves
    little."""
    ours, _ = pipes
    answers = {str(a["coordinates"]) for a in ours(table=TABLE, query=QUERIES)
               + ours(table=SHOPS, query=SHOP_QUERIES)}
    assert len(answers) >= 3


def test_input_forms(pipes):
    ours, ref = pipes
    frame = reference_frame(SHOPS)
    assert_outputs_close(ours({"table": SHOPS, "query": SHOP_QUERIES[0]}),
                         ref({"table": frame, "query": SHOP_QUERIES[0]}))
    assert_outputs_close(ours({"table": SHOPS, "query": [SHOP_QUERIES[1]]}),
                         ref({"table": frame, "query": [SHOP_QUERIES[1]]}))
    mixed = [{"table": SHOPS, "query": SHOP_QUERIES[:2]}, {"table": TABLE, "query": QUERIES[0]}]
    expected = ref([{"table": frame, "query": SHOP_QUERIES[:2]},
                    {"table": reference_frame(TABLE), "query": QUERIES[0]}])
    assert_outputs_close(ours(mixed), expected)
    assert_outputs_close(list(ours(table=(d for d in mixed))), expected)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_batch_size(pipes, batch_size):
    """The reference cannot batch table inputs (batch_size > 1 fails in its collate); ours
    must give its batch_size=1 answers."""
    ours, ref = pipes
    frame = reference_frame(TABLE)
    expected = ref(table=frame, query=QUERIES)
    assert_outputs_close(ours(table=TABLE, query=QUERIES, batch_size=batch_size), expected)
    items = [{"table": TABLE, "query": q} for q in QUERIES]
    assert_outputs_close(ours(items, batch_size=batch_size),
                         [ref(table=frame, query=q) for q in QUERIES])


def test_errors(pipes):
    ours, _ = pipes
    with pytest.raises(InputError, match="query"):
        ours(table=TABLE)
    with pytest.raises(InputError, match="query"):
        ours(table=TABLE, query="")
    with pytest.raises(InputError, match="table"):
        ours(query="how old?")
    with pytest.raises(InputTypeError, match="table"):
        ours(table="not a table", query="how old?")
    with pytest.raises(InputTypeError, match="strings"):
        ours(table={"a": [1, 2]}, query="q")
    with pytest.raises(InputError, match="empty"):
        ours(table={"a": []}, query="q")
    with pytest.raises(InputTypeError, match="string"):
        ours(table=TABLE, query=[3])
    with pytest.raises(TypeError, match="unexpected"):
        ours(table=TABLE, query="q", top_k=2)


def test_untruncated_long_table(pipes):
    """Without truncation a 60-row table is ~700 tokens: fine with positions per cell (as the
    reference), a clear error for a model with 512 absolute positions."""
    ours, ref = pipes
    if ours.model.config.reset_position_index_per_cell:
        assert_outputs_close(ours(table=LONG, query="year", truncation=False),
                             ref(table=reference_frame(LONG), query="year", truncation=False))
    else:
        with pytest.raises(InputError, match="positions"):
            ours(table=LONG, query="year", truncation=False)


def test_task_inferred_from_model(tapas_path):
    pipe = lightpipe.pipeline(model=tapas_path)
    assert pipe.task == TASK
    assert type(pipe.model).__name__ == "TapasForQuestionAnswering"
