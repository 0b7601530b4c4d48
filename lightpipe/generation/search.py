"""The search loops over a ``DecodeState``, gpt-fast style: ``prefill`` reads the prompt,
``decode_one_token`` feeds what the cache lacks (the last token), then greedy search /
sampling (``sample``) or beam search (``beam_search``, the reference's vectorised algorithm,
step for step) picks the next tokens."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import InputError
from ..modeling import ModelOutput
from ..models.linear import loaded_kernels
from ..threads import adapt_threads

if TYPE_CHECKING:
    from .contract import GenerativeModel
    from .state import DecodeState


@dataclass
class Search:
    """What a loop needs besides the model and the state, built once per call."""

    config: Any  # the call's GenerationConfig
    processors: Any  # LogitsProcessorList
    criteria: Any  # StoppingCriteriaList
    pad: int | None
    eos: torch.Tensor | None
    batch_size: int  # rows before expansion for beams / returned sequences
    streamer: Any = None
    generator: torch.Generator | None = None


def argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(dim=-1)``; for float32 CPU rows in lightpipe's C kernel where that library
    is already loaded (never built for this): ~8x torch's argmax over a vocabulary (8 rows of
    151,936 logits: 1.56 -> 0.20 ms, 1 thread), the same answer (first largest, first NaN)."""
    kernels = loaded_kernels()
    if (kernels is not None and scores.dim() == 2
            and scores.dtype == torch.float32 and scores.device.type == "cpu"
            and scores.stride(-1) == 1 and scores.shape[-1] > 0):
        return kernels.argmax_rows(scores)
    return scores.argmax(dim=-1)


