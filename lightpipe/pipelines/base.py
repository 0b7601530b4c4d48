"""Pipeline: the steps of a call, batching by length, iteration, devices.

A task pipeline writes the small methods transformers' pipelines write
(``_sanitize_parameters``, ``preprocess``, ``_forward``, ``postprocess``) and, where its inputs
or answers take special forms, overrides the public hooks documented on ``Pipeline``. The base
does the rest: it takes a window of inputs, sorts their pieces by length, pads each batch only
to its own longest piece, runs the model under ``torch.inference_mode``, cuts each output back
to its piece's length, and returns results in the caller's order. One item in, one result out;
a list in, a list out; a generator or dataset in, an iterator out.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import types
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ..modeling import resolve_device
from ..threads import adapt_threads
from .common import is_dataset

# How many batches of inputs a streaming call reads ahead to sort by length.
_WINDOW_BATCHES = 16


class Pipeline:
    """Base class of every task pipeline.

    ``pipe(*args, batch_size=None, **kwargs)`` runs four public steps. A task overrides the ones
    its inputs and answers need, never ``__call__``; a server calls the last three itself, on
    items from many requests:

    - ``gather_inputs(*args, **kwargs) -> (inputs, params)``: the call's positional arguments and
      input keywords (``images=``, ``question=``, ...) -> one inputs value and the parameters
      left. Default: one positional input (or ``inputs=``).
    - ``split_inputs(inputs, params) -> (items, single)``: the inputs -> a list of items (for a
      generator or dataset, an iterator of them, whose results stream out), and whether the
      call answers one item rather than a list. A task may move per-item settings from
      ``params`` into the items (it removes them from ``params``). Default: a list is its items;
      a dataset or iterator streams; anything else is one item.
    - ``run_items(items, batch_size=None, **params) -> list``: one result per item, in order
      (tasks override the steps below, not this).
    - ``shape_results(inputs, single, params, results) -> answer``: the call's answer from its
      results (never called for streamed inputs). Default: the one result for a single item,
      else the list.

    ``check_parameters(**params)`` raises what a call with those parameters would, so that a
    server can refuse a request before it queues it.

    ``run_items`` checks ``batch_size`` and the parameters, then runs the window of items through
    ``run_window``, made of these steps:

    - ``_sanitize_parameters(**params) -> (preprocess, forward, postprocess) kwargs`` (the
      transformers name; it also checks the values).
    - ``preprocess(item, **pre) -> piece``, or ``preprocess_many(items, **pre) -> pieces`` to
      handle a window at once. A piece is a dict: model inputs plus fields for postprocess. With
      ``chunked = True`` an item gives a list of pieces (long inputs in windows).
    - ``make_batches(pieces, batch_size) -> [[piece index, ...], ...]``: which pieces share a
      forward. Default: longest first, ``batch_size`` at a time.
    - ``collate(pieces) -> (batch, extras)``: one batch of tensors on the model's device and each
      piece's other fields (passed through to postprocess). Default: token lists padded to the
      longest, other tensors stacked.
    - ``_forward(batch, **fwd) -> outputs`` (the transformers name), under inference mode; each
      output row is cut back to its piece's length for the keys in ``sequence_outputs``.
    - ``postprocess(output, **post) -> result`` (given the list of an item's outputs when
      ``chunked``).
    - ``run_window(items, batch_size, pre, fwd, post) -> list``: all of the above for one window
      (``batch_size`` None when neither the call nor the pipeline set one). Override it only when
      an item cannot be cut into pieces that batch independently.
    """

    task = ""
    # Outputs with a sequence axis (dim 1) that are cut back to each piece's length.
    sequence_outputs: tuple[str, ...] = ()
    # Tasks whose preprocess returns a list of pieces per item (long inputs in windows).
    chunked = False

    def __init__(self, model, tokenizer=None, feature_extractor=None, image_processor=None,
                 processor=None, task: str = "", device: Any = None, batch_size: int | None = None,
                 **kwargs: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.image_processor = image_processor
        self.processor = processor
        self.task = task or type(self).task
        if device is not None:
            target = resolve_device(device)
            if model.device != target:
                self.model = model.to(target)
        self.model.eval()
        self._batch_size = batch_size
        self._preprocess_params, self._forward_params, self._postprocess_params = (
            self._sanitize_parameters(**kwargs))

    # --- what a task pipeline defines ---
    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(kwargs)}")
        return {}, {}, {}

    def preprocess(self, item: Any, **params: Any) -> dict:
        raise NotImplementedError

    def preprocess_many(self, items: list, **params: Any) -> list:
        """Preprocess a window of items; tasks override it to tokenize all at once."""
        return [self.preprocess(item, **params) for item in items]

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        return self.model(**model_inputs)

    def postprocess(self, model_outputs: dict, **params: Any) -> Any:
        raise NotImplementedError

    # --- properties ---
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def save_pretrained(self, folder: str) -> None:
        self.model.save_pretrained(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, model="
                f"{getattr(self.model, 'name_or_path', type(self.model).__name__)!r}, "
                f"device={self.device})")

    # --- the call ---
    def __call__(self, *args: Any, batch_size: int | None = None, num_workers: int | None = None,
                 **kwargs: Any) -> Any:
        inputs, params = self.gather_inputs(*args, **kwargs)
        items, single = self.split_inputs(inputs, params)
        if isinstance(items, list):
            results = self.run_items(items, batch_size=batch_size, **params)
            return self.shape_results(inputs, single, params, results)
        steps = self._resolve(batch_size, params)  # checked now, not at the first item read
        return self._stream(items, *steps)

    def gather_inputs(self, inputs: Any = None, *args: Any, **params: Any) -> tuple[Any, dict]:
        """The call's arguments -> (inputs, parameters)."""
        if args:
            raise TypeError(f"{type(self).__name__} takes one input (an item, a list or an "
                            f"iterator); got {1 + len(args)} positional arguments.")
        return inputs, params

    def split_inputs(self, inputs: Any, params: dict) -> tuple[list | Iterator, bool]:
        """The inputs -> (items, single): a list of items or an iterator of them."""
        if isinstance(inputs, list):
            return inputs, False
        if is_dataset(inputs):
            return (inputs[i] for i in range(len(inputs))), False
        if isinstance(inputs, (types.GeneratorType, Iterator)):
            return inputs, False
        return [inputs], True

    def run_items(self, items: list, batch_size: int | None = None, **params: Any) -> list:
        """One result per item, in order, for items as ``split_inputs`` gives them."""
        return self.run_window(list(items), *self._resolve(batch_size, params))

    def shape_results(self, inputs: Any, single: bool, params: dict, results: list) -> Any:
        """The call's answer from one result per item."""
        return results[0] if single else results

    def check_parameters(self, **params: Any) -> None:
        """Raise the TypeError or ValueError a call with these parameters (after
        ``split_inputs``) would raise, without running anything."""
        self._sanitize_parameters(**params)

    # --- running ---
    def _resolve(self, batch_size: int | None, params: dict) -> tuple[int | None, dict, dict, dict]:
        """The batch size and the (preprocess, forward, postprocess) parameters of one call:
        the call's over the pipeline's."""
        if batch_size is None:
            batch_size = self._batch_size
        if batch_size is not None and (not isinstance(batch_size, int)
                                       or isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        pre, fwd, post = self._sanitize_parameters(**params)
        return (batch_size, {**self._preprocess_params, **pre}, {**self._forward_params, **fwd},
                {**self._postprocess_params, **post})

    def _stream(self, items: Iterable, batch_size: int | None, pre: dict, fwd: dict,
                post: dict) -> Iterator:
        iterator = iter(items)
        while True:
            window = list(itertools.islice(iterator, (batch_size or 1) * _WINDOW_BATCHES))
            if not window:
                return
            yield from self.run_window(window, batch_size, pre, fwd, post)

    def run_window(self, items: list, batch_size: int | None, pre: dict, fwd: dict,
                   post: dict) -> list:
        """One window of items -> one result each: preprocess, batches, forward, postprocess."""
        if not items:
            return []
        processed = self.preprocess_many(items, **pre)
        owners, pieces = [], []
        for index, result in enumerate(processed):
            for piece in (result if self.chunked else [result]):
                owners.append(index)
                pieces.append(piece)
        outputs = self._forward_pieces(pieces, batch_size or 1, fwd)
        if self.chunked:
            grouped: list[list] = [[] for _ in items]
            for owner, out in zip(owners, outputs):
                grouped[owner].append(out)
            outputs = grouped
        with _gc_paused():
            return [self.postprocess(out, **post) for out in outputs]

    def _forward_pieces(self, pieces: list[dict], batch_size: int, fwd: dict) -> list[dict]:
        """Run the model over pieces in the batches ``make_batches`` forms; outputs in piece order."""
        lengths = [_piece_length(p) for p in pieces]
        outputs: list[dict | None] = [None] * len(pieces)
        for chosen in self.make_batches(pieces, batch_size):
            adapt_threads()  # another process took a core (or gave it back): follow it
            batch, extras = self.collate([pieces[j] for j in chosen])
            with torch.inference_mode():
                result = self._forward(batch, **fwd)
            result = {k: v.to("cpu") if isinstance(v, torch.Tensor) else v
                      for k, v in result.items()}
            for row, j in enumerate(chosen):
                outputs[j] = {**self._unbatch(result, row, lengths[j]), **extras[row]}
        return outputs  # type: ignore[return-value]

    # --- batching ---
    def make_batches(self, pieces: list[dict], batch_size: int) -> list[list[int]]:
        """Piece indices grouped into forwards of at most ``batch_size``: longest first, so the
        first batch sets the size of every later buffer and glibc can reuse memory instead of
        fragmenting it (zero-shot peak RSS 790 -> 440 MiB)."""
        lengths = [_piece_length(p) for p in pieces]
        order = sorted(range(len(pieces)), key=lengths.__getitem__, reverse=True)
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    def model_input_names(self) -> tuple[str, ...]:
        names = getattr(self.tokenizer, "model_input_names", None)
        base = tuple(names) if names else ("input_ids", "attention_mask", "token_type_ids")
        return base + ("pixel_values", "input_features", "input_values", "position_ids")

    def _pad_value(self, key: str) -> int:
        if key == "input_ids" and self.tokenizer is not None:
            pad = self.tokenizer.pad_token_id
            return 0 if pad is None else pad
        return 0

    def collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        """Pieces -> one batch of tensors on the model's device (padded to the longest
        piece), and each piece's other fields, passed through to postprocess."""
        names = set(self.model_input_names())
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        batch: dict[str, torch.Tensor] = {}
        for key in [k for k in pieces[0] if k in names]:
            values = [p[key] for p in pieces]
            if isinstance(values[0], torch.Tensor) and values[0].dim() != 1:
                batch[key] = torch.stack(values)
                continue
            values = [v.tolist() if isinstance(v, torch.Tensor) else list(v) for v in values]
            longest = max(len(v) for v in values)
            pad = self._pad_value(key)
            rows = [([pad] * (longest - len(v)) + v) if left else (v + [pad] * (longest - len(v)))
                    for v in values]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        device = self.device
        batch = {k: v.to(device) for k, v in batch.items()}
        extras = [{k: v for k, v in p.items() if k not in names} for p in pieces]
        return batch, extras

    def _unbatch(self, outputs: dict, row: int, length: int) -> dict:
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        item = {}
        for key, value in outputs.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                value = value[row:row + 1]
                if key in self.sequence_outputs and length:
                    value = value[:, -length:] if left else value[:, :length]
            elif isinstance(value, tuple):  # e.g. hidden_states: one tensor per layer
                value = tuple(v[row:row + 1] for v in value)
            item[key] = value
        return item


@contextlib.contextmanager
def _gc_paused():
    """Results are made of many new lists and floats (``tolist()`` of hidden states) and no
    cycles; the collector's repeated passes over them cost more than the conversion itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _piece_length(piece: dict) -> int:
    ids = piece.get("input_ids")
    return len(ids) if ids is not None else 0
