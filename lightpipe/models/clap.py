"""CLAP (Wu et al., 2023, arXiv:2211.06687): an audio tower (HTSAT, a Swin transformer over the
log-mel spectrogram folded into a square image) and a RoBERTa text tower, trained so that a clip
and its description have close embeddings.

Matches transformers' ``models/clap/modeling_clap.py`` for inference. Parameter names are the Hub
checkpoints' (``audio_model.audio_encoder.layers.0.blocks.0.attention.self.query.weight``,
``text_model.encoder.layer.0.attention.self.query.weight``, ``audio_projection.linear1.weight``,
``logit_scale_a``). The Swin blocks are swin.py's, the text tower is roberta.py's.
``logits_per_audio`` (clips, texts) are cosine similarities times ``exp(logit_scale_a)``.

Fusion (``enable_fusion``): the feature extractor gives four mel maps per clip (the whole clip
squeezed, and three crops of it); for the clips marked ``is_longer`` the three crops are patch
embedded by ``mel_conv2d`` and mixed into the global map's patches by an attentional feature
fusion block (``fusion_model``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .clip import sub_config
from .layers import activation
from .roberta import ROBERTA_DEFAULTS, RobertaModel
from .swin import SwinStage
from .vit import pair

# 1. Config fields read, with the defaults config.json may leave out.
CLAP_DEFAULTS = {"projection_dim": 512, "logit_scale_init_value": 1 / 0.07,
                 "projection_hidden_act": "relu", "text_config": None, "audio_config": None}
TEXT_DEFAULTS = {**ROBERTA_DEFAULTS, "layer_norm_eps": 1e-12, "projection_dim": 512,
                 "projection_hidden_act": "relu"}
AUDIO_DEFAULTS = {
    "window_size": 8, "num_mel_bins": 64, "spec_size": 256, "hidden_act": "gelu", "patch_size": 4,
    "patch_stride": [4, 4], "hidden_size": 768, "projection_dim": 512, "depths": [2, 2, 6, 2],
    "num_attention_heads": [4, 8, 16, 32], "enable_fusion": False, "fusion_type": None,
    "patch_embed_input_channels": 1, "flatten_patch_embeds": True, "patch_embeds_hidden_size": 96,
    "enable_patch_layer_norm": True, "qkv_bias": True, "mlp_ratio": 4.0, "aff_block_r": 4,
    "projection_hidden_act": "relu", "layer_norm_eps": 1e-5,
}


# 2. Modules: the audio tower.
class ClapAudioAFFBlock(nn.Module):
    """Attentional feature fusion: a sigmoid gate from local (1x1 convs) and global (pooled)
    context weighs the global map against the crops' map."""

    def __init__(self, config):
        super().__init__()
        channels = config.patch_embeds_hidden_size
        inner = int(channels // config.aff_block_r)

        def bottleneck(*first: nn.Module) -> nn.Sequential:
            return nn.Sequential(*first, nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner),
                                 nn.ReLU(), nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))

        self.local_att = bottleneck()
        self.global_att = bottleneck(nn.AdaptiveAvgPool2d(1))

    def forward(self, hidden_states, residual):
        both = hidden_states + residual
        gate = torch.sigmoid(self.local_att(both) + self.global_att(both))
        return 2 * hidden_states * gate + 2 * residual * (1 - gate)


