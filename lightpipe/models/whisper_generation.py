"""Whisper's decoding loop, as transformers' ``models/whisper/generation_whisper.py``: the
audio is decoded window by window (30 s, 3000 log-mel frames). Each window's output is cut into
segments at its pairs of timestamp tokens; decoding moves on (``seek``) to the last closed
segment's end, or past the window when the output ends with a single timestamp or has no
pair. Audio over 30 s is long-form: timestamps are required, each row of a batch stops at its
own length (the attention mask's frames), and ``condition_on_prev_tokens`` puts the previous
segments' text (after <|startofprev|>) before the next window's prompt. The same loop serves
short audio, where decoding resumes after a closed segment as the reference does.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..errors import InputError
from .whisper_alignment import token_timestamps

INPUT_STRIDE = 2  # encoder frames -> log-mel frames (conv2's stride)
TIME_PRECISION = 0.02  # seconds per timestamp token


class WhisperTimeStampLogitsProcessor:
    """Whisper's timestamp rules: timestamps come in pairs (except the last), never go back,
    the first token is a timestamp (at most ``max_initial_timestamp_index``), and a timestamp
    is forced when their total probability beats every text token. ``begin_index`` is the
    length of the window's prompt (it grows with the previous text)."""

    def __init__(self, config: Any, begin_index: int):
        self.no_timestamps_token_id = config.no_timestamps_token_id
        self.timestamp_begin = config.no_timestamps_token_id + 1
        eos = config.eos_token_id if config.eos_token_id is not None else config.bos_token_id
        self.eos_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos
        self.begin_index = begin_index
        self.max_initial_timestamp_index = getattr(config, "max_initial_timestamp_index", None)

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        begin = self.timestamp_begin
        scores[:, self.no_timestamps_token_id] = float("-inf")
        last_allowed = []
        for row, seq in enumerate(input_ids.tolist()):
            seq = seq[self.begin_index:]
            last_ts = len(seq) >= 1 and seq[-1] >= begin
            penultimate_ts = len(seq) < 2 or seq[-2] >= begin
            if last_ts:
                if penultimate_ts:
                    scores[row, begin:] = float("-inf")
                else:
                    scores[row, :self.eos_token_id] = float("-inf")
            stamps = [t for t in seq if t >= begin]
            limit = begin
            if stamps:
                limit = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
            last_allowed.append(limit)
        vocab = torch.arange(scores.shape[-1], device=scores.device)
        limits = torch.tensor(last_allowed, device=scores.device)[:, None]
        scores.masked_fill_((vocab >= begin) & (vocab < limits), float("-inf"))
        if input_ids.shape[1] == self.begin_index:
            scores[:, :begin] = float("-inf")
            if self.max_initial_timestamp_index is not None:
                scores[:, begin + self.max_initial_timestamp_index + 1:] = float("-inf")
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        timestamp_logprob = logprobs[:, begin:].logsumexp(dim=-1)
        best_text = logprobs[:, :begin].max(dim=-1).values
        scores[:, :begin].masked_fill_((timestamp_logprob > best_text)[:, None], float("-inf"))
        return scores


