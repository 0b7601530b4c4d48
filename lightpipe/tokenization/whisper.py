"""Whisper's tokenizer: the byte-level BPE of tokenizer.json (the generic Tokenizer) plus the
special, language, task and timestamp tokens: ``decode`` with or without timestamps
(``decode_with_timestamps``, ``output_offsets``), ``get_decoder_prompt_ids``, and
``decode_asr``, which merges the token sequences of overlapping audio chunks as transformers'
ASR pipeline does. Matches transformers' ``WhisperTokenizer``."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError
from .tokenizer import Tokenizer

TIMESTAMP_PATTERN = re.compile(r"<\|(\d+\.\d+)\|>")

# Languages Whisper knows: code -> name (the reference's table, in token order).
LANGUAGE_CODES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no "
    "th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw "
    "gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl "
    "mg as tt haw ln ha ba jw su yue").split()
LANGUAGE_NAMES = (
    "english chinese german spanish russian korean french japanese portuguese turkish polish "
    "catalan dutch arabic swedish italian indonesian hindi finnish vietnamese hebrew ukrainian "
    "greek malay czech romanian danish hungarian tamil norwegian thai urdu croatian bulgarian "
    "lithuanian latin maori malayalam welsh slovak telugu persian latvian bengali serbian "
    "azerbaijani slovenian kannada estonian macedonian breton basque icelandic armenian nepali "
    "mongolian bosnian kazakh albanian swahili galician marathi punjabi sinhala khmer shona "
    "yoruba somali afrikaans occitan georgian belarusian tajik sindhi gujarati amharic yiddish "
    "lao uzbek faroese haitian_creole pashto turkmen nynorsk maltese sanskrit luxembourgish "
    "myanmar tibetan tagalog malagasy assamese tatar hawaiian lingala hausa bashkir javanese "
    "sundanese cantonese").split()
TO_LANGUAGE_CODE = {name.replace("_", " "): code for name, code in zip(LANGUAGE_NAMES, LANGUAGE_CODES)}
TO_LANGUAGE_CODE.update({"burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht",
                         "letzeburgesch": "lb", "pushto": "ps", "panjabi": "pa", "moldavian": "ro",
                         "moldovan": "ro", "sinhalese": "si", "castilian": "es", "mandarin": "zh"})
TASKS = ("translate", "transcribe")
LANGUAGES = dict(zip(LANGUAGE_CODES, (n.replace("_", " ") for n in LANGUAGE_NAMES)))


def _language_tables():
    return LANGUAGES, TO_LANGUAGE_CODE


def _as_list(token_ids: Any) -> Any:
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    return token_ids


class _SegmentClock:
    """Whisper's timestamps restart at 0 in each 30 s segment of a long generation; this keeps
    the time of the segments before, so that times keep rising (the reference's rule)."""

    def __init__(self, begin: int, time_precision: float, segment_size: int = 1500):
        self.begin, self.time_precision, self.segment_size = begin, time_precision, segment_size
        self.elapsed = self.latest = self.penultimate = 0.0

    def advance(self, token_ids: list[int], index: int) -> tuple[float, bool]:
        """The timestamp token at ``index`` in seconds within its segment, and whether it
        starts a new segment right after a pair of timestamps."""
        begin = self.begin
        timestamp = float((token_ids[index] - begin) * self.time_precision)
        after_pair = False
        if timestamp < self.latest:  # a new 30 s segment started
            single_ending = index >= 2 and not (token_ids[index - 1] >= begin
                                                and token_ids[index - 2] >= begin)
            if single_ending:
                self.elapsed += self.time_precision * self.segment_size
            else:
                after_pair = True
                self.latest = self.penultimate
                self.elapsed += self.penultimate
        self.penultimate, self.latest = self.latest, timestamp
        return timestamp, after_pair


class WhisperTokenizer(Tokenizer):
    """The generic tokenizer with Whisper's prompt and timestamp handling."""

    @classmethod
    def from_folder(cls, folder, **kwargs: Any) -> WhisperTokenizer:
        tokenizer = super().from_folder(folder, **kwargs)
        settings = tokenizer.init_kwargs
        tokenizer.language = settings.get("language")
        tokenizer.task = settings.get("task")
        tokenizer.predict_timestamps = bool(settings.get("predict_timestamps", False))
        if tokenizer.language is not None or tokenizer.task is not None:
            tokenizer.set_prefix_tokens()
        return tokenizer

    # -- ids
    def _special_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    @property
    def timestamp_begin(self) -> int:
        no_timestamps = self._special_id("<|notimestamps|>")
        if no_timestamps is None:
            raise InputError("This tokenizer has no <|notimestamps|> token: it is not a Whisper "
                             "tokenizer with timestamps.")
        return no_timestamps + 1

    def timestamp_ids(self, time_precision: float = 0.02) -> list[int]:
        return self.convert_tokens_to_ids([f"<|{i * time_precision:.2f}|>" for i in range(1501)])

    # -- prompts
    @property
    def prefix_tokens(self) -> list[int]:
        languages, to_code = _language_tables()
        ids = [self._special_id("<|startoftranscript|>")]
        if self.language is not None:
            name = self.language.lower()
            if name in to_code:
                code = to_code[name]
            elif name in to_code.values():
                code = name
            else:
                options = list(to_code.values()) if len(name) == 2 else list(to_code)
                raise InputError(f"Unsupported language: {self.language}. Language should be one "
                                 f"of: {options}.")
            ids.append(self._special_id(f"<|{code}|>"))
        if self.task is not None:
            if self.task not in ("translate", "transcribe"):
                raise InputError(f"Unsupported task: {self.task}. Task should be in: "
                                 "('translate', 'transcribe')")
            ids.append(self._special_id(f"<|{self.task}|>"))
        if not self.predict_timestamps:
            ids.append(self._special_id("<|notimestamps|>"))
        return ids

    def set_prefix_tokens(self, language: str | None = None, task: str | None = None,
                          predict_timestamps: bool | None = None) -> None:
        """The prompt tokens put before the text when encoding (as the reference)."""
        from tokenizers import processors

        self.language = language if language is not None else self.language
        self.task = task if task is not None else self.task
        if predict_timestamps is not None:
            self.predict_timestamps = predict_timestamps
        ids = self.prefix_tokens
        tokens = self.convert_ids_to_tokens(ids)
        eos, eos_id = self.eos_token, self.eos_token_id
        prefix = " ".join(f"{token}:0" for token in tokens)
        self._backend.post_processor = processors.TemplateProcessing(
            single=f"{prefix} $A:0 {eos}:0", pair=f"{prefix} $A:0 $B:1 {eos}:1",
            special_tokens=[(eos, eos_id), *zip(tokens, ids)])

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None,
                               no_timestamps: bool = True) -> list[tuple[int, int]]:
        """[(1, <|lang|>), (2, <|task|>), (3, <|notimestamps|>)] as the reference builds them."""
        self.set_prefix_tokens(task=task, language=language, predict_timestamps=not no_timestamps)
        return [(rank + 1, token) for rank, token in enumerate(self.prefix_tokens[1:])]

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np"):
        encoded = self("<|startofprev|>", " " + text.strip(), add_special_tokens=False)
        ids = encoded["input_ids"]
        import numpy as np

        return np.asarray(ids) if return_tensors == "np" else ids

    # -- decoding
    def _strip_prompt(self, token_ids: list[int]) -> list[int]:
        prompt, start = self._special_id("<|startofprev|>"), self._special_id("<|startoftranscript|>")
        if token_ids and token_ids[0] == prompt:
            return token_ids[token_ids.index(start):] if start in token_ids else []
        return token_ids

    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, output_offsets: bool = False,
               time_precision: float = 0.02, decode_with_timestamps: bool = False,
               **kwargs: Any) -> Any:
        """Ids to text. Timestamp tokens are dropped, or written as ``<|1.08|>`` with
        ``decode_with_timestamps``; ``output_offsets`` adds the timed segments."""
        ids = _as_list(token_ids)
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], list):
            return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces,
                                output_offsets, time_precision, decode_with_timestamps)
                    for row in ids]
        filtered = self._strip_prompt(ids) if skip_special_tokens else ids
        if decode_with_timestamps:
            text = self._decode_with_timestamps(filtered, skip_special_tokens, time_precision)
        else:
            text = TIMESTAMP_PATTERN.sub("", super().decode(
                filtered, skip_special_tokens=skip_special_tokens,
                clean_up_tokenization_spaces=clean_up_tokenization_spaces))
        if output_offsets:
            return {"text": text, "offsets": self._compute_offsets(ids, time_precision)}
        return text

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs: Any) -> list:
        rows = _as_list(sequences)
        if rows and not isinstance(rows[0], list):
            rows = [rows]
        return [self.decode(row, skip_special_tokens=skip_special_tokens, **kwargs) for row in rows]

    def _plain(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return Tokenizer.decode(self, ids, skip_special_tokens=skip_special_tokens)

    def _decode_with_timestamps(self, token_ids: list[int], skip_special_tokens: bool = False,
                                time_precision: float = 0.02, segment_size: int = 1500) -> str:
        clock = _SegmentClock(self.timestamp_begin, time_precision, segment_size)
        outputs: list = [[]]
        for index, token in enumerate(token_ids):
            if token >= clock.begin:
                timestamp, after_pair = clock.advance(token_ids, index)
                if after_pair:  # as the reference: drop the last timestamp written
                    outputs = outputs[:-2]
                outputs.append(f"<|{timestamp + clock.elapsed:.2f}|>")
                outputs.append([])
            else:
                outputs[-1].append(token)
        return "".join(part if isinstance(part, str) else
                       (self._plain(part, skip_special_tokens) if part else "") for part in outputs)

    def _compute_offsets(self, token_ids: list[int], time_precision: float = 0.02,
                         segment_size: int = 1500) -> list[dict]:
        begin = self.timestamp_begin
        is_ts = [t >= begin for t in token_ids]
        consecutive = [i + 1 for i in range(len(token_ids) - 1) if is_ts[i] and is_ts[i + 1]]
        positions = [i for i, flag in enumerate(is_ts) if flag]
        if not consecutive and len(positions) <= 1:
            return []
        if positions[-1] + 1 not in consecutive:
            consecutive.append(positions[-1] + 1)
        offsets = []
        last_slice = positions[0]
        cur_max = prev_len = 0
        for current in consecutive:
            sliced = token_ids[last_slice:current]
            if len(sliced) > 1:
                start, end = sliced[0] - begin, sliced[-1] - begin
                if start < cur_max:
                    single_ending = last_slice >= 2 and not (token_ids[last_slice - 2] >= begin
                                                             and token_ids[last_slice - 1] >= begin)
                    prev_len += segment_size if single_ending else cur_max
                cur_max = end
                text = TIMESTAMP_PATTERN.sub("", self._plain(sliced))
                offsets.append({"text": text,
                                "timestamp": (start * time_precision + prev_len * time_precision,
                                              end * time_precision + prev_len * time_precision)})
            last_slice = current
        return offsets

    def _decode_asr(self, model_outputs: list[dict], *, return_timestamps: Any,
                    return_language: Any, time_precision: float):
        return decode_asr(self, model_outputs, return_timestamps=return_timestamps,
                          return_language=return_language, time_precision=time_precision)


def decode_asr(tokenizer: Any, model_outputs: list[dict], *, return_timestamps: Any,
               return_language: Any, time_precision: float, segment_size: int = 1500):
    """The ASR pipeline's text (and timed chunks) from the token sequences of one input's
    chunks, each with its stride in seconds: overlapping chunks are joined on their longest
    common token sequence; timestamps are shifted by each chunk's offset. The reference's
    algorithm (transformers ``_decode_asr``), step for step."""
    languages, _ = _language_tables()
    last_language = None

    def new_chunk():
        return {"language": last_language, "timestamp": [None, None], "text": ""}

    chunks = []
    chunk = new_chunk()
    time_offset = 0.0
    begin = tokenizer.timestamp_begin
    previous_tokens: list[list[int]] = []
    words = return_timestamps == "word"
    previous_times: list[list[tuple[float, float]]] = []  # per-token (start, end), for words
    skip = False
    right_stride_start = None
    special = set(tokenizer.all_special_ids)
    plain = tokenizer._plain if hasattr(tokenizer, "_plain") else tokenizer.decode
    for output in model_outputs:
        token_ids = tokenizer._strip_prompt(_as_list(output["tokens"])[0])
        token_times = _as_list(output["token_timestamps"])[0] if words else None
        last_timestamp = None
        first_timestamp = begin
        clock = _SegmentClock(begin, time_precision, segment_size)
        if "stride" in output:
            chunk_len, stride_left, stride_right = output["stride"]
            time_offset -= stride_left
            right_stride_start = chunk_len - stride_right
            if stride_left:
                first_timestamp = stride_left / time_precision + begin
            if stride_right:
                for token in reversed(token_ids):
                    if token >= begin:
                        if last_timestamp is not None and \
                                (token - begin) * time_precision < right_stride_start:
                            break
                        last_timestamp = token
        current_tokens: list[int] = []
        current_times: list[tuple[float, float]] = []
        for index, token in enumerate(token_ids):
            if token in special:
                text = plain([token])[2:-2]
                language = languages.get(text)
                if language is not None:
                    if last_language and language != last_language and not return_timestamps:
                        previous_tokens.append(current_tokens)
                        chunk["text"] = plain(longest_common_sequence(previous_tokens))
                        chunks.append(chunk)
                        previous_tokens, current_tokens = [], []
                        chunk = new_chunk()
                    chunk["language"] = language
                    last_language = language
            elif token >= begin:
                clock.advance(token_ids, index)
                time = round((token - begin) * time_precision + time_offset + clock.elapsed, 2)
                if last_timestamp and token >= last_timestamp:
                    skip = True
                elif skip or (previous_tokens and token < first_timestamp):
                    skip = False
                elif chunk["timestamp"][0] is None:
                    chunk["timestamp"][0] = time
                elif time != chunk["timestamp"][0]:
                    chunk["timestamp"][1] = time
                    previous_tokens.append(current_tokens)
                    if words:
                        previous_times.append(current_times)
                    _close_chunk(tokenizer, chunk, previous_tokens, previous_times, words,
                                 last_language)
                    chunks.append(chunk)
                    previous_tokens, current_tokens = [], []
                    previous_times, current_times = [], []
                    chunk = new_chunk()
            else:
                current_tokens.append(token)
                if words:
                    start = round((token_times[index - 1] if index else 0.0) + time_offset, 2)
                    current_times.append((start, round(token_times[index] + time_offset, 2)))
        if "stride" in output:
            time_offset += chunk_len - stride_right
        if current_tokens:
            previous_tokens.append(current_tokens)
            if words:
                previous_times.append(current_times)
        elif not any(p for p in previous_tokens):
            chunk = new_chunk()
            previous_tokens, previous_times = [], []
    if previous_tokens:
        _close_chunk(tokenizer, chunk, previous_tokens, previous_times, words, last_language)
        chunks.append(chunk)
    full_text = "".join(c["text"] for c in chunks)
    optional: dict = {}
    if return_timestamps or return_language:
        for c in chunks:
            if not return_timestamps:
                c.pop("timestamp")
            else:
                c["timestamp"] = tuple(c["timestamp"])
            if not return_language:
                c.pop("language")
        if words:
            chunks = [word for c in chunks for word in c["words"]]
            if not return_language:
                for word in chunks:
                    word.pop("language", None)
        optional = {"chunks": chunks}
    return full_text, optional


def _close_chunk(tokenizer: Any, chunk: dict, token_lists: list, time_lists: list, words: bool,
                 language: str | None) -> None:
    """The chunk's text from its token sequences joined on their overlaps; with ``words``,
    also its words, each timed from its first token's start to its last token's end."""
    plain = tokenizer._plain if hasattr(tokenizer, "_plain") else tokenizer.decode
    if not words:
        chunk["text"] = plain(longest_common_sequence(token_lists))
        return
    tokens, times = longest_common_sequence(token_lists, time_lists)
    chunk["text"] = plain(tokens)
    chunk["words"] = [{"text": text, "timestamp": (times[group[0]][0], times[group[-1]][1]),
                       "language": language}
                      for text, group in zip(*combine_tokens_into_words(tokenizer, tokens, language))]


PREPEND_PUNCTUATION = "\"'“¡¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
NO_SPACE_LANGUAGES = {"chinese", "japanese", "thai", "lao", "myanmar", "cantonese"}


def combine_tokens_into_words(tokenizer: Any, tokens: list[int],
                              language: str | None = None) -> tuple[list[str], list[list[int]]]:
    """(words, the token positions of each word), as Whisper groups tokens into words: at
    complete characters for languages written without spaces, else at spaces and
    punctuation; then opening punctuation joins the next word, closing the previous one."""
    language = language or getattr(tokenizer, "language", None) or "english"
    pieces = _split_on_characters(tokenizer, tokens)
    if language not in NO_SPACE_LANGUAGES:
        grouped: list[list] = []
        punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
        for text, positions in pieces:
            starts = (tokens[positions[0]] >= tokenizer.eos_token_id or text.startswith(" ")
                      or text.strip() in punctuation or not grouped)
            if starts:
                grouped.append([text, list(positions)])
            else:
                grouped[-1][0] += text
                grouped[-1][1].extend(positions)
        pieces = [(text, positions) for text, positions in grouped]
    texts = [text for text, _ in pieces]
    groups = [list(positions) for _, positions in pieces]
    # Opening punctuation (a word of its own, after a space) moves onto the word after it.
    j = len(texts) - 1
    for i in range(len(texts) - 2, -1, -1):
        if texts[i].startswith(" ") and texts[i].strip() in PREPEND_PUNCTUATION:
            texts[j], groups[j] = texts[i] + texts[j], groups[i] + groups[j]
            texts[i], groups[i] = "", []
        else:
            j = i
    # Closing punctuation joins the word before it.
    i = 0
    for j in range(1, len(texts)):
        if not texts[i].endswith(" ") and texts[j] in APPEND_PUNCTUATION:
            texts[i], groups[i] = texts[i] + texts[j], groups[i] + groups[j]
            texts[j], groups[j] = "", []
        else:
            i = j
    kept = [(t, g) for t, g in zip(texts, groups) if t and g]
    return [t for t, _ in kept], [g for _, g in kept]


def _split_on_characters(tokenizer: Any, tokens: list[int]) -> list[tuple[str, list[int]]]:
    """Runs of tokens that decode to whole characters (a multi-byte character split over
    tokens stays in one run), each with its token positions."""
    def text_of(ids):
        return tokenizer.decode(ids, decode_with_timestamps=True)

    full = text_of(tokens)
    bad = "\ufffd"
    out, current, offset = [], [], 0
    for position in range(len(tokens)):
        current.append(position)
        text = text_of([tokens[p] for p in current])
        at = text.find(bad)
        if at < 0 or offset + at >= len(full) or full[offset + at] == bad:
            out.append((text, current))
            current = []
            offset += len(text)
    return out


def longest_common_sequence(sequences: list[list[int]], times: list[list] | None = None) -> Any:
    """Join token sequences of overlapping chunks: each pair is aligned where the most tokens
    agree (ties go to longer overlaps), and cut in the middle of that overlap. With ``times``
    (each token's (start, end)), a token only agrees when its left time is not after its
    right time, and the times are cut the same way: returns (tokens, times)."""
    import numpy as np

    left = sequences[0]
    left_times = times[0] if times else None
    total: list[int] = []
    total_times: list = []
    for index, right in enumerate(sequences[1:], start=1):
        left_length, right_length = len(left), len(right)
        best, best_indices = 0.0, (left_length, left_length, 0, 0)
        left_array, right_array = np.asarray(left), np.asarray(right)
        for i in range(1, left_length + right_length):
            left_start, left_stop = max(0, left_length - i), min(left_length, left_length + right_length - i)
            right_start, right_stop = max(0, i - left_length), min(right_length, i)
            if times:
                matches = sum(1 for k in range(left_stop - left_start)
                              if left[left_start + k] == right[right_start + k]
                              and left_times[left_start + k] <= times[index][right_start + k])
            else:
                matches = int(np.sum(left_array[left_start:left_stop] == right_array[right_start:right_stop]))
            matching = matches / i + i / 10000.0
            if matches > 1 and matching > best:
                best, best_indices = matching, (left_start, left_stop, right_start, right_stop)
        left_start, left_stop, right_start, right_stop = best_indices
        total.extend(left[:(left_stop + left_start) // 2])
        left = right[(right_stop + right_start) // 2:]
        if times:
            total_times.extend(left_times[:(left_stop + left_start) // 2])
            left_times = times[index][(right_stop + right_start) // 2:]
    total.extend(left)
    if times is None:
        return total
    if times:
        total_times.extend(left_times)
    return total, total_times
