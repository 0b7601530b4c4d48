"""Logits processors (each: ``(input_ids, scores) -> new scores``), the sampling warpers,
and ``make_logits_processors``: the list a generate() call applies, built once from its
settings in the reference's order (mlx-lm's ``make_logits_processors``)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


class LogitsProcessorList(list):
    """Processors applied in order."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


def _ban(scores: torch.Tensor, token_ids: torch.Tensor, memo: dict | None = None) -> torch.Tensor:
    """A copy of ``scores`` with these tokens (those inside the vocabulary) at -inf. ``memo``
    keeps the filtered ids per vocabulary size and device (processors run every step)."""
    key = (scores.shape[-1], scores.device)
    index = None if memo is None else memo.get(key)
    if index is None:
        token_ids = token_ids.to(scores.device)
        index = token_ids[(token_ids >= 0) & (token_ids < scores.shape[-1])]
        if memo is not None:
            memo[key] = index
    return scores.index_fill(1, index, -math.inf)


class MinLengthLogitsProcessor:
    """No end-of-sequence before the sequence (prompt included) has ``min_length`` tokens."""

    def __init__(self, min_length: int, eos_token_id: torch.Tensor):
        self.min_length, self.eos_token_id = min_length, eos_token_id
        self._memo: dict = {}

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] >= self.min_length:
            return scores
        return _ban(scores, self.eos_token_id, self._memo)


