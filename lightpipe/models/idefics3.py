"""Idefics3 (Laurençon et al., 2024, arXiv:2408.12637) and SmolVLM (Marafioti et al., 2025,
arXiv:2504.05299): ``Idefics3ForConditionalGeneration`` / ``SmolVLMForConditionalGeneration``,
a SigLIP-style vision tower, a pixel-shuffle connector and a Llama language model
(``HuggingFaceTB/SmolVLM-256M-Instruct``, ``SmolVLM-500M-Instruct``, ``SmolVLM2-*``).

Matches transformers' ``models/idefics3/modeling_idefics3.py`` and
``models/smolvlm/modeling_smolvlm.py`` for images (not videos). The processor cuts an image into
tiles of ``max_image_size`` plus a global view; ``pixel_values`` is (prompts, views padded to
the most, 3, height, width) and ``pixel_attention_mask`` marks the real pixels. Views made only
of zeros are padding and dropped. Each view goes through the tower: its patch positions are
bucketed (NaViT-style: a view of fewer patches spreads over the whole position table), padded
patches are masked out of attention. The connector's pixel shuffle folds each ``scale_factor``
x ``scale_factor`` block of patch states into one vector (``image_seq_len`` per view), a linear
projection maps it to the text width, and the rows replace, in order, the prompt's ``<image>``
tokens (``image_token_id``).

Parameter names are the same in transformers 4 and 5 (``model.vision_model.encoder.layers.0...``,
``model.connector.modality_projection.proj.weight``, ``model.text_model.layers.0...``,
``lm_head.weight``); a bare ``Idefics3Model`` checkpoint (no ``model.`` prefix) is renamed on
load. The tower's layers are CLIP/SigLIP's (``clip.CLIPEncoder``), its embeddings SigLIP's
with the bucketed positions; ``generate()`` is LLaVA's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..modeling import ModelOutput
from .clip import sub_config
from .layers import padding_mask
from .linear import Linear
from .llama import LLAMA_DEFAULTS, LlamaModel
from .llava import LlavaForConditionalGeneration
from .siglip import VISION_DEFAULTS, SiglipVisionEmbeddings, SiglipVisionTransformer
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out (Idefics3Config's, which
# SmolVLMConfig shares).
IDEFICS3_DEFAULTS = {"vision_config": None, "text_config": None, "image_token_id": 128257,
                     "scale_factor": 2, "tie_word_embeddings": False}
IDEFICS3_VISION_DEFAULTS = {**VISION_DEFAULTS, "hidden_size": 1152, "intermediate_size": 3072,
                            "num_hidden_layers": 12, "num_attention_heads": 16, "image_size": 224,
                            "patch_size": 32, "vision_use_head": False}
IDEFICS3_TEXT_DEFAULTS = {**LLAMA_DEFAULTS, "rms_norm_eps": 1e-5}


# 2. Modules.
class Idefics3VisionEmbeddings(SiglipVisionEmbeddings):
    """SigLIP's patches and position table; a view of ``rows x cols`` real patches takes the
    table's positions at the buckets of ``i / rows`` and ``j / cols`` (padded patches: 0)."""

    def forward(self, pixel_values, patch_mask):  # patch_mask: (views, rows, cols) bool
        weight = self.patch_embedding.weight
        embeddings = self.patch_embedding(pixel_values.to(weight.dtype)).flatten(2).transpose(1, 2)
        side = self.image_size // self.patch_size
        device = pixel_values.device
        boundaries = torch.arange(1 / side, 1.0, 1 / side, device=device)
        buckets = []
        for axis, count in ((1, patch_mask[:, :, 0].sum(1)), (2, patch_mask[:, 0, :].sum(1))):
            steps = torch.arange(patch_mask.shape[axis], device=device, dtype=torch.float32)
            fractions = (steps[None, :] * (1.0 / count)[:, None]).clamp(max=1.0 - 1e-6)
            buckets.append(torch.bucketize(fractions, boundaries, right=True))
        positions = (buckets[0][:, :, None] * side + buckets[1][:, None, :]).flatten(1)
        positions = positions.masked_fill(~patch_mask.flatten(1), 0)  # (views, patches)
        return embeddings + self.position_embedding(positions)


