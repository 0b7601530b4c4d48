"""document-question-answering: the words of a document image that answer a question.

Behaviour follows transformers' ``DocumentQuestionAnsweringPipeline`` for LayoutLM (v1)
checkpoints such as impira/layoutlm-document-qa: the same input forms, arguments, windows,
span scores and result shapes. The document is a list of words with boxes (normalised to
0-1000): the caller's ``word_boxes``, or read from the image by the tesseract OCR program
(``lightpipe.processing.ocr``). The question's words and the document's words are tokenized
as a pair; a long document is split into overlapping windows (``max_seq_len`` tokens each,
``doc_stride`` tokens of overlap), each window one piece for the model; every token carries its
word's box (question and special tokens ``[0, 0, 0, 0]``, separators ``[1000] * 4``). The
answers are spans of document words: ``start`` and ``end`` are word indices.
"""

from __future__ import annotations

import logging
import numbers
import types
from typing import Any

import numpy as np
import torch

from ..errors import InputError, InputTypeError, UnsupportedModelError
from .base import Pipeline
from .common import is_dataset
from .spans import best_spans

logger = logging.getLogger(__name__)

_SEP_BOX = [1000, 1000, 1000, 1000]
_NO_BOX = [0, 0, 0, 0]
# Families whose document-QA head reads word boxes next to the tokens (LayoutLM v1).
_SUPPORTED = ("layoutlm",)


