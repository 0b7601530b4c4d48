"""Assisted generation (transformers' "assisted decoding"): candidate tokens, found by a lookup
in the sequence so far (``prompt_lookup_num_tokens``) or drafted by a smaller model that shares
the tokenizer (``assistant_model``), are checked by the model in one forward over all of them.
The longest run of candidates the model would have picked itself is kept, and with it the
model's own token after the run, so every step adds at least one token.

Greedy search keeps the tokens of plain greedy search; sampling keeps a candidate only when it
equals the model's own draw at its position, so every token is drawn from the model's
distribution as in plain sampling. A forward over a few tokens costs about what a one-token
step costs where decoding streams its weights from memory, so each kept candidate is a step
saved; how many lookup candidates to offer follows the step times and the share kept
(``LookupBudget``: where a kernel takes a chunk's rows one at a time, few). As the reference:
one sequence at a time, greedy search or sampling (beam search
ignores the flags, with a warning), and a cache that can drop the rejected candidates.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError, UnsupportedModelError
from .processors import (LogitsProcessorList, MinLengthLogitsProcessor,
                         MinNewTokensLengthLogitsProcessor)
from .search import decode_one_token, finish, make_sampler, prefill

if TYPE_CHECKING:
    from .contract import GenerativeModel
    from .search import Search
    from .state import DecodeState

# transformers' defaults for the assistant's settings (its GenerationConfig's global defaults).
NUM_ASSISTANT_TOKENS = 20
ASSISTANT_CONFIDENCE = 0.4
MAX_MATCHING_NGRAM = 2


def _forbidden(processors: Any, sequence: torch.Tensor, token: int, vocab: int) -> bool:
    """Whether the processors would rule ``token`` out after ``sequence`` (-inf on neutral
    scores): such a candidate cannot be kept, so the lookup does not offer it."""
    scores = processors(sequence, torch.ones(1, vocab, dtype=torch.float32, device=sequence.device))
    value = float(scores[0, token])
    return value == float("-inf") or value == torch.finfo(torch.float32).min


def lookup_candidates(tokens: torch.Tensor, count: int, ngram: int, room: int,
                      eos: torch.Tensor | None, processors: Any = None, vocab: int = 0) -> list[int]:
    """Prompt lookup: the tokens that followed the earliest earlier occurrence of the sequence's
    last ``ngram`` tokens (the longest such n-gram first), at most ``count`` and ``room``, cut
    before an end-of-sequence token and before the first one the processors forbid."""
    ids = tokens[0]
    length = ids.shape[0]
    if room <= 0:
        return []
    for size in range(min(ngram, length - 1), 0, -1):
        tail = ids[length - size:]
        windows = ids.unfold(0, size, 1)  # (length - size + 1, size)
        starts = (windows == tail).all(dim=1).nonzero().flatten().tolist()
        for start in starts:
            begin = start + size
            end = min(begin + count, length, begin + room)
            if begin >= end:
                continue
            chosen = ids[begin:end].tolist()
            if processors:
                sequence = tokens
                for i, token in enumerate(chosen):
                    if _forbidden(processors, sequence, token, vocab):
                        chosen = chosen[:i]
                        break
                    sequence = torch.cat((tokens, ids.new_tensor([chosen[:i + 1]])), dim=1)
                if not chosen:
                    continue  # every candidate here is ruled out: try a later occurrence
            if eos is not None:
                stops = set(eos.tolist())
                for i, token in enumerate(chosen):
                    if token in stops:
                        chosen = chosen[:i]
                        break
            return chosen
    return []


class LookupBudget:
    """How many lookup candidates to offer (at most ``prompt_lookup_num_tokens``): the count
    that maximises expected tokens per second, from the step times seen so far (a check of k
    candidates costs about ``base + extra * k``: little more than one token where decoding
    streams the weights, ~k tokens where a kernel takes rows one at a time) and the share of
    candidates kept (each kept with probability ``p``, up to the first miss). Speed only:
    greedy search's tokens do not depend on what is offered."""

    def __init__(self, count: int):
        self.count = count
        self.base: float | None = None  # seconds of a step without candidates
        self.extra: float | None = None  # seconds a candidate adds
        self.kept, self.tried = 1.0, 2.0  # a prior of p = 0.5

    def size(self) -> int:
        if self.base is None or self.extra is None:
            return self.count
        p = min(self.kept / self.tried, 0.99)
        best, best_rate = 0, 1.0 / self.base
        for k in range(1, self.count + 1):
            expected = p * (1 - p ** k) / (1 - p)  # kept candidates, up to the first miss
            rate = (1 + expected) / (self.base + self.extra * k)
            if rate > best_rate:
                best, best_rate = k, rate
        return max(best, 1)  # always probe: an idle estimate would never learn again

    def record(self, offered: int, kept: int, seconds: float) -> None:
        if offered == 0:
            self.base = seconds if self.base is None else 0.8 * self.base + 0.2 * seconds
            return
        self.kept += kept
        self.tried += kept + (1 if kept < offered else 0)
        if self.base is not None:
            extra = max(seconds - self.base, 0.0) / offered
            self.extra = extra if self.extra is None else 0.8 * self.extra + 0.2 * extra


