"""SpeechT5's HiFi-GAN vocoder against the reference: batched and unbatched spectrograms, the
mean/scale normalisation on and off, and both model_type names ("hifigan" on the Hub)."""

from __future__ import annotations

import json

import pytest
import torch

from lightpipe import AutoModel
from lightpipe.models.speecht5_hifigan import SpeechT5HifiGan

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("normalize_before,model_type", [(True, None), (False, "hifigan")])
def test_vocoder_equals_reference(tmp_path, normalize_before, model_type):
    config = transformers.SpeechT5HifiGanConfig(
        model_in_dim=12, upsample_initial_channel=16, upsample_rates=[2, 3],
        upsample_kernel_sizes=[4, 6], resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 2], [1, 3]], sampling_rate=12000, leaky_relu_slope=0.2,
        normalize_before=normalize_before)
    torch.manual_seed(0)
    theirs = transformers.SpeechT5HifiGan(config).eval()
    with torch.no_grad():
        theirs.mean.normal_()
        theirs.scale.uniform_(0.5, 2.0)
    theirs.save_pretrained(tmp_path)
    if model_type:  # the name microsoft/speecht5_hifigan's config.json writes
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "model_type": model_type}))
    ours = AutoModel.from_pretrained(tmp_path)
    assert type(ours) is SpeechT5HifiGan and ours.config.sampling_rate == 12000
    spectrograms = torch.randn(2, 9, 12)
    with torch.no_grad():
        torch.testing.assert_close(ours(spectrograms), theirs(spectrograms), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours(spectrograms[0]), theirs(spectrograms[0]), rtol=1e-5, atol=1e-6)
        samples = theirs(spectrograms).shape[1]
        assert ours(spectrograms).shape == (2, samples) and ours(spectrograms[0]).shape == (samples,)
