"""EnCodec (Défossez et al., 2022, "High Fidelity Neural Audio Compression", arXiv:2210.13438):
a SEANet convolutional encoder / decoder around a residual vector quantizer. MusicGen decodes
its codes with it (``musicgen.py``); Bark's fine model does too.

Matches transformers' ``models/encodec/modeling_encodec.py`` at inference. Parameter names are
the checkpoints' (``encoder.layers.0.conv.weight_g``, ``quantizer.layers.0.codebook.embed``);
weight norm is stored as ``weight_g`` / ``weight_v`` (older files) or as torch's
``parametrizations.weight.original0/1`` (transformers 5), renamed on load. The codebooks'
training statistics (``inited``, ``cluster_size``, ``embed_avg``) are dropped.

The convolutions pad as the reference: causal (all the padding on the left) or asymmetric
(the extra on the left), plus the right padding that makes the last window full; reflect
padding of an input shorter than the pad first extends it with zeros. Transposed convolutions
trim the same amounts back. ``encode`` cuts the audio into chunks when the config has
``chunk_length_s`` (the 48 kHz model) and ``decode`` overlap-adds them with linear fades.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .vits import WeightNormConv1d

# 1. Config fields read, with the defaults config.json may leave out (EncodecConfig's).
ENCODEC_DEFAULTS: dict[str, Any] = {
    "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0], "sampling_rate": 24000, "audio_channels": 1,
    "normalize": False, "chunk_length_s": None, "overlap": None, "hidden_size": 128,
    "num_filters": 32, "num_residual_layers": 1, "upsampling_ratios": [8, 5, 4, 2],
    "norm_type": "weight_norm", "kernel_size": 7, "last_kernel_size": 7, "residual_kernel_size": 3,
    "dilation_growth_rate": 2, "use_causal_conv": True, "pad_mode": "reflect", "compress": 2,
    "num_lstm_layers": 2, "trim_right_ratio": 1.0, "codebook_size": 1024, "codebook_dim": None,
    "use_conv_shortcut": True,
}


def frame_rate(config) -> int:
    return math.ceil(config.sampling_rate / math.prod(config.upsampling_ratios))


def num_quantizers(config) -> int:
    bits = math.ceil(math.log2(config.codebook_size))
    return int(1000 * config.target_bandwidths[-1] // (frame_rate(config) * bits))


def chunking(config) -> tuple[int | None, int | None]:
    """(chunk length, chunk stride) in samples, or (None, None) for whole-signal encoding."""
    if config.chunk_length_s is None:
        return None, None
    length = int(config.chunk_length_s * config.sampling_rate)
    stride = None if config.overlap is None else max(1, int((1.0 - config.overlap) * length))
    return length, stride


# 2. Modules.
class WeightNormConvTranspose1d(nn.ConvTranspose1d):
    """A ConvTranspose1d under ``nn.utils.weight_norm`` (dim 0: the input channels)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        shape = self.weight.shape
        del self.weight
        self.weight_g = nn.Parameter(torch.empty(shape[0], 1, 1))
        self.weight_v = nn.Parameter(torch.empty(shape))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=(1, 2), keepdim=True)
        return F.conv_transpose1d(inputs, weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


def pad1d(hidden_states: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad, except that reflect padding of a signal no longer than the pad first appends
    zeros (reflection needs more samples than it mirrors), removed again after."""
    if mode != "reflect":
        return F.pad(hidden_states, (left, right), mode)
    length, widest = hidden_states.shape[-1], max(left, right)
    extra = widest - length + 1 if length <= widest else 0
    if extra:
        hidden_states = F.pad(hidden_states, (0, extra))
    padded = F.pad(hidden_states, (left, right), mode)
    return padded[..., :padded.shape[-1] - extra]


class EncodecConv1d(nn.Module):
    def __init__(self, config, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, dilation: int = 1):
        super().__init__()
        self.causal, self.pad_mode = config.use_causal_conv, config.pad_mode
        conv = WeightNormConv1d if config.norm_type == "weight_norm" else nn.Conv1d
        self.conv = conv(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        if config.norm_type == "time_group_norm":
            self.norm = nn.GroupNorm(1, out_channels)
        self.stride = stride
        self.kernel_size = (kernel_size - 1) * dilation + 1  # with the dilation
        self.padding_total = self.kernel_size - stride

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        length = hidden_states.shape[-1]
        # right padding so that the last window is full
        frames = math.ceil((length - self.kernel_size + self.padding_total) / self.stride + 1) - 1
        extra = frames * self.stride + self.kernel_size - self.padding_total - length
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        hidden_states = self.conv(pad1d(hidden_states, left, right + extra, self.pad_mode))
        norm = getattr(self, "norm", None)
        return hidden_states if norm is None else norm(hidden_states)


class EncodecConvTranspose1d(nn.Module):
    def __init__(self, config, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.causal, self.trim_right_ratio = config.use_causal_conv, config.trim_right_ratio
        if not (self.causal or self.trim_right_ratio == 1.0):
            raise InputError("EnCodec config: trim_right_ratio != 1.0 needs use_causal_conv=true.")
        conv = WeightNormConvTranspose1d if config.norm_type == "weight_norm" else nn.ConvTranspose1d
        self.conv = conv(in_channels, out_channels, kernel_size, stride)
        if config.norm_type == "time_group_norm":
            self.norm = nn.GroupNorm(1, out_channels)
        self.padding_total = kernel_size - stride

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv(hidden_states)
        norm = getattr(self, "norm", None)
        if norm is not None:
            hidden_states = norm(hidden_states)
        if self.causal:
            right = math.ceil(self.padding_total * self.trim_right_ratio)
        else:
            right = self.padding_total // 2
        left = self.padding_total - right
        return hidden_states[..., left:hidden_states.shape[-1] - right]


class EncodecLSTM(nn.Module):
    """An LSTM over (batch, channels, time) with a residual connection."""

    def __init__(self, config, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, config.num_lstm_layers)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states.permute(2, 0, 1)  # (time, batch, channels)
        return (self.lstm(hidden_states)[0] + hidden_states).permute(1, 2, 0)


class EncodecResnetBlock(nn.Module):
    """SEANet's residual block: ELU, conv(k, dilation), ELU, conv(1), plus a 1x1 shortcut."""

    def __init__(self, config, dim: int, dilations: tuple[int, int]):
        super().__init__()
        hidden = dim // config.compress
        kernels = (config.residual_kernel_size, 1)
        sizes = ((dim, hidden), (hidden, dim))
        block: list[nn.Module] = []
        for (in_channels, out_channels), kernel, dilation in zip(sizes, kernels, dilations):
            block += [nn.ELU(), EncodecConv1d(config, in_channels, out_channels, kernel, dilation=dilation)]
        self.block = nn.ModuleList(block)
        self.shortcut = EncodecConv1d(config, dim, dim, 1) if config.use_conv_shortcut else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(hidden_states)
        for layer in self.block:
            hidden_states = layer(hidden_states)
        return residual + hidden_states


class EncodecEncoder(nn.Module):
    """audio (batch, channels, samples) -> embeddings (batch, hidden_size, frames)."""

    def __init__(self, config):
        super().__init__()
        width = config.num_filters
        layers: list[nn.Module] = [EncodecConv1d(config, config.audio_channels, width, config.kernel_size)]
        for ratio in reversed(config.upsampling_ratios):  # downsampling, finest first
            layers += [EncodecResnetBlock(config, width, (config.dilation_growth_rate ** j, 1))
                       for j in range(config.num_residual_layers)]
            layers += [nn.ELU(), EncodecConv1d(config, width, width * 2, ratio * 2, stride=ratio)]
            width *= 2
        layers += [EncodecLSTM(config, width), nn.ELU(),
                   EncodecConv1d(config, width, config.hidden_size, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return hidden_states


class EncodecDecoder(nn.Module):
    """embeddings (batch, hidden_size, frames) -> audio (batch, channels, samples)."""

    def __init__(self, config):
        super().__init__()
        width = config.num_filters * 2 ** len(config.upsampling_ratios)
        layers: list[nn.Module] = [EncodecConv1d(config, config.hidden_size, width, config.kernel_size),
                                   EncodecLSTM(config, width)]
        for ratio in config.upsampling_ratios:
            layers += [nn.ELU(), EncodecConvTranspose1d(config, width, width // 2, ratio * 2, ratio)]
            width //= 2
            layers += [EncodecResnetBlock(config, width, (config.dilation_growth_rate ** j, 1))
                       for j in range(config.num_residual_layers)]
        layers += [nn.ELU(), EncodecConv1d(config, width, config.audio_channels, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return hidden_states


class EncodecCodebook(nn.Module):
    """One codebook: ``embed`` (codebook_size, codebook_dim); nearest entry by Euclidean distance."""

    def __init__(self, config):
        super().__init__()
        self.register_buffer("embed", torch.zeros(config.codebook_size, config.codebook_dim))

    def encode(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, frames, dim) -> (batch, frames) indices."""
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        embed = self.embed.t()
        distance = -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed + embed.pow(2).sum(0, keepdim=True))
        return distance.max(dim=-1).indices.view(hidden_states.shape[:-1])


class EncodecVectorQuantization(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.codebook = EncodecCodebook(config)

    def encode(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (batch, dim, frames) in
        return self.codebook.encode(hidden_states.permute(0, 2, 1))

    def decode(self, indices: torch.Tensor) -> torch.Tensor:  # -> (batch, dim, frames)
        return F.embedding(indices, self.codebook.embed).permute(0, 2, 1)


class EncodecResidualVectorQuantizer(nn.Module):
    """Each quantizer codes what the previous ones left (the residual); decoding sums them."""

    def __init__(self, config):
        super().__init__()
        self.codebook_size, self.frame_rate = config.codebook_size, frame_rate(config)
        self.layers = nn.ModuleList(EncodecVectorQuantization(config) for _ in range(num_quantizers(config)))

    def fit(self, state: dict, prefix: str) -> None:
        """Keep the quantizers the checkpoint holds: transformers < 4.5x counted 10 bits per
        quantizer whatever the codebook size, so its files with codebooks other than 1024
        entries hold another number than today's formula gives (the encoding then uses those)."""
        pattern = re.compile(re.escape(prefix) + r"layers\.(\d+)\.codebook\.embed$")
        held = {int(match.group(1)) for key in state if (match := pattern.match(key))}
        if held and max(held) + 1 < len(self.layers):
            del self.layers[max(held) + 1:]

    def quantizers_for(self, bandwidth: float | None) -> int:
        if bandwidth is None or bandwidth <= 0.0:
            return len(self.layers)
        per_quantizer = math.log2(self.codebook_size) * self.frame_rate
        return int(max(1, math.floor(bandwidth * 1000 / per_quantizer)))

    def encode(self, embeddings: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
        """(batch, dim, frames) -> codes (quantizers, batch, frames)."""
        residual, codes = embeddings, []
        for layer in self.layers[:self.quantizers_for(bandwidth)]:
            indices = layer.encode(residual)
            residual = residual - layer.decode(indices)
            codes.append(indices)
        return torch.stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (quantizers, batch, frames) -> (batch, dim, frames)."""
        quantized = torch.full((), 0.0, device=codes.device)
        for layer, indices in zip(self.layers, codes):
            quantized = quantized + layer.decode(indices)
        return quantized


# 3. The model.
class EncodecModel(PreTrainedModel):
    """``encode(input_values)`` -> ``audio_codes`` (chunks, batch, quantizers, frames),
    ``audio_scales``, ``last_frame_pad_length``; ``decode(audio_codes, audio_scales)`` ->
    ``audio_values`` (batch, channels, samples); ``forward`` does both."""

    model_type = "encodec"
    main_input_name = "input_values"
    config_defaults = ENCODEC_DEFAULTS
    checkpoint_renames = [(r"parametrizations\.weight\.original0$", "weight_g"),
                          (r"parametrizations\.weight\.original1$", "weight_v")]
    ignored_weights = [r"codebook\.(inited|cluster_size|embed_avg)$"]

    def __init__(self, config):
        super().__init__(config)
        if config.get("codebook_dim") is None:
            config.codebook_dim = config.hidden_size
        if 2 ** int(math.log2(config.codebook_size)) != config.codebook_size:
            raise InputError(f"EnCodec config: codebook_size={config.codebook_size} must be a power of 2.")
        self.encoder = EncodecEncoder(config)
        self.decoder = EncodecDecoder(config)
        self.quantizer = EncodecResidualVectorQuantizer(config)

    def _adapt_state(self, state: dict) -> dict:
        state = super()._adapt_state(state)
        self.quantizer.fit(state, "quantizer.")
        return state

    def _encode_frame(self, input_values: torch.Tensor, bandwidth: float):
        scale = None
        if self.config.normalize:
            mono = input_values.sum(1, keepdim=True) / input_values.shape[1]
            scale = mono.pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-8
            input_values = input_values / scale
            scale = scale.view(-1, 1)
        codes = self.quantizer.encode(self.encoder(input_values), bandwidth)
        return codes.transpose(0, 1), scale

    def encode(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None,
               bandwidth: float | None = None, return_dict: bool = True) -> Any:
        """Audio (batch, channels, samples) -> codes; ``bandwidth`` (kbps) picks how many
        quantizers (default: the config's smallest ``target_bandwidths``)."""
        bandwidths = self.config.target_bandwidths
        bandwidth = bandwidths[0] if bandwidth is None else bandwidth
        if bandwidth not in bandwidths:
            raise InputError(f"This model doesn't support the bandwidth {bandwidth}. Select one of "
                             f"{bandwidths}.")
        if input_values.dim() != 3 or not 1 <= input_values.shape[1] <= 2:
            raise InputError(f"input_values must be (batch, channels 1 or 2, samples), got shape "
                             f"{tuple(input_values.shape)}.")
        length = input_values.shape[-1]
        chunk, stride = chunking(self.config)
        if chunk is None:
            chunk = stride = length
        if padding_mask is None:
            padding_mask = torch.ones_like(input_values, dtype=torch.bool)
        else:
            padding_mask = padding_mask.view(padding_mask.shape[0], -1, padding_mask.shape[-1])
        frames, scales = [], []
        for offset in range(0, length, stride):
            mask = padding_mask[..., offset:offset + chunk].bool()
            codes, scale = self._encode_frame(mask * input_values[..., offset:offset + chunk], bandwidth)
            frames.append(codes)
            scales.append(scale)
        last_pad = frames[0].shape[-1] - frames[-1].shape[-1]
        if last_pad > 0:
            frames[-1] = F.pad(frames[-1], (0, last_pad), value=0)
        codes = torch.stack(frames)
        if not return_dict:
            return codes, scales, last_pad
        return ModelOutput(audio_codes=codes, audio_scales=scales, last_frame_pad_length=last_pad)

    def _decode_frame(self, codes: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        audio = self.decoder(self.quantizer.decode(codes.transpose(0, 1)))
        return audio if scale is None else audio * scale.view(-1, 1, 1)

    def decode(self, audio_codes: torch.Tensor, audio_scales: Any = None,
               padding_mask: torch.Tensor | None = None, return_dict: bool = True,
               last_frame_pad_length: int = 0) -> Any:
        """Codes (chunks, batch, quantizers, frames) -> ``audio_values`` (batch, channels, samples)."""
        if audio_codes.dim() != 4:
            raise InputError(f"audio_codes must be (chunks, batch, quantizers, frames), got shape "
                             f"{tuple(audio_codes.shape)}.")
        if audio_scales is None:
            audio_scales = [None] * len(audio_codes)
        chunk, stride = chunking(self.config)
        decoded = []
        for index, (codes, scale) in enumerate(zip(audio_codes, audio_scales)):
            if index == len(audio_codes) - 1 and last_frame_pad_length > 0:
                codes = codes[..., :-last_frame_pad_length]
            decoded.append(self._decode_frame(codes, scale))
        if chunk is None:
            if len(audio_codes) != 1:
                raise InputError(f"Expected one frame of codes (this model does not chunk), got "
                                 f"{len(audio_codes)}.")
            audio = decoded[0]
        else:
            audio = overlap_add(decoded, stride or 1)
        if padding_mask is not None and padding_mask.shape[-1] < audio.shape[-1]:
            audio = audio[..., :padding_mask.shape[-1]]
        return ModelOutput(audio_values=audio) if return_dict else (audio,)

    def forward(self, input_values: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None,
                bandwidth: float | None = None, audio_codes: torch.Tensor | None = None,
                audio_scales: Any = None, last_frame_pad_length: int = 0, **unused: Any) -> ModelOutput:
        if (audio_codes is None) != (audio_scales is None):
            raise InputError("Pass audio_codes and audio_scales together (or neither, to encode "
                             "input_values).")
        if padding_mask is None and input_values is not None:
            padding_mask = torch.ones_like(input_values, dtype=torch.bool)
        elif padding_mask is not None:
            padding_mask = padding_mask.view(padding_mask.shape[0], -1, padding_mask.shape[-1])
        if audio_codes is None:
            audio_codes, audio_scales, last_frame_pad_length = self.encode(
                input_values, padding_mask, bandwidth, return_dict=False)
        audio = self.decode(audio_codes, audio_scales, padding_mask,
                            last_frame_pad_length=last_frame_pad_length).audio_values
        return ModelOutput(audio_codes=audio_codes, audio_values=audio)


def overlap_add(frames: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Chunks decoded separately -> one signal: each chunk weighted by a triangle peaking at its
    middle, the sum divided by the summed weights."""
    device, dtype = frames[0].device, frames[0].dtype
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    ramp = torch.linspace(0, 1, frames[0].shape[-1] + 2, device=device, dtype=dtype)[1:-1]
    weight = 0.5 - (ramp - 0.5).abs()
    summed = torch.zeros(total, device=device, dtype=dtype)
    out = torch.zeros(*frames[0].shape[:-1], total, device=device, dtype=dtype)
    offset = 0
    for frame in frames:
        length = frame.shape[-1]
        out[..., offset:offset + length] += weight[:length] * frame
        summed[offset:offset + length] += weight[:length]
        offset += stride
    return out / summed


HEADS = {"AutoModel": EncodecModel}