class AssistantDrafter:
    """Candidates from a smaller model with the same tokenizer: it decodes greedily from the
    sequence so far, keeping its own cache across steps (cut back to the tokens that were
    kept), and stops early when it is unsure of a token (its probability below the assistant's
    ``assistant_confidence_threshold``) or at an end-of-sequence token. Its
    ``num_assistant_tokens`` drafts a step; the "heuristic" schedules adapt that number."""

    def __init__(self, model: Any, assistant: Any, processors: Any, eos: torch.Tensor | None):
        config = assistant.generation_config
        self.model = assistant
        self.count = int(getattr(config, "num_assistant_tokens", None) or NUM_ASSISTANT_TOKENS)
        self.schedule = getattr(config, "num_assistant_tokens_schedule", None) or "constant"
        threshold = getattr(config, "assistant_confidence_threshold", None)
        self.threshold = ASSISTANT_CONFIDENCE if threshold is None else float(threshold)
        # the model's processors but the minimum lengths (as the reference's assistant)
        self.processors = LogitsProcessorList(
            p for p in processors
            if not isinstance(p, (MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor)))
        self.eos = set() if eos is None else set(eos.tolist())
        self.cache = assistant.new_cache(0)
        self.device = assistant.device
        self.own_steps = assistant is not model
        if self.own_steps:  # its one-token steps on its lean path too (the C step, packed weights)
            if getattr(assistant, "pack_weights", False) and self.device.type == "cpu":
                assistant.pack_linear_weights()
            assistant.begin_decode()

    def candidates(self, state: DecodeState, room: int) -> list[int]:
        count = min(self.count, room)
        if count <= 0:
            return []
        ids = state.input_ids[:, :state.length].to(self.device)
        mask = state.mask()
        positions = state.positions[:, :state.length].to(self.device)
        cached = min(self.cache.get_seq_length(), state.length - 1)
        self.cache.crop(cached)  # only what the model kept stays
        drafted: list[int] = []
        while True:
            out = self.model(input_ids=ids[:, cached:], attention_mask=None if mask is None else mask.to(self.device),
                             position_ids=positions[:, cached:], cache=self.cache, use_cache=True,
                             logits_to_keep=1)
            probs = self.processors(ids, out.logits[:, -1].to(dtype=torch.float32)).softmax(dim=-1)
            token = int(probs.argmax(dim=-1))
            drafted.append(token)
            if (len(drafted) >= count or token in self.eos
                    or float(probs[0, token]) < self.threshold):
                return drafted
            cached = ids.shape[1]
            ids = torch.cat((ids, ids.new_tensor([[token]])), dim=1)
            positions = torch.cat((positions, positions[:, -1:] + 1), dim=1)
            if mask is not None:
                mask = torch.cat((mask, mask.new_ones(1, 1)), dim=1)

    def update(self, offered: int, kept: int) -> None:
        if self.schedule in ("heuristic", "heuristic_transient"):
            self.count = self.count + 2 if kept == offered else max(1, self.count - 1)

    def finish(self) -> None:
        """The "heuristic" schedule carries its count to the assistant's next call (as the
        reference); "heuristic_transient" starts again from the configured one. The assistant's
        decoding state goes."""
        if self.schedule == "heuristic":
            self.model.generation_config.num_assistant_tokens = self.count
        if self.own_steps:
            self.model.end_decode()


