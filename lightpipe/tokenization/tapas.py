"""TAPAS's tokenizer: a question and a flattened table -> ids and 7 token-type channels.

Behaviour follows transformers' ``TapasTokenizer`` for inference: WordPiece (BERT basic
tokenization) over ``vocab.txt``; ``[CLS] question [SEP] header cells row cells ...``; the
token-type channels segment, column, row, prev_labels (zeros), column rank, inverse column rank
and numeric relation to the question; truncation ``drop_rows_to_fit`` drops rows from the end
(and trims long cells) until the table fits ``max_length`` (tokenizer_config.json's
``model_max_length``, else 512).

Numbers and dates are read from cells and questions as the TAPAS paper's code does
(``number_utils.py``): number spans, number words, ordinals and dates between 1700 and 2016.

A table is a dict of column name -> list of cell strings, or anything shaped like a pandas
DataFrame (``.columns`` and ``.values``); pandas is not needed.
"""

from __future__ import annotations

import bisect
import collections
import datetime
import itertools
import re
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from ..jsonfile import read_json
from .batch_encoding import BatchEncoding
from .tokenizer import Tokenizer

EMPTY_TEXT = "EMPTY"
TOKEN_TYPES = ("segment_ids", "column_ids", "row_ids", "prev_labels", "column_ranks",
               "inv_column_ranks", "numeric_relations")


# --- tables ---------------------------------------------------------------------------------

def as_table(table: Any) -> tuple[list[str], list[list[str]]]:
    """A dict of columns or a DataFrame-like -> (header, rows of cell strings)."""
    if isinstance(table, dict):
        header = list(table)
        columns = [table[name] for name in header]
        for name, column in zip(header, columns):
            if isinstance(column, (str, bytes)) or not hasattr(column, "__len__"):
                raise InputTypeError(
                    f"Column {name!r} of the table is a {type(column).__name__}; a table is a "
                    "dict of column name -> list of cell strings.")
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise InputError(f"The table's columns have different lengths ({sorted(lengths)}); "
                             "every column needs one cell per row.")
        rows = [list(row) for row in zip(*columns)] if columns else []
    elif hasattr(table, "columns") and hasattr(table, "values") and hasattr(table, "shape"):
        header = list(table.columns)
        rows = [list(row) for row in table.values.tolist()] if len(table.shape) == 2 else []
    else:
        raise InputTypeError(
            f"A table must be a dict of column name -> list of cell strings, or a pandas "
            f"DataFrame; got {type(table).__name__}: {table!r:.80}.")
    for name in header:
        if not isinstance(name, str):
            raise InputTypeError(f"Column names must be strings; got {name!r}.")
    for row in rows:
        for cell in row:
            if not isinstance(cell, str):
                raise InputTypeError(
                    f"Table cells must be strings; got {type(cell).__name__} {cell!r:.40}. "
                    "Convert them first (str(value), or DataFrame.astype(str)).")
    return header, rows


# --- numbers and dates (TAPAS number_utils) -------------------------------------------------

_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve").split()
_ORDINAL_WORDS = ("zeroth first second third fourth fifth sixth seventh eighth ninth tenth "
                  "eleventh twelfth").split()
_ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")
_NUMBER_RE = re.compile(r"((^|\s)[+-])?((\.\d+)|(\d+(,\d\d\d)*(\.\d*)?))")
_MIN_YEAR, _MAX_YEAR = 1700, 2016
_MAX_DATE_WORDS = 5
# strptime pattern -> which of (year, month, day) it fills.
_DATE_FORMATS = (
    ("%B", "m"), ("%Y", "y"), ("%Ys", "y"), ("%b %Y", "ym"), ("%B %Y", "ym"), ("%B %d", "md"),
    ("%b %d", "md"), ("%d %b", "md"), ("%d %B", "md"), ("%B %d, %Y", "ymd"),
    ("%d %B %Y", "ymd"), ("%m-%d-%Y", "ymd"), ("%Y-%m-%d", "ymd"), ("%Y-%m", "ym"),
    ("%d %b %Y", "ymd"), ("%b %d, %Y", "ymd"), ("%d.%m.%Y", "ymd"), ("%A, %b %d", "md"),
    ("%A, %B %d", "md"),
)
_FIELD_RE = {"%A": r"\w+", "%B": r"\w+", "%Y": r"\d{4}", "%b": r"\w{3}", "%d": r"\d{1,2}",
             "%m": r"\d{1,2}"}


