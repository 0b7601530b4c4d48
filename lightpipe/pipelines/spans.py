"""Answer spans of extractive question answering: the best (start, end) token spans of one
window from its start and end logits (question-answering, document-question-answering)."""

from __future__ import annotations

import numpy as np

# The reference's masking value for tokens that cannot be part of an answer.
_MASKED_LOGIT = -10000.0


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, keep: np.ndarray, count: int,
               max_answer_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The ``count`` best (start, end) token spans of one window, their scores (start
    probability x end probability), and the window's empty-answer score.

    The numpy steps are the reference's own (argmax / argpartition / argsort on the same
    float32 matrix), so ties among zero scores resolve the same way."""
    masked = keep == 0
    start = np.where(masked, _MASKED_LOGIT, start_logits)  # (1, seq), float32
    end = np.where(masked, _MASKED_LOGIT, end_logits)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    # Position 0 (CLS with right padding) scores the empty answer, then leaves the race.
    null_score = (start[0, 0] * end[0, 0]).item()
    start[0, 0] = end[0, 0] = 0.0

    # (1, seq, seq): score of every span; keep end >= start and length <= max_answer_len.
    spans = np.matmul(start[:, :, None], end[:, None, :])
    spans = np.tril(np.triu(spans), max_answer_len - 1)
    flat = spans.flatten()
    if count == 1:
        best = np.array([np.argmax(flat)])
    elif len(flat) < count:
        best = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, count)[:count]
        best = best[np.argsort(-flat[best])]
    starts, ends = np.unravel_index(best, spans.shape)[1:]
    # Quirk kept from the reference: it tests membership against keep's (row, column)
    # indices, so position 0 counts as allowed whenever any token is.
    allowed = np.flatnonzero(keep)
    if allowed.size:
        allowed = np.union1d(allowed, [0])
    chosen = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts, ends = starts[chosen], ends[chosen]
    return starts, ends, spans[0, starts, ends], null_score
