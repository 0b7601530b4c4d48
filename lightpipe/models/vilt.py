"""ViLT (Kim et al., 2021, arXiv:2102.03334): one transformer over a question's tokens and an
image's patches, with no convolutional or region features.

Matches transformers' ``models/vilt/modeling_vilt.py`` for inference. Parameter names are the
Hub checkpoints' (``vilt.embeddings.text_embeddings.word_embeddings.weight``,
``vilt.encoder.layer.0.attention.attention.query.weight``). The text embeddings are BERT's, the
encoder layers ViT's (pre-norm) with a padding mask; the image side interpolates the
position-embedding grid to each image's own patch grid.

Images of different sizes in one batch: the reference keeps each image's real patches and
fills the rest of its row with padding patches chosen at random (masked out, so they change
nothing); here the real patches come first in raster order and the padding patches follow in
order, so outputs are deterministic. The [CLS] state, the pooled output and the logits equal the
reference's; image-token states are the same set, in another order for the largest image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .bert import BertEmbeddings
from .layers import attention, merge_heads, padding_mask, run_layers, split_heads
from .vit import ViTLayer, ViTPooler, pair

# 1. Config fields read, with the defaults config.json may leave out.
VILT_DEFAULTS = {
    "vocab_size": 30522, "type_vocab_size": 2, "modality_type_vocab_size": 2,
    "max_position_embeddings": 40, "hidden_size": 768, "num_hidden_layers": 12,
    "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
    "layer_norm_eps": 1e-12, "image_size": 384, "patch_size": 32, "num_channels": 3,
    "qkv_bias": True, "max_image_length": -1, "pad_token_id": None,
    "position_embedding_type": "absolute", "pooler_output_size": None, "pooler_act": "tanh",
}


# 2. Modules.
class ViltPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        image_size, patch_size = pair(config.image_size), pair(config.patch_size)
        self.grid = (image_size[0] // patch_size[0], image_size[1] // patch_size[1])
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=patch_size,
                                    stride=patch_size)

    def forward(self, pixel_values):
        return self.projection(pixel_values.to(self.projection.weight.dtype))  # (batch, hidden, gh, gw)


class ViltEmbeddings(nn.Module):
    """Text embeddings (BERT's) and patch embeddings ([CLS] + patches + interpolated positions),
    each plus its modality embedding (0 text, 1 image), concatenated text first."""

    def __init__(self, config):
        super().__init__()
        self.text_embeddings = BertEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = ViltPatchEmbeddings(config)
        grid = self.patch_embeddings.grid
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid[0] * grid[1] + 1, config.hidden_size))
        self.token_type_embeddings = nn.Embedding(config.modality_type_vocab_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_image_length = config.max_image_length

    def positions(self, rows: int, cols: int, grid_height: int, grid_width: int) -> torch.Tensor:
        """The position grid resized to an image's (rows, cols) patches, zero-padded to the
        batch's grid: (hidden, grid_height, grid_width)."""
        hidden = self.position_embeddings.shape[-1]
        side = self.patch_embeddings.grid
        table = self.position_embeddings[:, 1:].transpose(1, 2).reshape(1, hidden, side[0], side[1])
        table = F.interpolate(table, size=(rows, cols), mode="bilinear", align_corners=True)
        return F.pad(table, (0, grid_width - cols, 0, grid_height - rows))[0]

    def visual_embed(self, pixel_values, pixel_mask):
        """-> image tokens (batch, 1 + patches, hidden) and their mask (batch, 1 + patches)."""
        patches = self.patch_embeddings(pixel_values)
        batch, hidden, grid_height, grid_width = patches.shape
        # a patch is real when its top-left pixel is (nearest-neighbour resize of the mask)
        mask = F.interpolate(pixel_mask[:, None].float(), size=(grid_height, grid_width))[:, 0].long()
        rows, cols = mask[:, :, 0].sum(1).tolist(), mask[:, 0, :].sum(1).tolist()
        cache: dict = {}
        grids = []
        for size in zip(rows, cols):
            if size not in cache:
                cache[size] = self.positions(*size, grid_height, grid_width)
            grids.append(cache[size])
        positions = torch.stack(grids).flatten(2).transpose(1, 2)  # (batch, patches, hidden)
        tokens = patches.flatten(2).transpose(1, 2) + positions.to(patches.dtype)
        mask = mask.flatten(1)  # (batch, patches)
        tokens, mask = self._select(tokens, mask)
        cls = self.cls_token.expand(batch, -1, -1) + self.position_embeddings[:, :1]
        tokens = self.dropout(torch.cat([cls.to(tokens.dtype), tokens], dim=1))
        mask = torch.cat([mask.new_ones(batch, 1), mask], dim=1)
        return tokens, mask

    def _select(self, tokens, mask):
        """Each row's real patches first (raster order), then padding patches, cut to the most
        real patches in the batch (or ``max_image_length``, sampling real patches at random
        beyond it, as the reference)."""
        counts = mask.sum(1)
        keep = int(counts.max())
        limit = self.max_image_length
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            keep = min(keep, limit)
        if keep == mask.shape[1] and bool(mask.all()):
            return tokens, mask
        rows = []
        for row in range(mask.shape[0]):
            real = mask[row].nonzero()[:, 0]
            if len(real) > keep:
                real = real[torch.multinomial(torch.ones(len(real)), keep).to(real.device)]
            rows.append(torch.cat([real, (mask[row] == 0).nonzero()[:, 0]])[:keep])
        index = torch.stack(rows)  # (batch, keep)
        tokens = tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))
        return tokens, mask.gather(1, index)

    def forward(self, input_ids, attention_mask, token_type_ids, pixel_values, pixel_mask,
                inputs_embeds=None, image_embeds=None, image_token_type_idx: int = 1):
        text = self.text_embeddings(input_ids, token_type_ids, None, inputs_embeds)
        if image_embeds is None:
            image, image_mask = self.visual_embed(pixel_values, pixel_mask)
        else:
            image, image_mask = image_embeds, pixel_mask.flatten(1)
        text = text + self.token_type_embeddings.weight[0]
        image = image + self.token_type_embeddings.weight[image_token_type_idx]
        embeddings = torch.cat([text, image], dim=1)
        return embeddings, torch.cat([attention_mask.to(image_mask.dtype), image_mask], dim=1)