def _date_prefilter(fmt: str) -> re.Pattern:
    regex = fmt.replace(".", r"\.").replace("-", r"\-").replace(" ", r"\s+")
    for field, field_regex in _FIELD_RE.items():
        regex = regex.replace(field, field_regex)
    return re.compile("^" + regex + "$")


_DATES = [(fmt, fields, _date_prefilter(fmt)) for fmt, fields in _DATE_FORMATS]


# A value is a float (a number) or a (year, month, day) tuple with None for missing fields.
def _parse_date(text: str):
    text = re.sub(r"Sept\b", "Sep", text)
    for fmt, fields, prefilter in _DATES:
        if not prefilter.match(text):
            continue
        try:
            date = datetime.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if not _MIN_YEAR <= date.year <= _MAX_YEAR:
            continue
        return (float(date.year) if "y" in fields else None,
                float(date.month) if "m" in fields else None,
                float(date.day) if "d" in fields else None)
    return None


def _parse_number(text: str) -> float | None:
    for suffix in _ORDINAL_SUFFIXES:
        if text.endswith(suffix):
            text = text[:-len(suffix)]
            break
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    if value != value or value == float("inf"):
        return None
    return value


def _word_spans(text: str, max_words: int):
    """(begin, end) of every run of 1..max_words consecutive alphanumeric words."""
    starts: list[int] = []
    for index, char in enumerate(text):
        if not char.isalnum():
            continue
        if index == 0 or not text[index - 1].isalnum():
            starts.append(index)
        if index + 1 == len(text) or not text[index + 1].isalnum():
            for start in starts[-max_words:]:
                yield start, index + 1


def numeric_spans(text: str) -> list[list]:
    """The longest non-overlapping number and date spans of ``text``: their values, in order."""
    found: dict[tuple[int, int], list] = collections.defaultdict(list)
    for match in _NUMBER_RE.finditer(text):
        number = _parse_number(text[match.start():match.end()])
        if number is not None:
            found[match.span()].append(number)
    for span in _word_spans(text, 1):
        if span in found:
            continue
        word = text[span[0]:span[1]]
        number = _parse_number(word)
        if number is not None:
            found[span].append(number)
        for words in (_NUMBER_WORDS, _ORDINAL_WORDS):
            if word in words:
                found[span].append(float(words.index(word)))
    for span in _word_spans(text, _MAX_DATE_WORDS):
        date = _parse_date(text[span[0]:span[1]])
        if date is not None:
            found[span].append(date)
    by_length = sorted(found.items(), key=lambda item: (item[0][1] - item[0][0], -item[0][0]),
                       reverse=True)
    chosen: list = []
    for span, values in by_length:
        if not any(s[0] <= span[0] and span[1] <= s[1] for s, _ in chosen):
            chosen.append((span, values))
    return [values for _, values in sorted(chosen, key=lambda item: item[0][0])]


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _kind(value) -> str:
    return "number" if isinstance(value, float) else "date"


def _sort_key(values) -> Any:
    """A key making ``values`` comparable (dates on their common fields), or None."""
    kinds = {_kind(value) for value in values}
    if len(kinds) != 1:
        return None
    if kinds == {"number"}:
        return lambda value: value
    fields = [i for i in range(3) if all(value[i] is not None for value in values)]
    if not fields:
        return None
    return lambda value: tuple(value[i] for i in fields)


def column_values(rows: list[list[str]], column: int) -> dict[int, Any]:
    """row -> the cell's value, for the cells of the column's dominant type (number or date),
    when at least 70% of the rows have one; else empty."""
    per_row = {}
    for row, cells in enumerate(rows):
        per_row[row] = [v for values in numeric_spans(_normalize(cells[column])) for v in values]
    counts: collections.Counter = collections.Counter()
    for values in per_row.values():
        counts.update({_kind(value) for value in values})
    if not counts:
        return {}
    most = max(counts.values())
    if most < len(per_row) * 0.7:
        return {}
    kinds = {kind for kind, count in counts.items() if count == most}
    kind = "date" if len(kinds) > 1 else next(iter(kinds))
    chosen = {}
    for row, values in per_row.items():
        for value in values:
            if _kind(value) == kind:
                chosen[row] = value
                break
    return chosen


