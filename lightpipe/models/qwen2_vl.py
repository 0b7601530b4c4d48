"""Qwen2-VL (Wang et al., 2024, arXiv:2409.12191) and Qwen2.5-VL (Bai et al., 2025,
arXiv:2502.13923): ``Qwen2VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration``,
a ViT over dynamic-resolution patches, a patch merger and a Qwen2 decoder with M-RoPE
(``Qwen/Qwen2-VL-2B-Instruct``, ``Qwen/Qwen2.5-VL-3B-Instruct``). Images only (no videos).

Matches transformers' ``models/qwen2_vl/modeling_qwen2_vl.py`` and
``models/qwen2_5_vl/modeling_qwen2_5_vl.py`` for inference.

- The vision tower reads the processor's patch rows (``pixel_values``: (patches,
  channels * temporal_patch_size * patch_size**2)) with ``image_grid_thw`` (one (t, h, w) per
  image): a linear patch embedding (the checkpoint's Conv3d, whose kernel equals its stride),
  2-D rotary positions (each patch's row and column, in the merger's 2x2 block order), blocks
  that attend within one image frame (Qwen2.5-VL: within windows of ``window_size`` pixels,
  the whole frame in ``fullatt_block_indexes``), then the merger (norm, 2x2 patches
  concatenated, MLP) gives one feature per image token.
- The decoder is Qwen2 (llama.py) with M-RoPE: three position planes (temporal, height,
  width); the rotary frequencies are split by ``mrope_section`` and each part takes its plane.
  Text tokens have the same position on the three planes; an image's tokens have (t, row,
  column) offset by the text before them, and the text after an image continues from the
  largest of them plus one (``rope_index``). While decoding, each plane continues one by one
  from the prompt's last position, as the reference's ``generate`` does.

Parameter names are transformers 5's (``model.visual.blocks.0...``,
``model.language_model.layers.0...``, ``lm_head.weight``); transformers 4's (``visual.*``,
``model.layers.*``) are renamed on load.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .clip import sub_config
from .decoder import lm_logits
from .layers import activation
from .linear import Linear
from .llama import QWEN2_DEFAULTS, LlamaMLP, Qwen2Model, RMSNorm, RotaryEmbedding, rope_parameters, rotate
from .llava import LlavaForConditionalGeneration

# 1. Config fields read, with the defaults config.json may leave out (Qwen2VLConfig's).
QWEN2_VL_DEFAULTS = {"vision_config": None, "text_config": None, "image_token_id": 151655,
                     "video_token_id": 151656, "vision_start_token_id": 151652,
                     "tie_word_embeddings": False}
QWEN2_VL_TEXT_DEFAULTS = {**QWEN2_DEFAULTS, "vocab_size": 152064, "hidden_size": 8192,
                          "intermediate_size": 29568, "num_hidden_layers": 80,
                          "num_attention_heads": 64, "num_key_value_heads": 8,
                          "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "max_window_layers": 80,
                          "tie_word_embeddings": False}
QWEN2_VL_VISION_DEFAULTS = {"depth": 32, "embed_dim": 1280, "hidden_size": 3584,
                            "hidden_act": "quick_gelu", "mlp_ratio": 4, "num_heads": 16,
                            "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
                            "temporal_patch_size": 2, "rope_parameters": None}
QWEN2_5_VL_VISION_DEFAULTS = {"depth": 32, "hidden_size": 3584, "hidden_act": "silu",
                              "intermediate_size": 3420, "num_heads": 16, "in_channels": 3,
                              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                              "window_size": 112, "out_hidden_size": 3584,
                              "fullatt_block_indexes": [7, 15, 23, 31], "rope_parameters": None}


def text_config_of(config) -> dict:
    """The decoder's settings: ``text_config`` (transformers 5), or the top-level fields that
    transformers 4 wrote beside ``vision_config``."""
    text = config.get("text_config")
    if text is None:
        text = {k: v for k, v in config.to_dict().items() if k not in ("vision_config", "text_config")}
    elif not isinstance(text, dict):
        return text
    return {"tie_word_embeddings": False, **text}  # not the generic default (True)


# 2. The vision tower.
def vision_positions(grid_thw: list, merge: int) -> torch.Tensor:
    """(patches, 2): each patch's (row, column) in its frame, in the order the processor lays
    patches out (``merge`` x ``merge`` blocks, row by row)."""
    rows = []
    for t, h, w in grid_thw:
        row, col = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        blocks = (h // merge, merge, w // merge, merge)
        pair = torch.stack([row.reshape(blocks).transpose(1, 2).flatten(),
                            col.reshape(blocks).transpose(1, 2).flatten()], dim=-1)
        rows.append(pair.repeat(t, 1))
    return torch.cat(rows)


def segment_attention(query, key, value, lengths: list[int], scale: float) -> torch.Tensor:
    """Attention within consecutive segments of (patches, heads, head_dim) tensors (each image
    frame or window attends to itself only); segments of one length run as one batch."""
    def attend(q, k, v):  # (segments, length, heads, head_dim)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2), scale=scale)
        return out.transpose(1, 2)

    heads, head_dim = query.shape[1:]
    if len(set(lengths)) == 1:
        shape = (len(lengths), lengths[0], heads, head_dim)
        return attend(query.view(shape), key.view(shape), value.view(shape)).reshape(query.shape)
    parts = zip(query.split(lengths), key.split(lengths), value.split(lengths))
    return torch.cat([attend(q[None], k[None], v[None])[0] for q, k, v in parts])


class VisionAttention(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads, self.scale = num_heads, (width // num_heads) ** -0.5
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)

    def forward(self, hidden_states, cos, sin, lengths):
        patches = hidden_states.shape[0]
        query, key, value = self.qkv(hidden_states).view(patches, 3, self.num_heads, -1).unbind(1)
        dtype = query.dtype  # the rotation runs in float32, as the reference's
        query, key = (rotate(t.float(), cos, sin).to(dtype) for t in (query, key))
        context = segment_attention(query, key, value, lengths, self.scale)
        return self.proj(context.reshape(patches, -1))


class VisionMLP(nn.Module):
    def __init__(self, width: int, inner: int, act: str):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(width, inner), activation(act), nn.Linear(inner, width)

    def forward(self, hidden_states):
        return self.fc2(self.act(self.fc1(hidden_states)))


class VisionBlock(nn.Module):
    """Qwen2-VL: LayerNorms and a GELU MLP; Qwen2.5-VL: RMSNorms and a SwiGLU MLP."""

    def __init__(self, config, width: int, qwen2_5: bool):
        super().__init__()
        if qwen2_5:
            self.norm1, self.norm2 = RMSNorm(width, 1e-6), RMSNorm(width, 1e-6)
            self.mlp = LlamaMLP(config, bias=True)
        else:
            self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
            self.mlp = VisionMLP(width, int(width * config.mlp_ratio), config.hidden_act)
        self.attn = VisionAttention(width, config.num_heads)

    def forward(self, hidden_states, cos, sin, lengths):
        hidden_states = hidden_states + self.attn(self.norm1(hidden_states), cos, sin, lengths)
        return hidden_states + self.mlp(self.norm2(hidden_states))


class PatchEmbed(nn.Module):
    def __init__(self, config, width: int):
        super().__init__()
        kernel = (config.temporal_patch_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.in_channels, width, kernel, stride=kernel, bias=False)

    def forward(self, pixel_values):  # (patches, C*T*P*P) -> (patches, width)
        weight = self.proj.weight
        return F.linear(pixel_values.to(weight.dtype), weight.view(weight.shape[0], -1))


class PatchMerger(nn.Module):
    """Each merge x merge block of patch states -> one feature of the decoder's width."""

    def __init__(self, width: int, out: int, merge: int, norm: nn.Module):
        super().__init__()
        self.inner = width * merge * merge
        self.ln_q = norm
        self.mlp = nn.Sequential(nn.Linear(self.inner, self.inner), nn.GELU(), nn.Linear(self.inner, out))

    def forward(self, hidden_states):
        return self.mlp(self.ln_q(hidden_states).view(-1, self.inner))