def check_assistant(model: GenerativeModel, assistant: Any, assistant_tokenizer: Any) -> None:
    """The assistant must draft in the model's vocabulary (same size and special tokens)."""
    if assistant_tokenizer is not None:
        raise UnsupportedModelError(
            "lightpipe's generate() does not implement assisted generation across tokenizers "
            "(`assistant_tokenizer`): pass an assistant_model that shares the model's tokenizer.")
    if not callable(getattr(assistant, "generate", None)) or getattr(assistant, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"assistant_model must be a decoder-only lightpipe model that can generate (got "
            f"{type(assistant).__name__}).")
    if getattr(model, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            "lightpipe's generate() implements assistant_model for decoder-only models; for an "
            "encoder-decoder use prompt_lookup_num_tokens or plain decoding.")
    ours, theirs = model.config, assistant.config
    ours = getattr(ours, "get_text_config", lambda: ours)()
    theirs = getattr(theirs, "get_text_config", lambda: theirs)()
    for name in ("vocab_size", "eos_token_id", "pad_token_id", "bos_token_id"):
        if getattr(ours, name, None) != getattr(theirs, name, None):
            raise InputError(
                f"The assistant model has a different tokenizer than the main model ({name}: "
                f"{getattr(theirs, name, None)} vs {getattr(ours, name, None)}). Pass an "
                "assistant that shares the model's tokenizer (e.g. a smaller model of the same "
                "family).")


def assisted_search(model: GenerativeModel, state: DecodeState, search: Search,
                    assistant: Any = None) -> Any:
    """Greedy search or sampling with candidates checked several at a time (see the module)."""
    config, processors, criteria, streamer = search.config, search.processors, search.criteria, search.streamer
    if state.batch != 1:
        raise ValueError("assisted generate is only supported for batch_size = 1")
    if state.cache is None or not hasattr(state.cache, "crop"):
        raise ValueError("Assisted decoding requires a cache (use_cache=True).")
    pick = make_sampler(config, search.generator)
    drafter = (AssistantDrafter(model, assistant, processors, search.eos)
               if assistant is not None else None)
    count = int(config.prompt_lookup_num_tokens or 0)
    ngram = int(getattr(config, "max_matching_ngram_size", None) or MAX_MATCHING_NGRAM)
    if drafter is None and count <= 0:
        raise ValueError(f"prompt_lookup_num_tokens must be a positive integer, got "
                         f"{config.prompt_lookup_num_tokens}.")
    eos_ids = search.eos
    budget = LookupBudget(count)
    scores, raw = [], []

    def keep(logits_rows: list, processed_rows: list) -> None:
        if config.return_dict_in_generate:
            if config.output_scores:
                scores.extend(processed_rows)
            if config.output_logits:
                raw.extend(logits_rows)

    stops = set() if eos_ids is None else set(eos_ids.tolist())
    try:
        # The first token as in plain decoding (the prompt's forward), then assisted steps.
        logits = prefill(model, state)
        processed = processors(state.tokens(), logits)
        keep([logits], [processed])
        state.append(pick(processed))
        if streamer is not None:
            streamer.put(state.tokens()[:, -1:].cpu())
        while not bool(criteria(state.tokens(), tuple(scores) or None).all()):
            length = state.tokens().shape[1]
            room = config.max_length - length - 1  # the model adds a token after the candidates
            if drafter is not None:
                offered = drafter.candidates(state, room)
            else:
                offered = lookup_candidates(state.tokens(), budget.size(), ngram, room, eos_ids,
                                            processors, logits.shape[-1])
            start = state.length
            for token in offered:
                state.append(torch.tensor([token], device=state.device))
            began = time.perf_counter()
            new = decode_one_token(model, state, keep=len(offered) + 1)
            seconds = time.perf_counter() - began
            if new.dim() == 2:
                new = new[:, None]  # (1, k + 1, vocab)
            sequence = state.tokens()
            chosen, rows, processed_rows = [], [], []
            for i in range(len(offered) + 1):
                processed = processors(sequence[:, :length + i], new[:, i])
                chosen.append(int(pick(processed)))
                rows.append(new[:, i])
                processed_rows.append(processed)
                if i == len(offered) or chosen[-1] != offered[i]:
                    break
            # Cut at the length limit and after an end-of-sequence token, as the reference.
            chosen = chosen[:max(1, config.max_length - length)]
            for i, token in enumerate(chosen):
                if token in stops:
                    chosen = chosen[:i + 1]
                    break
            keep(rows[:len(chosen)], processed_rows[:len(chosen)])
            # The kept tokens after the sequence; the cache without the rejected candidates.
            state.truncate(start)
            for token in chosen:
                state.append(torch.tensor([token], device=state.device))
            state.cache.crop(state.length - 1)
            if streamer is not None:
                streamer.put(torch.tensor([chosen]))
            if drafter is not None:
                drafter.update(len(offered), len(chosen) - 1)
            else:
                budget.record(len(offered), min(len(chosen) - 1, len(offered)), seconds)
            logits = new[:, len(chosen) - 1]
    finally:
        if drafter is not None:
            drafter.finish()
    return finish(state, config, streamer, scores, raw)
