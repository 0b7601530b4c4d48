"""Whisper (Radford et al., 2022, arXiv:2212.04356).

Matches transformers' ``models/whisper/modeling_whisper.py`` and ``generation_whisper.py``
for inference (the window loop, short- and long-form, is in whisper_generation.py). The
encoder reads 30 s of log-mel features (two convolutions, sinusoidal positions stored as
weights, pre-norm layers); the decoder is a
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
from torch.nn import functional as F

from ..errors import InputError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from ..tokenization_whisper import TASKS, TO_LANGUAGE_CODE
from .bart import Attention, DecoderLayer, EncoderLayer, encoder_states_of, open_decoder_cache
from .layers import activation, linear_act, merge_heads
from .linear import Linear
from .whisper_generation import (INPUT_STRIDE, WhisperTimeStampLogitsProcessor, WindowDecoder,
                                 pad_frames, pad_rows, sampling_settings)

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
class WhisperAttention(Attention):
    """BART's attention with no bias on ``k_proj``. Self-attention (causal, cached, in the
    decoder) or cross-attention over the encoder states (keys/values cached once), which can
    also hand back its softmax weights (``weights``, for word timestamps)."""

    key_bias = False

    def forward(self, hidden_states: torch.Tensor, key_states: torch.Tensor | None = None,
                cache: Any = None, causal: bool = False, weights: list | None = None) -> torch.Tensor:
        if key_states is None:
            return super().forward(hidden_states, None, cache, causal)
        # Beams share their item's encoder states: ``key_states`` may have fewer rows (B) than
        # ``hidden_states`` (B * beams, each item's beams adjacent). Keys and values are then
        # projected and cached once per item, and each item's beams attend as one longer
        # query (B, heads, beams * tokens, head_dim) instead of reading B * beams copies.
        key, value = self.cross_keys(key_states, cache)
        query = self.heads(self.q_proj(hidden_states))
        rows, group = key.shape[0], query.shape[0] // key.shape[0]
        if group * rows != query.shape[0]:
            raise InputError(f"The decoder has {query.shape[0]} rows but the encoder states "
                             f"{rows}: pass one encoder row per decoder row or per item.")
        heads, tokens, size = query.shape[1], query.shape[2], query.shape[3]
        if group > 1:
            query = query.view(rows, group, heads, tokens, size).transpose(1, 2) \
                .reshape(rows, heads, group * tokens, size)
        if weights is None:
            context = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        else:  # the softmax weights are wanted: the explicit product
            scores = query.float() @ key.float().transpose(-1, -2) / size ** 0.5
            probs = scores.softmax(dim=-1)
            weights.append(_ungroup(probs, group))
            context = (probs @ value.float()).to(value.dtype)
        return self.out_proj(merge_heads(_ungroup(context, group)))


def _ungroup(tensor: torch.Tensor, group: int) -> torch.Tensor:
    """(B, heads, group * tokens, x) -> (B * group, heads, tokens, x): each beam's rows back."""
    if group == 1:
        return tensor
    rows, heads, length, width = tensor.shape
    return tensor.view(rows, heads, group, length // group, width).transpose(1, 2) \
        .reshape(rows * group, heads, length // group, width)


class WhisperEncoderLayer(EncoderLayer):
    """BART's encoder layer with Whisper's attention, pre-norm."""

    attention_class = WhisperAttention

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states))
        return hidden_states + self.fc2(linear_act(self.fc1, self.act, self.final_layer_norm(hidden_states)))


class WhisperDecoderLayer(DecoderLayer):
    """BART's decoder layer with Whisper's attention, pre-norm."""

    attention_class = WhisperAttention

    def forward(self, hidden_states, encoder_states, cache=None, weights=None) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states),
                                                       cache=cache, causal=True)
        hidden_states = hidden_states + self.encoder_attn(
            self.encoder_attn_layer_norm(hidden_states), encoder_states, cache=cache,
            weights=weights)
        return hidden_states + self.fc2(linear_act(self.fc1, self.act, self.final_layer_norm(hidden_states)))


class WhisperEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = config.d_model
        self.num_frames = 2 * config.max_source_positions  # conv2 halves the 3000 frames
        self.conv1 = nn.Conv1d(config.num_mel_bins, hidden, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, hidden)
        self.layers = nn.ModuleList(WhisperEncoderLayer(config, i) for i in range(config.encoder_layers))
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
        encoded = encoder_states_of(encoder_outputs) if encoder_outputs is not None \
            else self.encoder(input_features)
        if decoder_input_ids is None:
            raise InputError("WhisperModel needs decoder_input_ids (e.g. the start token).")
        return ModelOutput(last_hidden_state=self.decoder(decoder_input_ids, encoded),
                           encoder_last_hidden_state=encoded)


# 3. The speech-to-text head and Whisper's generation rules.
class WhisperForConditionalGeneration(GenerationMixin, WhisperPreTrainedModel):
    is_encoder_decoder = True
    prepend_decoder_start = False  # Whisper's prompt already starts with <|startoftranscript|>
    shares_encoder_states = True  # beams attend to one copy of cross keys / values per item
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
        cache, _ = open_decoder_cache(cache, use_cache)
        hidden_states = self.model.decoder(decoder_input_ids, encoder_hidden_states, cache)
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        return ModelOutput(logits=self.proj_out(hidden_states), cache=cache if use_cache else None)

    def forward(self, input_features: torch.Tensor | None = None, attention_mask: Any = None,
                decoder_input_ids: torch.Tensor | None = None, encoder_outputs: Any = None,
                cache: Any = None, use_cache: bool = False, logits_to_keep: int = 0,
                **unused) -> ModelOutput:
        encoded = encoder_states_of(encoder_outputs) if encoder_outputs is not None \
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
        """The most likely language token id per row, from the first decoding step on the
        first 30 s."""
        config = generation_config or self.generation_config
        window = self.model.encoder.num_frames
        encoded = encoder_states_of(encoder_outputs) if encoder_outputs is not None \
            else self.encode(input_features[..., :window].to(self.device))
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
                 return_segments: bool = False, condition_on_prev_tokens: bool | None = None,
                 temperature: Any = None, compression_ratio_threshold: float | None = None,
                 logprob_threshold: float | None = None, no_speech_threshold: float | None = None,
                 **kwargs: Any):
        """Transcription or translation, as transformers' Whisper generate: the prompt from
        ``language`` / ``task`` / ``return_timestamps`` (the language detected from the first
        30 s when not given), suppressed tokens and timestamp rules from the generation config,
        and the window loop of ``whisper_generation``. Features over 3000 frames (30 s) are
        decoded long-form: window by window, moving on by the predicted timestamps (which
        long-form needs: ``return_timestamps`` is then on unless set False, an error), each
        row of a batch to its own length (``attention_mask``, required for a batch);
        ``condition_on_prev_tokens`` prompts each window with the text before it.
        ``temperature`` > 0 samples, as the reference's (temperature fallback is not
        implemented). Returns the generated tokens after the prompt (each window's segments
        one after the other), without <|endoftext|>, right-padded with ``pad_token_id``; with
        ``return_token_timestamps`` a dict that adds each token's time in its window
        (``token_timestamps``), with ``return_segments`` the segments (``tokens``, ``start``
        / ``end`` in seconds from the audio's start, ``result``: the window's whole output)."""
        from ..generation import GenerationConfig

        features = inputs if inputs is not None else kwargs.pop("input_features", None)
        encoder_outputs = kwargs.pop("encoder_outputs", None)
        # Whisper's encoder reads whole 30 s windows; the mask gives each row's length.
        attention_mask = kwargs.pop("attention_mask", None)
        if kwargs.pop("decoder_input_ids", None) is not None:
            raise InputError("Whisper builds its own decoder prompt: pass language= and task= "
                             "instead of decoder_input_ids.")
        if generation_config is not None and not isinstance(generation_config, GenerationConfig):
            raise InputError("generation_config must be a GenerationConfig.")
        config, kwargs, _ = self._generation_config_for_call(generation_config, kwargs)
        heads = getattr(config, "alignment_heads", None) if return_token_timestamps else None
        if return_token_timestamps and not heads:
            raise InputError("This checkpoint's generation_config.json has no alignment_heads, so "
                             "token (word) timestamps are not available.")
        temperature = sampling_settings(config, temperature, {
            "compression_ratio_threshold": compression_ratio_threshold,
            "logprob_threshold": logprob_threshold, "no_speech_threshold": no_speech_threshold})
        if is_multilingual is not None:
            config.is_multilingual = is_multilingual
        if getattr(config, "is_multilingual", None) is False and (task or language):
            raise InputError("Cannot specify `task` or `language` for an English-only model.")
        language = language if language is not None else getattr(config, "language", None)
        task = task if task is not None else getattr(config, "task", None)
        window = self.model.encoder.num_frames
        if encoder_outputs is None:
            if features is None:
                raise InputError("Pass the log-mel input_features (from the feature extractor).")
            if features.dim() != 3:
                raise InputError(f"Whisper's generate takes (batch, mel bins, frames) features; "
                                 f"got {tuple(features.shape)}.")
            features = features.to(self.device)
            total = features.shape[-1]
            encoded = self.encode(pad_frames(features[..., :window], window))
        else:
            encoded = encoder_states_of(encoder_outputs).to(self.device)
            total = encoded.shape[1] * INPUT_STRIDE
        batch = encoded.shape[0]
        if return_timestamps is None:
            return_timestamps = getattr(config, "return_timestamps", None)
        if total > window:  # long-form
            if return_timestamps is False:
                raise InputError(
                    f"The audio is longer than 30 s ({total} log-mel frames), which Whisper "
                    "decodes window by window, moving on by the timestamps it predicts: pass "
                    "return_timestamps=True, or cut the audio into chunks (the "
                    "automatic-speech-recognition pipeline's chunk_length_s=30).")
            return_timestamps = True
            if batch > 1 and attention_mask is None:
                raise InputError("A batch of long audio needs the attention_mask (the feature "
                                 "extractor's return_attention_mask=True) to know each one's "
                                 "length.")
        return_timestamps = bool(return_timestamps)
        if return_timestamps and getattr(config, "no_timestamps_token_id", None) is None:
            raise InputError("This checkpoint's generation config has no no_timestamps_token_id, "
                             "so it cannot predict timestamps.")
        prompt = self._init_tokens(encoded, config, language, task, return_timestamps)
        processors = list(logits_processor or [])
        if return_timestamps:
            processors.insert(0, WhisperTimeStampLogitsProcessor(config, prompt.shape[1]))
        if condition_on_prev_tokens is None:
            condition_on_prev_tokens = getattr(config, "condition_on_prev_tokens", None)
        condition = bool(condition_on_prev_tokens) and (temperature is None or temperature < 0.5)
        frames = attention_mask.sum(-1).tolist() if attention_mask is not None else None
        max_frames = frames if total > window and batch > 1 else [total] * batch
        decoder = WindowDecoder(self, super().generate, config, prompt, processors,
                                features if encoder_outputs is None else None, encoded,
                                [int(f) for f in max_frames],
                                None if frames is None else [int(f) for f in frames], heads,
                                condition, kwargs)
        if condition and batch > 1:  # (the previous texts differ in length): one row at a time
            segments = [decoder.run([row])[0] for row in range(batch)]
        else:
            segments = decoder.run(list(range(batch)))
        fill = config.pad_token_id if config.pad_token_id is not None else 0
        sequences = pad_rows([[t for s in row for t in s["tokens"].tolist()] for row in segments],
                             fill)
        if not return_token_timestamps and not return_segments:
            return sequences
        out: dict[str, Any] = {"sequences": sequences}
        if return_token_timestamps:
            out["token_timestamps"] = decoder.padded_times(batch, sequences.shape[1])
        if return_segments:
            out["segments"] = segments
        return out


HEADS = {
    "AutoModel": WhisperModel,
    "AutoModelForSpeechSeq2Seq": WhisperForConditionalGeneration,
}
