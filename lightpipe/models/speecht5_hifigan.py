"""SpeechT5's HiFi-GAN vocoder (microsoft/speecht5_hifigan): a log-mel spectrogram (frames,
bins) -> a waveform, normalised first by the checkpoint's mean and scale. Matches
transformers' ``SpeechT5HifiGan``; the layers are VITS's decoder's (``vits.add_hifigan_layers``).
Pass it as ``vocoder=`` to the text-to-audio pipeline of a spectrogram model."""

from __future__ import annotations

from typing import Any

import torch
from ..modeling import PreTrainedModel
from .vits import add_hifigan_layers, hifigan_forward

HIFIGAN_DEFAULTS: dict[str, Any] = {
    "model_in_dim": 80, "sampling_rate": 16000, "upsample_initial_channel": 512,
    "upsample_rates": [4, 4, 4, 4], "upsample_kernel_sizes": [8, 8, 8, 8],
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "leaky_relu_slope": 0.1, "normalize_before": True,
}


class SpeechT5HifiGan(PreTrainedModel):
    """``vocoder(spectrogram)``: (batch, frames, bins) -> (batch, samples); (frames, bins) ->
    (samples,)."""

    model_type = "hifigan"
    config_defaults = HIFIGAN_DEFAULTS
    main_input_name = "spectrogram"

    def __init__(self, config):
        super().__init__(config)
        add_hifigan_layers(self, config, config.model_in_dim, conv_post_bias=True)
        self.register_buffer("mean", torch.zeros(config.model_in_dim))
        self.register_buffer("scale", torch.ones(config.model_in_dim))

    def forward(self, spectrogram: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.config.normalize_before:
            spectrogram = (spectrogram - self.mean) / self.scale
        batched = spectrogram.dim() == 3
        if not batched:
            spectrogram = spectrogram.unsqueeze(0)
        waveform = hifigan_forward(self, spectrogram.transpose(1, 2))  # (batch, 1, samples)
        return waveform.squeeze(1) if batched else waveform.reshape(-1)


HEADS = {"AutoModel": SpeechT5HifiGan}