def make_sampler(config: Any, generator: torch.Generator | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Processed scores (batch, vocab) -> the next token of each row: the best one (greedy), or
    one drawn from their softmax (``do_sample``; ``generator`` seeds it)."""
    if not config.do_sample:
        return argmax

    def draw(scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    return draw


def prefill(model: GenerativeModel, state: DecodeState) -> torch.Tensor:
    """The forward over the prompt (its embeddings, when given so); next-token logits."""
    if state.prompt_embeds is None:
        return decode_one_token(model, state)
    out = model(inputs_embeds=state.take_embeds(), attention_mask=state.mask(),
                position_ids=state.positions[:, :state.length], cache=state.cache,
                use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].to(dtype=torch.float32, copy=True)


def decode_one_token(model: GenerativeModel, state: DecodeState, keep: int = 1) -> torch.Tensor:
    """The forward over the tokens the cache lacks (the last one; without a cache, all of
    them); the next-token logits (batch, vocab) in float32, or with ``keep`` > 1 those after
    each of the last ``keep`` positions (batch, keep, vocab; assisted generation's check)."""
    adapt_threads()  # another process took a core (or gave it back): follow it
    cache = state.cache
    if cache is not None and not model.keeps_cache(cache, state.length):
        cache.crop(0)  # the whole sequence again (Phi-3's LongRoPE past its trained length)
    start, end = (0 if cache is None else cache.get_seq_length()), state.length
    if state.encoder_states is not None:
        out = model.decode(state.input_ids[:, start:end], state.encoder_states, state.encoder_mask,
                           cache=cache, use_cache=cache is not None, logits_to_keep=keep)
    else:
        out = model(input_ids=state.input_ids[:, start:end], attention_mask=state.mask(),
                    position_ids=state.positions[:, start:end], cache=cache,
                    use_cache=cache is not None, logits_to_keep=keep)
    if keep > 1:
        return out.logits[:, -keep:].to(dtype=torch.float32, copy=True)
    return out.logits[:, -1].to(dtype=torch.float32, copy=True)


def sample(model: GenerativeModel, state: DecodeState, search: Search) -> Any:
    """Greedy search or sampling: one token per row per step until every row stops; rows
    that stop early continue with padding."""
    config, processors, criteria, streamer = search.config, search.processors, search.criteria, search.streamer
    pick = make_sampler(config, search.generator)
    eos_stops = any(hasattr(c, "eos_token_id") for c in criteria)
    unfinished = torch.ones(state.batch, dtype=torch.bool, device=state.device)
    scores, raw = [], []
    logits = prefill(model, state)
    while True:
        next_scores = processors(state.tokens(), logits)
        if config.return_dict_in_generate:
            if config.output_scores:
                scores.append(next_scores)
            if config.output_logits:
                raw.append(logits)
        next_tokens = pick(next_scores)
        if eos_stops:  # finished rows continue with padding
            next_tokens = torch.where(unfinished, next_tokens, search.pad)
        state.append(next_tokens)
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        unfinished = unfinished & ~criteria(state.tokens(), tuple(scores) or None)
        if not bool(unfinished.any()):
            break
        logits = decode_one_token(model, state)
    return finish(state, config, streamer, scores, raw)


def finish(state: DecodeState, config: Any, streamer: Any, scores: list, raw: list) -> Any:
    """A one-sequence-a-row loop's answer: the sequences, or a ModelOutput with the scores and
    logits asked for; the streamer is told the end."""
    if streamer is not None:
        streamer.end()
    if not config.return_dict_in_generate:
        return state.tokens()
    return ModelOutput(sequences=state.tokens(), scores=tuple(scores) or None,
                       logits=tuple(raw) or None, cache=state.cache)


def _check_beam_buffers(rows: int, max_length: int, prompt_length: int) -> None:
    """Beam search keeps its sequences in buffers of the final length (as the reference): a
    length whose buffers would not fit in memory is a clear error, not an allocator crash."""
    needed = rows * (2 * max_length + 2 * (max_length - prompt_length)) * 8
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 1 << 40
    if needed > memory // 2:
        raise InputError(
            f"Beam search up to max_length={max_length} with {rows} beams in all needs "
            f"{needed / 2**30:.1f} GiB for its sequences alone. Pass a smaller max_new_tokens "
            "(or max_length), fewer beams, or greedy / sampled decoding, which grow as they go.")


def beam_search(model: GenerativeModel, state: DecodeState, search: Search) -> Any:
    """Beam search (and beam sampling), the reference's vectorised algorithm step for step:
    the rows of ``state`` are ``num_beams`` beams per batch item."""
    config, processors, criteria, eos = search.config, search.processors, search.criteria, search.eos
    batch_size, num_beams, max_length = search.batch_size, config.num_beams, config.max_length
    prompt_length = cur_length = state.tokens().shape[1]
    length_penalty, early_stopping = config.length_penalty, config.early_stopping
    keep = max(2, 1 + (0 if eos is None else len(eos))) * num_beams
    top_beams = torch.arange(keep, device=state.device) < num_beams
    fill = (search.pad or int(eos[0])) if eos is not None else -1
    device = state.device

    _check_beam_buffers(batch_size * num_beams, max_length, cur_length)
    running = torch.full((batch_size, num_beams, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :cur_length] = state.tokens().view(batch_size, num_beams, cur_length)
    finished = running.clone()
    running_scores = torch.zeros(batch_size, num_beams, device=device)
    running_scores[:, 1:] = -1e9  # only the first copy of each prompt starts a beam
    finished_scores = torch.full((batch_size, num_beams), -1e9, device=device)
    is_finished = torch.zeros(batch_size, num_beams, dtype=torch.bool, device=device)
    can_improve = torch.ones(batch_size, 1, dtype=torch.bool, device=device)
    running_origin = torch.full((batch_size, num_beams, max_length - cur_length), -1,
                                dtype=torch.long, device=device)
    finished_origin = running_origin.clone()
    scores, raw = [], []
    batch_offset = torch.arange(batch_size, device=device)[:, None] * num_beams

    logits = prefill(model, state)
    while True:
        log_probs = processors(state.tokens(), logits.log_softmax(dim=-1))
        if config.return_dict_in_generate:
            if config.output_logits:
                raw.append(logits.clone())
            if config.output_scores:
                scores.append(log_probs.clone())
        vocab_size = log_probs.shape[-1]
        totals = (log_probs.view(batch_size, num_beams, -1) + running_scores[:, :, None])
        totals = totals.view(batch_size, -1)  # (batch, beams * vocab)

        # a. the best `keep` continuations over all beams (sampled without replacement)
        if config.do_sample:
            picked = torch.multinomial(totals.softmax(dim=-1), keep, generator=search.generator)
            top_scores, order = totals.gather(1, picked).sort(dim=-1, descending=True)
            picked = picked.gather(1, order)
        else:
            top_scores, picked = torch.topk(totals, keep)
        source_beam = picked // vocab_size
        candidates = _gather(running, source_beam)
        candidates[:, :, cur_length] = picked % vocab_size
        candidate_origin = _gather(running_origin, source_beam)
        candidate_origin[:, :, cur_length - prompt_length] = source_beam + batch_offset

        # b. which candidates are done (EOS, stop string, max length)
        hits = criteria(candidates[:, :, :cur_length + 1].reshape(batch_size * keep, -1),
                        tuple(scores) or None).view(batch_size, keep)

        # c. the best unfinished candidates go on
        alive_scores = top_scores + hits.float() * -1e9
        best = torch.topk(alive_scores, num_beams)[1]
        running = _gather(candidates, best)
        running_scores = _gather(alive_scores, best)
        running_origin = _gather(candidate_origin, best)

        # d. finished candidates among the top beams compete for the finished slots
        just_done = hits & top_beams[None, :]
        done_scores = top_scores / ((cur_length + 1 - prompt_length) ** length_penalty)
        full = is_finished.all(dim=-1, keepdim=True) & (early_stopping is True)
        done_scores = done_scores + full.float() * -1e9 + (~can_improve).float() * -1e9
        done_scores = done_scores + (~just_done).float() * -1e9
        merged_scores = torch.cat((finished_scores, done_scores), dim=1)
        chosen = torch.topk(merged_scores, num_beams)[1]
        finished = _gather(torch.cat((finished, candidates), dim=1), chosen)
        finished_scores = _gather(merged_scores, chosen)
        finished_origin = _gather(torch.cat((finished_origin, candidate_origin), dim=1), chosen)
        is_finished = _gather(torch.cat((is_finished, just_done), dim=1), chosen)

        # e. the cache follows the surviving beams
        if state.cache is not None:
            state.cache.reorder_cache(running_origin[:, :, cur_length - prompt_length].reshape(-1))
        cur_length += 1
        state.replace(running[:, :, :cur_length].reshape(batch_size * num_beams, -1))

        # f. stop when no running beam can beat the finished ones
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - prompt_length
        else:
            best_length = cur_length - prompt_length
        best_running = running_scores[:, :1] / (best_length ** length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], -1.0e9)
        can_improve = can_improve & (best_running > worst_finished).any(dim=-1, keepdim=True)
        open_beams = not (bool(is_finished.all()) and early_stopping is True)
        if not (bool(can_improve.any()) and open_beams and not bool(hits.all())):
            break
        logits = decode_one_token(model, state)

    returned = config.num_return_sequences
    sequences = finished[:, :returned].reshape(batch_size * returned, -1)
    sequence_scores = finished_scores[:, :returned].reshape(-1)
    origins = finished_origin[:, :returned].reshape(batch_size * returned, -1)
    generated = int((origins + 1).bool().sum(dim=1).max())
    sequences = sequences[:, :prompt_length + generated]
    if not config.return_dict_in_generate:
        return sequences
    return ModelOutput(sequences=sequences,
                       sequences_scores=sequence_scores if config.output_scores else None,
                       scores=tuple(scores) or None, logits=tuple(raw) or None,
                       beam_indices=origins[:, :generated], cache=state.cache)


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick along dim 1 (the beams) of a (batch, beams, ...) tensor."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)