def pad_frames(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Features padded with zeros to the encoder's 3000 frames (as the reference pads)."""
    if features.shape[-1] < frames:
        return torch.nn.functional.pad(features, (0, frames - features.shape[-1]))
    return features


def strip_end(tokens: list[int], config: Any) -> list[int]:
    """The padding after the end, then the end token itself (the reference's count)."""
    pad, eos = config.pad_token_id, config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    if tokens and tokens[-1] == pad:
        count = sum(1 for t in tokens if t == pad) - (1 if pad == eos else 0)
        if count:
            tokens = tokens[:-count]
    if tokens and tokens[-1] == eos:
        tokens = tokens[:-1]
    return tokens


def split_segments(tokens: list[int], timestamp_begin: int | None,
                   window: int) -> tuple[list[tuple[int, int, float, float]], int]:
    """A window's output -> (its segments as (start, end) slices of ``tokens`` with their start
    and end times in the window, frames to move on), as the reference's ``_retrieve_segment``.
    Pairs of timestamp tokens close segments; the tokens after the last pair are dropped and
    decoding resumes there, unless the output ends with a single timestamp (no speech after
    it: the window is done). Without a pair the whole output is one segment."""
    begin = timestamp_begin
    is_ts = [begin is not None and t >= begin for t in tokens]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    if not cuts:
        stamps = [t for t, ts in zip(tokens, is_ts) if ts]
        end = int(torch.tensor(window) * (TIME_PRECISION / INPUT_STRIDE) / TIME_PRECISION)
        if stamps and stamps[-1] != begin:  # no pair, but a timestamp: the segment ends there
            end = stamps[-1] - begin
        return [(0, len(tokens), 0.0, end * TIME_PRECISION)], window
    single_ending = is_ts[-2:] == [False, True]
    if single_ending:
        cuts.append(len(tokens))
    else:  # the last segment keeps both of its closing timestamps
        cuts[-1] += 1
    slices = []
    for index, (start, end) in enumerate(zip([0] + cuts[:-1], cuts)):
        closing = -1 if index < len(cuts) - 1 or single_ending else -2
        slices.append((start, end, (tokens[start] - begin) * TIME_PRECISION,
                       (tokens[end + closing] - begin) * TIME_PRECISION))
    if single_ending:
        return slices, window
    return slices, (tokens[cuts[-1] - 2] - begin) * INPUT_STRIDE


def previous_text(segments: list[dict], timestamp_begin: int | None, limit: int) -> list[int]:
    """The tokens of the segments so far, each without the second of its two closing
    timestamps, the last ``limit`` of them (the prompt of ``condition_on_prev_tokens``)."""
    tokens: list[int] = []
    for segment in segments:
        piece = segment["tokens"].tolist()
        if timestamp_begin is not None and len(piece) > 2 and piece[-2] >= timestamp_begin:
            piece = piece[:-1]
        tokens.extend(piece)
    return tokens[-limit:] if limit > 0 else []


class WindowDecoder:
    """The loop over windows for some rows of a batch: ``run(rows)`` -> each row's segments,
    as the reference's ``current_segments`` (``tokens``, ``start`` / ``end`` seconds from
    the audio's start, ``result``: the window's whole output with its prompt, and
    ``token_timestamps`` when asked)."""

    def __init__(self, model: Any, generate: Callable, config: Any, prompt: torch.Tensor,
                 processors: list, features: torch.Tensor | None, first_encoded: torch.Tensor,
                 max_frames: list[int], frames: list[int] | None, heads: list | None,
                 condition: bool, kwargs: dict):
        self.model, self.generate, self.config, self.prompt = model, generate, config, prompt
        self.processors, self.features, self.first_encoded = processors, features, first_encoded
        self.max_frames, self.frames, self.heads = max_frames, frames, heads
        self.condition, self.kwargs = condition, kwargs
        no_ts = getattr(config, "no_timestamps_token_id", None)
        self.timestamp_begin = no_ts + 1 if no_ts is not None else None
        self.window = model.model.encoder.num_frames
        self.times: dict[int, list[torch.Tensor]] = {}  # each row's token times, per window

    def run(self, rows: list[int]) -> list[list[dict]]:
        config = copy.deepcopy(self.config)  # (max_length grows window by window)
        target = self.model.config.max_target_positions
        seek = {row: 0 for row in rows}
        segments: dict[int, list[dict]] = {row: [] for row in rows}
        active = [row for row in rows if seek[row] < self.max_frames[row]]
        for _ in range(max(self.max_frames[row] for row in rows) + 1):  # each round moves on
            if not active:
                break
            sizes = [min(self.window, self.max_frames[row] - seek[row]) for row in active]
            encoded = self._encode(active, seek, sizes)
            ids = self._prompt(active, segments)
            begin = ids.shape[1]
            new_tokens = config.max_new_tokens
            if new_tokens is not None and new_tokens + begin > target:
                raise InputError(f"The prompt has {begin} tokens (start, language, task and any "
                                 f"previous text) and max_new_tokens is {new_tokens}: together "
                                 f"more than the model's {target} positions. Lower max_new_tokens.")
            if config.max_length is not None and new_tokens is None:
                config.max_length = min(config.max_length + min(target // 2 - 1, begin), target)
            for processor in self.processors:
                if hasattr(processor, "set_begin_index"):
                    processor.set_begin_index(begin)
            out = self.generate(encoder_outputs=encoded, decoder_input_ids=ids,
                                generation_config=config, logits_processor=self.processors,
                                **self.kwargs)
            sequences = out["sequences"] if isinstance(out, dict) else out
            stamps = None
            if self.heads:
                frames = None if self.frames is None else [self.frames[r] - seek[r] for r in active]
                stamps = token_timestamps(self.model, sequences, encoded, self.heads, begin, frames)
            for index, (row, size) in enumerate(zip(active, sizes)):
                full = sequences[index].cpu()
                offset = seek[row] * TIME_PRECISION / INPUT_STRIDE
                tokens = strip_end(full[begin:].tolist(), config)
                slices, advance = split_segments(tokens, self.timestamp_begin, size)
                for start, end, start_time, end_time in slices:
                    segment = {"start": offset + start_time, "end": offset + end_time,
                               "tokens": torch.tensor(tokens[start:end], dtype=torch.long),
                               "result": full}
                    if stamps is not None:
                        times = stamps[index, begin + start:begin + end]
                        self.times.setdefault(row, []).append(times)
                        segment["token_timestamps"] = times + offset
                    segments[row].append(segment)
                seek[row] += max(advance, 1)
            # (given encoder states cannot be re-encoded from a later start: one round)
            active = [r for r in active if seek[r] < self.max_frames[r]] \
                if self.features is not None else []
        return [segments[row] for row in rows]

    def padded_times(self, batch: int, length: int) -> torch.Tensor:
        """Each row's token times in their windows (not from the audio's start, as the
        reference's ``token_timestamps``), padded to ``length`` with the row's last time."""
        out = []
        for row in range(batch):
            values = torch.cat(self.times[row]) if self.times.get(row) else torch.zeros(0)
            last = float(values[-1]) if len(values) else 0.0
            out.append(torch.cat([values, torch.full((length - len(values),), last)]))
        return torch.stack(out)

    def _encode(self, active: list[int], seek: dict, sizes: list[int]) -> torch.Tensor:
        """The encoder states of each active row's window (cut at ``seek``, zero-padded)."""
        features = self.features
        if features is None:
            return self.first_encoded[active]
        whole = min(features.shape[-1], self.window)
        if all(seek[r] == 0 for r in active) and all(s == whole for s in sizes):
            return self.first_encoded[active]  # the window language detection encoded
        windows = [pad_frames(features[r:r + 1, :, seek[r]:seek[r] + size], self.window)
                   for r, size in zip(active, sizes)]
        return self.model.encode(torch.cat(windows))

    def _prompt(self, active: list[int], segments: dict) -> torch.Tensor:
        """The rows' start tokens, after the previous text when conditioning on it."""
        ids = self.prompt[active]
        if not self.condition or not segments[active[0]]:
            return ids
        config = self.config
        previous = getattr(config, "prev_sot_token_id", None)
        suppress = list(config.suppress_tokens or [])
        if previous is None and len(suppress) >= 2:
            previous = suppress[-2]
        limit = self.model.config.max_target_positions // 2 - 1
        texts = [([previous] if previous is not None else [])
                 + previous_text(segments[row], self.timestamp_begin, limit) for row in active]
        prefix = torch.tensor(texts, dtype=torch.long, device=ids.device)
        return torch.cat([prefix, ids], dim=-1)


def sampling_settings(config: Any, temperature: Any, thresholds: dict) -> float | None:
    """The reference's rule: a ``temperature`` above 0 samples (with one beam), else the
    config's search runs greedy; a list of temperatures is a fallback the thresholds would
    trigger, which is not implemented (only its first temperature runs when none is set)."""
    for name, value in thresholds.items():
        if value is not None:
            setattr(config, name, value)
    temperatures = list(temperature) if isinstance(temperature, (list, tuple)) else [temperature]
    asked = [name for name in thresholds if getattr(config, name, None) is not None]
    if "logprob_threshold" in asked or "no_speech_threshold" in asked or \
            (asked and len(temperatures) > 1):
        raise InputError(f"lightpipe's Whisper does not implement temperature fallback "
                         f"({', '.join(asked)}): leave the thresholds unset.")
    first = temperatures[0] if temperatures else None
    config.do_sample = first is not None and first > 0.0
    config.temperature = first if config.do_sample else 1.0
    if config.do_sample:
        config.num_beams = 1
    return first


def pad_rows(rows: list[list[int]], fill: int) -> torch.Tensor:
    """Token lists right-padded with ``fill`` into one tensor."""
    longest = max((len(r) for r in rows), default=0)
    return torch.tensor([r + [fill] * (longest - len(r)) for r in rows], dtype=torch.long)