# --- the tokenizer --------------------------------------------------------------------------

class TapasTokenizer(Tokenizer):
    """``tok(table, queries)`` -> input_ids, attention_mask and token_type_ids (seq, 7)."""

    @classmethod
    def from_folder(cls, folder, **kwargs: Any) -> "TapasTokenizer":
        if "model_max_length" not in read_json(Path(folder) / "tokenizer_config.json"):
            kwargs.setdefault("model_max_length", 512)  # the reference class's default
        tokenizer = super().from_folder(folder, **kwargs)
        settings = tokenizer.init_kwargs
        tokenizer.empty_token = settings.get("empty_token") or "[EMPTY]"
        tokenizer.cell_trim_length = int(settings.get("cell_trim_length", -1) or -1)
        limit = tokenizer.model_max_length
        tokenizer.max_column_id = int(settings.get("max_column_id") or limit)
        tokenizer.max_row_id = int(settings.get("max_row_id") or limit)
        tokenizer.strip_column_names = bool(settings.get("strip_column_names", False))
        tokenizer.min_question_length = settings.get("min_question_length")
        tokenizer.max_question_length = settings.get("max_question_length")
        tokenizer.model_input_names = ["input_ids", "attention_mask", "token_type_ids"]
        specials = [t for t in (tokenizer.unk_token, tokenizer.sep_token, tokenizer.pad_token,
                                tokenizer.cls_token, tokenizer.mask_token, tokenizer.empty_token)
                    if t]
        tokenizer._backend.add_special_tokens(specials)
        tokenizer._special_split = re.compile(
            "(" + "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)) + ")")
        vocab = tokenizer._backend.get_vocab()
        tokenizer._empty_id = vocab.get(tokenizer.empty_token, tokenizer._backend.get_vocab_size())
        return tokenizer

    # -- words
    def tokenize_text(self, text: str) -> list[str]:
        """WordPiece tokens of a question, header or cell; an empty cell is ``[EMPTY]``."""
        tokens: list[str] = []
        for piece in self._special_split.split(text):
            if not piece:
                continue
            if self._special_split.fullmatch(piece):
                tokens.append(piece)
            elif _format_text(piece) == EMPTY_TEXT:
                tokens.append(self.empty_token)
            else:
                tokens.extend(self._backend.encode(piece, add_special_tokens=False).tokens)
        return tokens

    def _ids(self, tokens: list[str]) -> list[int]:
        ids = []
        for token in tokens:
            index = self._backend.token_to_id(token)
            if index is None:
                index = self._empty_id if token == self.empty_token else self.unk_token_id
            ids.append(index)
        return ids

    # -- calls
    def __call__(self, table: Any = None, queries: Any = None, *, padding: Any = False,
                 truncation: Any = False, max_length: int | None = None,
                 pad_to_multiple_of: int | None = None, return_tensors: str | None = None,
                 return_attention_mask: bool = True, return_token_type_ids: bool = True,
                 **kwargs: Any) -> BatchEncoding:
        if kwargs:
            raise TypeError(f"TapasTokenizer got unexpected arguments: {', '.join(kwargs)}")
        header, rows = as_table(table)
        batched = isinstance(queries, (list, tuple))
        query_list = list(queries) if batched else [queries]
        for query in query_list:
            if query is not None and not isinstance(query, str):
                raise InputTypeError(f"A query must be a string; got {type(query).__name__}.")
        truncate = _truncation(truncation)
        cells = self._tokenize_table(header, rows)
        table_values = {col: column_values(rows, col) for col in range(len(header))}
        encoded = [self._encode_one(header, rows, cells, table_values, query or "", truncate,
                                    max_length) for query in query_list]
        strategy = _padding(padding, max_length, pad_to_multiple_of, batched)
        target = None
        if strategy == "longest":
            target = max(len(e["input_ids"]) for e in encoded)
        elif strategy == "max_length":
            target = max_length if max_length is not None else self.model_max_length
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        data: dict[str, list] = {"input_ids": []}
        if return_attention_mask:
            data["attention_mask"] = []
        if return_token_type_ids:
            data["token_type_ids"] = []
        for e in encoded:
            extra = max(0, (target or 0) - len(e["input_ids"]))
            left = self.padding_side == "left"

            def pad(values, fill):
                return [fill] * extra + values if left else values + [fill] * extra

            data["input_ids"].append(pad(e["input_ids"], self.pad_token_id))
            if return_attention_mask:
                data["attention_mask"].append(pad([1] * len(e["input_ids"]), 0))
            if return_token_type_ids:
                data["token_type_ids"].append(pad(e["token_type_ids"], [0] * 7))
        if not batched:
            data = {key: value[0] for key, value in data.items()}
            if return_tensors is not None:
                data = {key: [value] for key, value in data.items()}
        return BatchEncoding(data, tensor_type=return_tensors)

    def _tokenize_table(self, header: list[str], rows: list[list[str]]) -> list[list[list[str]]]:
        """Tokens of each cell, the header first: [row][column] -> tokens."""
        head = [self.tokenize_text("") if self.strip_column_names else self.tokenize_text(name)
                for name in header]
        return [head] + [[self.tokenize_text(cell) for cell in row] for row in rows]

    def _encode_one(self, header, rows, cells, table_values, query, truncate, max_length) -> dict:
        question = self.tokenize_text(query)
        if ((self.max_question_length is not None and len(question) > self.max_question_length)
                or (self.min_question_length is not None
                    and len(question) < self.min_question_length)):
            query, question = "", []
        num_columns = len(header)
        if num_columns >= self.max_column_id:
            raise InputError(f"The table has {num_columns} columns; this tokenizer reads at most "
                             f"{self.max_column_id - 1}.")
        num_rows = len(rows)
        if num_rows >= self.max_row_id:
            if not truncate:
                raise InputError(f"The table has {num_rows} rows; this tokenizer reads at most "
                                 f"{self.max_row_id - 1}. Pass truncation=True to drop rows.")
            num_rows = self.max_row_id - 1
        num_tokens = max((len(cell) for row in cells for cell in row), default=0)
        if truncate:
            num_rows, num_tokens = self._fit(question, cells, num_rows, num_columns, max_length)
        table = list(self._table_tokens(cells, num_columns, num_rows, num_tokens))

        input_ids = ([self.cls_token_id] + self._ids(question) + [self.sep_token_id]
                     + self._ids([token for token, _, _ in table]))
        if max_length is not None and len(input_ids) > max_length:
            raise InputError(
                f"The question and the table header take {len(input_ids)} tokens, more than "
                f"max_length={max_length}. Shorten the question or the column names.")
        start = len(question) + 2
        length = len(input_ids)
        column_ids = [0] * start + [column for _, column, _ in table]
        row_ids = [0] * start + [row for _, _, row in table]
        segment_ids = [0] * start + [1] * len(table)
        where = collections.defaultdict(list)  # (column, row) of a data cell -> token positions
        for position in range(start, length):
            if row_ids[position] > 0:
                where[column_ids[position] - 1, row_ids[position] - 1].append(position)

        ranks, inverse = [0] * length, [0] * length
        for column, values in table_values.items():
            key = _sort_key(list(values.values())) if values else None
            if key is None:
                continue
            order = sorted({key(value) for value in values.values()})
            rank_of = {value: rank for rank, value in enumerate(order)}
            for row, value in values.items():
                rank = rank_of[key(value)]
                for position in where.get((column, row), ()):
                    ranks[position] = rank + 1
                    inverse[position] = len(order) - rank

        relations = [0] * length
        cell_relations = collections.defaultdict(set)
        for values in numeric_spans(_normalize(query)):
            for value in values:
                for column, column_vals in table_values.items():
                    if not column_vals:
                        continue
                    key = _sort_key(list(column_vals.values()) + [value])
                    if key is None:
                        continue
                    for row, cell_value in column_vals.items():
                        a, b = key(value), key(cell_value)
                        relation = 1 if a == b else 2 if a < b else 4 if a > b else None
                        if relation is not None:
                            cell_relations[column, row].add(relation)
        for cell, found in cell_relations.items():
            for position in where.get(cell, ()):
                relations[position] = sum(found)

        token_type_ids = [list(channels) for channels in zip(
            segment_ids, column_ids, row_ids, [0] * length, ranks, inverse, relations)]
        return {"input_ids": input_ids, "token_type_ids": token_type_ids}

    @staticmethod
    def _table_tokens(cells, num_columns: int, num_rows: int, num_tokens: int):
        """(token, column id, row id) of the table, keeping the first ``num_tokens`` word
        pieces of each cell (whole words only) and the header plus ``num_rows`` rows."""
        for row_index, row in enumerate(cells[:num_rows + 1]):
            for column_index, cell in enumerate(row[:num_columns]):
                for token_index, token in enumerate(cell):
                    begin = token_index
                    while begin >= 0 and cell[begin].startswith("##"):
                        begin -= 1
                    if begin >= num_tokens:
                        continue
                    yield token, column_index + 1, row_index

    def _fit(self, question, cells, num_rows, num_columns, max_length) -> tuple[int, int]:
        """drop_rows_to_fit: the most rows, then the most word pieces per cell, that fit the
        token budget (as the reference: drop the last row until some cell length fits)."""
        budget = (max_length if max_length is not None else self.model_max_length) \
            - (len(question) + 2)
        longest = max((len(cell) for row in cells for cell in row), default=0)
        if 0 <= self.cell_trim_length < longest:
            longest = self.cell_trim_length
        # Where each kept token's word starts, per cell: a cell keeps the tokens whose word
        # starts before the per-cell limit n.
        begins = [[_word_begins(cell) for cell in row[:num_columns]] for row in cells]
        totals: dict[int, list[int]] = {}  # n -> cost of the header plus rows 1..k, by k

        def cost(rows: int, n: int) -> int:
            if n not in totals:
                per_row = (sum(bisect.bisect_left(b, n) for b in row) for row in begins)
                totals[n] = list(itertools.accumulate(per_row))
            return totals[n][min(rows, len(begins) - 1)]

        while True:
            tokens = 0
            for tokens in range(longest + 1):
                if cost(num_rows, tokens + 1) > budget:
                    break
            if not (tokens < longest and (self.cell_trim_length >= 0 or tokens == 0)):
                return num_rows, tokens or 1
            num_rows -= 1
            if num_rows < 1:
                return num_rows, 1


