"""Pieces every decoder shares: the causal mask, causal attention (grouped-query included)
over a cache, and the language-model head over the last positions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput


def causal_mask(attention_mask: torch.Tensor | None, query_length: int, past_length: int,
                device: torch.device, sliding_window: int | None = None) -> torch.Tensor | None:
    """The boolean (batch or 1, 1, query, keys) mask SDPA needs, True where a query may attend;
    None when SDPA's own ``is_causal`` does the job (no padding, no window in reach, and either
    one query or an empty cache)."""
    kv_length = past_length + query_length
    if attention_mask is not None:
        if attention_mask.shape[-1] < kv_length:
            raise InputError(
                f"attention_mask has {attention_mask.shape[-1]} positions but the cache and the "
                f"input hold {kv_length} tokens: pass a mask over the past and the new tokens.")
        attention_mask = attention_mask[:, :kv_length]
        if bool(attention_mask.all()):
            attention_mask = None
    window = sliding_window if sliding_window is not None and kv_length > sliding_window else None
    if attention_mask is None and window is None and (query_length == 1 or past_length == 0):
        return None
    keys = torch.arange(kv_length, device=device)
    queries = keys[past_length:, None]  # absolute position of each query: (query, 1)
    allowed = keys <= queries
    if window is not None:
        allowed = allowed & (keys > queries - window)
    allowed = allowed[None, None]  # (1, 1, query, keys)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].to(device=device, dtype=torch.bool)
    return allowed


def decoder_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      mask: torch.Tensor | None, scale: float | None = None,
                      groups: int = 1) -> torch.Tensor:
    """Causal SDPA over (batch, heads, seq, head_dim) tensors; ``groups`` query heads share
    each key/value head (grouped-query attention). Dispatches as the reference does, so the
    numbers match: no mask -> ``is_causal`` (and ``enable_gqa``); one query with a mask -> the
    query heads of a group become that group's queries (no copy of the cache); otherwise the
    key/value heads are repeated."""
    batch, heads, query_length, head_dim = query.shape
    if groups > 1:
        if mask is None:
            return F.scaled_dot_product_attention(query, key, value, is_causal=query_length > 1,
                                                  scale=scale, enable_gqa=True)
        if query_length == 1:
            grouped = query.reshape(batch, heads // groups, groups, head_dim)
            out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=mask, scale=scale)
            return out.reshape(batch, heads, 1, head_dim)
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale,
                                          is_causal=mask is None and query_length > 1)


def lm_logits(lm_head: nn.Module, out: Any, logits_to_keep: int = 0) -> Any:
    """A causal-LM head over the base model's output: logits for the last ``logits_to_keep``
    positions (all when 0; generate() asks for 1), with the cache passed on."""
    hidden_states = out.last_hidden_state
    if logits_to_keep:
        hidden_states = hidden_states[:, -logits_to_keep:]
    return ModelOutput(logits=lm_head(hidden_states), cache=out.get("cache"))


def last_token_logits(logits: torch.Tensor, input_ids: torch.Tensor | None,
                      pad_token_id: int | None) -> torch.Tensor:
    """(batch, seq, labels) -> (batch, labels) at each row's last token that is not padding
    (the rightmost non-pad token, so left and right padding both work; the last position
    without input_ids), as the reference's decoder classifiers pool."""
    batch = logits.shape[0]
    if pad_token_id is None and batch != 1:
        raise InputError("This classifier's config has no pad_token_id, so it reads one text at "
                         "a time: pass batch_size=1, or set pad_token_id in config.json.")
    if pad_token_id is None or input_ids is None:
        return logits[:, -1]
    positions = torch.arange(input_ids.shape[-1], device=logits.device)
    real = (input_ids.to(logits.device) != pad_token_id).int()
    return logits[torch.arange(batch, device=logits.device), (positions * real).argmax(-1)]


class LastTokenClassifier:
    """Sequence classification over a decoder (``XForSequenceClassification``): a bias-free
    ``score`` layer read at each row's last non-pad token. Listed before the family's
    pre-trained base; ``model_class`` is the family's base model, kept as ``model``."""

    optional_weights = [r"^score\."]
    model_class: type

    def __init__(self, config):
        super().__init__(config)
        self.model = self.model_class(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                **unused) -> ModelOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, inputs_embeds=inputs_embeds, use_cache=False)
        logits = self.score(out.last_hidden_state)
        return ModelOutput(logits=last_token_logits(logits, input_ids,
                                                    self.config.get("pad_token_id")))
