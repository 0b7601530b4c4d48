"""VideoMAE (Tong et al., 2022, arXiv:2203.12602): a video as a sequence of space-time patches.

Matches transformers' ``models/videomae/modeling_videomae.py`` for inference. A clip of
``num_frames`` frames is cut into tubelets (``tubelet_size`` frames x ``patch_size`` pixels
squared) by one Conv3d; a fixed sinusoidal table (not learnt, not in the checkpoint) gives the
positions; the encoder layers are ViT's pre-norm layers, except that the attention's query and
value biases are separate parameters (``q_bias``, ``v_bias``, the Hub checkpoints' names) and
the key has none. The classifier reads the mean of all tokens through ``fc_norm``
(``use_mean_pooling``), or the first token after a final norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import attention, merge_heads, split_heads
from .vit import ENCODER_DEFAULTS, ViTEncoder, ViTSelfAttention, pair

# 1. Config fields read, with the defaults config.json may leave out.
VIDEOMAE_DEFAULTS = {
    **ENCODER_DEFAULTS,  # ViT's
    "num_frames": 16,
    "tubelet_size": 2,
    "qv_bias": True,
    "use_mean_pooling": True,
}


def sinusoid_table(positions: int, dim: int, device=None) -> torch.Tensor:
    """(1, positions, dim): sin on even features, cos on odd ones, with the wavelength of
    feature j set by 10000 ** (2 * (j // 2) / dim); computed in float64 as the reference, kept
    in float32."""
    position = torch.arange(positions, dtype=torch.float64, device=device)[:, None]
    exponent = 2 * (torch.arange(dim, device=device) // 2).to(torch.float64) / dim
    angles = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64, device=device), exponent)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32)[None]


# 2. Modules.
class VideoMAEPatchEmbeddings(nn.Module):
    """(batch, frames, channels, height, width) -> (batch, tubelets, hidden) with one Conv3d."""

    def __init__(self, config):
        super().__init__()
        self.image_size, self.patch_size = pair(config.image_size), pair(config.patch_size)
        self.tubelet_size = int(config.tubelet_size)
        self.num_frames = int(config.num_frames)
        self.num_channels = config.num_channels
        self.num_patches = ((self.image_size[0] // self.patch_size[0])
                            * (self.image_size[1] // self.patch_size[1])
                            * (self.num_frames // self.tubelet_size))
        kernel = (self.tubelet_size, *self.patch_size)
        self.projection = nn.Conv3d(config.num_channels, config.hidden_size, kernel_size=kernel,
                                    stride=kernel)

    def forward(self, pixel_values):
        pixel_values = pixel_values.permute(0, 2, 1, 3, 4)  # (batch, channels, frames, height, width)
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (batch, tubelets, hidden)


class VideoMAEEmbeddings(nn.Module):
    """Tubelet embeddings + the fixed sinusoidal position table (a buffer rebuilt after
    loading, never read from a checkpoint)."""

    def __init__(self, config):
        super().__init__()
        self.patch_embeddings = VideoMAEPatchEmbeddings(config)
        self.num_patches = self.patch_embeddings.num_patches
        self.hidden_size = config.hidden_size
        self.register_buffer("position_embeddings",
                             sinusoid_table(self.num_patches, self.hidden_size), persistent=False)

    def reset_buffers(self, device) -> None:  # called after loading (buffers built on meta)
        self.register_buffer("position_embeddings",
                             sinusoid_table(self.num_patches, self.hidden_size, device), persistent=False)

    def forward(self, pixel_values, bool_masked_pos=None):
        embeddings = self.patch_embeddings(pixel_values)
        embeddings = embeddings + self.position_embeddings.to(embeddings.dtype)
        if bool_masked_pos is not None:  # keep only the visible tubelets (pre-training)
            batch, _, hidden = embeddings.shape
            embeddings = embeddings[~bool_masked_pos.to(torch.bool)].reshape(batch, -1, hidden)
        return embeddings


class VideoMAESelfAttention(ViTSelfAttention):
    """ViT's projections without bias; ``q_bias`` and ``v_bias`` are added to the query and
    value (the key gets none), when ``qv_bias``."""

    def __init__(self, config):
        super().__init__(config, bias=False)
        if config.qv_bias:
            self.q_bias = nn.Parameter(torch.zeros(config.hidden_size))
            self.v_bias = nn.Parameter(torch.zeros(config.hidden_size))
        else:
            self.q_bias = self.v_bias = None

    def forward(self, hidden_states):
        query = split_heads(F.linear(hidden_states, self.query.weight, self.q_bias), self.num_heads)
        key = split_heads(self.key(hidden_states), self.num_heads)  # (batch, heads, seq, head_dim)
        value = split_heads(F.linear(hidden_states, self.value.weight, self.v_bias), self.num_heads)
        return merge_heads(attention(query, key, value, None))


class VideoMAEPreTrainedModel(PreTrainedModel):
    base_model_prefix = "videomae"
    config_defaults = VIDEOMAE_DEFAULTS
    main_input_name = "pixel_values"
    # Checkpoints saved with the newer in-memory names; the pre-training decoder; a position
    # table some conversions stored although it is fixed.
    checkpoint_renames = [(r"attention\.attention\.query\.bias$", "attention.attention.q_bias"),
                          (r"attention\.attention\.value\.bias$", "attention.attention.v_bias")]
    ignored_weights = [r"^(decoder|encoder_to_decoder)\.", r"^mask_token$",
                       r"(^|\.)position_embeddings$"]


def check_video(pixel_values: torch.Tensor | None, config, model: str) -> None:
    frames, channels = config.num_frames, config.num_channels
    height, width = pair(config.image_size)
    expected = f"(batch, {frames}, {channels}, {height}, {width})"
    if pixel_values is None:
        raise InputError(f"{model} needs pixel_values {expected}: use its image processor "
                         "(AutoImageProcessor) on the video's frames to make them.")
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 5:
        shape = tuple(getattr(pixel_values, "shape", ()))
        raise InputError(f"{model} takes pixel_values of shape (batch, frames, channels, height, "
                         f"width) = {expected}; got {shape or type(pixel_values).__name__}.")
    _, got_frames, got_channels, got_height, got_width = pixel_values.shape
    if got_channels != channels or (got_height, got_width) != (height, width):
        raise InputError(f"{model} takes pixel_values of shape {expected}; got "
                         f"{tuple(pixel_values.shape)}. Resize the frames with the model's image "
                         "processor.")
    if got_frames != frames:
        raise InputError(f"This model reads clips of exactly {frames} frames (config.num_frames: its "
                         f"position table is fixed), but got {got_frames}. Sample {frames} frames "
                         f"(num_frames={frames}).")


class VideoMAEModel(VideoMAEPreTrainedModel):
    """``last_hidden_state`` (batch, tubelets, hidden); normed at the end unless the config
    pools by mean (then the classifier's ``fc_norm`` does it)."""

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = VideoMAEEmbeddings(config)
        self.encoder = ViTEncoder(config, VideoMAESelfAttention)  # ViT's layers
        self.layernorm = (None if config.use_mean_pooling
                          else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps))

    def forward(self, pixel_values=None, bool_masked_pos=None, output_hidden_states: bool = False,
                **unused) -> ModelOutput:
        check_video(pixel_values, self.config, type(self).__name__)
        weight = self.embeddings.patch_embeddings.projection.weight
        hidden_states = self.embeddings(pixel_values.to(dtype=weight.dtype), bool_masked_pos)
        hidden_states, all_states = self.encoder(hidden_states, output_hidden_states)
        if self.layernorm is not None:
            hidden_states = self.layernorm(hidden_states)
        return ModelOutput(last_hidden_state=hidden_states, hidden_states=all_states)


# 3. Heads.
class VideoMAEForVideoClassification(VideoMAEPreTrainedModel):
    optional_weights = [r"^classifier\.", r"^fc_norm\."]

    def __init__(self, config):
        super().__init__(config)
        self.videomae = VideoMAEModel(config)
        # nn.LayerNorm's default eps (1e-5), not config.layer_norm_eps, as the reference.
        self.fc_norm = nn.LayerNorm(config.hidden_size) if config.use_mean_pooling else None
        self.classifier = (nn.Linear(config.hidden_size, config.num_labels)
                           if config.num_labels > 0 else nn.Identity())

    def forward(self, pixel_values=None, output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.videomae(pixel_values, output_hidden_states=output_hidden_states)
        states = out.last_hidden_state
        pooled = self.fc_norm(states.mean(1)) if self.fc_norm is not None else states[:, 0]
        return ModelOutput(logits=self.classifier(pooled), hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": VideoMAEModel,
    "AutoModelForVideoClassification": VideoMAEForVideoClassification,
}