class MinNewTokensLengthLogitsProcessor(MinLengthLogitsProcessor):
    """No end-of-sequence before ``min_new_tokens`` tokens were generated."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id: torch.Tensor):
        super().__init__(prompt_length_to_skip + min_new_tokens, eos_token_id)


class RepetitionPenaltyLogitsProcessor:
    """Scores of tokens already in the sequence: divided by ``penalty`` when positive,
    multiplied when negative (CTRL). Left padding (``prompt_ignore_length`` per row) is ignored."""

    def __init__(self, penalty: float, prompt_ignore_length: torch.Tensor | None = None):
        if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not penalty > 0:
            raise ValueError(f"`repetition_penalty` has to be a strictly positive float, but is {penalty}")
        self.penalty, self.prompt_ignore_length = float(penalty), prompt_ignore_length

    def __call__(self, input_ids, scores):
        vocab_size = scores.shape[-1]
        if self.prompt_ignore_length is not None:  # padding ids -> the spare column below
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            ignored = positions[None, :] < self.prompt_ignore_length.to(input_ids.device)[:, None]
            input_ids = input_ids.masked_fill(ignored, vocab_size)
        input_ids = input_ids.clamp(max=vocab_size)
        padded = F.pad(scores, (0, 1))  # a spare column for ids outside the output vocabulary
        seen = padded.gather(1, input_ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, input_ids, seen)[:, :vocab_size]


class NoRepeatNGramLogitsProcessor:
    """Ban every token that would complete an n-gram already in the sequence."""

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"`no_repeat_ngram_size` has to be a strictly positive integer, but is {ngram_size}")
        self.ngram_size = ngram_size

    def __call__(self, input_ids, scores):
        length, size = input_ids.shape[-1], self.ngram_size
        if length < size:
            return scores
        suffix = input_ids[:, length + 1 - size:]  # the last n-1 tokens: (batch, n-1)
        windows = input_ids.unfold(1, size, 1)  # every n-gram so far: (batch, count, n)
        repeats = (windows[..., :-1] == suffix[:, None]).all(dim=-1)
        vocab_size = scores.shape[-1]
        banned = torch.zeros(scores.shape[0], vocab_size + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, torch.where(repeats, windows[..., -1].clamp(max=vocab_size), vocab_size), True)
        return scores.masked_fill(banned[:, :vocab_size], -math.inf)


class NoBadWordsLogitsProcessor:
    """Ban each ``bad_words_ids`` sequence: its last token once the sequence so far ends with
    the others (a one-token sequence: always). Sequences that are just an EOS are kept out."""

    def __init__(self, bad_words_ids, eos_token_id=None):
        if not isinstance(bad_words_ids, list) or not bad_words_ids or not all(
                isinstance(seq, list) and seq and all(isinstance(t, int) and t >= 0 for t in seq)
                for seq in bad_words_ids):
            raise ValueError(f"`bad_words_ids` has to be a non-empty list of lists of positive "
                             f"integers, but is {bad_words_ids}.")
        eos = [] if eos_token_id is None else torch.as_tensor(eos_token_id).reshape(-1).tolist()
        sequences = [seq for seq in bad_words_ids if not (len(seq) == 1 and seq[0] in eos)]
        self.single = torch.tensor([seq[0] for seq in sequences if len(seq) == 1], dtype=torch.long)
        self.longer = [seq for seq in sequences if len(seq) > 1]

    def __call__(self, input_ids, scores):
        if len(self.single):
            scores = _ban(scores, self.single)
        for seq in self.longer:
            prefix = torch.tensor(seq[:-1], device=input_ids.device)
            if input_ids.shape[1] < len(prefix) or seq[-1] >= scores.shape[-1]:
                continue
            rows = (input_ids[:, input_ids.shape[1] - len(prefix):] == prefix).all(dim=1)
            if bool(rows.any()):
                scores = scores.clone()
                scores[rows, seq[-1]] = -math.inf
        return scores


class SuppressTokensLogitsProcessor:
    def __init__(self, suppress_tokens, begin_index: int | None = None):
        # long even when empty (a checkpoint's suppress_tokens = []: torch.tensor([]) is float)
        self.tokens = torch.tensor(list(suppress_tokens), dtype=torch.long)
        self.begin_index = begin_index

    def __call__(self, input_ids, scores):
        if self.begin_index is not None and input_ids.shape[-1] != self.begin_index:
            return scores
        return _ban(scores, self.tokens)


class ForcedTokenLogitsProcessor:
    """Force ``token_ids`` at length ``at_length`` (forced BOS: 1; forced EOS: max_length - 1)."""

    def __init__(self, at_length: int, token_ids):
        self.at_length = at_length
        self.tokens = torch.tensor([token_ids] if isinstance(token_ids, int) else list(token_ids),
                                   dtype=torch.long)

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] != self.at_length:
            return scores
        forced = torch.full_like(scores, -math.inf)
        return forced.index_fill(1, self.tokens.to(scores.device), 0.0)


class InfNanRemoveLogitsProcessor:
    def __call__(self, input_ids, scores):
        scores = torch.where(scores != scores, 0.0, scores)
        big = torch.finfo(scores.dtype).max
        return torch.where(scores == math.inf, big, scores)


class TemperatureLogitsWarper:
    def __init__(self, temperature: float):
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            hint = " If you're looking for greedy decoding strategies, set `do_sample=False`." \
                if temperature == 0 else ""
            raise ValueError(f"`temperature` (={temperature}) has to be a strictly positive float, "
                             f"otherwise your next token scores will be invalid.{hint}")
        self.temperature = float(temperature)

    def __call__(self, input_ids, scores):
        return scores / self.temperature


class TopKLogitsWarper:
    """Keep the ``top_k`` best tokens (ties with the k-th included)."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0:
            raise ValueError(f"`top_k` has to be a strictly positive integer, but is {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        kth = torch.topk(scores, min(self.top_k, scores.shape[-1]))[0][..., -1, None]
        return scores.masked_fill(scores < kth, -math.inf)


class TopPLogitsWarper:
    """Keep the smallest set of best tokens whose probabilities add up to more than ``top_p``."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        top_p = float(top_p)
        if not 0 < top_p <= 1.0:
            raise ValueError(f"`top_p` has to be a float in (0, 1], but is {top_p}: 1 keeps every "
                             "token, smaller values keep only the most likely ones.")
        self.top_p, self.min_tokens_to_keep = top_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        ascending, order = torch.sort(scores, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - self.top_p)  # the tail holding at most 1 - top_p of the mass
        remove[..., -self.min_tokens_to_keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)


class TypicalLogitsWarper:
    """Locally typical sampling (Meister et al., 2022, arXiv:2202.00666): rank the tokens by how
    far their surprisal (-log p) is from the distribution's entropy and keep the most typical
    ones until they hold ``mass`` of the probability."""

    def __init__(self, mass: float, min_tokens_to_keep: int = 1):
        mass = float(mass)
        if not 0 < mass < 1:
            raise ValueError(f"`typical_p` has to be a float > 0 and < 1, but is {mass}.")
        self.mass, self.min_tokens_to_keep = mass, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        log_probs = scores.log_softmax(dim=-1)
        probs = log_probs.exp()
        entropy = -(log_probs * probs).nansum(dim=-1, keepdim=True)
        distance = (entropy + log_probs).abs()  # |surprisal - entropy|
        by_distance, order = distance.sort(dim=-1)  # most typical first
        held = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (held < self.mass).sum(dim=-1, keepdim=True).clamp_(max=scores.shape[-1] - 1)
        remove = distance > by_distance.gather(-1, last)  # ties with the last one kept stay
        remove.scatter_(-1, order[:, :self.min_tokens_to_keep], False)
        return scores.masked_fill(remove, -math.inf)


class MinPLogitsWarper:
    """Drop tokens less likely than ``min_p`` times the most likely one."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not 0 <= min_p <= 1.0:
            raise ValueError(f"`min_p` has to be a float in the [0, 1] interval, but is {min_p}")
        self.min_p, self.min_tokens_to_keep = min_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        probs = scores.softmax(dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        best = probs.topk(min(self.min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
        remove.scatter_(-1, best, False)
        return scores.masked_fill(remove, -math.inf)


class LogitNormalization:
    def __call__(self, input_ids, scores):
        return scores.log_softmax(dim=-1)


def make_logits_processors(config: Any, prompt_length: int, attention_mask: torch.Tensor | None,
                           eos: torch.Tensor | None, custom: list | None) -> LogitsProcessorList:
    """The processors of a call, in the reference's order: constraints first, the caller's
    own (replacing a built-in one of the same type), then the warpers when sampling."""
    processors = LogitsProcessorList()
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        padding = attention_mask.int().argmax(dim=1) if attention_mask is not None else None
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty, padding))
    if config.no_repeat_ngram_size:
        processors.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
    if config.bad_words_ids is not None:
        processors.append(NoBadWordsLogitsProcessor(config.bad_words_ids, eos))
    if eos is not None and config.min_length:
        processors.append(MinLengthLogitsProcessor(config.min_length, eos))
    if eos is not None and config.min_new_tokens:
        processors.append(MinNewTokensLengthLogitsProcessor(prompt_length, config.min_new_tokens, eos))
    if config.forced_bos_token_id is not None:
        processors.append(ForcedTokenLogitsProcessor(1, config.forced_bos_token_id))
    if config.forced_eos_token_id is not None:
        processors.append(ForcedTokenLogitsProcessor(config.max_length - 1, config.forced_eos_token_id))
    if config.remove_invalid_values:
        processors.append(InfNanRemoveLogitsProcessor())
    if config.suppress_tokens is not None:
        processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens))
    if config.begin_suppress_tokens is not None:
        processors.append(SuppressTokensLogitsProcessor(config.begin_suppress_tokens, prompt_length))
    processors = merge_custom(processors, custom or [])
    if config.do_sample:
        processors.extend(make_warpers(config, eos))
    if config.renormalize_logits:
        processors.append(LogitNormalization())
    return processors


def make_warpers(config: Any, eos: torch.Tensor | None) -> list:
    """The sampling warpers (temperature, top-k, top-p, min-p, typical) the settings ask for.
    Beam sampling keeps enough tokens for every beam to find a non-EOS continuation."""
    keep = 1 if config.num_beams == 1 else (2 if eos is None else len(eos) + 1)
    warpers = []
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k is not None and config.top_k != 0:
        warpers.append(TopKLogitsWarper(config.top_k, keep))
    if config.top_p is not None and config.top_p != 1.0:
        warpers.append(TopPLogitsWarper(config.top_p, keep))
    if config.min_p is not None:
        warpers.append(MinPLogitsWarper(config.min_p, keep))
    if config.typical_p is not None and config.typical_p < 1.0:
        warpers.append(TypicalLogitsWarper(config.typical_p, keep))
    return warpers


def merge_custom(defaults: list, custom: list) -> list:
    """User processors / criteria replace the built-in ones of the same type; others follow."""
    merged = type(defaults)()
    for item in defaults:
        merged.append(next((c for c in custom if type(c) is type(item)), item))
    merged.extend(c for c in custom if c not in merged)
    return merged