class ClapAudioPatchEmbed(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.img_size = pair(config.spec_size)
        patch, stride = pair(config.patch_size), pair(config.patch_stride)
        self.patch_stride = stride
        self.grid_size = (self.img_size[0] // stride[0], self.img_size[1] // stride[1])
        self.flatten = config.flatten_patch_embeds
        self.enable_fusion = config.enable_fusion
        padding = ((patch[0] - stride[0]) // 2, (patch[1] - stride[1]) // 2)
        scale = 4 if self.enable_fusion and config.fusion_type == "channel_map" else 1
        hidden = config.patch_embeds_hidden_size
        self.proj = nn.Conv2d(config.patch_embed_input_channels * scale, hidden,
                              kernel_size=patch, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(hidden) if config.enable_patch_layer_norm else nn.Identity()
        if self.enable_fusion:
            self.fusion_model = ClapAudioAFFBlock(config)
            self.mel_conv2d = nn.Conv2d(config.patch_embed_input_channels, hidden,
                                        kernel_size=(patch[0], patch[1] * 3),
                                        stride=(stride[0], stride[1] * 3), padding=padding)

    def _check(self, images) -> None:
        height, width = images.shape[-2:]
        if (height, width) != self.img_size:
            raise InputError(f"The spectrogram image is {height}x{width} but the model reads "
                             f"{self.img_size[0]}x{self.img_size[1]}: use the model's feature extractor.")

    def forward(self, images, longer_rows=None):  # images: (batch, maps, height, width)
        if self.enable_fusion:
            global_maps = images[:, 0:1]
            self._check(global_maps)
            hidden_states = self.proj(global_maps)  # (batch, hidden, grid_h, grid_w)
            if len(longer_rows) > 0:
                crops = images[longer_rows, 1:].contiguous()  # (longer, 3, height, width)
                longer, maps, height, width = crops.shape
                local = self.mel_conv2d(crops.view(longer * maps, 1, height, width))
                _, features, height, width = local.shape
                local = local.view(longer, maps, features, height, width)
                local = local.permute(0, 2, 3, 1, 4).flatten(3)  # the 3 crops side by side
                local = F.pad(local, (0, hidden_states.shape[-1] - local.shape[-1]))
                hidden_states = hidden_states.clone()
                hidden_states[longer_rows] = self.fusion_model(hidden_states[longer_rows], local)
        else:
            self._check(images)
            hidden_states = self.proj(images)
        if self.flatten:
            hidden_states = hidden_states.flatten(2).transpose(1, 2)  # (batch, patches, hidden)
        return self.norm(hidden_states)


class ClapAudioEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.patch_embed = ClapAudioPatchEmbed(config)
        self.enable_fusion = config.enable_fusion
        self.spec_size = config.spec_size
        self.freq_ratio = config.spec_size // config.num_mel_bins
        stages = len(config.depths)
        self.num_features = int(config.patch_embeds_hidden_size * 2 ** (stages - 1))
        grid = self.patch_embed.grid_size
        self.input_resolutions = [(grid[0] // 2 ** i, grid[1] // 2 ** i) for i in range(stages)]
        self.layers = nn.ModuleList(
            SwinStage(config, int(config.patch_embeds_hidden_size * 2 ** i), config.depths[i],
                      config.num_attention_heads[i], downsample=i < stages - 1)
            for i in range(stages))
        self.batch_norm = nn.BatchNorm2d(config.num_mel_bins)
        self.norm = nn.LayerNorm(self.num_features)

    def reshape_mel2img(self, features):
        """(batch, maps, time, mels) -> (batch, maps, mels * freq_ratio, time / freq_ratio): the
        spectrogram stretched to ``spec_size * freq_ratio`` frames, cut in ``freq_ratio`` pieces
        stacked along the mel axis."""
        _, _, time, freq = features.shape
        width, height = int(self.spec_size * self.freq_ratio), self.spec_size // self.freq_ratio
        if time > width or freq > height:
            raise InputError(f"The spectrogram has {time} frames and {freq} mel bins; this model "
                             f"reads at most {width} and {height}. Use the model's feature extractor.")
        if time < width:
            features = F.interpolate(features, (width, freq), mode="bicubic", align_corners=True)
        if freq < height:
            features = F.interpolate(features, (features.shape[2], height), mode="bicubic",
                                     align_corners=True)
        batch, maps, time, freq = features.shape
        features = features.reshape(batch, maps * self.freq_ratio, time // self.freq_ratio, freq)
        features = features.permute(0, 1, 3, 2).contiguous()
        return features.reshape(batch, maps, freq * self.freq_ratio, time // self.freq_ratio)

    def forward(self, input_features, is_longer=None):
        # normalise each mel bin: (batch, maps, time, mels) with mels as BatchNorm's channels
        features = self.batch_norm(input_features.transpose(1, 3)).transpose(1, 3)
        longer_rows = None
        if self.enable_fusion:
            if is_longer is None:
                raise InputError("This CLAP model fuses crops of long clips: pass is_longer (the "
                                 "feature extractor returns it) with input_features.")
            longer_rows = torch.where(is_longer.to(features.device).reshape(-1) == 1)[0]
        images = self.reshape_mel2img(features)
        frames = images.shape[2]
        hidden_states = self.patch_embed(images, longer_rows)
        for stage, dims in zip(self.layers, self.input_resolutions):
            hidden_states, _ = stage(hidden_states, dims)
        hidden_states = self.norm(hidden_states)  # (batch, tokens, channels)
        batch, _, channels = hidden_states.shape
        stride = self.patch_embed.patch_stride
        scale = 2 ** (len(self.config.depths) - 1)
        freq_size, time_size = frames // scale // stride[0], frames // scale // stride[1]
        hidden_states = hidden_states.permute(0, 2, 1).reshape(batch, channels, freq_size, time_size)
        # undo the folding: (batch, channels, freq_bins, pieces * time)
        bins = freq_size // self.freq_ratio
        hidden_states = hidden_states.reshape(batch, channels, freq_size // bins, bins, time_size)
        hidden_states = hidden_states.permute(0, 1, 3, 2, 4).reshape(batch, channels, bins, -1)
        pooled = hidden_states.flatten(2).mean(dim=-1)
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled)


class ClapProjectionLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.linear1 = nn.Linear(config.hidden_size, config.projection_dim)
        self.activation = activation(config.projection_hidden_act)
        self.linear2 = nn.Linear(config.projection_dim, config.projection_dim)

    def forward(self, hidden_states):
        return self.linear2(self.activation(self.linear1(hidden_states)))


# 3. Models.
class ClapPreTrainedModel(PreTrainedModel):
    main_input_name = "input_features"
    ignored_weights = [r"relative_position_index$", r"embeddings\.token_type_ids$"]


class ClapAudioModel(ClapPreTrainedModel):
    """The audio tower alone: ``last_hidden_state`` (batch, channels, bins, time) and
    ``pooler_output`` (batch, channels)."""

    config_defaults = AUDIO_DEFAULTS

    def __init__(self, config):
        super().__init__(config)
        self.audio_encoder = ClapAudioEncoder(config)

    def forward(self, input_features=None, is_longer=None, **unused) -> ModelOutput:
        if input_features is None:
            raise InputError("CLAP's audio model needs input_features from ClapFeatureExtractor.")
        weight = self.audio_encoder.patch_embed.proj.weight
        return self.audio_encoder(input_features.to(weight.dtype), is_longer)


def text_tower(config) -> RobertaModel:
    return RobertaModel(config, add_pooling_layer=True)


class ClapTextModelWithProjection(ClapPreTrainedModel):
    """``text_embeds`` (batch, projection_dim), not normalised, and ``last_hidden_state``."""

    config_defaults = TEXT_DEFAULTS
    main_input_name = "input_ids"

    def __init__(self, config):
        super().__init__(config)
        self.text_model = text_tower(config)
        self.text_projection = ClapProjectionLayer(config)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **unused) -> ModelOutput:
        out = self.text_model(input_ids, attention_mask, position_ids=position_ids)
        return ModelOutput(text_embeds=self.text_projection(out.pooler_output),
                           last_hidden_state=out.last_hidden_state)


class ClapAudioModelWithProjection(ClapPreTrainedModel):
    """``audio_embeds`` (batch, projection_dim), not normalised, and ``last_hidden_state``."""

    config_defaults = AUDIO_DEFAULTS

    def __init__(self, config):
        super().__init__(config)
        self.audio_model = ClapAudioModel(config)
        self.audio_projection = ClapProjectionLayer(config)

    def forward(self, input_features=None, is_longer=None, **unused) -> ModelOutput:
        out = self.audio_model(input_features, is_longer)
        return ModelOutput(audio_embeds=self.audio_projection(out.pooler_output),
                           last_hidden_state=out.last_hidden_state)


class ClapModel(ClapPreTrainedModel):
    """Both towers and their projections. ``forward(input_ids, input_features, is_longer,
    attention_mask)`` -> ``logits_per_audio`` (clips, texts), ``logits_per_text``,
    ``text_embeds``, ``audio_embeds`` (normalised), and each tower's outputs."""

    config_defaults = CLAP_DEFAULTS

    def __init__(self, config):
        super().__init__(config)
        self.text_config = sub_config(config.text_config, TEXT_DEFAULTS)
        self.audio_config = sub_config(config.audio_config, AUDIO_DEFAULTS)
        self.text_model = text_tower(self.text_config)
        self.text_projection = ClapProjectionLayer(self.text_config)
        self.audio_model = ClapAudioModel(self.audio_config)
        self.audio_projection = ClapProjectionLayer(self.audio_config)
        scale = torch.tensor(float(config.logit_scale_init_value)).log()
        self.logit_scale_a = nn.Parameter(scale.clone())
        self.logit_scale_t = nn.Parameter(scale.clone())

    def _init_weights(self, module: nn.Module, only: str | None = None) -> None:
        super()._init_weights(module, only)
        if module is self:
            with torch.no_grad():
                for name in ("logit_scale_a", "logit_scale_t"):
                    if only in (None, name):
                        getattr(self, name).fill_(float(self.config.logit_scale_init_value)).log_()

    def get_text_features(self, input_ids=None, attention_mask=None, position_ids=None, **unused) -> ModelOutput:
        """The text tower's outputs, ``pooler_output`` projected and normalised (as transformers 5)."""
        out = self.text_model(input_ids, attention_mask, position_ids=position_ids)
        return ModelOutput(last_hidden_state=out.last_hidden_state,
                           pooler_output=F.normalize(self.text_projection(out.pooler_output), dim=-1))

    def get_audio_features(self, input_features=None, is_longer=None, **unused) -> ModelOutput:
        """The audio tower's outputs, ``pooler_output`` projected and normalised (as transformers 5)."""
        out = self.audio_model(input_features, is_longer)
        return ModelOutput(last_hidden_state=out.last_hidden_state,
                           pooler_output=F.normalize(self.audio_projection(out.pooler_output), dim=-1))

    def forward(self, input_ids=None, input_features=None, is_longer=None, attention_mask=None,
                position_ids=None, **unused) -> ModelOutput:
        if input_ids is None or input_features is None:
            raise InputError("ClapModel compares texts with audio: pass both input_ids and "
                             "input_features (or use get_text_features / get_audio_features).")
        audio = self.audio_model(input_features, is_longer)
        text = self.text_model(input_ids, attention_mask, position_ids=position_ids)
        audio_embeds = self.audio_projection(audio.pooler_output)
        text_embeds = self.text_projection(text.pooler_output)
        audio_embeds = audio_embeds / audio_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = text_embeds @ audio_embeds.t() * self.logit_scale_t.exp()
        logits_per_audio = audio_embeds @ text_embeds.t() * self.logit_scale_a.exp()
        return ModelOutput(logits_per_audio=logits_per_audio, logits_per_text=logits_per_text,
                           text_embeds=text_embeds, audio_embeds=audio_embeds,
                           text_model_output=text, audio_model_output=audio)


HEADS = {
    "AutoModel": ClapModel,
}
TEXT_HEADS = {"AutoModel": ClapTextModelWithProjection}
AUDIO_HEADS = {"AutoModel": ClapAudioModelWithProjection}