def _word_begins(cell: list[str]) -> list[int]:
    """For each word piece, the index of the first piece of its word (non-decreasing)."""
    begins, begin = [], 0
    for index, token in enumerate(cell):
        if not token.startswith("##"):
            begin = index
        begins.append(begin)
    return begins


def _format_text(text: str) -> str:
    text = text.lower().strip()
    if text in ("n/a", "?", "nan"):
        text = EMPTY_TEXT
    text = " ".join(re.sub(r"[^\w\d]+", " ", text).replace("_", " ").split()).strip()
    return text or EMPTY_TEXT


def _truncation(value: Any) -> bool:
    value = getattr(value, "value", value)
    if value in (True, "drop_rows_to_fit"):
        return True
    if value in (False, None, "do_not_truncate"):
        return False
    raise InputError(f"truncation={value!r} is not one of True/'drop_rows_to_fit' and "
                     "False/'do_not_truncate' (TAPAS truncates tables by rows).")


def _padding(value: Any, max_length: int | None, multiple: int | None, batched: bool) -> str:
    value = getattr(value, "value", value)
    if value is True:
        if batched:
            return "longest"
        return "max_length" if (max_length is not None or multiple is not None) else "none"
    if value in (False, None, "do_not_pad"):
        return "none"
    if value in ("longest", "max_length"):
        return value
    raise InputError(f"padding={value!r} is not one of True/'longest', 'max_length', "
                     "False/'do_not_pad'.")
