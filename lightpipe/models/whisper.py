"""Whisper (Radford et al., 2022, arXiv:2212.04356).

Matches transformers' ``models/whisper/modeling_whisper.py`` and the short-form part of
``generation_whisper.py`` for inference. The encoder reads 30 s of log-mel features (two
convolutions, sinusoidal positions stored as weights, pre-norm layers); the decoder is a
pre-norm Transformer with learned positions and cross-attention, decoded through
generation.GenerationMixin with an EncoderDecoderCache. ``generate`` builds Whisper's prompt
(<|startoftranscript|> <|lang|> <|task|> <|notimestamps|>), detects the language when none is
given, applies the timestamp rules, and returns the new tokens as the reference does.
Parameter names are the Hub's (``model.encoder.layers.0.self_attn.k_proj.weight``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..generation import GenerationMixin, Linear, decoder_attention
from ..modeling import ModelOutput, PreTrainedModel
from ..tokenization_whisper import TASKS, TO_LANGUAGE_CODE
from .layers import activation, attention, merge_heads, split_heads
from .whisper_alignment import dtw, median_filter

# 1. Config fields read, with the defaults config.json may leave out.
WHISPER_DEFAULTS = {
    "vocab_size": 51865,
    "num_mel_bins": 80,
    "d_model": 384,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "encoder_attention_heads": 6,
    "decoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_ffn_dim": 1536,
    "activation_function": "gelu",
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "pad_token_id": 50256,
    "decoder_start_token_id": 50257,
    "scale_embedding": False,
    "use_cache": True,
    "init_std": 0.02,
}



# 2. Modules.
class WhisperAttention(nn.Module):
    """Multi-head attention; ``k_proj`` has no bias. Self-attention (causal, cached, in the
    decoder) or cross-attention over the encoder states (keys/values cached once)."""

    def __init__(self, hidden: int, num_heads: int, layer: int = 0):
        super().__init__()
        self.num_heads, self.layer = num_heads, layer
        self.q_proj = Linear(hidden, hidden)
        self.k_proj = Linear(hidden, hidden, bias=False)
        self.v_proj = Linear(hidden, hidden)
        self.out_proj = Linear(hidden, hidden)

    def forward(self, hidden_states: torch.Tensor, key_states: torch.Tensor | None = None,
                cache: Any = None, causal: bool = False, weights: list | None = None) -> torch.Tensor:
        query = split_heads(self.q_proj(hidden_states), self.num_heads)
        if key_states is not None:  # cross-attention
            def project():
                return (split_heads(self.k_proj(key_states), self.num_heads),
                        split_heads(self.v_proj(key_states), self.num_heads))

            key, value = cache.cross(self.layer, project) if cache is not None else project()
            if weights is None:
                out = attention(query, key, value, None)
            else:  # the softmax weights are wanted (word timestamps): the explicit product
                scores = query.float() @ key.float().transpose(-1, -2) / query.shape[-1] ** 0.5
                probs = scores.softmax(dim=-1)
                weights.append(probs)
                out = (probs @ value.float()).to(value.dtype)
        else:
            key = split_heads(self.k_proj(hidden_states), self.num_heads)
            value = split_heads(self.v_proj(hidden_states), self.num_heads)
            if cache is not None:
                key, value = cache.update(key, value, self.layer)
            if causal:
                out = decoder_attention(query, key, value, None)
            else:
                out = attention(query, key, value, None)
        return self.out_proj(merge_heads(out))


class WhisperEncoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = config.d_model
        self.self_attn = WhisperAttention(hidden, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(hidden)
        self.fc1 = Linear(hidden, config.encoder_ffn_dim)
        self.fc2 = Linear(config.encoder_ffn_dim, hidden)
        self.final_layer_norm = nn.LayerNorm(hidden)
        self.activation = activation(config.activation_function)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states))
        return hidden_states + self.fc2(self.activation(self.fc1(self.final_layer_norm(hidden_states))))


class WhisperDecoderLayer(nn.Module):
    def __init__(self, config, layer: int):
        super().__init__()
        hidden = config.d_model
        self.self_attn = WhisperAttention(hidden, config.decoder_attention_heads, layer)
        self.self_attn_layer_norm = nn.LayerNorm(hidden)
        self.encoder_attn = WhisperAttention(hidden, config.decoder_attention_heads, layer)
        self.encoder_attn_layer_norm = nn.LayerNorm(hidden)
        self.fc1 = Linear(hidden, config.decoder_ffn_dim)
        self.fc2 = Linear(config.decoder_ffn_dim, hidden)
        self.final_layer_norm = nn.LayerNorm(hidden)
        self.activation = activation(config.activation_function)

    def forward(self, hidden_states, encoder_states, cache=None, weights=None) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states),
                                                       cache=cache, causal=True)
        hidden_states = hidden_states + self.encoder_attn(
            self.encoder_attn_layer_norm(hidden_states), encoder_states, cache=cache,
            weights=weights)
        return hidden_states + self.fc2(self.activation(self.fc1(self.final_layer_norm(hidden_states))))


class WhisperEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = config.d_model
        self.num_frames = 2 * config.max_source_positions  # conv2 halves the 3000 frames
        self.conv1 = nn.Conv1d(config.num_mel_bins, hidden, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, hidden)
        self.layers = nn.ModuleList(WhisperEncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(hidden)
        self.activation = activation(config.activation_function)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        if input_features.dim() != 3 or input_features.shape[-1] != self.num_frames:
            raise InputError(
                f"Whisper expects input features of shape (batch, {self.conv1.in_channels}, "
                f"{self.num_frames}) (30 s of log-mel frames), got {tuple(input_features.shape)}. "
                "Use the model's feature extractor, which pads or cuts the audio to 30 s.")
        if input_features.shape[1] != self.conv1.in_channels:
            raise InputError(f"The model reads {self.conv1.in_channels} mel bins but the features "
                             f"have {input_features.shape[1]}: use the model's feature extractor.")
        input_features = input_features.to(self.conv1.weight.dtype)
        hidden_states = self.activation(self.conv1(input_features))
        hidden_states = self.activation(self.conv2(hidden_states)).transpose(1, 2)  # (B, 1500, d)
        hidden_states = hidden_states + self.embed_positions.weight[:hidden_states.shape[1]]
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.layer_norm(hidden_states)


class WhisperDecoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = config.d_model
        self.max_positions = config.max_target_positions
        self.embed_tokens = nn.Embedding(config.vocab_size, hidden, padding_idx=config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_target_positions, hidden)
        self.layers = nn.ModuleList(WhisperDecoderLayer(config, i) for i in range(config.decoder_layers))
        self.layer_norm = nn.LayerNorm(hidden)

    def forward(self, input_ids: torch.Tensor, encoder_states: torch.Tensor,
                cache: Any = None, weights: list | None = None) -> torch.Tensor:
        """``weights``: a list that receives each layer's cross-attention probabilities
        (batch, heads, tokens, frames), for word timestamps."""
        past = cache.get_seq_length() if cache is not None else 0
        end = past + input_ids.shape[1]
        if end > self.max_positions:
            raise InputError(f"The decoder reads at most {self.max_positions} tokens; this step "
                             f"reaches {end}. Lower max_new_tokens.")
        hidden_states = self.embed_tokens(input_ids) + self.embed_positions.weight[past:end]
        for layer in self.layers:
            hidden_states = layer(hidden_states, encoder_states, cache, weights)
        return self.layer_norm(hidden_states)


class WhisperPreTrainedModel(PreTrainedModel):
    model_type = "whisper"
    base_model_prefix = "model"
    config_defaults = WHISPER_DEFAULTS
    main_input_name = "input_features"


class WhisperModel(WhisperPreTrainedModel):
    """The encoder-decoder without the LM head: ``last_hidden_state`` of the decoder and
    ``encoder_last_hidden_state``."""

    def __init__(self, config):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)

    def forward(self, input_features: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, encoder_outputs: Any = None,
                attention_mask: Any = None, **unused) -> ModelOutput:
        encoded = _encoder_states(encoder_outputs) if encoder_outputs is not None \
            else self.encoder(input_features)
        if decoder_input_ids is None:
            raise InputError("WhisperModel needs decoder_input_ids (e.g. the start token).")
        return ModelOutput(last_hidden_state=self.decoder(decoder_input_ids, encoded),
                           encoder_last_hidden_state=encoded)


def _encoder_states(encoder_outputs: Any) -> torch.Tensor:
    if isinstance(encoder_outputs, torch.Tensor):
        return encoder_outputs
    return encoder_outputs["last_hidden_state"] if isinstance(encoder_outputs, dict) else encoder_outputs[0]


# 3. The speech-to-text head and Whisper's generation rules.
class WhisperForConditionalGeneration(GenerationMixin, WhisperPreTrainedModel):
    is_encoder_decoder = True
    prepend_decoder_start = False  # Whisper's prompt already starts with <|startoftranscript|>
    tied_weights = {"proj_out.weight": "model.decoder.embed_tokens.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.model = WhisperModel(config)
        self.proj_out = Linear(config.d_model, config.vocab_size, bias=False)

    def max_positions(self) -> int:
        return self.config.max_target_positions

    def encode(self, inputs: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        """(batch, mel bins, 3000) features -> (batch, 1500, d_model). Whisper's encoder
        ignores the attention mask (the audio is padded with silence), as the reference does."""
        return self.model.encoder(inputs)

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
               encoder_attention_mask: Any = None, cache: Any = None, use_cache: bool = False,
               logits_to_keep: int = 0) -> ModelOutput:
        if use_cache and cache is None:
            from ..generation import EncoderDecoderCache

            cache = EncoderDecoderCache()
        hidden_states = self.model.decoder(decoder_input_ids, encoder_hidden_states, cache)
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        return ModelOutput(logits=self.proj_out(hidden_states), cache=cache if use_cache else None)

    def forward(self, input_features: torch.Tensor | None = None, attention_mask: Any = None,
                decoder_input_ids: torch.Tensor | None = None, encoder_outputs: Any = None,
                cache: Any = None, use_cache: bool = False, logits_to_keep: int = 0,
                **unused) -> ModelOutput:
        encoded = _encoder_states(encoder_outputs) if encoder_outputs is not None \
            else self.encode(input_features)
        if decoder_input_ids is None:
            raise InputError("Pass decoder_input_ids (e.g. [[<|startoftranscript|>]]) to the "
                             "forward, or use generate().")
        out = self.decode(decoder_input_ids, encoded, cache=cache, use_cache=use_cache,
                          logits_to_keep=logits_to_keep)
        return ModelOutput(logits=out.logits, cache=out.get("cache"),
                           encoder_last_hidden_state=encoded)

    # -- generation
    def detect_language(self, input_features: torch.Tensor | None = None,
                        encoder_outputs: Any = None, generation_config: Any = None) -> torch.Tensor:
        """The most likely language token id per row, from the first decoding step."""
        config = generation_config or self.generation_config
        encoded = _encoder_states(encoder_outputs) if encoder_outputs is not None \
            else self.encode(input_features.to(self.device))
        start = torch.full((encoded.shape[0], 1), config.decoder_start_token_id,
                           dtype=torch.long, device=encoded.device)
        logits = self.decode(start, encoded).logits[:, -1]
        allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        allowed[list(config.lang_to_id.values())] = True
        return logits.masked_fill(~allowed, float("-inf")).argmax(-1)

    def _init_tokens(self, encoded: torch.Tensor, config: Any, language: Any, task: str | None,
                     return_timestamps: bool) -> torch.Tensor:
        """Whisper's forced prompt per row: start, language, task, <|notimestamps|>."""
        batch = encoded.shape[0]
        tokens = [config.decoder_start_token_id]
        if task is None and language is None:
            forced = getattr(config, "forced_decoder_ids", None) or self.config.get("forced_decoder_ids")
            if forced and forced[0][0] == 1:
                position = 1
                while forced and forced[0][0] == position:
                    tokens.append(forced[0][1])
                    forced, position = forced[1:], position + 1
        lang_undefined = len(tokens) <= 1 or tokens[1] is None
        languages = list(language) if isinstance(language, (list, tuple)) else [language] * batch
        if isinstance(language, (list, tuple)) and len(language) != batch:
            raise InputError(f"language= has {len(language)} entries for a batch of {batch}.")
        rows = [list(tokens) for _ in range(batch)]
        lang_ids = None
        if language is not None:
            lang_ids = [self._language_id(config, lang) for lang in languages]
        elif getattr(config, "lang_to_id", None) and lang_undefined:
            lang_ids = self.detect_language(encoder_outputs=encoded, generation_config=config).tolist()
        task_ids = getattr(config, "task_to_id", None) or {}
        for index, row in enumerate(rows):
            if lang_ids is not None:
                if len(row) > 1:
                    row[1] = lang_ids[index]
                else:
                    row.append(lang_ids[index])
            if task is not None:
                if task not in TASKS:
                    raise InputError(f"The `{task}` task is not supported. The task should be one "
                                     f"of `{list(TASKS)}`")
                if any(t in row for t in task_ids.values()):
                    row[:] = [task_ids[task] if t in task_ids.values() else t for t in row]
                else:
                    row.append(task_ids[task])
            elif language is not None and task_ids and not any(t in row for t in task_ids.values()):
                row.append(task_ids["transcribe"])
            no_ts = getattr(config, "no_timestamps_token_id", None)
            if not return_timestamps and no_ts is not None and row[-1] != no_ts:
                row.append(no_ts)
            elif return_timestamps and row[-1] == no_ts:
                row.pop()
            row[:] = [t for t in row if t is not None]
        return torch.tensor(rows, dtype=torch.long, device=encoded.device)

    @staticmethod
    def _language_id(config: Any, language: str) -> int:
        lang_to_id = getattr(config, "lang_to_id", None)
        if not lang_to_id:
            raise InputError("This checkpoint's generation_config.json has no lang_to_id: it "
                             "cannot take language=.")
        name = language.lower()
        if name in lang_to_id:
            token = name
        elif name in TO_LANGUAGE_CODE:
            token = f"<|{TO_LANGUAGE_CODE[name]}|>"
        elif name in TO_LANGUAGE_CODE.values():
            token = f"<|{name}|>"
        else:
            options = list(TO_LANGUAGE_CODE.values()) if len(name) == 2 else list(TO_LANGUAGE_CODE)
            raise InputError(f"Unsupported language: {language}. Language should be one of: {options}.")
        if token not in lang_to_id:
            raise InputError(f"{token} is not supported by this specific model as it is not in "
                             "the `generation_config.lang_to_id`.")
        return lang_to_id[token]

    @torch.inference_mode()
    def generate(self, inputs: torch.Tensor | None = None, generation_config: Any = None,
                 logits_processor: list | None = None, language: Any = None,
                 task: str | None = None, return_timestamps: bool | None = None,
                 is_multilingual: bool | None = None, return_token_timestamps: bool = False,
                 return_segments: bool = False, **kwargs: Any):
        """Short-form (<= 30 s) transcription or translation, as transformers' Whisper
        generate: the prompt from ``language`` / ``task`` / ``return_timestamps`` (the language
        detected when not given), suppressed tokens and timestamp rules from the generation
        config; when a window's output closes a segment with two timestamps, decoding resumes
        from that time, as the reference does. Returns the generated tokens after the prompt,
        without the final <|endoftext|>, right-padded with ``pad_token_id``; with
        ``return_token_timestamps`` a dict that adds each token's time in its window
        (``token_timestamps``; ``return_segments`` adds the windows, timed from the audio's
        start). Longer audio (sequential long-form decoding) is not implemented: use the ASR
        pipeline's chunking."""
        from ..generation import GenerationConfig

        features = inputs if inputs is not None else kwargs.pop("input_features", None)
        encoder_outputs = kwargs.pop("encoder_outputs", None)
        # Whisper's encoder reads whole 30 s windows; the mask only bounds the word alignment.
        attention_mask = kwargs.pop("attention_mask", None)
        if kwargs.pop("decoder_input_ids", None) is not None:
            raise InputError("Whisper builds its own decoder prompt: pass language= and task= "
                             "instead of decoder_input_ids.")
        if generation_config is not None and not isinstance(generation_config, GenerationConfig):
            raise InputError("generation_config must be a GenerationConfig.")
        config, kwargs, _ = self._generation_config_for_call(generation_config, kwargs)
        heads = getattr(config, "alignment_heads", None)
        if return_token_timestamps and not heads:
            raise InputError("This checkpoint's generation_config.json has no alignment_heads, so "
                             "token (word) timestamps are not available.")
        if is_multilingual is not None:
            config.is_multilingual = is_multilingual
        if getattr(config, "is_multilingual", None) is False and (task or language):
            raise InputError("Cannot specify `task` or `language` for an English-only model.")
        language = language if language is not None else getattr(config, "language", None)
        task = task if task is not None else getattr(config, "task", None)
        if return_timestamps is None:
            return_timestamps = bool(getattr(config, "return_timestamps", False))
        if return_timestamps and getattr(config, "no_timestamps_token_id", None) is None:
            raise InputError("This checkpoint's generation config has no no_timestamps_token_id, "
                             "so it cannot predict timestamps.")
        num_frames = self.model.encoder.num_frames
        if encoder_outputs is None:
            if features is None:
                raise InputError("Pass the log-mel input_features (from the feature extractor).")
            if features.dim() != 3 or features.shape[-1] > num_frames:
                raise InputError(f"Whisper's generate takes (batch, mel bins, <= {num_frames}) "
                                 f"features (30 s at most); got {tuple(features.shape)}. For "
                                 "longer audio use the automatic-speech-recognition pipeline "
                                 "with chunk_length_s=30.")
            features = features.to(self.device)
            encoded = self.encode(_pad_frames(features, num_frames))
        else:
            encoded = _encoder_states(encoder_outputs).to(self.device)
        prompt = self._init_tokens(encoded, config, language, task, return_timestamps)
        begin = prompt.shape[1]
        target = self.config.max_target_positions
        if config.max_new_tokens is not None and config.max_new_tokens + begin > target:
            raise InputError(f"The prompt has {begin} tokens and max_new_tokens is "
                             f"{config.max_new_tokens}: together more than the model's {target} "
                             "positions.")
        processors = list(logits_processor or [])
        if return_timestamps:
            processors.insert(0, WhisperTimeStampLogitsProcessor(config, begin))
        if config.temperature is not None and not config.do_sample:
            config.temperature = 1.0
        timestamp_begin = (config.no_timestamps_token_id + 1
                           if getattr(config, "no_timestamps_token_id", None) is not None else None)
        # As the reference: decode the window from `seek`; when the output closes a segment
        # with two timestamp tokens, move `seek` to that time and decode the rest again.
        batch = encoded.shape[0]
        total = features.shape[-1] if encoder_outputs is None else num_frames
        seek = [0] * batch
        pieces: list[list[list[int]]] = [[] for _ in range(batch)]
        times: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        frames = attention_mask.sum(-1).tolist() if attention_mask is not None else None
        active = list(range(batch))
        for _ in range(total + 1):  # each round moves every row on by at least one frame
            if not active:
                break
            if any(seek[i] for i in active):
                windows = [features[i:i + 1, :, seek[i]:seek[i] + min(num_frames, total - seek[i])]
                           for i in active]
                encoded = self.encode(torch.cat([_pad_frames(w, num_frames) for w in windows]))
            if config.max_length is not None and config.max_new_tokens is None:
                config.max_length = min(config.max_length + min(target // 2 - 1, begin), target)
            out = super().generate(encoder_outputs=encoded, decoder_input_ids=prompt[active],
                                   generation_config=config, logits_processor=processors, **kwargs)
            sequences = out["sequences"] if isinstance(out, dict) else out
            stamps = None
            if return_token_timestamps:
                stamps = self._token_timestamps(
                    sequences, encoded, heads, begin,
                    None if frames is None else [int(frames[i]) - seek[i] for i in active])
            for index, (row, tokens) in enumerate(zip(active, sequences[:, begin:].tolist())):
                tokens = _strip_end(tokens, config)
                window = min(num_frames, total - seek[row])
                tokens, advance = _segment(tokens, timestamp_begin, window)
                pieces[row].append(tokens)
                if stamps is not None:  # (this window's times, the window's start in seconds)
                    times[row].append((stamps[index, begin:begin + len(tokens)], seek[row] * 0.01))
                seek[row] += max(advance, 1)
            # (given encoder states cannot be re-encoded from a later start: one round)
            active = [i for i in active if seek[i] < total] if features is not None else []
        rows = [[t for piece in row for t in piece] for row in pieces]
        longest = max(len(r) for r in rows)
        fill = config.pad_token_id if config.pad_token_id is not None else 0
        sequences = torch.tensor([r + [fill] * (longest - len(r)) for r in rows], dtype=torch.long)
        if not return_token_timestamps:
            return sequences
        stamps = []
        for row in times:  # padded with each row's last time, as the reference pads
            values = torch.cat([t for t, _ in row]) if row else torch.zeros(0)
            last = float(values[-1]) if len(values) else 0.0
            stamps.append(torch.cat([values, torch.full((longest - len(values),), last)]))
        out = {"sequences": sequences, "token_timestamps": torch.stack(stamps)}
        if return_segments:  # each window's tokens, timed from the start of the audio
            out["segments"] = [[{"tokens": torch.tensor(tokens, dtype=torch.long),
                                 "token_timestamps": t + offset}
                                for tokens, (t, offset) in zip(pieces[i], times[i])]
                               for i in range(batch)]
        return out

    def _token_timestamps(self, sequences: torch.Tensor, encoded: torch.Tensor, heads: list,
                          begin: int, frames: list[int] | None) -> torch.Tensor:
        """Each token's time (seconds) from the cross-attention of the alignment heads, as
        the reference computes it: the decoder re-run on the output (the weights each step
        saw), the weights cut to the audio's frames, normalised over the tokens, median
        filtered, averaged over the heads and aligned to the frames by dynamic time warping;
        the prompt gets 0.0 and the last token repeats the time before it."""
        import numpy as np

        weights: list[torch.Tensor] = []
        self.model.decoder(sequences[:, :-1].to(encoded.device), encoded, None, weights)
        chosen = torch.stack([weights[layer][:, head] for layer, head in heads], dim=1)
        chosen = chosen[:, :, begin:].float().cpu()  # (batch, heads, tokens, frames)
        width = int(self.config.get("median_filter_width", 7))
        if frames is not None and len(set(frames)) == 1:
            # The reference cuts a batch with one frame count once more before the rows are
            # cut (which only matters when the count is below zero after a seek past the audio).
            chosen = chosen[..., :frames[0] // 2]
        out = torch.zeros(sequences.shape[0], sequences.shape[1], dtype=torch.float32)
        if chosen.shape[2] == 0:
            return out
        for row in range(sequences.shape[0]):
            matrix = chosen[row] if frames is None else chosen[row, ..., :frames[row] // 2]
            mean = matrix.mean(dim=-2, keepdim=True)
            std = (matrix - mean).square().mean(dim=-2, keepdim=True).sqrt()
            matrix = median_filter((matrix - mean) / std, width).mean(dim=0)
            text_index, time_index = dtw(-matrix.double().numpy())
            jumps = np.diff(text_index, prepend=-1) != 0
            times = torch.tensor(time_index[jumps] * 0.02, dtype=torch.float32)
            out[row, begin:begin + len(times)] = times
            out[row, begin + len(times):] = times[-1]
        return out


def _pad_frames(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Features padded with zeros to the encoder's 3000 frames (as the reference pads)."""
    if features.shape[-1] < frames:
        return torch.nn.functional.pad(features, (0, frames - features.shape[-1]))
    return features


def _strip_end(tokens: list[int], config: Any) -> list[int]:
    """The padding after the end, then the end token itself."""
    pad, eos = config.pad_token_id, config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    if tokens and tokens[-1] == pad:
        count = sum(1 for t in tokens if t == pad) - (1 if pad == eos else 0)
        if count:
            tokens = tokens[:-count]
    if tokens and tokens[-1] == eos:
        tokens = tokens[:-1]
    return tokens


def _segment(tokens: list[int], timestamp_begin: int | None, window: int) -> tuple[list[int], int]:
    """(the tokens the reference keeps, frames to move on). Output that closes segments with
    two timestamp tokens is kept up to the last pair, and decoding resumes there; otherwise
    the window is done."""
    if timestamp_begin is None:
        return tokens, window
    is_ts = [t >= timestamp_begin for t in tokens]
    pairs = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    if not pairs or is_ts[-2:] == [False, True]:
        return tokens, window
    last = pairs[-1] + 1
    return tokens[:last], (tokens[last - 2] - timestamp_begin) * 2


class WhisperTimeStampLogitsProcessor:
    """Whisper's timestamp rules: timestamps come in pairs (except the last), never go back,
    the first token is a timestamp (at most ``max_initial_timestamp_index``), and a timestamp
    is forced when their total probability beats every text token."""

    def __init__(self, config: Any, begin_index: int):
        self.no_timestamps_token_id = config.no_timestamps_token_id
        self.timestamp_begin = config.no_timestamps_token_id + 1
        eos = config.eos_token_id if config.eos_token_id is not None else config.bos_token_id
        self.eos_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos
        self.begin_index = begin_index
        self.max_initial_timestamp_index = getattr(config, "max_initial_timestamp_index", None)

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


HEADS = {
    "AutoModel": WhisperModel,
    "AutoModelForSpeechSeq2Seq": WhisperForConditionalGeneration,
}
