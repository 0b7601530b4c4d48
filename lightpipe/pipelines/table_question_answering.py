"""table-question-answering: TAPAS picks the cells that answer a question about a table.

As transformers' ``TableQuestionAnsweringPipeline``: ``pipe(table=..., query=...)``,
``pipe(table, query)``, ``pipe({"table": ..., "query": ...})`` or a list of such dicts; a query
may be a list of queries about the same table (encoded and run as one batch). A table is a dict
of column name -> list of cell strings, or a pandas DataFrame. Each answer is
``{"answer", "coordinates", "cells", "aggregator"}``: the cells whose tokens' mean probability
is above 0.5, as (row, column) pairs, and for models with an aggregation head its label, with
``"SUM > a, b"`` as the answer text when the label is not the no-aggregation one.

``sequential=True`` runs the queries one by one, feeding each answer to the next query as
the ``prev_labels`` channel (conversational models such as SQA). ``padding`` and
``truncation`` are the tokenizer's (rows are dropped to fit 512 tokens by default).
"""

from __future__ import annotations

import collections
import types
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import InputError, InputTypeError
from ..tokenization.tapas import as_table
from .base import Pipeline
from .common import given, refuse_unknown


class TableQuestionAnsweringPipeline(Pipeline):
    """Answers questions about a table (TAPAS), as transformers' pipeline.

    Call:
        ``pipe(table, query)``, ``pipe(table=..., query=...)``, ``pipe({"table": ..., "query":
        ...})`` or a list of such dicts. ``table``: a dict of column name -> list of cell
        strings, or a pandas DataFrame; ``query``: a question or a list of them.

    Arguments:
        sequential (bool, default False): SQA models: each question follows the previous one.
        padding (bool or str, default True): tokenizer padding.
        truncation (bool or str, default False): ``"drop_rows_to_fit"`` drops rows that do not fit.
        batch_size (int, default 1): questions per forward pass.

    Returns:
        Per question, ``{"answer": str, "coordinates": [(row, column), ...], "cells": [str,
        ...], "aggregator": str}`` (``aggregator`` only for models with an aggregation head:
        "NONE", "SUM", "AVERAGE", "COUNT"; the answer then reads e.g. "SUM > 3, 4").
    """

    task = "table-question-answering"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        config = self.model.config
        self.aggregate = bool(config.get("aggregation_labels")
                              and config.get("num_aggregation_labels"))
        if not hasattr(self.tokenizer, "tokenize_text"):
            raise InputTypeError(
                "The table-question-answering pipeline needs a TAPAS tokenizer (tokenizer_class "
                f"TapasTokenizer); got {type(self.tokenizer).__name__}.")

    def _sanitize_parameters(self, sequential: bool | None = None, padding: Any = None,
                             truncation: Any = None, **kwargs: Any) -> tuple[dict, dict, dict]:
        refuse_unknown(self, kwargs)
        fwd = {"sequential": bool(sequential)} if sequential is not None else {}
        return given(padding=padding, truncation=truncation), fwd, {}

    # --- inputs and answers ---
    def gather_inputs(self, *args: Any, table: Any = None, query: Any = None,
                      **params: Any) -> tuple[Any, dict]:
        if len(args) > 2:
            raise TypeError("The table-question-answering pipeline takes (table, query); got "
                            f"{len(args)} positional arguments.")
        if args:
            if table is not None:
                raise TypeError("table was given both by position and by name.")
            table = args[0]
            if len(args) == 2:
                if query is not None:
                    raise TypeError("query was given both by position and by name.")
                query = args[1]
        if table is None:
            raise InputError("No table: pass table={column name: [cells]} (or a DataFrame) and "
                             "query='a question'.")
        return (table if query is None else {"table": table, "query": query}), params

    def split_inputs(self, inputs: Any, params: dict) -> tuple[Any, bool]:
        """A {"table", "query"} dict (one answer), a list of them (a list of answers, or the
        answer alone for a list of one), or an iterator of them."""
        if isinstance(inputs, dict) and "table" in inputs and "query" in inputs:
            if inputs["query"] is None:
                raise InputError("No query: give the input dict a 'query' (a question string).")
            return [inputs], True
        if isinstance(inputs, list) and inputs and all(isinstance(d, dict) for d in inputs):
            if not all("table" in d and "query" in d for d in inputs):
                raise InputError("Each dict of the list needs a 'table' and a 'query' key.")
            return inputs, len(inputs) == 1
        if isinstance(inputs, (types.GeneratorType, Iterator)):
            return inputs, False
        if isinstance(inputs, dict) or hasattr(inputs, "columns"):
            raise InputError("No query: pass query='a question about the table' (or a list of "
                             "questions) with the table.")
        raise InputTypeError(
            "The table-question-answering pipeline takes table= (a dict of column -> cells or a "
            "DataFrame) and query=, a {'table', 'query'} dict or a list of them; got "
            f"{type(inputs).__name__}: {inputs!r:.80}.")

    def run_window(self, items: list, batch_size: int | None, pre: dict, fwd: dict,
                   post: dict) -> list:
        """Each table runs alone: its queries are one batch of rows, run ``batch_size`` rows at
        a time (all at once when None), or one by one in order when ``sequential``."""
        return [self._answer(item, batch_size, pre, fwd, post) for item in items]

    def _answer(self, item: Any, batch_size: int | None, pre: dict, fwd: dict, post: dict) -> Any:
        if not isinstance(item, dict) or "table" not in item or "query" not in item:
            raise InputTypeError("Each input must be a dict with a 'table' and a 'query'; got "
                                 f"{type(item).__name__}: {item!r:.80}.")
        inputs = self.preprocess(item, **pre)
        with torch.inference_mode():
            outputs = self._forward(inputs, batch_size=batch_size, **fwd)
        return self.postprocess(outputs, **post)

    def preprocess(self, item: dict, padding: Any = True, truncation: Any = None) -> dict:
        header, rows = as_table(item["table"])
        if not header or not rows:
            raise InputError("The table is empty: give at least one column with one row.")
        query = item["query"]
        if query is None or query == "" or (isinstance(query, list) and not query):
            raise InputError("The query is empty: pass query='a question about the table' (or "
                             "a list of questions).")
        if truncation is None:
            truncation = "drop_rows_to_fit"
        queries = query if isinstance(query, list) else [query]
        for text in queries:
            if not isinstance(text, str):
                raise InputTypeError(f"A query must be a string; got {type(text).__name__}: "
                                     f"{text!r:.80}.")
        encoded = self.tokenizer(item["table"], query,
                                 padding=padding, truncation=truncation, return_tensors="pt")
        return {"inputs": dict(encoded), "rows": rows}

    # --- model ---
    def _forward(self, model_inputs: dict, batch_size: int | None = None,
                 sequential: bool = False) -> dict:
        inputs = {k: v.to(self.device) for k, v in model_inputs["inputs"].items()}
        if sequential:
            logits, aggregation = self._sequential(inputs)
        else:
            total = inputs["input_ids"].shape[0]
            step = batch_size or total
            parts = [self.model(**{k: v[start:start + step] for k, v in inputs.items()})
                     for start in range(0, total, step)]
            logits = torch.cat([p.logits for p in parts])
            aggregation = (torch.cat([p.logits_aggregation for p in parts])
                           if self.aggregate else None)
        return {"inputs": {k: v.cpu() for k, v in inputs.items()}, "rows": model_inputs["rows"],
                "logits": logits.cpu(), "aggregation": None if aggregation is None
                else aggregation.cpu()}

    def _sequential(self, inputs: dict) -> tuple:
        """One query at a time; each query's prev_labels channel marks the cells the previous
        query selected (mean token probability above 0.5)."""
        import numpy as np

        token_types = inputs["token_type_ids"].clone()
        all_logits, all_aggregation, previous = [], [], None
        for index in range(inputs["input_ids"].shape[0]):
            types_row = token_types[index]
            if previous is not None:
                labels = [int(previous.get((col - 1, row - 1), False))
                          if seg == 1 and row >= 1 and col >= 1 else 0
                          for seg, col, row in types_row[:, :3].tolist()]
                types_row[:, 3] = torch.tensor(labels, dtype=torch.long)
            out = self.model(input_ids=inputs["input_ids"][index:index + 1],
                             attention_mask=inputs["attention_mask"][index:index + 1],
                             token_type_ids=types_row[None])
            all_logits.append(out.logits)
            if self.aggregate:
                all_aggregation.append(out.logits_aggregation)
            probs = (torch.sigmoid(out.logits[0])
                     * inputs["attention_mask"][index].float()).tolist()
            per_cell = collections.defaultdict(list)
            for p, (seg, col, row) in zip(probs, types_row[:, :3].tolist()):
                if seg == 1 and col >= 1 and row >= 1:
                    per_cell[col - 1, row - 1].append(p)
            previous = {cell: np.array(values).mean() > 0.5 for cell, values in per_cell.items()}
        aggregation = torch.cat(all_aggregation) if self.aggregate else None
        return torch.cat(all_logits), aggregation

    # --- outputs ---
    def postprocess(self, outputs: dict) -> Any:
        import numpy as np

        config = self.model.config
        inputs, rows = outputs["inputs"], outputs["rows"]
        logits = outputs["logits"].float().numpy().copy()
        logits[logits < -88.7] = -88.7
        probabilities = 1 / (1 + np.exp(-logits)) * inputs["attention_mask"].numpy()
        token_types = inputs["token_type_ids"].numpy()
        predictions = None
        if self.aggregate:
            predictions = outputs["aggregation"].float().numpy().argmax(axis=-1).tolist()
        labels = {int(k): v for k, v in (config.get("aggregation_labels") or {}).items()}
        no_aggregation = config.get("no_aggregation_label_index")
        answers = []
        for index in range(probabilities.shape[0]):
            segments, columns, row_ids = (token_types[index, :, i] for i in range(3))
            width, height = int(columns.max()), int(row_ids.max())
            if width == 0 and height == 0:
                continue
            per_cell = collections.defaultdict(list)
            for p, seg, col, row in zip(probabilities[index].tolist(), segments.tolist(),
                                        columns.tolist(), row_ids.tolist()):
                if seg == 1 and col >= 1 and row >= 1:
                    per_cell[col - 1, row - 1].append(p)
            coordinates = sorted((row, col) for (col, row), values in per_cell.items()
                                 if np.array(values).mean() > 0.5)
            cells = [rows[row][col] for row, col in coordinates]
            answer = {"answer": ", ".join(cells), "coordinates": coordinates, "cells": cells}
            if predictions is not None:
                label = labels.get(predictions[index], "")
                if label:
                    if predictions[index] != no_aggregation:
                        answer["answer"] = f"{label} > {answer['answer']}"
                    answer["aggregator"] = label
            answers.append(answer)
        if not answers:
            return []
        return answers if len(answers) > 1 else answers[0]

