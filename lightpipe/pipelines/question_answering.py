"""question-answering: the span of a context that answers a question (extractive QA).

transformers 5 dropped this pipeline; behaviour follows transformers 4.57's
``QuestionAnsweringPipeline`` (fast-tokenizer path): the same input forms, arguments, windows,
span scores, word alignment and result shapes, including its quirks (noted where they happen).

A long context is split into overlapping windows by the tokenizer (``max_seq_len`` tokens per
window, ``doc_stride`` tokens of overlap); each window is one piece for the model, and the
answers of all windows of an example are merged in ``postprocess``.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from .base import Pipeline
from .common import is_dataset
from .spans import best_spans

logger = logging.getLogger(__name__)


class MissingFieldError(InputError, KeyError):
    """A question-answering input dict lacks 'question' or 'context' (a KeyError, as in the
    reference, and a ValueError like our other input errors)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class QuestionAnsweringPipeline(Pipeline):
    """Extracts the answer to a question from a context text (extractive question answering).

    Call:
        ``pipe(question=..., context=...)`` with a string each, a list of questions over one
        context, or two lists of the same length paired in order; also ``pipe(question,
        context)``, a ``{"question": ..., "context": ...}`` dict, a list of such dicts, or an
        iterator of them.

    Arguments:
        top_k (int, default 1): answers per question, best first (``topk`` is the old spelling).
        doc_stride (int, default min(max_seq_len // 2, 128)): tokens shared by the windows a
            long context is read in.
        max_seq_len (int, default min(model_max_length, 384)): tokens per window (question and
            context together).
        max_answer_len (int, default 15): longest answer, in tokens.
        max_question_len (int, default 64): accepted and, as in the reference with a fast
            tokenizer, without effect.
        handle_impossible_answer (bool, default False): also score the empty answer, which wins
            when the model finds no answer.
        align_to_words (bool, default True): widen answer spans to whole words.
        padding (bool | str, default "do_not_pad"): passed to the tokenizer for each window
            (batches are padded by the pipeline either way).

    Returns:
        ``{"score": float, "start": int, "end": int, "answer": str}`` (``start`` and ``end`` are
        character positions in the context). One question with ``top_k=1`` gives that dict;
        otherwise a list of them per question, and a list of those lists when several questions
        are asked.
    """

    task = "question-answering"
    chunked = True
    sequence_outputs = ("start_logits", "end_logits")

    def _sanitize_parameters(self, padding: Any = None, topk: Any = None, top_k: Any = None,
                             doc_stride: Any = None, max_answer_len: Any = None,
                             max_seq_len: Any = None, max_question_len: Any = None,
                             handle_impossible_answer: Any = None, align_to_words: Any = None,
                             **unknown: Any):
        if unknown:  # the reference ignores unknown arguments; say so instead of failing
            logger.warning("question-answering ignores unknown arguments: %s", ", ".join(sorted(unknown)))
        pre: dict[str, Any] = {}
        for name, value in (("padding", padding), ("doc_stride", doc_stride),
                            ("max_seq_len", max_seq_len), ("max_question_len", max_question_len)):
            if value is not None:
                pre[name] = value
        post: dict[str, Any] = {}
        if topk is not None and top_k is None:
            logger.warning("topk is the old name of top_k; use top_k.")
            top_k = topk
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise InputError(f"top_k must be a positive integer, got {top_k!r}.")
            post["top_k"] = top_k
        if max_answer_len is not None:
            if not isinstance(max_answer_len, int) or max_answer_len < 1:
                raise InputError(f"max_answer_len must be a positive integer, got {max_answer_len!r}.")
            post["max_answer_len"] = max_answer_len
        if handle_impossible_answer is not None:
            post["handle_impossible_answer"] = handle_impossible_answer
        if align_to_words is not None:
            post["align_to_words"] = align_to_words
        return pre, {}, post

    def gather_inputs(self, *args: Any, **params: Any) -> tuple[Any, dict]:
        """The input forms of the class docstring -> one input (popped from ``params``)."""
        return _gather_inputs(args, params), params

    def split_inputs(self, inputs: Any, params: dict) -> tuple[Any, bool]:
        """A dict, a list of them or an iterator of them. One example (however it was given)
        gives one result, not a list of one."""
        if isinstance(inputs, types.GeneratorType) or is_dataset(inputs):
            return super().split_inputs(inputs, params)  # streamed: each item checked as read
        if isinstance(inputs, dict):
            return [inputs], True
        if isinstance(inputs, str):
            raise InputError("The question-answering pipeline got one string: pass "
                             "pipe(question=..., context=...) or pipe(question, context).")
        if isinstance(inputs, Iterable):
            items = list(inputs)
            return items, len(items) == 1
        raise InputError(f"The question-answering pipeline takes {{'question', 'context'}} dicts; "
                         f"got {type(inputs).__name__}: {inputs!r:.80}.")

    # --- preprocess: one tokenizer call for the whole window of examples ---
    def preprocess_many(self, items: list, padding: Any = "do_not_pad", doc_stride: int | None = None,
                        max_question_len: int = 64, max_seq_len: int | None = None) -> list:
        examples = [_check_example(item) for item in items]
        tokenizer = self.tokenizer
        if max_seq_len is None:
            max_seq_len = min(tokenizer.model_max_length, 384)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise InputError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len}): "
                             "the windows would overlap by more than their length.")
        # Right-padding tokenizers read (question, context); left-padding ones (context,
        # question). Only the context is ever truncated into windows.
        question_first = tokenizer.padding_side == "right"
        questions = [question for question, _ in examples]
        contexts = [context for _, context in examples]
        batch = tokenizer(questions if question_first else contexts,
                          text_pair=contexts if question_first else questions,
                          padding=padding, truncation="only_second" if question_first else "only_first",
                          max_length=max_seq_len, stride=doc_stride,
                          return_overflowing_tokens=True, return_offsets_mapping=True)
        inputs = [name for name in tokenizer.model_input_names if name in batch]
        pad_id = tokenizer.pad_token_id
        cls_id = tokenizer.cls_token_id
        pieces: list[list[dict]] = [[] for _ in items]
        for row, owner in enumerate(batch["overflow_to_sample_mapping"]):
            input_ids = batch["input_ids"][row]
            # 1 where a token may be in the answer: the context (with the question first; the
            # reference allows every token when the context comes first) and any CLS token.
            if question_first:
                keep = [int(sequence == 1) for sequence in batch.sequence_ids(row)]
            else:
                keep = [1] * len(input_ids)
            if cls_id is not None:
                keep = [1 if token == cls_id else flag for token, flag in zip(input_ids, keep)]
            if "attention_mask" in batch:
                keep = [flag & mask for flag, mask in zip(keep, batch["attention_mask"][row])]
            # Token positions shift by the padding the tokenizer put on the left.
            shift = input_ids.count(pad_id) if tokenizer.padding_side == "left" and pad_id is not None else 0
            piece = {name: batch[name][row] for name in inputs}
            piece.update(keep=np.array([keep]), encoding=batch.encodings[row], shift=shift,
                         context=contexts[owner], sequence_index=1 if question_first else 0)
            pieces[owner].append(piece)
        return pieces

    # --- postprocess: spans of every window, merged per example ---
    def postprocess(self, outputs: list[dict], top_k: int = 1, handle_impossible_answer: bool = False,
                    max_answer_len: int = 15, align_to_words: bool = True) -> Any:
        null_score = 1000000.0
        answers: list[dict] = []
        # Aligning to words can merge spans, so ask for more candidates than needed.
        candidates = top_k * 2 + 10 if align_to_words else top_k
        for out in outputs:
            start_logits = out["start_logits"].float().numpy()  # (1, seq)
            end_logits = out["end_logits"].float().numpy()
            starts, ends, scores, window_null = best_spans(
                start_logits, end_logits, out["keep"], candidates, max_answer_len)
            if handle_impossible_answer:
                null_score = min(null_score, window_null)
            for start, end, score in zip(starts, ends, scores):
                first, last = _char_span(out["encoding"], int(start) - out["shift"],
                                         int(end) - out["shift"], out["sequence_index"], align_to_words)
                text = out["context"][first:last]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:  # the same words found again add up
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": first, "end": last, "answer": text})
        if handle_impossible_answer:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda answer: answer["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def _char_span(encoding: Any, start: int, end: int, sequence_index: int,
               align_to_words: bool) -> tuple[int, int]:
    """Token span -> character span in the context; widened to whole words if asked and the
    tokenizer knows words, else the tokens' own offsets."""
    if align_to_words:
        try:
            first = encoding.word_to_chars(encoding.token_to_word(start), sequence_index)[0]
            last = encoding.word_to_chars(encoding.token_to_word(end), sequence_index)[1]
            return first, last
        except (TypeError, OverflowError):  # a special token (no word) or no such word
            pass
    return encoding.offsets[start][0], encoding.offsets[end][1]


