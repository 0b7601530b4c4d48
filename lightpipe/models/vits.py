"""VITS text-to-speech (Kim et al. 2021, "Conditional Variational Autoencoder with Adversarial
Learning for End-to-End Text-to-Speech"), as facebook/mms-tts-* and kakao-enterprise/vits-*
checkpoints hold it; matches transformers' ``modeling_vits.py`` at inference.

text -> transformer encoder with relative positions -> prior mean / log-variance per token ->
(stochastic) duration predictor -> each token's prior repeated over its frames -> sample ->
normalising flow, reversed -> HiFi-GAN decoder -> waveform. Only the inference path is built:
the posterior encoder and the duration predictor's posterior flows serve training and their
weights are dropped on load.

Seeded sampling equals the reference's: two ``torch.randn`` draws in the same order and shapes,
first the duration noise ``(batch, 2, tokens)``, then the prior noise ``(batch, flow_size,
frames)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import InputTypeError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation

VITS_DEFAULTS: dict[str, Any] = {
    "vocab_size": 38, "hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 2,
    "window_size": 4, "use_bias": True, "ffn_dim": 768, "ffn_kernel_size": 3, "flow_size": 192,
    "hidden_act": "relu", "layer_norm_eps": 1e-5, "use_stochastic_duration_prediction": True,
    "num_speakers": 1, "speaker_embedding_size": 0, "upsample_initial_channel": 512,
    "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "leaky_relu_slope": 0.1, "depth_separable_channels": 2, "depth_separable_num_layers": 3,
    "duration_predictor_flow_bins": 10, "duration_predictor_tail_bound": 5.0,
    "duration_predictor_kernel_size": 3, "duration_predictor_num_flows": 4,
    "duration_predictor_filter_channels": 256, "prior_encoder_num_flows": 4,
    "prior_encoder_num_wavenet_layers": 4, "wavenet_kernel_size": 5, "wavenet_dilation_rate": 1,
    "speaking_rate": 1.0, "noise_scale": 0.667, "noise_scale_duration": 0.8,
    "sampling_rate": 16000, "pad_token_id": None,
}


# --- the text encoder: a transformer with windowed relative positions --------------------------

class VitsAttention(nn.Module):
    """Self-attention with learned relative-position embeddings for keys and values, within
    ``window_size`` positions either side (zero beyond)."""

    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.num_heads
        self.window_size = config.window_size
        size, bias = config.hidden_size, config.use_bias
        self.k_proj = nn.Linear(size, size, bias=bias)
        self.v_proj = nn.Linear(size, size, bias=bias)
        self.q_proj = nn.Linear(size, size, bias=bias)
        self.out_proj = nn.Linear(size, size, bias=bias)
        if self.window_size:
            self.emb_rel_k = nn.Parameter(torch.empty(1, 2 * self.window_size + 1, self.head_dim))
            self.emb_rel_v = nn.Parameter(torch.empty(1, 2 * self.window_size + 1, self.head_dim))

    def _relative_table(self, embeddings: torch.Tensor, length: int) -> torch.Tensor:
        """(2*length - 1, head_dim): the embedding of each offset -(length-1)..(length-1)."""
        table = embeddings.new_zeros(2 * length - 1, self.head_dim)
        reach = min(self.window_size, length - 1)
        w = self.window_size
        table[length - 1 - reach:length + reach] = embeddings[0, w - reach:w + reach + 1]
        return table

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, size = hidden_states.shape

        def heads(x: torch.Tensor) -> torch.Tensor:  # (batch * heads, length, head_dim)
            return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2) \
                .reshape(batch * self.num_heads, length, self.head_dim)

        query = heads(self.q_proj(hidden_states) * self.head_dim ** -0.5)
        key, value = heads(self.k_proj(hidden_states)), heads(self.v_proj(hidden_states))
        scores = torch.bmm(query, key.transpose(1, 2))  # (batch * heads, length, length)
        if self.window_size:
            # offset index of (query i, key j) in the relative table: j - i + length - 1
            positions = torch.arange(length, device=hidden_states.device)
            offsets = (positions[None, :] - positions[:, None] + length - 1)
            offsets = offsets.expand(scores.shape[0], length, length)
            relative = query @ self._relative_table(self.emb_rel_k, length).T
            scores = scores + relative.gather(-1, offsets)
        if key_mask is not None:  # (batch, length) of bool: padded keys take no weight
            scores = scores.view(batch, self.num_heads, length, length)
            scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
            scores = scores.view(batch * self.num_heads, length, length)
        probs = torch.softmax(scores, dim=-1)
        output = torch.bmm(probs, value)
        if self.window_size:
            by_offset = probs.new_zeros(probs.shape[0], length, 2 * length - 1)
            by_offset.scatter_(-1, offsets, probs)
            output = output + by_offset @ self._relative_table(self.emb_rel_v, length)
        output = output.view(batch, self.num_heads, length, self.head_dim).transpose(1, 2)
        return self.out_proj(output.reshape(batch, length, size))


class VitsFeedForward(nn.Module):
    """Two convolutions over time (kernel ``ffn_kernel_size``, padded left (k-1)//2, right k//2)."""

    def __init__(self, config):
        super().__init__()
        kernel = config.ffn_kernel_size
        self.conv_1 = nn.Conv1d(config.hidden_size, config.ffn_dim, kernel)
        self.conv_2 = nn.Conv1d(config.ffn_dim, config.hidden_size, kernel)
        self.act = activation(config.hidden_act)
        self.padding = ((kernel - 1) // 2, kernel // 2)

    def forward(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        mask = padding_mask.transpose(1, 2)  # (batch, 1, length)
        hidden = hidden_states.transpose(1, 2) * mask  # (batch, channels, length)
        hidden = self.act(self.conv_1(nn.functional.pad(hidden, self.padding)))
        hidden = self.conv_2(nn.functional.pad(hidden * mask, self.padding)) * mask
        return hidden.transpose(1, 2)


class VitsEncoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = VitsAttention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = VitsFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, padding_mask, key_mask):
        hidden_states = self.layer_norm(hidden_states + self.attention(hidden_states, key_mask))
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states, padding_mask))


class VitsEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(VitsEncoderLayer(config) for _ in range(config.num_hidden_layers))


class VitsTextEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.hidden_size, self.flow_size = config.hidden_size, config.flow_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.encoder = VitsEncoder(config)
        self.project = nn.Conv1d(config.hidden_size, 2 * config.flow_size, 1)

    def forward(self, input_ids, padding_mask, key_mask):
        """-> hidden states (batch, length, hidden), prior means and log-variances (batch,
        length, flow_size), and every layer's hidden states."""
        hidden = self.embed_tokens(input_ids) * math.sqrt(self.hidden_size) * padding_mask
        all_hidden = [hidden]
        for layer in self.encoder.layers:
            hidden = layer(hidden, padding_mask, key_mask)
            all_hidden.append(hidden)
        hidden = hidden * padding_mask
        all_hidden[-1] = hidden
        stats = self.project(hidden.transpose(1, 2)).transpose(1, 2) * padding_mask
        means, log_variances = stats.split(self.flow_size, dim=2)
        return hidden, means, log_variances, tuple(all_hidden)


# --- weight-normed convolutions and the WaveNet of the flow ----------------------------------------

class WeightNormConv1d(nn.Conv1d):
    """A Conv1d stored as ``nn.utils.weight_norm`` stores it (dim 0): ``weight_g`` (out, 1, 1)
    and ``weight_v``; the checkpoint's ``parametrizations.weight.original0/1`` are renamed."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        del self.weight
        out_channels, in_per_group, kernel = self.out_channels, self.in_channels // self.groups, \
            self.kernel_size[0]
        self.weight_g = nn.Parameter(torch.empty(out_channels, 1, 1))
        self.weight_v = nn.Parameter(torch.empty(out_channels, in_per_group, kernel))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        norm = self.weight_v.norm(dim=(1, 2), keepdim=True)
        return self._conv_forward(inputs, self.weight_g * self.weight_v / norm, self.bias)


class VitsWaveNet(nn.Module):
    """Gated dilated convolutions (tanh * sigmoid) with residual and skip outputs, optionally
    conditioned on a speaker embedding."""

    def __init__(self, config, num_layers: int):
        super().__init__()
        self.hidden_size, self.num_layers = config.hidden_size, num_layers
        size = config.hidden_size
        if config.speaker_embedding_size:
            self.cond_layer = WeightNormConv1d(config.speaker_embedding_size, 2 * size * num_layers, 1)
        self.in_layers, self.res_skip_layers = nn.ModuleList(), nn.ModuleList()
        for i in range(num_layers):
            dilation = config.wavenet_dilation_rate ** i
            padding = (config.wavenet_kernel_size * dilation - dilation) // 2
            self.in_layers.append(WeightNormConv1d(size, 2 * size, config.wavenet_kernel_size,
                                                   dilation=dilation, padding=padding))
            out = 2 * size if i < num_layers - 1 else size  # the last layer has no residual half
            self.res_skip_layers.append(WeightNormConv1d(size, out, 1))

    def forward(self, inputs, padding_mask, speaker=None):
        size = self.hidden_size
        conditioning = self.cond_layer(speaker) if speaker is not None else None
        outputs = torch.zeros_like(inputs)
        for i in range(self.num_layers):
            hidden = self.in_layers[i](inputs)
            if conditioning is not None:
                hidden = hidden + conditioning[:, 2 * size * i:2 * size * (i + 1)]
            acts = torch.tanh(hidden[:, :size]) * torch.sigmoid(hidden[:, size:])
            res_skip = self.res_skip_layers[i](acts)
            if i < self.num_layers - 1:
                inputs = (inputs + res_skip[:, :size]) * padding_mask
                outputs = outputs + res_skip[:, size:]
            else:
                outputs = outputs + res_skip
        return outputs * padding_mask


class VitsResidualCouplingLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.half_channels = config.flow_size // 2
        self.conv_pre = nn.Conv1d(self.half_channels, config.hidden_size, 1)
        self.wavenet = VitsWaveNet(config, config.prior_encoder_num_wavenet_layers)
        self.conv_post = nn.Conv1d(config.hidden_size, self.half_channels, 1)

    def reverse(self, inputs, padding_mask, speaker=None):
        first, second = inputs.split(self.half_channels, dim=1)
        hidden = self.wavenet(self.conv_pre(first) * padding_mask, padding_mask, speaker)
        mean = self.conv_post(hidden) * padding_mask
        return torch.cat([first, (second - mean) * padding_mask], dim=1)


class VitsResidualCouplingBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.flows = nn.ModuleList(VitsResidualCouplingLayer(config)
                                   for _ in range(config.prior_encoder_num_flows))

    def reverse(self, latents, padding_mask, speaker=None):
        for flow in reversed(self.flows):
            latents = flow.reverse(torch.flip(latents, [1]), padding_mask, speaker)
        return latents


# --- the HiFi-GAN decoder ---------------------------------------------------------------------------

class HifiGanResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations, leaky_relu_slope: float):
        super().__init__()
        self.slope = leaky_relu_slope
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                              padding=(kernel_size * d - d) // 2) for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size,
                                              padding=(kernel_size - 1) // 2) for _ in dilations)

    def forward(self, hidden_states):
        leaky = nn.functional.leaky_relu
        for conv1, conv2 in zip(self.convs1, self.convs2):
            hidden_states = hidden_states + conv2(leaky(conv1(leaky(hidden_states, self.slope)), self.slope))
        return hidden_states


class HifiGan(nn.Module):
    """Spectrogram (batch, bins, frames) -> waveform (batch, 1, frames * prod(upsample_rates)),
    optionally conditioned on a speaker embedding (VITS). SpeechT5's vocoder shares the layers
    (``add_hifigan_layers``) and the forward (``hifigan_forward``)."""

    def __init__(self, config, in_channels: int, speaker_channels: int = 0):
        super().__init__()
        add_hifigan_layers(self, config, in_channels, speaker_channels, conv_post_bias=False)

    def forward(self, spectrogram, speaker=None):
        return hifigan_forward(self, spectrogram, speaker)


def add_hifigan_layers(module: nn.Module, config, in_channels: int, speaker_channels: int = 0,
                       conv_post_bias: bool = False) -> None:
    """conv_pre, upsampler, resblocks, conv_post (and cond) under the checkpoints' names."""
    module.slope = config.leaky_relu_slope
    initial = config.upsample_initial_channel
    module.num_kernels = len(config.resblock_kernel_sizes)
    module.conv_pre = nn.Conv1d(in_channels, initial, 7, padding=3)
    module.upsampler = nn.ModuleList(
        nn.ConvTranspose1d(initial // 2 ** i, initial // 2 ** (i + 1), kernel, stride=rate,
                           padding=(kernel - rate) // 2)
        for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)))
    module.resblocks = nn.ModuleList(
        HifiGanResidualBlock(initial // 2 ** (i + 1), kernel, dilations, module.slope)
        for i in range(len(module.upsampler))
        for kernel, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes))
    module.conv_post = nn.Conv1d(initial // 2 ** len(module.upsampler), 1, 7, padding=3,
                                 bias=conv_post_bias)
    if speaker_channels:
        module.cond = nn.Conv1d(speaker_channels, initial, 1)


