"""SpeechT5 text-to-speech (Ao et al. 2021, "SpeechT5: Unified-Modal Encoder-Decoder
Pre-Training for Spoken Language Processing"), as microsoft/speecht5_tts holds it; matches
transformers' ``SpeechT5ForTextToSpeech`` (``modeling_speecht5.py``) at inference.

text -> token embeddings + scaled sinusoidal positions -> post-norm transformer encoder whose
attention adds a learned relative-position bias -> autoregressive decoder over mel frames:
each step the speech prenet (two ReLU layers with dropout kept on at inference, positions,
the speaker embedding fused in) feeds the decoder (self- and cross-attention, a cache), whose
output predicts ``reduction_factor`` frames and a stop probability; the frames so far go
through the convolutional postnet when a sequence stops. A vocoder (``speecht5_hifigan.py``)
turns the spectrogram into a waveform.

The prenet's dropout is random at inference (Tacotron 2's trick, kept by the reference): seeded
with ``torch.manual_seed`` our spectrogram equals the reference's, because each step draws the
same Bernoulli masks (one per prenet layer, shaped (frames so far, units)) in the same order.
We run the prenet on the newest frame only (its earlier rows are never read again) but still
draw the full masks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .bart import Attention, encoder_states_of, open_decoder_cache
from .decoder import causal_mask
from .layers import activation, check_heads, padding_mask
from .linear import Linear

# 1. Config fields read, with the defaults config.json may leave out (SpeechT5Config's).
SPEECHT5_DEFAULTS: dict[str, Any] = {
    "vocab_size": 81, "hidden_size": 768, "encoder_layers": 12, "encoder_attention_heads": 12,
    "encoder_ffn_dim": 3072, "decoder_layers": 6, "decoder_ffn_dim": 3072,
    "decoder_attention_heads": 12, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "num_mel_bins": 80,
    "speech_decoder_prenet_layers": 2, "speech_decoder_prenet_units": 256,
    "speech_decoder_prenet_dropout": 0.5, "speaker_embedding_dim": 512,
    "speech_decoder_postnet_layers": 5, "speech_decoder_postnet_units": 256,
    "speech_decoder_postnet_kernel": 5, "reduction_factor": 2, "max_speech_positions": 4000,
    "max_text_positions": 450, "encoder_max_relative_position": 160, "use_cache": True,
    "is_encoder_decoder": True, "initializer_range": 0.02,
}


# 2. Modules.
class ScaledPositions(nn.Module):
    """Sinusoidal positions (sin on even, cos on odd channels) times a learned ``alpha``
    (Li et al. 2018, §3.2), added to the inputs; computed for the positions asked for."""

    def __init__(self, dim: int, max_len: int, what: str):
        super().__init__()
        self.dim, self.max_len, self.what = dim, max_len, what
        self.alpha = nn.Parameter(torch.tensor(1.0))

    def table(self, start: int, length: int, device: torch.device) -> torch.Tensor:
        if start + length > self.max_len:
            raise InputError(f"SpeechT5 takes at most {self.max_len} {self.what} (config "
                             f"max_{'text' if 'token' in self.what else 'speech'}_positions); got "
                             f"{start + length}. Shorten the text, or split it into sentences.")
        position = torch.arange(start, start + length, device=device).unsqueeze(1).float()
        div_term = torch.exp(torch.arange(0, self.dim, 2, dtype=torch.int64, device=device).float()
                             * -(math.log(10000.0) / self.dim))
        table = torch.zeros(length, self.dim, device=device)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term)
        return table

    def forward(self, embeds: torch.Tensor, start: int = 0) -> torch.Tensor:
        table = self.table(start, embeds.shape[1], embeds.device).to(embeds.dtype)
        return embeds + self.alpha * table


class TextEncoderPrenet(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.encode_positions = ScaledPositions(config.hidden_size, config.max_text_positions,
                                                "tokens")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encode_positions(self.embed_tokens(input_ids))


class RelativePositions(nn.Module):
    """Learned key embeddings of the clipped distance j - i: (seq, seq, head_dim)."""

    def __init__(self, head_dim: int, max_length: int):
        super().__init__()
        self.max_length = max_length
        self.pe_k = nn.Embedding(2 * max_length, head_dim)

    def forward(self, length: int) -> torch.Tensor:
        positions = torch.arange(length, device=self.pe_k.weight.device)
        distance = positions[:, None] - positions[None, :]
        distance = distance.clamp(-self.max_length, self.max_length - 1) + self.max_length
        return self.pe_k(distance)


class RelativeAttention(Attention):
    """BART's attention plus the relative-position bias ``(q / sqrt(d)) . pe_k(i - j)``."""

    def forward(self, hidden_states, mask, position_bias):
        query = self.heads(self.q_proj(hidden_states))  # (batch, heads, seq, head_dim)
        key = self.heads(self.k_proj(hidden_states))
        value = self.heads(self.v_proj(hidden_states))
        bias = torch.einsum("bhqd,qkd->bhqk", query * self.head_dim ** -0.5, position_bias)
        if mask is not None:
            bias = bias.masked_fill(~mask, torch.finfo(bias.dtype).min)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        batch, _, seq, _ = context.shape
        return self.out_proj(context.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    def __init__(self, config, ffn_dim: int):
        super().__init__()
        self.intermediate_dense = Linear(config.hidden_size, ffn_dim)
        self.output_dense = Linear(ffn_dim, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, hidden_states):
        return self.output_dense(self.act(self.intermediate_dense(hidden_states)))


class EncoderLayer(nn.Module):
    """Post-norm: attention with the position bias, then the feed-forward."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        dim, eps = config.hidden_size, config.layer_norm_eps
        self.attention = RelativeAttention(dim, config.encoder_attention_heads, layer_idx)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.feed_forward = FeedForward(config, config.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, hidden_states, mask, position_bias):
        hidden_states = self.layer_norm(hidden_states + self.attention(hidden_states, mask, position_bias))
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))


class Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        heads = config.encoder_attention_heads
        check_heads(config.hidden_size, heads)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(config.encoder_layers))
        self.embed_positions = RelativePositions(config.hidden_size // heads,
                                                 config.encoder_max_relative_position)

    def forward(self, hidden_states, attention_mask=None):
        mask = padding_mask(attention_mask)
        hidden_states = self.layer_norm(hidden_states)
        position_bias = self.embed_positions(hidden_states.shape[1]).to(hidden_states.dtype)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, position_bias)
        return hidden_states


class TextEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.prenet = TextEncoderPrenet(config)
        self.wrapped_encoder = Encoder(config)

    def forward(self, input_ids, attention_mask=None):
        return self.wrapped_encoder(self.prenet(input_ids), attention_mask)


class SpeechDecoderPrenet(nn.Module):
    """Mel frames -> decoder inputs: ReLU layers, each followed by the prenet's dropout (one
    mask for the whole batch, on even at inference), a projection, scaled positions, and the
    L2-normalised speaker embedding concatenated and projected back (ReLU)."""

    def __init__(self, config):
        super().__init__()
        units = config.speech_decoder_prenet_units
        self.dropout = config.speech_decoder_prenet_dropout
        self.layers = nn.ModuleList(
            Linear(config.num_mel_bins if i == 0 else units, units)
            for i in range(config.speech_decoder_prenet_layers))
        self.final_layer = Linear(units, config.hidden_size)
        self.encode_positions = ScaledPositions(config.hidden_size, config.max_speech_positions,
                                                "spectrogram frames")
        self.speaker_embeds_layer = Linear(config.speaker_embedding_dim + config.hidden_size,
                                           config.hidden_size)

    def forward(self, frames: torch.Tensor, speaker_embeddings: torch.Tensor | None,
                total: int | None = None) -> torch.Tensor:
        """``frames`` (batch, n, bins) are the last n of ``total`` frames (default n): the
        masks are drawn for all ``total`` rows, as the reference runs the prenet on them all."""
        count = frames.shape[1]
        total = count if total is None else total
        hidden_states = frames
        for layer in self.layers:
            hidden_states = F.relu(layer(hidden_states))
            # As the reference: keep where the Bernoulli(p) draw is 1, scale by 1 / (1 - p).
            mask = torch.bernoulli(hidden_states.new_empty(total, hidden_states.shape[-1]),
                                   p=self.dropout)[total - count:]
            hidden_states = torch.where(mask == 1, hidden_states, 0) / (1 - self.dropout)
        hidden_states = self.encode_positions(self.final_layer(hidden_states), start=total - count)
        if speaker_embeddings is not None:
            speaker = F.normalize(speaker_embeddings).unsqueeze(1).expand(-1, count, -1)
            hidden_states = F.relu(self.speaker_embeds_layer(torch.cat([hidden_states, speaker], -1)))
        return hidden_states


class DecoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        dim, heads, eps = config.hidden_size, config.decoder_attention_heads, config.layer_norm_eps
        self.self_attn = Attention(dim, heads, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.encoder_attn = Attention(dim, heads, layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.feed_forward = FeedForward(config, config.decoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, hidden_states, self_mask, encoder_states, cross_mask, cache):
        hidden_states = self.self_attn_layer_norm(
            hidden_states + self.self_attn(hidden_states, self_mask, cache, causal=True))
        hidden_states = self.encoder_attn_layer_norm(
            hidden_states + self.encoder_attn.cross(hidden_states, encoder_states, cross_mask, cache))
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))


class Decoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        heads = config.decoder_attention_heads
        check_heads(config.hidden_size, heads)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.decoder_layers))

    def forward(self, hidden_states, encoder_states, encoder_attention_mask=None, cache=None,
                attention_mask=None):
        past = cache.get_seq_length() if cache is not None else 0
        self_mask = causal_mask(attention_mask, hidden_states.shape[1], past, hidden_states.device)
        cross_mask = padding_mask(encoder_attention_mask)
        for layer in self.layers:
            hidden_states = layer(hidden_states, self_mask, encoder_states, cross_mask, cache)
        return hidden_states


class SpeechDecoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.prenet = SpeechDecoderPrenet(config)
        self.wrapped_decoder = Decoder(config)


class SpeechT5Model(nn.Module):
    """The text encoder and the speech decoder (``speecht5.*`` in the checkpoints)."""

    def __init__(self, config):
        super().__init__()
        self.encoder = TextEncoder(config)
        self.decoder = SpeechDecoder(config)


class PostnetLayer(nn.Module):
    def __init__(self, config, index: int):
        super().__init__()
        last = index == config.speech_decoder_postnet_layers - 1
        units, bins = config.speech_decoder_postnet_units, config.num_mel_bins
        kernel = config.speech_decoder_postnet_kernel
        self.conv = nn.Conv1d(bins if index == 0 else units, bins if last else units, kernel,
                              padding=(kernel - 1) // 2, bias=False)
        self.batch_norm = nn.BatchNorm1d(bins if last else units)
        self.last = last

    def forward(self, hidden_states):
        hidden_states = self.batch_norm(self.conv(hidden_states))
        return hidden_states if self.last else torch.tanh(hidden_states)


class SpeechDecoderPostnet(nn.Module):
    """Decoder states -> ``reduction_factor`` frames each (``feat_out``) and stop logits
    (``prob_out``); ``postnet`` refines frames with a residual stack of convolutions."""

    def __init__(self, config):
        super().__init__()
        self.num_mel_bins = config.num_mel_bins
        self.feat_out = Linear(config.hidden_size, config.num_mel_bins * config.reduction_factor)
        self.prob_out = Linear(config.hidden_size, config.reduction_factor)
        self.layers = nn.ModuleList(PostnetLayer(config, i)
                                    for i in range(config.speech_decoder_postnet_layers))

    def postnet(self, frames: torch.Tensor) -> torch.Tensor:  # (batch, frames, bins)
        hidden_states = frames.transpose(1, 2)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return frames + hidden_states.transpose(1, 2)


# 3. The head.
class SpeechT5ForTextToSpeech(PreTrainedModel):
    """``generate_speech(input_ids, speaker_embeddings)`` -> a log-mel spectrogram (frames,
    num_mel_bins), or a waveform with ``vocoder=``; ``forward`` is the teacher-forced pass
    over ``decoder_input_values``."""

    model_type = "speecht5"
    config_defaults = SPEECHT5_DEFAULTS
    main_input_name = "input_ids"
    # Old checkpoints may hold the positional tables, which we compute.
    ignored_weights = [r"encode_positions\.pe$", r"embed_positions\.weights$"]
    optional_weights = [r"\.num_batches_tracked$"]  # unused at inference

    def __init__(self, config):
        super().__init__(config)
        self.speecht5 = SpeechT5Model(config)
        self.speech_decoder_postnet = SpeechDecoderPostnet(config)

    def can_generate(self) -> bool:
        return True

    def _init_weights(self, module: nn.Module, only: str | None = None) -> None:
        if isinstance(module, ScaledPositions):
            with torch.no_grad():
                module.alpha.fill_(1.0)
            return
        super()._init_weights(module, only)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """The encoder's last hidden state, (batch, tokens, hidden_size)."""
        _check_ids(input_ids)
        return self.speecht5.encoder(input_ids, attention_mask)

    def _speaker(self, speaker_embeddings: Any, batch: int, required: bool) -> torch.Tensor | None:
        if speaker_embeddings is None:
            if required:
                raise InputError(
                    "SpeechT5 needs speaker_embeddings: a (1 or batch, "
                    f"{self.config.speaker_embedding_dim}) tensor of x-vectors (e.g. from the "
                    "Matthijs/cmu-arctic-xvectors dataset); in a pipeline pass "
                    "forward_params={'speaker_embeddings': tensor}.")
            return None
        if not isinstance(speaker_embeddings, torch.Tensor):
            speaker_embeddings = torch.as_tensor(speaker_embeddings)
        if speaker_embeddings.dim() == 1:
            speaker_embeddings = speaker_embeddings.unsqueeze(0)
        size = self.config.speaker_embedding_dim
        if speaker_embeddings.dim() != 2 or speaker_embeddings.shape[-1] != size:
            raise InputError(f"speaker_embeddings has shape {tuple(speaker_embeddings.shape)}; this "
                             f"model takes (1 or batch, {size}) (config speaker_embedding_dim).")
        if speaker_embeddings.shape[0] != batch:
            if speaker_embeddings.shape[0] != 1:
                raise InputError("The first dimension of speaker_embeddings must be either 1 or "
                                 f"the batch size ({batch}); got {speaker_embeddings.shape[0]}.")
            speaker_embeddings = speaker_embeddings.repeat(batch, 1)
        return speaker_embeddings.to(device=self.device, dtype=self.dtype)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask=None,
                decoder_input_values: torch.Tensor | None = None, decoder_attention_mask=None,
                encoder_outputs=None, speaker_embeddings=None, cache=None, use_cache=None,
                **unused: Any) -> ModelOutput:
        if unused.get("labels") is not None:
            raise NotImplementedError("Training SpeechT5 is not supported (labels=).")
        if decoder_input_values is None:
            raise InputError("SpeechT5ForTextToSpeech.forward needs decoder_input_values (batch, "
                             "frames, num_mel_bins); to make speech from text call "
                             "generate_speech(input_ids, speaker_embeddings).")
        encoder_states = encoder_states_of(encoder_outputs)
        if encoder_states is None:
            encoder_states = self.encode(input_ids, attention_mask)
        batch = decoder_input_values.shape[0]
        speaker = self._speaker(speaker_embeddings, batch, required=False)
        cache, _ = open_decoder_cache(cache, bool(use_cache))
        decoder = self.speecht5.decoder
        # As the reference, the prenet's positions start at 0 even after cached frames.
        hidden_states = decoder.prenet(decoder_input_values, speaker)
        hidden_states = decoder.wrapped_decoder(hidden_states, encoder_states, attention_mask,
                                                cache, decoder_attention_mask)
        postnet = self.speech_decoder_postnet
        before = postnet.feat_out(hidden_states).view(batch, -1, self.config.num_mel_bins)
        return ModelOutput(spectrogram=postnet.postnet(before), spectrogram_before_postnet=before,
                           stop_logits=postnet.prob_out(hidden_states).view(batch, -1),
                           last_hidden_state=hidden_states, encoder_last_hidden_state=encoder_states,
                           cache=cache if use_cache else None)

    @torch.no_grad()
    def generate_speech(self, input_ids: torch.Tensor, speaker_embeddings: torch.Tensor | None = None,
                        attention_mask: torch.Tensor | None = None, threshold: float = 0.5,
                        minlenratio: float = 0.0, maxlenratio: float = 20.0,
                        vocoder: nn.Module | None = None, output_cross_attentions: bool = False,
                        return_output_lengths: bool = False):
        """Speech from token ids, as the reference: decode frames until each sequence's stop
        probability (summed over the step's frames) reaches ``threshold``, between
        ``minlenratio`` and ``maxlenratio`` times the token count over ``reduction_factor``
        steps (and at most ``max_speech_positions``).

        Returns the spectrogram (frames, bins) for one text, (batch, frames, bins) padded for
        several; the waveform(s) instead with ``vocoder``; with ``return_output_lengths`` a pair
        (padded batch, each row's length)."""
        if output_cross_attentions:
            raise NotImplementedError("output_cross_attentions is not supported by lightpipe's "
                                      "SpeechT5 (its attention runs fused, without weights).")
        _check_ids(input_ids)
        batch = input_ids.shape[0]
        speaker = self._speaker(speaker_embeddings, batch, required=True)
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        encoder_states = self.encode(input_ids, attention_mask)
        spectrograms = self._decode_frames(encoder_states, attention_mask, speaker, threshold,
                                           minlenratio, maxlenratio)
        lengths = [s.shape[0] for s in spectrograms]
        padded = nn.utils.rnn.pad_sequence(spectrograms, batch_first=True)
        if return_output_lengths:
            if vocoder is None:
                return padded, lengths
            waveforms = vocoder(padded)
            hop = int(waveforms.shape[1] / max(lengths))
            return waveforms, [hop * n for n in lengths]
        spectrogram = spectrograms[0] if batch == 1 else padded
        return spectrogram if vocoder is None else vocoder(spectrogram)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 speaker_embeddings: torch.Tensor | None = None, threshold: float = 0.5,
                 minlenratio: float = 0.0, maxlenratio: float = 20.0,
                 vocoder: nn.Module | None = None, output_cross_attentions: bool = False,
                 return_output_lengths: bool = False, **kwargs: Any):
        """``generate_speech`` with the reference's ``generate`` argument order (attention_mask
        second)."""
        if kwargs:
            raise InputError(f"SpeechT5's generate takes no {', '.join(sorted(kwargs))}: its "
                             "arguments are speaker_embeddings, threshold, minlenratio, "
                             "maxlenratio, vocoder and return_output_lengths.")
        return self.generate_speech(input_ids, speaker_embeddings, attention_mask, threshold,
                                    minlenratio, maxlenratio, vocoder, output_cross_attentions,
                                    return_output_lengths)

    def _decode_frames(self, encoder_states, attention_mask, speaker, threshold, minlenratio,
                       maxlenratio) -> list[torch.Tensor]:
        config, postnet = self.config, self.speech_decoder_postnet
        decoder = self.speecht5.decoder
        batch, tokens = encoder_states.shape[:2]
        maxlen = int(tokens * maxlenratio / config.reduction_factor)
        minlen = int(tokens * minlenratio / config.reduction_factor)
        maxlen = min(maxlen, config.max_speech_positions)  # the prenet has no positions beyond
        frame = encoder_states.new_zeros(batch, 1, config.num_mel_bins)  # the all-zero start frame
        cache, _ = open_decoder_cache(None, True)
        steps: list[torch.Tensor] = []
        finished: dict[int, torch.Tensor] = {}
        step = 0
        while len(finished) < batch:
            step += 1
            hidden_states = decoder.prenet(frame, speaker, total=step)
            hidden_states = decoder.wrapped_decoder(hidden_states, encoder_states, attention_mask,
                                                    cache)[:, 0]  # (batch, hidden)
            spectrum = postnet.feat_out(hidden_states).view(batch, config.reduction_factor, -1)
            steps.append(spectrum)
            frame = spectrum[:, -1:, :]
            stop = torch.sigmoid(postnet.prob_out(hidden_states)).sum(dim=-1) >= threshold
            if step < minlen:
                continue
            done = range(batch) if step >= maxlen else torch.where(stop)[0].tolist()
            done = [i for i in done if i not in finished]
            if done:
                refined = postnet.postnet(torch.stack(steps, dim=1).flatten(1, 2))
                for i in done:
                    finished[i] = refined[i]
        return [finished[i] for i in range(batch)]


def _check_ids(input_ids: Any) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise InputError(f"input_ids must be a non-empty (batch, tokens) tensor; got {shape}.")


HEADS = {"AutoModelForTextToSpectrogram": SpeechT5ForTextToSpeech}
