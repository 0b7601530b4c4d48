"""Blocks shared by the vision families: backbone stage selection (``out_features`` /
``out_indices``), the backbone output, running stages, batch-norm models, and channels-first
layer norm."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modeling import ModelOutput


def stage_names(config) -> list[str]:
    names = config.get("stage_names")
    if not names:
        names = ["stem"] + [f"stage{i}" for i in range(1, len(config.depths) + 1)]
        config.stage_names = names
    return list(names)


def align_out_features(config, out_features: Any = None, out_indices: Any = None) -> None:
    """Set ``config.out_features`` and ``config.out_indices`` consistently from what the caller
    gave (either, both, or neither: then the config's, or the last stage), as the reference."""
    names = stage_names(config)
    if out_features is None and out_indices is None:
        out_features, out_indices = config.get("out_features"), config.get("out_indices")
        if out_features is None and out_indices is None:
            out_features, out_indices = [names[-1]], [len(names) - 1]
    if out_features is not None:
        out_features = list(out_features)
        unknown = [f for f in out_features if f not in names]
        if unknown:
            raise InputError(f"out_features {unknown} are not stages of this model; its stages are "
                             f"{names}.")
    if out_indices is not None:
        out_indices = list(out_indices)
        bad = [i for i in out_indices if not -len(names) <= i < len(names)]
        if bad:
            raise InputError(f"out_indices {bad} are out of range: this model has {len(names)} "
                             f"stages ({names}).")
    if out_features is None:
        out_features = [names[i] for i in out_indices]
    elif out_indices is None:
        out_indices = [names.index(f) for f in out_features]
    elif [names[i] for i in out_indices] != out_features:
        raise InputError(f"out_features {out_features} and out_indices {out_indices} name "
                         "different stages: pass one of them, or both for the same stages.")
    positions = [names.index(f) for f in out_features]
    if len(set(positions)) != len(positions) or positions != sorted(positions):
        raise InputError(f"out_features {out_features} must be distinct stages in the model's order "
                         f"({names}).")
    config.out_features, config.out_indices = out_features, out_indices


class BackboneMixin:
    """``out_features``, ``out_indices``, ``stage_names`` and ``channels`` of a backbone; the
    class sets ``num_features`` (channels of each stage, stem first). It loads a classification
    checkpoint (``resnet.embedder...``) as well as a backbone one (``embedder...``)."""

    num_features: list[int]

    def __init__(self, config):
        super().__init__(config)
        align_out_features(config, config.get("out_features"), config.get("out_indices"))

    def _adapt_state(self, state: dict) -> dict:
        prefix = self.base_model_prefix + "."
        return super()._adapt_state({k[len(prefix):] if k.startswith(prefix) else k: v
                                     for k, v in state.items()})

    @classmethod
    def from_pretrained(cls, name_or_path, *, out_features: Any = None, out_indices: Any = None,
                        config=None, **kwargs: Any):
        from ..config import Config
        from ..hub import resolve

        if config is None:
            config = Config.from_folder(resolve(name_or_path, revision=kwargs.get("revision"),
                                                token=kwargs.get("token")))
        align_out_features(config, out_features, out_indices)
        return super().from_pretrained(name_or_path, config=config, **kwargs)

    @property
    def stage_names(self) -> list[str]:
        return stage_names(self.config)

    @property
    def out_features(self) -> list[str]:
        return list(self.config.out_features)

    @property
    def out_indices(self) -> list[int]:
        return list(self.config.out_indices)

    @property
    def channels(self) -> list[int]:
        return [self.num_features[self.stage_names.index(f)] for f in self.out_features]

    def backbone_output(self, stages: list[torch.Tensor], output_hidden_states: bool = False,
                        norms: nn.ModuleDict | None = None) -> ModelOutput:
        """Every stage's (batch, channels, height, width) map, stem first -> the selected ones."""
        maps = []
        for name, state in zip(self.stage_names, stages):
            if name in self.out_features:
                maps.append(norms[name](state) if norms is not None else state)
        return ModelOutput(feature_maps=tuple(maps),
                           hidden_states=tuple(stages) if output_hidden_states else None)


def run_stages(stages, hidden_state: torch.Tensor):
    """Apply ``stages`` in turn -> (last map, every map: the input's, then each stage's)."""
    maps = [hidden_state]
    for stage in stages:
        hidden_state = stage(hidden_state)
        maps.append(hidden_state)
    return hidden_state, maps


class BatchNormMixin:
    """A model with batch norms: fresh ones start with reset running statistics, and
    checkpoints may leave out ``num_batches_tracked`` (a training counter)."""

    optional_weights = [r"num_batches_tracked$"]

    def _init_weights(self, module, only=None):
        super()._init_weights(module, only)
        if isinstance(module, nn.BatchNorm2d) and only in (None, "running_var", "running_mean"):
            module.reset_running_stats()


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (batch, channels, height, width) map."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states.permute(0, 2, 3, 1)
        hidden_states = F.layer_norm(hidden_states, self.normalized_shape, self.weight, self.bias, self.eps)
        return hidden_states.permute(0, 3, 1, 2)
