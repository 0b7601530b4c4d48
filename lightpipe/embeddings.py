"""Sentence embeddings as sentence-transformers makes them, from the checkpoint's own files.

One place reads a sentence-transformers folder (``modules.json``: Pooling, Dense and Normalize
modules in order; ``1_Pooling/config.json``; ``sentence_bert_config.json``'s max_seq_length;
``config_sentence_transformers.json``'s prompts) and pools token vectors accordingly; a plain
checkpoint gets mean pooling and L2 normalisation. The server's ``/v1/embeddings``, the demo,
the CLI (``lightpipe run feature-extraction --pooling ...``) and Python use it::

    from lightpipe import SentenceEmbeddings
    model = SentenceEmbeddings.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    vectors = model.encode(["A man is eating food.", "A man is eating bread."])  # (2, 384)
    model.similarity(vectors, vectors)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, ModelNotFoundError
from .jsonfile import read_json

logger = logging.getLogger("lightpipe")

# sentence-transformers' pooling modes, in the order it concatenates them.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
_CONFIG_KEYS = {"cls": "cls_token", "max": "max_tokens", "mean": "mean_tokens",
                "mean_sqrt_len": "mean_sqrt_len_tokens", "weightedmean": "weightedmean_tokens",
                "lasttoken": "lasttoken"}
_ACTIVATIONS = {"Identity": None, "Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid", "GELU": "gelu"}


@dataclass
class EmbeddingSettings:
    """How token vectors become one sentence vector."""

    pooling: tuple[str, ...] = ("mean",)
    normalize: bool = True
    max_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    # After pooling, in order: ("dense", weight, bias, activation) and ("normalize",) steps.
    steps: list = field(default_factory=list)

    @property
    def pooling_name(self) -> str:
        return "+".join(self.pooling)

    def size(self, hidden_size: int) -> int:
        """The vectors' length for a model of ``hidden_size``."""
        dense = [step for step in self.steps if step[0] == "dense"]
        return int(dense[-1][1].shape[0]) if dense else hidden_size * len(self.pooling)


def read_settings(folder: Path | None, tokenizer: Any = None, *,
                  normalize_plain: bool = True) -> EmbeddingSettings:
    """The settings a checkpoint folder's sentence-transformers files give; for a folder
    without them, mean pooling, L2-normalised when ``normalize_plain`` (the server's choice, as
    OpenAI's embeddings are; sentence-transformers itself does not normalise those)."""
    settings = EmbeddingSettings(normalize=normalize_plain)
    folder = Path(folder) if folder else None
    modules = _read_modules(folder / "modules.json") if folder else None
    if isinstance(modules, list):  # a sentence-transformers checkpoint: it says what to do
        settings.normalize = False
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            path = folder / str(module.get("path", ""))
            if kind == "Pooling":
                settings.pooling = _pooling_modes(read_json(path / "config.json"), path)
            elif kind == "Dense":
                settings.steps.append(_dense(path))
            elif kind == "Normalize":
                settings.steps.append(("normalize",))
            elif kind not in ("Transformer", "") and not kind.endswith("Transformer"):
                raise ModelNotFoundError(
                    f"{folder} uses the sentence-transformers module {kind!r}, which lightpipe "
                    "does not run (it runs Transformer, Pooling, Dense and Normalize).")
        settings.max_length = read_json(folder / "sentence_bert_config.json").get("max_seq_length")
        extra = read_json(folder / "config_sentence_transformers.json")
        settings.prompts = dict(extra.get("prompts") or {})
        settings.default_prompt_name = extra.get("default_prompt_name")
    if settings.max_length is None:
        limit = getattr(tokenizer, "model_max_length", None)
        settings.max_length = limit if isinstance(limit, int) and limit < 1_000_000 else None
    return settings