class VisionTransformer(nn.Module):
    """Qwen2-VL's tower: every block attends within each image frame."""

    qwen2_5 = False

    def __init__(self, config):
        super().__init__()
        self.config = config
        width, out = self.widths(config)
        self.merge = config.spatial_merge_size
        self.patch_embed = PatchEmbed(config, width)
        self.blocks = nn.ModuleList(VisionBlock(config, width, self.qwen2_5) for _ in range(config.depth))
        norm = RMSNorm(width, 1e-6) if self.qwen2_5 else nn.LayerNorm(width, eps=1e-6)
        self.merger = PatchMerger(width, out, self.merge, norm)
        self.register_buffer("inv_freq", self.frequencies(), persistent=False)

    @staticmethod
    def widths(config) -> tuple[int, int]:
        return config.embed_dim, config.hidden_size  # (tower, merger output)

    def frequencies(self) -> torch.Tensor:
        """Rows and columns each rotate a quarter of the head's dimensions: (head_dim / 4,)."""
        half = self.widths(self.config)[0] // self.config.num_heads // 2
        theta = (self.config.get("rope_parameters") or {}).get("rope_theta") or 10000.0
        return 1.0 / theta ** (torch.arange(0, half, 2).float() / half)

    def reset_buffers(self, device) -> None:  # called after loading (buffers built on meta)
        self.register_buffer("inv_freq", self.frequencies().to(device), persistent=False)

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patches, 2) rows and columns -> cos and signed sin, (patches, 1, head_dim), float32."""
        angles = (positions[..., None].float() * self.inv_freq).flatten(1)  # (patches, head_dim / 2)
        angles = torch.cat((angles, angles), dim=-1)[:, None]
        half = angles.shape[-1] // 2
        sin = angles.sin()
        return angles.cos(), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)

    def forward(self, pixel_values: torch.Tensor, grid_thw: list) -> torch.Tensor:
        """(patches, C*T*P*P) -> (image tokens, decoder width)."""
        hidden_states = self.patch_embed(pixel_values)
        cos, sin = self.rotary(vision_positions(grid_thw, self.merge).to(hidden_states.device))
        frames = [h * w for t, h, w in grid_thw for _ in range(t)]
        for block in self.blocks:
            hidden_states = block(hidden_states, cos, sin, frames)
        return self.merger(hidden_states)


class VisionTransformer2_5(VisionTransformer):
    """Qwen2.5-VL's tower: blocks attend within windows of ``window_size`` pixels, except the
    ``fullatt_block_indexes`` ones (the whole frame). The patches are reordered window by
    window (in units of merge x merge blocks) before the blocks and back after the merger."""

    qwen2_5 = True

    @staticmethod
    def widths(config) -> tuple[int, int]:
        return config.hidden_size, config.out_hidden_size

    def windows(self, grid_thw: list) -> tuple[torch.Tensor, list[int]]:
        """(the merge blocks' order, window by window; each window's length in patches)."""
        side = self.config.window_size // self.merge // self.config.patch_size  # in merge blocks
        order, lengths, start = [], [], 0
        for t, h, w in grid_thw:
            rows, cols = h // self.merge, w // self.merge
            index = torch.arange(t * rows * cols).view(t, rows, cols)
            for frame in index:
                for top in range(0, rows, side):
                    for left in range(0, cols, side):
                        window = frame[top:top + side, left:left + side].flatten()
                        order.append(window + start)
                        lengths.append(window.numel() * self.merge ** 2)
            start += t * rows * cols
        return torch.cat(order), lengths

    def forward(self, pixel_values: torch.Tensor, grid_thw: list) -> torch.Tensor:
        hidden_states = self.patch_embed(pixel_values)
        device, unit = hidden_states.device, self.merge ** 2
        order, windows = self.windows(grid_thw)
        order = order.to(device)

        def by_window(tensor):  # rows grouped in merge blocks, blocks in window order
            return tensor.view(-1, unit, *tensor.shape[1:])[order].flatten(0, 1)

        hidden_states = by_window(hidden_states)
        cos, sin = (by_window(t) for t in self.rotary(vision_positions(grid_thw, self.merge).to(device)))
        frames = [h * w for t, h, w in grid_thw for _ in range(t)]
        full = set(self.config.fullatt_block_indexes or [])
        for index, block in enumerate(self.blocks):
            hidden_states = block(hidden_states, cos, sin, frames if index in full else windows)
        return self.merger(hidden_states)[torch.argsort(order)]


# 3. The decoder: Qwen2 with M-RoPE.
class MultimodalRotaryEmbedding(RotaryEmbedding):
    """RoPE over three position planes (temporal, height, width): the frequencies are cut into
    ``mrope_section`` parts and part i takes plane i % 3. Positions of shape (batch, seq) are
    the same on every plane."""

    def __init__(self, config, head_dim: int, params: dict | None = None):
        params = dict(params or rope_parameters(config))
        if params["rope_type"] == "mrope":  # transformers 4's name for it
            params["rope_type"] = "default"
        self.sections = list(params.get("mrope_section") or [16, 24, 24])
        super().__init__(config, head_dim, params)

    def angles(self, position_ids: torch.Tensor) -> torch.Tensor:
        if position_ids.dim() == 2:
            position_ids = position_ids[None].expand(3, -1, -1)
        planes = position_ids[..., None].float() * self.frequencies(position_ids)  # (3, batch, seq, head_dim / 2)
        return torch.cat([part[i % 3] for i, part in enumerate(planes.split(self.sections, dim=-1))], dim=-1)


class Qwen2VLTextModel(Qwen2Model):
    config_defaults = QWEN2_VL_TEXT_DEFAULTS
    rotary_class = MultimodalRotaryEmbedding


class Qwen2VLModel(nn.Module):
    vision_class = VisionTransformer

    def __init__(self, config):
        super().__init__()
        self.visual = self.vision_class(config.vision_config)
        self.language_model = Qwen2VLTextModel(config.text_config)


class Qwen2_5_VLModel(Qwen2VLModel):
    vision_class = VisionTransformer2_5


# 4. The model.
class Qwen2VLForConditionalGeneration(LlavaForConditionalGeneration):
    """``generate(input_ids, pixel_values, image_grid_thw, attention_mask)`` as the reference,
    with the processor's outputs."""

    config_defaults = QWEN2_VL_DEFAULTS
    vision_defaults = QWEN2_VL_VISION_DEFAULTS
    model_class = Qwen2VLModel
    image_input_names = ("image_grid_thw",)
    checkpoint_renames = [  # transformers 4: the decoder at model.*, the tower at visual.*
        (r"^model\.(?!language_model\.|visual\.)", "model.language_model."),
        (r"^visual\.", "model.visual."),
    ]

    def __init__(self, config):
        super(LlavaForConditionalGeneration, self).__init__(config)
        config.vision_config = sub_config(config.vision_config, self.vision_defaults)
        config.text_config = sub_config(text_config_of(config), QWEN2_VL_TEXT_DEFAULTS)
        config.image_token_index = config.image_token_id  # what LLaVA's embed_with_images reads
        self.model = self.model_class(config)
        self.lm_head = Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.rope_deltas = None  # set by a forward over images, read by the next cached steps
        self._prompt_positions = None  # generate()'s: (positions, per-plane offsets)

    # --- images ---
    def image_rows(self, pixel_values: torch.Tensor, image_grid_thw=None, **unused) -> torch.Tensor:
        grid = _grid(image_grid_thw, pixel_values)
        return self.model.visual(pixel_values.reshape(pixel_values.shape[-2], -1), grid)

    # --- positions ---
    def rope_index(self, input_ids: torch.Tensor, image_grid_thw: Any,
                   attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """((3, batch, seq) M-RoPE positions, (batch, 1) offsets ``rope_deltas``: the largest
        position + 1 - the row's real tokens). Padding gets position 0."""
        merge = self.config.vision_config.spatial_merge_size
        grids = iter([] if image_grid_thw is None else _grid(image_grid_thw))
        positions = torch.zeros(3, *input_ids.shape, dtype=torch.long)
        deltas = []
        for row, ids in enumerate(input_ids.cpu()):
            keep = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None \
                else attention_mask[row].cpu().bool()
            is_image = (ids[keep] == self.config.image_token_id).tolist()
            pieces, next_position, start = [], 0, 0
            while start < len(is_image):
                end = start
                while end < len(is_image) and is_image[end] == is_image[start]:
                    end += 1
                if not is_image[start]:
                    pieces.append(torch.arange(next_position, next_position + end - start).expand(3, -1))
                    next_position += end - start
                else:
                    grid = next(grids, None)
                    if grid is None:
                        raise InputError("The prompt has more image token runs than image_grid_thw "
                                         "has images: pass the processor's image_grid_thw.")
                    t, h, w = grid[0], grid[1] // merge, grid[2] // merge
                    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w),
                                                indexing="ij")
                    pieces.append(torch.stack([tt, hh, ww]).reshape(3, -1) + next_position)
                    next_position += max(h, w)
                start = end
            placed = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)
            if placed.shape[1] != len(is_image):
                raise InputError(f"Image tokens and image_grid_thw do not match in row {row}: "
                                 "each image's <|image_pad|> tokens must number t*h*w / "
                                 f"{merge ** 2} of its grid; let the processor expand them.")
            positions[:, row, keep] = placed
            deltas.append((int(placed.max()) + 1 if placed.numel() else 0) - len(is_image))
        device = input_ids.device
        return positions.to(device), torch.tensor(deltas, device=device)[:, None]

    def _positions(self, input_ids, image_grid_thw, attention_mask, position_ids, cache, seq):
        """The (3, batch, seq) positions of this forward, as the reference picks them."""
        past = cache.get_seq_length() if cache is not None else 0
        prompt = self._prompt_positions
        if prompt is not None and position_ids is not None and position_ids.dim() == 2:
            # generate(): the text positions shifted per plane; the prompt's own where known
            positions, offsets = prompt
            rows = position_ids.shape[0]
            if positions.shape[1] != rows:  # beams / several sequences per prompt
                positions = positions.repeat_interleave(rows // positions.shape[1], dim=1)
                offsets = offsets.repeat_interleave(rows // offsets.shape[1], dim=1)
            out = position_ids[None] + offsets
            known = max(0, min(seq, positions.shape[-1] - past))
            out[..., :known] = positions[..., past:past + known]
            return out
        if position_ids is not None:
            return position_ids[1:] if position_ids.dim() == 3 and position_ids.shape[0] == 4 \
                else position_ids
        if input_ids is not None and image_grid_thw is not None and past == 0:
            positions, self.rope_deltas = self.rope_index(input_ids, image_grid_thw, attention_mask)
            return positions
        if past and self.rope_deltas is not None:
            if attention_mask is not None:
                text = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)[:, -seq:]
            else:
                text = torch.arange(past, past + seq, device=self.device)[None]
            deltas = self.rope_deltas
            rows = max(text.shape[0], deltas.shape[0])
            return (text + deltas.repeat_interleave(rows // deltas.shape[0], dim=0))[None].expand(3, -1, -1)
        return None

    # --- running ---
    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None,
                cache=None, inputs_embeds=None, use_cache=None, logits_to_keep: int = 0,
                image_grid_thw=None, mm_token_type_ids=None, **kwargs):
        if inputs_embeds is None:
            if input_ids is None:
                raise InputError("Pass input_ids (with pixel_values and image_grid_thw for the "
                                 "images) or inputs_embeds.")
            if pixel_values is None and cache is not None and cache.get_seq_length():
                # a decoding step: a generated image token is a plain token, as the reference's
                inputs_embeds = self.get_input_embeddings()(input_ids)
            else:
                inputs_embeds = self.embed_with_images(input_ids, pixel_values, image_grid_thw=image_grid_thw)
        elif pixel_values is not None:
            raise InputError("Pass pixel_values with input_ids, not with inputs_embeds.")
        positions = self._positions(input_ids, image_grid_thw, attention_mask, position_ids, cache,
                                    inputs_embeds.shape[1])
        out = self.model.language_model(None, attention_mask, positions, cache, inputs_embeds, use_cache)
        return lm_logits(self.lm_head, out, logits_to_keep)

    @torch.no_grad()
    def generate(self, input_ids=None, pixel_values=None, attention_mask=None, inputs_embeds=None,
                 image_grid_thw=None, mm_token_type_ids=None, **kwargs):
        """As the reference: the prompt ids (with pixel_values and image_grid_thw) -> prompt
        ids + new tokens, decoded with the prompt's M-RoPE positions."""
        if input_ids is None:
            raise InputError("generate() needs the prompt's input_ids (the processor's output): "
                             "its M-RoPE positions come from the image tokens.")
        input_ids = input_ids.to(self.device)
        mask = attention_mask.to(self.device) if attention_mask is not None else None
        positions, _ = self.rope_index(input_ids, image_grid_thw, mask)
        text = torch.arange(input_ids.shape[1], device=self.device)[None] if mask is None else \
            (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        # After the prompt each plane goes on one by one from the last prompt position.
        self._prompt_positions = (positions, positions[..., -1:] - text[None, :, -1:])
        try:
            return super().generate(input_ids=input_ids, pixel_values=pixel_values,
                                    attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                    image_grid_thw=image_grid_thw, **kwargs)
        finally:
            self._prompt_positions = None


class Qwen2_5_VLForConditionalGeneration(Qwen2VLForConditionalGeneration):
    vision_defaults = QWEN2_5_VL_VISION_DEFAULTS
    model_class = Qwen2_5_VLModel


def _grid(image_grid_thw: Any, pixel_values: torch.Tensor | None = None) -> list[list[int]]:
    """image_grid_thw as [[t, h, w], ...], checked against the patch rows when given."""
    if image_grid_thw is None:
        raise InputError("Qwen2-VL needs image_grid_thw with pixel_values (the processor's "
                         "output): the (t, h, w) patch grid of each image.")
    grid = torch.as_tensor(image_grid_thw).reshape(-1, 3).tolist()
    if pixel_values is not None:
        patches = sum(t * h * w for t, h, w in grid)
        if pixel_values.dim() < 2 or pixel_values.shape[-2] != patches:
            raise InputError(f"pixel_values has shape {tuple(pixel_values.shape)} but image_grid_thw "
                             f"{grid} needs {patches} patch rows: pass both from one processor call.")
    return grid


HEADS = {"AutoModelForImageTextToText": Qwen2VLForConditionalGeneration,
         "AutoModelForVision2Seq": Qwen2VLForConditionalGeneration}
QWEN2_5_HEADS = {"AutoModelForImageTextToText": Qwen2_5_VLForConditionalGeneration,
                 "AutoModelForVision2Seq": Qwen2_5_VLForConditionalGeneration}