class ViltLayer(ViTLayer):
    """ViT's pre-norm layer with a padding mask (text padding, image padding patches)."""

    def forward(self, hidden_states, mask=None, first_only=False):
        heads = self.attention.attention
        normed = self.layernorm_before(hidden_states)
        queries = normed[:, :1] if first_only else normed
        query = split_heads(heads.query(queries), heads.num_heads)  # (batch, heads, seq, head_dim)
        key = split_heads(heads.key(normed), heads.num_heads)
        value = split_heads(heads.value(normed), heads.num_heads)
        context = merge_heads(attention(query, key, value, mask))
        residual = hidden_states[:, :1] if first_only else hidden_states
        hidden_states = residual + self.attention.output(context)
        return hidden_states + self.output(self.intermediate(self.layernorm_after(hidden_states)))


class ViltEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(ViltLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, mask, output_hidden_states=False, first_token_only=False):
        return run_layers(self.layer, hidden_states, mask, output_hidden_states, first_token_only)


class ViltPreTrainedModel(PreTrainedModel):
    base_model_prefix = "vilt"
    config_defaults = VILT_DEFAULTS
    ignored_weights = [r"text_embeddings\.(position_ids|token_type_ids)$"]


class ViltModel(ViltPreTrainedModel):
    """``last_hidden_state`` (batch, text + 1 + patches, hidden) after the final norm, and
    ``pooler_output`` (tanh of a dense layer over the first text token)."""

    optional_weights = [r"^pooler\."]

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = ViltEmbeddings(config)
        self.encoder = ViltEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.text_embeddings.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None,
                pixel_mask=None, inputs_embeds=None, image_embeds=None,
                image_token_type_idx: int | None = None, output_hidden_states: bool = False,
                first_token_only: bool = False, **unused) -> ModelOutput:
        """``first_token_only``: the last layer computes only the first text token (for the
        pooled heads), and ``last_hidden_state`` is (batch, 1, hidden)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("ViLT needs exactly one of input_ids and inputs_embeds (the "
                             "question's tokens).")
        if (pixel_values is None) == (image_embeds is None):
            raise InputError("ViLT needs exactly one of pixel_values and image_embeds: make "
                             "pixel_values with its image processor (AutoImageProcessor).")
        text = input_ids if input_ids is not None else inputs_embeds[..., 0]
        images = pixel_values if pixel_values is not None else image_embeds
        if pixel_values is not None and (pixel_values.dim() != 4
                                         or pixel_values.shape[1] != self.config.num_channels):
            raise InputError(f"ViLT takes pixel_values of shape (batch, {self.config.num_channels}, "
                             f"height, width); got {tuple(pixel_values.shape)}.")
        if images.shape[0] != text.shape[0]:
            raise InputError(f"ViLT got {text.shape[0]} texts but {images.shape[0]} images: pass "
                             "one image per question.")
        if attention_mask is None:
            attention_mask = torch.ones(text.shape[:2], dtype=torch.long, device=text.device)
        if pixel_mask is None:
            if image_embeds is not None:
                raise InputError("With image_embeds, pass their pixel_mask (batch, patches) too.")
            pixel_mask = torch.ones((images.shape[0],) + tuple(images.shape[2:]), dtype=torch.long,
                                    device=images.device)
        hidden_states, mask = self.embeddings(
            input_ids, attention_mask, token_type_ids, pixel_values, pixel_mask, inputs_embeds,
            image_embeds, 1 if image_token_type_idx is None else image_token_type_idx)
        hidden_states, all_states = self.encoder(hidden_states, padding_mask(mask),
                                                 output_hidden_states, first_token_only)
        hidden_states = self.layernorm(hidden_states)
        pooled = self.pooler(hidden_states) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled,
                           hidden_states=all_states)


# 3. Heads.
class ViltForQuestionAnswering(ViltPreTrainedModel):
    """``logits`` (batch, num_labels): one score per answer of the model's vocabulary of
    answers (``config.id2label``); the reference scores them with a sigmoid each."""

    optional_weights = [r"^classifier\."]

    def __init__(self, config):
        super().__init__(config)
        self.vilt = ViltModel(config)
        hidden = config.hidden_size
        self.classifier = nn.Sequential(nn.Linear(hidden, hidden * 2), nn.LayerNorm(hidden * 2),
                                        nn.GELU(), nn.Linear(hidden * 2, config.num_labels))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None,
                pixel_mask=None, inputs_embeds=None, image_embeds=None,
                output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.vilt(input_ids, attention_mask, token_type_ids, pixel_values, pixel_mask,
                        inputs_embeds, image_embeds, output_hidden_states=output_hidden_states,
                        first_token_only=not output_hidden_states)
        return ModelOutput(logits=self.classifier(out.pooler_output),
                           hidden_states=out.get("hidden_states"))


HEADS = {
    "AutoModel": ViltModel,
    "AutoModelForVisualQuestionAnswering": ViltForQuestionAnswering,
}
