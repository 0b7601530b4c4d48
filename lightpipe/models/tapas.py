"""TAPAS (Herzig et al., 2020, arXiv:2004.02349): BERT over a question and a flattened table.

Matches transformers' ``models/tapas/modeling_tapas.py`` for inference. The encoder is BERT's
(bert.py); the embeddings add one token-type embedding per channel of ``token_type_ids``
(batch, seq, 7): segment, column, row, previous answer, column rank, inverse rank, numeric
relation. With ``reset_position_index_per_cell`` positions restart at every cell.

The question-answering head scores tokens, averages them per cell, and (``select_one_column``)
keeps only the cells of the most likely column; the aggregation head (WTQ, WikiSQL) reads the
pooled [CLS] state. Cells are (row, column) pairs taken from the row and column channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput
from .bert import BERT_DEFAULTS, BertModel, BertPreTrainedModel

TAPAS_DEFAULTS = {
    **BERT_DEFAULTS,
    "max_position_embeddings": 1024,
    "type_vocab_sizes": [3, 256, 256, 2, 256, 256, 10],
    "reset_position_index_per_cell": True,
    "num_aggregation_labels": 0,
    "temperature": 1.0,
    "max_num_rows": 64,
    "max_num_columns": 32,
    "select_one_column": True,
    "allow_empty_column_selection": False,
    "aggregation_labels": None,
    "no_aggregation_label_index": None,
}
EPSILON = 1e-10  # avoids dividing by an empty column's cell count
LOG_ZERO = -10000.0  # added to the logits of cells that cannot be selected


def segment_reduce(values: torch.Tensor, index: torch.Tensor, segments: int,
                   reduce: str) -> torch.Tensor:
    """(batch, seq) values grouped by (batch, seq) segment ids -> (batch, segments); an empty
    segment is 0."""
    batch = values.shape[0]
    flat = (index + torch.arange(batch, device=index.device)[:, None] * segments).reshape(-1)
    out = torch.zeros(batch * segments, dtype=torch.float, device=values.device)
    out = out.scatter_reduce(0, flat, values.reshape(-1).float(), reduce=reduce,
                             include_self=False)
    return out.view(batch, segments).to(values.dtype)


class TapasEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.channels = len(config.type_vocab_sizes)
        for i, size in enumerate(config.type_vocab_sizes):
            setattr(self, f"token_type_embeddings_{i}", nn.Embedding(size, config.hidden_size))
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, inputs_embeds=None):
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        batch, length = reference.shape
        device = reference.device
        if token_type_ids is None:
            token_type_ids = torch.zeros(batch, length, self.channels, dtype=torch.long,
                                         device=device)
        if position_ids is None:
            position_ids = torch.arange(length, device=device).expand(batch, length)
            if self.config.reset_position_index_per_cell:
                # Position within the cell: minus the first position of the token's cell.
                rows = self.config.type_vocab_sizes[2]
                cells = token_type_ids[:, :, 1] * rows + token_type_ids[:, :, 2]
                segments = self.config.type_vocab_sizes[1] * rows
                first = segment_reduce(position_ids, cells, segments, "amin")
                position_ids = torch.clamp(position_ids - first.gather(1, cells),
                                           max=self.config.max_position_embeddings - 1)
        limit = self.position_embeddings.num_embeddings
        if int(position_ids.max()) >= limit:
            raise InputError(
                f"The input has {length} tokens but this model reads at most {limit} positions. "
                "Truncate the table (truncation=True drops rows to fit).")
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        for i in range(self.channels):
            embeddings = embeddings + getattr(self, f"token_type_embeddings_{i}")(
                token_type_ids[:, :, i])
        return self.dropout(self.LayerNorm(embeddings))


class TapasPreTrainedModel(BertPreTrainedModel):
    base_model_prefix = "tapas"
    config_defaults = TAPAS_DEFAULTS
    embeddings_class = TapasEmbeddings


class TapasModel(TapasPreTrainedModel, BertModel):
    """The encoder; ``last_hidden_state`` and ``pooler_output``."""

    optional_weights = [r"^pooler\."]


class TapasForQuestionAnswering(TapasPreTrainedModel):
    """``logits`` (batch, seq): each token's cell logit, cells outside the chosen column set
    to about -10000; ``logits_aggregation`` (batch, num_aggregation_labels) when the model has
    an aggregation head."""

    ignored_weights = [r"^cls\."]

    def __init__(self, config):
        super().__init__(config)
        self.tapas = TapasModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.output_weights = nn.Parameter(torch.zeros(config.hidden_size))
        self.column_output_weights = nn.Parameter(torch.zeros(config.hidden_size))
        self.output_bias = nn.Parameter(torch.zeros([]))
        self.column_output_bias = nn.Parameter(torch.zeros([]))
        if config.num_aggregation_labels > 0:
            self.aggregation_classifier = nn.Linear(config.hidden_size,
                                                    config.num_aggregation_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states=False, **unused) -> ModelOutput:
        config = self.config
        out = self.tapas(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                         output_hidden_states)
        states = self.dropout(out.last_hidden_state)
        batch, length = states.shape[:2]
        if token_type_ids is None:
            token_type_ids = torch.zeros(batch, length, len(config.type_vocab_sizes),
                                         dtype=torch.long, device=states.device)
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, device=states.device)
        rows, columns = config.max_num_rows, config.max_num_columns
        row_ids = token_type_ids[:, :, 2].clamp(max=rows - 1)
        column_ids = token_type_ids[:, :, 1].clamp(max=columns - 1)
        cell_ids = row_ids * columns + column_ids  # (batch, seq) -> cell, row-major
        cells = rows * columns
        # 1 for cells that have a token attended to (a fraction for the question "cell").
        cell_mask = segment_reduce(attention_mask.float(), cell_ids, cells, "mean")

        token_logits = (states @ self.output_weights + self.output_bias) / config.temperature
        logits = token_logits
        if config.select_one_column:
            cell_logits = segment_reduce(token_logits, cell_ids, cells, "mean")
            column_of_cell = torch.arange(cells, device=states.device) % columns
            column_logits = self._column_logits(states, cell_ids, cell_mask, column_of_cell)
            chosen = column_logits.argmax(dim=-1, keepdim=True)  # (batch, 1)
            selectable = (column_of_cell[None] == chosen) & (column_of_cell[None] != 0)
            cell_logits = cell_logits + LOG_ZERO * (1.0 - cell_mask * selectable.float())
            logits = cell_logits.gather(1, cell_ids)

        aggregation = None
        if config.num_aggregation_labels > 0:
            aggregation = self.aggregation_classifier(out.pooler_output)
        return ModelOutput(logits=logits, logits_aggregation=aggregation,
                           hidden_states=out.get("hidden_states"))

    def _column_logits(self, states, cell_ids, cell_mask, column_of_cell) -> torch.Tensor:
        """Mean over each column's cells of the cells' mean token score: (batch, columns)."""
        columns = self.config.max_num_columns
        token_scores = states @ self.column_output_weights + self.column_output_bias
        cell_scores = segment_reduce(token_scores, cell_ids, cell_mask.shape[1], "mean")
        by_column = column_of_cell.expand_as(cell_mask)
        totals = segment_reduce(cell_scores * cell_mask, by_column, columns, "sum")
        counts = segment_reduce(cell_mask, by_column, columns, "sum")
        logits = totals / (counts + EPSILON)
        column_ids = torch.arange(columns, device=states.device)[None]
        logits = logits + LOG_ZERO * ((counts < 0.5) & (column_ids != 0)).float()
        if not self.config.allow_empty_column_selection:
            logits = logits + LOG_ZERO * (column_ids == 0).float()
        return logits


HEADS = {
    "AutoModel": TapasModel,
    "AutoModelForTableQuestionAnswering": TapasForQuestionAnswering,
    "AutoModelForQuestionAnswering": TapasForQuestionAnswering,
}