def _read_modules(path: Path) -> Any:
    """modules.json, the one checkpoint file that holds a list (jsonfile.read_json reads objects)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"Could not read {path.name} in {path.parent}: {err}. The file is "
                                 "damaged; download it again.") from err


def _pooling_modes(config: dict, path: Path) -> tuple[str, ...]:
    modes = tuple(mode for mode in POOLING_MODES if config.get(f"pooling_mode_{_CONFIG_KEYS[mode]}"))
    if not modes and "pooling_mode" in config:  # the single-string form
        modes = (str(config["pooling_mode"]).replace("_tokens", "").replace("_token", ""),)
    if config.get("include_prompt") is False:
        logger.warning("%s: include_prompt=false is not applied; prompt tokens are pooled too.", path)
    return modes or ("mean",)


def _dense(path: Path) -> tuple:
    import torch

    config = read_json(path / "config.json")
    name = str(config.get("activation_function", "torch.nn.modules.linear.Identity")).rsplit(".", 1)[-1]
    if name not in _ACTIVATIONS:
        raise ModelNotFoundError(f"{path}: Dense activation {name!r} is not supported "
                                 f"(lightpipe runs {', '.join(_ACTIVATIONS)}).")
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ModelNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin for its Dense layer.")
    return ("dense", state["linear.weight"].float(), state.get("linear.bias"), _ACTIVATIONS[name])


def pool(hidden: Any, modes: tuple[str, ...] | str) -> Any:
    """(1, tokens, hidden) of one text, padding already cut off -> (hidden * len(modes),) float32."""
    import torch

    tokens = hidden[0].float()
    parts = []
    for mode in (modes,) if isinstance(modes, str) else modes:
        if mode == "cls":
            parts.append(tokens[0])
        elif mode == "max":
            parts.append(tokens.max(dim=0).values)
        elif mode == "mean":
            parts.append(tokens.mean(dim=0))
        elif mode == "mean_sqrt_len":
            parts.append(tokens.sum(dim=0) / tokens.shape[0] ** 0.5)
        elif mode == "weightedmean":
            weights = torch.arange(1, tokens.shape[0] + 1, dtype=tokens.dtype)[:, None]
            parts.append((tokens * weights).sum(dim=0) / weights.sum())
        elif mode == "lasttoken":
            parts.append(tokens[-1])
        else:
            raise InputError(f"Unknown pooling {mode!r}: use one of {', '.join(POOLING_MODES)}.")
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def finish(vector: Any, settings: EmbeddingSettings, normalize: bool | None = None) -> Any:
    """The steps after pooling (Dense layers, Normalize), then a final L2 normalisation when
    ``normalize`` (None: the settings' own choice)."""
    import torch

    for step in settings.steps:
        if step[0] == "dense":
            _, weight, bias, activation = step
            vector = torch.nn.functional.linear(vector, weight, None if bias is None else bias.float())
            if activation is not None:
                vector = getattr(torch, activation)(vector) if activation != "gelu" else \
                    torch.nn.functional.gelu(vector)
        else:
            vector = torch.nn.functional.normalize(vector, p=2, dim=0)
    if normalize if normalize is not None else settings.normalize:
        vector = torch.nn.functional.normalize(vector, p=2, dim=0)
    return vector


class SentenceEmbeddings:
    """``SentenceTransformer(...).encode(...)`` in lightpipe: one vector per sentence, pooled
    as the checkpoint's sentence-transformers files say."""

    def __init__(self, pipe: Any, settings: EmbeddingSettings):
        self.pipe, self.settings = pipe, settings

    @classmethod
    def from_pretrained(cls, model: Any, *, pooling: str | None = None, normalize: bool | None = None,
                        max_length: int | None = None, **pipeline_kwargs: Any) -> SentenceEmbeddings:
        """Load a feature-extraction model (a folder or Hub id; ``device=``, ``dtype=``,
        ``revision=``, ``token=`` as for ``pipeline()``). ``pooling`` / ``normalize`` /
        ``max_length`` override what the checkpoint says."""
        from .hub import resolve
        from .pipelines import pipeline

        pipe = pipeline("feature-extraction", model=model, **pipeline_kwargs)
        folder = None
        if isinstance(model, (str, Path)):
            hub = {k: pipeline_kwargs[k] for k in ("revision", "token") if k in pipeline_kwargs}
            folder = resolve(model, weights=False, **hub)
        settings = read_settings(folder, pipe.tokenizer, normalize_plain=False)
        override(settings, pooling=pooling, normalize=normalize, max_length=max_length)
        return cls(pipe, settings)

    @property
    def dimension(self) -> int:
        """The length of the vectors ``encode`` returns."""
        return int(self.encode("x").shape[-1])

    def encode(self, sentences: str | list[str], *, batch_size: int = 32, prompt_name: str | None = None,
               prompt: str | None = None, normalize_embeddings: bool | None = None,
               convert_to_tensor: bool = False) -> Any:
        """Sentences -> a (sentences, dimension) float32 numpy array (a tensor with
        ``convert_to_tensor=True``; one vector for one string). ``prompt_name`` picks one of
        the checkpoint's prompts (its ``default_prompt_name`` when neither is given);
        ``normalize_embeddings=True`` adds an L2 normalisation."""
        import torch

        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not all(isinstance(text, str) for text in texts):
            raise InputError("encode() takes a string or a list of strings.")
        prefix = self._prompt(prompt_name, prompt)
        texts = [prefix + text for text in texts]
        vectors = [finish(vector, self.settings, normalize_embeddings or None)
                   for vector in embed(self.pipe, texts, self.settings, batch_size)]
        out = torch.stack(vectors) if vectors else torch.empty(0, 0)
        out = out[0] if single else out
        return out if convert_to_tensor else out.numpy()

    def _prompt(self, name: str | None, prompt: str | None) -> str:
        if prompt is not None:
            return prompt
        name = name or self.settings.default_prompt_name
        if name is None:
            return ""
        if name not in self.settings.prompts:
            raise InputError(f"Prompt {name!r} is not one of this model's prompts "
                             f"({', '.join(self.settings.prompts) or 'none'}).")
        return self.settings.prompts[name]

    @staticmethod
    def similarity(a: Any, b: Any) -> Any:
        """Cosine similarity of every row of ``a`` with every row of ``b`` (a tensor)."""
        import torch

        a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        return torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T


def override(settings: EmbeddingSettings, *, pooling: str | None = None, normalize: bool | None = None,
             max_length: int | None = None) -> EmbeddingSettings:
    """Caller's choices over the checkpoint's (``pooling`` "mean", "cls", "max", ... or several
    joined by "+")."""
    if pooling is not None:
        modes = tuple(str(pooling).split("+"))
        unknown = [mode for mode in modes if mode not in POOLING_MODES]
        if unknown:
            raise InputError(f"Unknown pooling {unknown[0]!r}: use one of {', '.join(POOLING_MODES)}.")
        settings.pooling = modes
    if normalize is not None:
        settings.normalize = bool(normalize)
    if max_length is not None:
        settings.max_length = max_length
    return settings


def embed(pipe: Any, texts: list[str], settings: EmbeddingSettings, batch_size: int = 32) -> list:
    """One pooled (not yet finished) vector per text, through the feature-extraction pipeline's
    length-sorted batches, truncated to the settings' max_length."""
    tokenize = {"truncation": True, "max_length": settings.max_length} if settings.max_length else {}
    return [pool(hidden, settings.pooling)
            for hidden in pipe(texts, batch_size=batch_size, return_tensors=True, **tokenize)]


__all__ = ["EmbeddingSettings", "SentenceEmbeddings", "embed", "finish", "override", "pool",
           "read_settings"]