class Idefics3VisionTransformer(SiglipVisionTransformer):
    """SigLIP's tower without the pooling head, over views of any size up to ``image_size``."""

    name = "Idefics3's vision model"
    embeddings_class = Idefics3VisionEmbeddings

    def forward(self, pixel_values, patch_mask=None, output_hidden_states=False):
        check_pixels(pixel_values, self.tower_config.num_channels, self.name)
        patch = self.tower_config.patch_size
        if patch_mask is None:
            patch_mask = pixel_values.new_ones((pixel_values.shape[0], pixel_values.shape[2] // patch,
                                                pixel_values.shape[3] // patch), dtype=torch.bool)
        hidden_states = self.embeddings(pixel_values, patch_mask)
        hidden_states, states = self.encoder(hidden_states, padding_mask(patch_mask.flatten(1)),
                                             output_hidden_states)
        return ModelOutput(last_hidden_state=self.post_layernorm(hidden_states), hidden_states=states)


class Idefics3SimpleMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        width = config.vision_config.hidden_size * config.scale_factor ** 2
        self.proj = nn.Linear(width, config.text_config.hidden_size, bias=False)

    def forward(self, features):
        return self.proj(features)


class Idefics3Connector(nn.Module):
    """Pixel shuffle (each ``scale x scale`` block of patch states -> one vector, rows of the
    block outer, columns inner), then the projection to the text width."""

    def __init__(self, config):
        super().__init__()
        self.scale_factor = int(config.scale_factor)
        self.modality_projection = Idefics3SimpleMLP(config)

    def pixel_shuffle(self, states):  # (views, side*side, hidden) -> (views, tokens, hidden*s*s)
        views, seq, hidden = states.shape
        side, scale = int(seq ** 0.5), self.scale_factor
        if side * side != seq or side % scale:
            raise InputError(f"The vision tower gave {seq} patch states per view; the connector "
                             f"needs a square grid whose side divides by scale_factor={scale}: "
                             "use the processor's views (max_image_size a multiple of "
                             "patch_size * scale_factor).")
        blocks = states.view(views, side // scale, scale, side // scale, scale, hidden)
        return blocks.permute(0, 1, 3, 2, 4, 5).reshape(views, seq // scale ** 2, hidden * scale ** 2)

    def forward(self, states):
        return self.modality_projection(self.pixel_shuffle(states))


class Idefics3Model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.vision_model = Idefics3VisionTransformer(config.vision_config)
        self.connector = Idefics3Connector(config)
        self.text_model = LlamaModel(config.text_config)

    @property
    def language_model(self) -> LlamaModel:  # the name LLaVA's forward / decode hooks read
        return self.text_model


# 3. The model.
class Idefics3ForConditionalGeneration(LlavaForConditionalGeneration):
    """``generate(input_ids, pixel_values, pixel_attention_mask, attention_mask)`` as the
    reference, with the processor's outputs."""

    config_defaults = IDEFICS3_DEFAULTS
    image_input_names = ("pixel_attention_mask",)
    checkpoint_renames = [(r"^(vision_model|connector|text_model)\.", r"model.\1.")]  # a bare Idefics3Model
    keep_one_view = False  # SmolVLM runs the first view even when all are padding

    def __init__(self, config):
        super(LlavaForConditionalGeneration, self).__init__(config)
        config.vision_config = sub_config(config.vision_config, IDEFICS3_VISION_DEFAULTS)
        config.text_config = sub_config(config.text_config, IDEFICS3_TEXT_DEFAULTS)
        text_type = config.text_config.get("model_type") or "llama"
        if text_type != "llama":
            raise ConfigError(f"This {config.model_type} checkpoint's text model is {text_type!r}; "
                              "lightpipe runs Idefics3 / SmolVLM with a Llama text model only.")
        config.image_token_index = config.image_token_id  # what LLaVA's embed_with_images reads
        self.model = Idefics3Model(config)
        self.lm_head = Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)

    def active_ties(self) -> dict[str, str]:
        # the top-level flag only, as the reference (the text config's is its bare decoder's)
        return {"lm_head.weight": "model.text_model.embed_tokens.weight"} \
            if self.config.get("tie_word_embeddings") else {}

    # --- images ---
    def image_rows(self, pixel_values: torch.Tensor, pixel_attention_mask=None, **unused) -> torch.Tensor:
        """(prompts, views, 3, H, W) -> one row per image token: (tokens, text hidden)."""
        if pixel_values.dim() == 4:  # one prompt's views
            pixel_values = pixel_values[None]
        if pixel_values.dim() != 5:
            raise InputError(f"pixel_values has shape {tuple(pixel_values.shape)}; expected "
                             "(prompts, views, 3, height, width) from the processor.")
        views = pixel_values.flatten(0, 1)
        real = views.flatten(1).ne(0).any(1)  # views of zeros only are padding
        if self.keep_one_view and not bool(real.any()):
            real[0] = True
        views = views[real]
        patch = self.config.vision_config.patch_size
        rows, cols = views.shape[-2] // patch, views.shape[-1] // patch
        if pixel_attention_mask is None:
            patch_mask = None
        else:
            mask = torch.as_tensor(pixel_attention_mask, device=views.device)
            mask = mask.reshape(-1, *mask.shape[-2:])[real][:, :rows * patch, :cols * patch]
            patch_mask = mask.reshape(-1, rows, patch, cols, patch).sum(dim=(2, 4)) > 0
        states = self.model.vision_model(views, patch_mask).last_hidden_state
        features = self.model.connector(states)
        return features.reshape(-1, features.shape[-1])


class SmolVLMForConditionalGeneration(Idefics3ForConditionalGeneration):
    """SmolVLM (model_type ``smolvlm``, SmolVLM2): Idefics3's model for images."""

    keep_one_view = True


HEADS = {
    "AutoModelForImageTextToText": Idefics3ForConditionalGeneration,
    "AutoModelForVision2Seq": Idefics3ForConditionalGeneration,
}
SMOLVLM_HEADS = {
    "AutoModelForImageTextToText": SmolVLMForConditionalGeneration,
    "AutoModelForVision2Seq": SmolVLMForConditionalGeneration,
}