def hifigan_forward(module: nn.Module, spectrogram: torch.Tensor,
                    speaker: torch.Tensor | None = None) -> torch.Tensor:
    hidden = module.conv_pre(spectrogram)
    if speaker is not None:
        hidden = hidden + module.cond(speaker)
    for i, upsample in enumerate(module.upsampler):
        hidden = upsample(nn.functional.leaky_relu(hidden, module.slope))
        blocks = module.resblocks[i * module.num_kernels:(i + 1) * module.num_kernels]
        total = blocks[0](hidden)
        for block in blocks[1:]:
            total += block(hidden)
        hidden = total / module.num_kernels
    # the last activation uses torch's default slope (0.01), as the reference
    return torch.tanh(module.conv_post(nn.functional.leaky_relu(hidden)))


# --- duration predictors ---------------------------------------------------------------------------

class VitsDilatedDepthSeparableConv(nn.Module):
    def __init__(self, config):
        super().__init__()
        kernel, channels = config.duration_predictor_kernel_size, config.hidden_size
        self.convs_dilated, self.convs_pointwise = nn.ModuleList(), nn.ModuleList()
        self.norms_1, self.norms_2 = nn.ModuleList(), nn.ModuleList()
        for i in range(config.depth_separable_num_layers):
            dilation = kernel ** i
            self.convs_dilated.append(nn.Conv1d(channels, channels, kernel, groups=channels,
                                                dilation=dilation,
                                                padding=(kernel * dilation - dilation) // 2))
            self.convs_pointwise.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(nn.LayerNorm(channels))
            self.norms_2.append(nn.LayerNorm(channels))

    def forward(self, inputs, padding_mask, conditioning=None):
        if conditioning is not None:
            inputs = inputs + conditioning
        gelu = nn.functional.gelu
        for dilated, pointwise, norm_1, norm_2 in zip(self.convs_dilated, self.convs_pointwise,
                                                      self.norms_1, self.norms_2):
            hidden = dilated(inputs * padding_mask)
            hidden = gelu(norm_1(hidden.transpose(1, 2)).transpose(1, 2))
            hidden = gelu(norm_2(pointwise(hidden).transpose(1, 2)).transpose(1, 2))
            inputs = inputs + hidden
        return inputs * padding_mask


def _inverse_rational_quadratic_spline(inputs, widths, heights, derivatives, tail_bound: float,
                                       min_size: float = 1e-3):
    """The inverse of the monotonic piecewise rational-quadratic map on [-B, B] (identity
    outside), from unnormalised bin widths, heights and inner-knot derivatives (Durkan et al.
    2019, "Neural Spline Flows")."""
    num_bins = widths.shape[-1]
    boundary = math.log(math.exp(1 - min_size) - 1)  # softplus of it + min_size == 1
    derivatives = nn.functional.pad(derivatives, (1, 1), value=boundary)
    derivatives = min_size + nn.functional.softplus(derivatives)

    def knots(unnormalised):
        sizes = min_size + (1 - min_size * num_bins) * torch.softmax(unnormalised, dim=-1)
        edges = nn.functional.pad(torch.cumsum(sizes, dim=-1), (1, 0))
        edges = 2 * tail_bound * edges - tail_bound
        edges[..., 0], edges[..., -1] = -tail_bound, tail_bound
        return edges, edges[..., 1:] - edges[..., :-1]

    cum_widths, widths = knots(widths)
    cum_heights, heights = knots(heights)
    search = cum_heights.clone()
    search[..., -1] += 1e-6
    bin_index = (torch.sum(inputs[..., None] >= search, dim=-1) - 1).clamp(0, num_bins - 1)[..., None]

    def pick(values):
        return values.gather(-1, bin_index)[..., 0]

    x_lo, bin_width, y_lo, bin_height = pick(cum_widths), pick(widths), pick(cum_heights), pick(heights)
    slope = pick(heights / widths)
    d_lo, d_hi = pick(derivatives), derivatives[..., 1:].gather(-1, bin_index)[..., 0]
    curvature = d_lo + d_hi - 2 * slope
    offset = inputs - y_lo
    a = bin_height * (slope - d_lo) + offset * curvature
    b = bin_height * d_lo - offset * curvature
    c = -slope * offset
    root = (2 * c) / (-b - torch.sqrt(b.pow(2) - 4 * a * c))
    outputs = root * bin_width + x_lo
    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    return torch.where(inside, outputs, inputs)


class VitsConvFlow(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.filter_channels = config.hidden_size
        self.half_channels = config.depth_separable_channels // 2
        self.num_bins = config.duration_predictor_flow_bins
        self.tail_bound = config.duration_predictor_tail_bound
        self.conv_pre = nn.Conv1d(self.half_channels, self.filter_channels, 1)
        self.conv_dds = VitsDilatedDepthSeparableConv(config)
        self.conv_proj = nn.Conv1d(self.filter_channels, self.half_channels * (3 * self.num_bins - 1), 1)

    def reverse(self, inputs, padding_mask, conditioning):
        first, second = inputs.split(self.half_channels, dim=1)
        hidden = self.conv_dds(self.conv_pre(first), padding_mask, conditioning)
        hidden = self.conv_proj(hidden) * padding_mask
        batch, channels, length = first.shape
        hidden = hidden.reshape(batch, channels, -1, length).permute(0, 1, 3, 2)  # (b, c, t, 3K-1)
        bins, scale = self.num_bins, math.sqrt(self.filter_channels)
        second = _inverse_rational_quadratic_spline(
            second, hidden[..., :bins] / scale, hidden[..., bins:2 * bins] / scale,
            hidden[..., 2 * bins:], self.tail_bound)
        return torch.cat([first, second], dim=1) * padding_mask


class VitsElementwiseAffine(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.translate = nn.Parameter(torch.zeros(config.depth_separable_channels, 1))
        self.log_scale = nn.Parameter(torch.zeros(config.depth_separable_channels, 1))

    def reverse(self, inputs, padding_mask, conditioning=None):
        return (inputs - self.translate) * torch.exp(-self.log_scale) * padding_mask


class VitsStochasticDurationPredictor(nn.Module):
    """Log-durations sampled by running the duration flows backwards from noise."""

    def __init__(self, config):
        super().__init__()
        channels = config.hidden_size
        self.conv_pre = nn.Conv1d(channels, channels, 1)
        self.conv_proj = nn.Conv1d(channels, channels, 1)
        self.conv_dds = VitsDilatedDepthSeparableConv(config)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, channels, 1)
        conv_flows = [VitsConvFlow(config) for _ in range(config.duration_predictor_num_flows)]
        self.flows = nn.ModuleList([VitsElementwiseAffine(config), *conv_flows])

    def forward(self, hidden_states, padding_mask, speaker=None, noise_scale: float = 1.0):
        inputs = self.conv_pre(hidden_states)
        if speaker is not None:
            inputs = inputs + self.cond(speaker)
        inputs = self.conv_proj(self.conv_dds(inputs, padding_mask)) * padding_mask
        # Backwards through the flows, less the first conv flow (it only matters in training).
        flows = [*reversed(self.flows[2:]), self.flows[0]]
        latents = torch.randn(inputs.size(0), 2, inputs.size(2)).to(inputs.device, inputs.dtype)
        latents = latents * noise_scale
        for flow in flows:
            latents = flow.reverse(torch.flip(latents, [1]), padding_mask, inputs)
        return latents[:, :1]


class VitsDurationPredictor(nn.Module):
    """The deterministic predictor (use_stochastic_duration_prediction false)."""

    def __init__(self, config):
        super().__init__()
        kernel, filters = config.duration_predictor_kernel_size, config.duration_predictor_filter_channels
        self.conv_1 = nn.Conv1d(config.hidden_size, filters, kernel, padding=kernel // 2)
        self.norm_1 = nn.LayerNorm(filters, eps=config.layer_norm_eps)
        self.conv_2 = nn.Conv1d(filters, filters, kernel, padding=kernel // 2)
        self.norm_2 = nn.LayerNorm(filters, eps=config.layer_norm_eps)
        self.proj = nn.Conv1d(filters, 1, 1)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, config.hidden_size, 1)

    def forward(self, inputs, padding_mask, speaker=None, noise_scale: float = 1.0):
        if speaker is not None:
            inputs = inputs + self.cond(speaker)
        for conv, norm in ((self.conv_1, self.norm_1), (self.conv_2, self.norm_2)):
            inputs = norm(torch.relu(conv(inputs * padding_mask)).transpose(1, 2)).transpose(1, 2)
        return self.proj(inputs * padding_mask) * padding_mask


# --- the model ------------------------------------------------------------------------------------------

class VitsModel(PreTrainedModel):
    """``model(input_ids, attention_mask=None, speaker_id=None, speaking_rate=None)`` ->
    ``waveform`` (batch, samples), ``sequence_lengths`` (samples of each row), ``spectrogram``.
    ``model.noise_scale`` / ``model.noise_scale_duration`` / ``model.speaking_rate`` start from
    the config and may be set, as with transformers."""

    model_type = "vits"
    config_defaults = VITS_DEFAULTS
    checkpoint_renames = [(r"parametrizations\.weight\.original0$", "weight_g"),
                          (r"parametrizations\.weight\.original1$", "weight_v")]
    # Training-only parts: the posterior encoder and the duration predictor's posterior flows.
    ignored_weights = [r"^posterior_encoder\.", r"^duration_predictor\.post_"]

    def __init__(self, config):
        super().__init__(config)
        self.text_encoder = VitsTextEncoder(config)
        self.flow = VitsResidualCouplingBlock(config)
        self.decoder = HifiGan(config, config.flow_size, config.speaker_embedding_size)
        if config.use_stochastic_duration_prediction:
            self.duration_predictor = VitsStochasticDurationPredictor(config)
        else:
            self.duration_predictor = VitsDurationPredictor(config)
        if config.num_speakers > 1:
            self.embed_speaker = nn.Embedding(config.num_speakers, config.speaker_embedding_size)
        self.speaking_rate = config.speaking_rate
        self.noise_scale = config.noise_scale
        self.noise_scale_duration = config.noise_scale_duration

    def can_generate(self) -> bool:
        return False

    def _speaker(self, speaker_id) -> torch.Tensor | None:
        count = self.config.num_speakers
        if count <= 1 or speaker_id is None:  # single-speaker models ignore it, as the reference
            return None
        if isinstance(speaker_id, torch.Tensor):
            speaker_id = speaker_id.reshape(-1)
            if not ((speaker_id >= 0) & (speaker_id < count)).all():
                raise ValueError(f"speaker_id {speaker_id.tolist()} is out of range: this model has "
                                 f"{count} speakers; set speaker_id in the range 0-{count - 1}.")
        else:
            if isinstance(speaker_id, bool) or not isinstance(speaker_id, int):
                raise InputTypeError(f"speaker_id must be an integer in 0-{count - 1}, "
                                     f"not {type(speaker_id).__name__}.")
            if not 0 <= speaker_id < count:
                raise ValueError(f"speaker_id {speaker_id} is out of range: this model has {count} "
                                 f"speakers; set speaker_id in the range 0-{count - 1}.")
            speaker_id = torch.full((1,), speaker_id, device=self.device)
        return self.embed_speaker(speaker_id).unsqueeze(-1)  # (n, embedding, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                speaker_id: int | torch.Tensor | None = None, speaking_rate: float | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> ModelOutput:
        if kwargs.pop("labels", None) is not None:
            raise NotImplementedError("Training of VITS is not supported (labels=).")
        for name in ("output_attentions",):
            kwargs.pop(name, None)
        if kwargs:
            raise TypeError(f"VitsModel.forward got unexpected arguments: {', '.join(kwargs)}. "
                            "It takes input_ids, attention_mask, speaker_id and speaking_rate.")
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be (batch, tokens) with at least one token; got shape "
                             f"{tuple(input_ids.shape)}.")
        dtype = self.text_encoder.embed_tokens.weight.dtype
        key_mask = attention_mask.bool() if attention_mask is not None else None
        mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids))
        mask = mask.unsqueeze(-1).to(dtype)  # (batch, tokens, 1)
        speaker = self._speaker(speaker_id)

        hidden, means, log_variances, all_hidden = self.text_encoder(input_ids, mask, key_mask)
        hidden, mask = hidden.transpose(1, 2), mask.transpose(1, 2)  # (batch, channels, tokens)
        log_duration = self.duration_predictor(hidden, mask, speaker, self.noise_scale_duration)

        rate = self.speaking_rate if speaking_rate is None else speaking_rate
        duration = torch.ceil(torch.exp(log_duration) * mask * (1.0 / rate))  # (batch, 1, tokens)
        if not torch.isfinite(duration).all():  # the reference stops on a negative discriminant
            raise ValueError(
                "VITS predicted non-finite durations: the duration flow's spline broke down, as "
                f"it can in low precision ({dtype}) or with untrained weights. Run the model in "
                "float32 (dtype=torch.float32).")
        frames = torch.clamp_min(duration.sum(dim=(1, 2)), 1).long()
        length = int(frames.max())
        steps = torch.arange(length, device=frames.device)
        frame_mask = (steps[None, :] < frames[:, None]).unsqueeze(1).to(mask.dtype)  # (b, 1, frames)
        # Frame t belongs to token i when end(i-1) <= t < end(i): (batch, frames, tokens).
        ends = torch.cumsum(duration, dim=-1)[:, 0]  # (batch, tokens)
        before_end = (steps.to(ends.dtype)[None, :, None] < ends[:, None, :]).to(mask.dtype)
        alignment = before_end - nn.functional.pad(before_end, (1, 0))[..., :-1]
        alignment = alignment * mask * frame_mask.transpose(1, 2)

        means = torch.matmul(alignment, means).transpose(1, 2)  # (batch, flow_size, frames)
        log_variances = torch.matmul(alignment, log_variances).transpose(1, 2)
        latents = means + torch.randn_like(means) * torch.exp(log_variances) * self.noise_scale
        spectrogram = self.flow.reverse(latents, frame_mask, speaker) * frame_mask
        waveform = self.decoder(spectrogram, speaker).squeeze(1)
        hop = math.prod(self.config.upsample_rates)
        return ModelOutput(waveform=waveform, sequence_lengths=frames * hop, spectrogram=spectrogram,
                           hidden_states=all_hidden if output_hidden_states else None)

    def _init_weights(self, module: nn.Module, only: str | None = None) -> None:
        if isinstance(module, VitsElementwiseAffine):
            with torch.no_grad():
                for param in module.parameters(recurse=False):
                    param.zero_()
            return
        super()._init_weights(module, only)


HEADS = {"AutoModel": VitsModel, "AutoModelForTextToWaveform": VitsModel}