# --- inputs ------------------------------------------------------------------------------------

def _gather_inputs(args: tuple, kwargs: dict) -> Any:
    """The call's arguments -> one input: a dict, a list of them or an iterator of them,
    popping the input keywords from ``kwargs``. The forms and pairing rules are the reference's."""
    question = kwargs.pop("question", None)
    context = kwargs.pop("context", None)
    legacy = {name: kwargs.pop(name) for name in ("X", "data") if name in kwargs}
    if args:
        if len(args) == 1:
            inputs = args[0]
        elif len(args) == 2 and all(isinstance(arg, str) for arg in args):
            inputs = [{"question": args[0], "context": args[1]}]
        else:
            inputs = list(args)
    elif legacy:
        inputs = next(iter(legacy.values()))
    elif question is not None and context is not None:
        if isinstance(question, list) and isinstance(context, str):
            inputs = [{"question": q, "context": context} for q in question]
        elif isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise InputError(f"Got {len(question)} questions and {len(context)} contexts: "
                                 "lists of questions and contexts are paired, so give as many of "
                                 "each (or one context string for all the questions).")
            inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        elif isinstance(question, str) and isinstance(context, str):
            inputs = [{"question": question, "context": context}]
        else:
            raise InputError(
                f"Cannot pair question ({type(question).__name__}) with context "
                f"({type(context).__name__}): give two strings, a list of questions and one "
                "context string, or two lists of the same length.")
    elif question is not None or context is not None:
        given, missing = ("question", "context") if context is None else ("context", "question")
        raise InputError(f"The question-answering pipeline got {given}= without {missing}=: "
                         "pass both, e.g. pipe(question='Where do I live?', context='I live in Berlin').")
    else:
        raise InputError("The question-answering pipeline needs inputs: pipe(question=..., "
                         "context=...) or a {'question': ..., 'context': ...} dict.")
    return inputs


def _check_example(item: Any) -> tuple[str, str]:
    """A {'question', 'context'} dict -> (question, context), or a clear error."""
    if not isinstance(item, dict):
        raise InputError(f"Each question-answering input is a {{'question': ..., 'context': ...}} "
                         f"dict; got {type(item).__name__}: {item!r:.80}.")
    values = []
    for key in ("question", "context"):
        if key not in item:
            raise MissingFieldError(f"A question-answering input needs the keys 'question' and "
                                    f"'context'; got keys {sorted(map(str, item))}.")
        value = item[key]
        if value is None:
            raise InputError(f"The {key} cannot be None.")
        if not isinstance(value, str):
            raise InputTypeError(f"The {key} must be a string; got {type(value).__name__}: {value!r:.80}.")
        if not value:
            raise InputError(f"The {key} cannot be empty.")
        values.append(value)
    return values[0], values[1]