class DocumentQuestionAnsweringPipeline(Pipeline):
    """Answers questions about document images with a layout model (LayoutLM family).

    Call:
        ``pipe(image=..., question=..., word_boxes=None, **args)`` (or ``pipe(image, question)``)
        where ``image`` is a local path, an http(s) URL, base64 data, a PIL image or an array
        and ``question`` a string; ``word_boxes`` (``[(word, [x0, y0, x1, y1]), ...]``, boxes
        normalised to 0-1000) skips OCR, and then ``image`` may be None. Also a ``{"image",
        "question", "word_boxes"}`` dict, a list of them, or an iterator of them. Without
        ``word_boxes`` the words come from Tesseract OCR (pytesseract).

    Arguments:
        top_k (int, default 1): answers per question, best first.
        max_answer_len (int, default 15): longest answer, in tokens.
        max_seq_len (int, default the tokenizer's model_max_length): tokens per window.
        doc_stride (int, default min(max_seq_len // 2, 256)): tokens shared by the windows a
            long document is read in.
        handle_impossible_answer (bool, default False): also score the empty answer.
        lang (str, optional), tesseract_config (str, optional): OCR language and options.
        timeout (float, optional): seconds to wait for an image URL.
        padding (bool | str, default "do_not_pad"): passed to the tokenizer for each window.
        max_question_len (int, optional): accepted and, as in the reference, without effect.

    Returns:
        For one question, a list of up to ``top_k`` dicts ``{"score": float, "answer": str,
        "start": int, "end": int}`` (``start`` and ``end`` are word indices), a list even for one
        answer, as the reference; for a list of questions, a list of those lists.
    """

    task = "document-question-answering"
    chunked = True
    sequence_outputs = ("start_logits", "end_logits")

    def __init__(self, model, tokenizer=None, **kwargs: Any):
        model_type = model.config.get("model_type")
        if model_type not in _SUPPORTED:
            raise UnsupportedModelError(
                f"document-question-answering in lightpipe serves LayoutLM checkpoints (such as "
                f"impira/layoutlm-document-qa); this model is {model_type!r}.")
        if tokenizer is None:
            raise InputError("The document-question-answering pipeline needs a tokenizer: pass "
                             "tokenizer= (an object or a folder).")
        if tokenizer.padding_side != "right":
            raise InputError("Document question answering only supports tokenizers whose "
                             f"padding side is 'right', not {tokenizer.padding_side!r}.")
        super().__init__(model, tokenizer=tokenizer, **kwargs)

    def _sanitize_parameters(self, padding: Any = None, doc_stride: Any = None,
                             max_question_len: Any = None, lang: str | None = None,
                             tesseract_config: str | None = None, max_answer_len: Any = None,
                             max_seq_len: Any = None, top_k: Any = None,
                             handle_impossible_answer: Any = None, timeout: Any = None,
                             **unknown: Any):
        if unknown:  # the reference ignores unknown arguments; say so instead of failing
            logger.warning("document-question-answering ignores unknown arguments: %s",
                           ", ".join(sorted(unknown)))
        pre: dict[str, Any] = {}
        for name, value in (("padding", padding), ("doc_stride", doc_stride),
                            ("max_question_len", max_question_len), ("max_seq_len", max_seq_len),
                            ("lang", lang), ("tesseract_config", tesseract_config),
                            ("timeout", timeout)):
            if value is not None:
                pre[name] = value
        if doc_stride is not None and (not _is_int(doc_stride) or doc_stride < 0):
            raise InputError(f"doc_stride must be a non-negative integer, got {doc_stride!r}.")
        if max_seq_len is not None and (not _is_int(max_seq_len) or max_seq_len < 1):
            raise InputError(f"max_seq_len must be a positive integer, got {max_seq_len!r}.")
        for name, value in (("lang", lang), ("tesseract_config", tesseract_config)):
            if value is not None and not isinstance(value, str):
                raise InputTypeError(f"{name} must be a string (e.g. lang='eng', "
                                     f"tesseract_config='--psm 6'), got {type(value).__name__}.")
        post: dict[str, Any] = {}
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
            if value is not None:
                if not _is_int(value) or value < 1:
                    raise InputError(f"{name} must be a positive integer, got {value!r}.")
                post[name] = int(value)
        if handle_impossible_answer is not None:
            post["handle_impossible_answer"] = bool(handle_impossible_answer)
        return pre, {}, post

    def gather_inputs(self, image: Any = None, question: Any = None, word_boxes: Any = None,
                      **params: Any) -> tuple[Any, dict]:
        """The input forms of the class docstring -> one input."""
        if question is not None:
            if not isinstance(question, str):
                raise InputTypeError(
                    f"question= must be a string, got {type(question).__name__}. To ask several "
                    "questions, pass a list of {'image': ..., 'question': ...} dicts.")
            inputs: Any = {"question": question, "image": image}
            if word_boxes is not None:
                inputs["word_boxes"] = word_boxes
        elif word_boxes is not None:
            raise InputError("word_boxes= was given without question=: pass "
                             "pipe(image=..., question=..., word_boxes=...).")
        elif image is None:
            raise InputError("The document-question-answering pipeline needs a question and a "
                             "document: pipe(image=..., question=...), or "
                             "{'image': ..., 'question': ...} dicts.")
        else:
            inputs = image
            if not isinstance(inputs, (dict, list, tuple, types.GeneratorType)) \
                    and not is_dataset(inputs) and not hasattr(inputs, "__next__"):
                raise InputError("The document-question-answering pipeline got an image without "
                                 "a question: pass pipe(image=..., question='...').")
            if isinstance(inputs, tuple):
                inputs = list(inputs)
        return inputs, params

    # --- batching: word boxes travel with the tokens ---
    def model_input_names(self) -> tuple[str, ...]:
        return ("input_ids", "attention_mask", "token_type_ids")

    def collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        batch, extras = super().collate(pieces)
        length = batch["input_ids"].shape[1]
        boxes = torch.zeros((len(pieces), length, 4), dtype=torch.long)
        for row, extra in enumerate(extras):
            box = extra.pop("bbox")
            boxes[row, :len(box)] = torch.tensor(box, dtype=torch.long)
        batch["bbox"] = boxes.to(self.device)
        return batch, extras

    # --- preprocess: one tokenizer call for the whole window of examples ---
    def preprocess_many(self, items: list, padding: Any = "do_not_pad", doc_stride: int | None = None,
                        max_seq_len: int | None = None, max_question_len: Any = None,
                        lang: str | None = None, tesseract_config: str = "",
                        timeout: float | None = None) -> list:
        tokenizer = self.tokenizer
        if max_seq_len is None:
            max_seq_len = tokenizer.model_max_length
            if max_seq_len > 1_000_000:  # no limit saved with the tokenizer: the model's
                max_seq_len = self.model.config.max_position_embeddings
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 256)
        limit = self.model.config.get("max_2d_position_embeddings", 1024)
        documents = [self._document(item, lang, tesseract_config, timeout, limit) for item in items]
        try:
            batch = tokenizer([question.split() for question, _, _ in documents],
                              text_pair=[words for _, words, _ in documents],
                              is_split_into_words=True, padding=padding, max_length=max_seq_len,
                              stride=doc_stride, return_token_type_ids=True,
                              return_attention_mask=True, truncation="only_second", return_overflowing_tokens=True)
        except InputError as err:
            if "Truncation error" not in str(err):
                raise
            raise InputError(
                f"A window of max_seq_len={max_seq_len} tokens has no room for the document "
                f"after the question and an overlap of doc_stride={doc_stride} tokens: raise "
                "max_seq_len, lower doc_stride, or shorten the question.") from None
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        pieces: list[list[dict]] = [[] for _ in items]
        for row, owner in enumerate(batch["overflow_to_sample_mapping"]):
            _, words, boxes = documents[owner]
            input_ids = batch["input_ids"][row]
            sequence_ids = batch.sequence_ids(row)
            word_ids = batch.word_ids(row)
            # 1 where a token may be in the answer: document tokens and any CLS token, unpadded.
            keep = [int(sequence == 1 or token == cls_id) & mask for token, sequence, mask
                    in zip(input_ids, sequence_ids, batch["attention_mask"][row])]
            bbox = [boxes[word] if sequence == 1 else _SEP_BOX if token == sep_id else _NO_BOX
                    for token, sequence, word in zip(input_ids, sequence_ids, word_ids)]
            piece = {"input_ids": input_ids, "attention_mask": batch["attention_mask"][row],
                     "token_type_ids": batch["token_type_ids"][row], "bbox": bbox,
                     "keep": np.array([keep]), "word_ids": word_ids, "words": words}
            pieces[owner].append(piece)
        return pieces

    def _document(self, item: Any, lang: str | None, tesseract_config: str,
                  timeout: float | None, limit: int) -> tuple[str, list[str], list[list[int]]]:
        """One input dict -> (question, words, boxes): the caller's word_boxes, or OCR."""
        if not isinstance(item, dict):
            raise InputTypeError(
                "Each document-question-answering input is an {'image': ..., 'question': ...} "
                f"dict (optionally with 'word_boxes'); got {type(item).__name__}: {item!r:.80}.")
        question = item.get("question")
        if not isinstance(question, str):
            raise InputTypeError(f"The question must be a string; got "
                                 f"{type(question).__name__}: {question!r:.80}.")
        if not question.split():
            raise InputError("The question cannot be empty.")
        if item.get("word_boxes") is not None:
            words, boxes = _check_word_boxes(item["word_boxes"], limit)
        elif item.get("image") is not None:
            from ..processing.image import load_image
            from ..processing.ocr import apply_tesseract

            image = load_image(item["image"], timeout=timeout)
            words, boxes = apply_tesseract(image, lang=lang, tesseract_config=tesseract_config)
        else:
            raise InputError("You must provide an image or word_boxes. If you provide an image, "
                             "the pipeline reads its words and boxes by OCR (tesseract).")
        # No words (a blank page): no span to answer with, so no answers (as the reference).
        return question, words, boxes

    # --- postprocess: spans of every window, merged per question ---
    def postprocess(self, outputs: list[dict], top_k: int = 1, handle_impossible_answer: bool = False,
                    max_answer_len: int = 15) -> list[dict]:
        null_score: float = 1000000
        answers: list[dict] = []
        for out in outputs:
            start_logits = out["start_logits"].float().numpy()  # (1, seq)
            end_logits = out["end_logits"].float().numpy()
            cells = start_logits.shape[-1] ** 2
            # More candidates than spans: the reference sorts them all (no partition).
            count = top_k if top_k == 1 or cells > top_k else cells + 1
            starts, ends, scores, window_null = best_spans(
                start_logits, end_logits, out["keep"], count, max_answer_len)
            if handle_impossible_answer:
                null_score = min(null_score, window_null)
            word_ids, words = out["word_ids"], out["words"]
            for start, end, score in zip(starts, ends, scores):
                first, last = word_ids[start], word_ids[end]
                if first is not None and last is not None:
                    answers.append({"score": float(score), "answer": " ".join(words[first:last + 1]),
                                    "start": first, "end": last})
        if handle_impossible_answer:
            answers.append({"score": null_score, "answer": "", "start": 0, "end": 0})
        return sorted(answers, key=lambda answer: answer["score"], reverse=True)[:top_k]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_word_boxes(word_boxes: Any, limit: int) -> tuple[list[str], list[list[int]]]:
    """``[(word, [x0, y0, x1, y1]), ...]`` -> (words, boxes), or a clear error."""
    if isinstance(word_boxes, (str, bytes, dict)) or not hasattr(word_boxes, "__iter__"):
        raise InputTypeError("word_boxes must be a list of (word, [x0, y0, x1, y1]) pairs; got "
                             f"{type(word_boxes).__name__}.")
    words, boxes = [], []
    for index, entry in enumerate(word_boxes):
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
            raise InputTypeError(f"word_boxes[{index}] must be a (word, [x0, y0, x1, y1]) pair "
                                 f"with a string word; got {entry!r:.80}.")
        word, box = entry
        box = list(box) if hasattr(box, "__iter__") and not isinstance(box, str) else None
        if box is None or len(box) != 4 or not all(_is_int(v) or (isinstance(v, float) and v.is_integer())
                                                   for v in box):
            raise InputError(f"word_boxes[{index}] ({word!r}): a box is 4 whole numbers "
                             f"[x0, y0, x1, y1] normalised to 0-1000; got {entry[1]!r:.80}.")
        box = [int(v) for v in box]
        if min(box) < 0 or max(box) >= limit or box[2] < box[0] or box[3] < box[1]:
            raise InputError(f"word_boxes[{index}] ({word!r}): box {box} is outside the page: "
                             f"coordinates lie in [0, {limit - 1}] (boxes normalised to 0-1000) "
                             "with x1 >= x0 and y1 >= y0.")
        words.append(word)
        boxes.append(box)
    return words, boxes
