"""Config: attribute access over ``config.json``; AutoConfig."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError, refuse_remote_code
from .hub import resolve

# Fields every transformers config has, whatever the model type.
_COMMON_DEFAULTS: dict[str, Any] = {
    "architectures": None,
    "problem_type": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "tie_word_embeddings": True,
    "is_encoder_decoder": False,
    "task_specific_params": None,
    "torch_dtype": None,
}


# Standard names some families store under their own (transformers' ``attribute_map``).
ATTRIBUTE_ALIASES: dict[str, dict[str, str]] = {
    "distilbert": {"hidden_size": "dim", "num_attention_heads": "n_heads",
                   "num_hidden_layers": "n_layers", "intermediate_size": "hidden_dim"},
}


class Config:
    """A model configuration read from ``config.json``.

    Every key of the file is an attribute (``config.hidden_size``); ``id2label`` has integer
    keys; ``num_labels`` follows ``id2label``. Model classes add the defaults of the fields they
    read, so ``model.config.X`` is always there for the fields the model uses.
    """

    def __init__(self, **fields: Any):
        object.__setattr__(self, "_fields", {})
        for key, value in _COMMON_DEFAULTS.items():
            self._fields[key] = copy.deepcopy(value)
        num_labels = fields.pop("num_labels", None)
        id2label = fields.pop("id2label", None)
        label2id = fields.pop("label2id", None)
        # Some configs store a dtype under the newer name.
        if "dtype" in fields and fields.get("torch_dtype") is None:
            fields["torch_dtype"] = fields["dtype"]
        self._fields.update(fields)
        if id2label is not None:
            self.id2label = id2label
        else:
            self.num_labels = num_labels if num_labels is not None else 2
        if label2id is not None and id2label is not None:
            self._fields["label2id"] = {str(k): int(v) for k, v in label2id.items()}
        elif num_labels is not None and id2label is not None and num_labels != len(self.id2label):
            self.num_labels = num_labels

    # --- attribute access over the fields ---
    def __getattr__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        alias = ATTRIBUTE_ALIASES.get(fields.get("model_type"), {}).get(name)
        if alias is not None and alias in fields:
            return fields[alias]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("num_labels", "id2label"):
            object.__setattr__(self, name, value)  # goes through the property
        else:
            self._fields[name] = value

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Config {json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)}"

    def get(self, name: str, default: Any = None) -> Any:
        return self._fields.get(name, default)

    def set_defaults(self, defaults: dict[str, Any]) -> "Config":
        """Fill the fields ``config.json`` left out; keep those it has."""
        for key, value in defaults.items():
            if self._fields.get(key) is None:
                self._fields[key] = copy.deepcopy(value)
        return self

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            setattr(self, key, value)

    # --- labels ---
    @property
    def id2label(self) -> dict[int, str]:
        return self._fields["id2label"]

    @id2label.setter
    def id2label(self, value: dict) -> None:
        mapping = {int(k): str(v) for k, v in value.items()}
        self._fields["id2label"] = mapping
        self._fields["label2id"] = {v: k for k, v in mapping.items()}

    @property
    def label2id(self) -> dict[str, int]:
        return self._fields["label2id"]

    @property
    def num_labels(self) -> int:
        return len(self._fields["id2label"])

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        current = self._fields.get("id2label")
        if current is None or len(current) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(int(value))}

    # --- files ---
    def to_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self._fields)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(self.to_json_string())

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "Config":
        data = dict(data)
        data.update(overrides)
        return cls(**data)

    @classmethod
    def from_folder(cls, folder: Path, **overrides: Any) -> "Config":
        path = folder / "config.json"
        if not path.is_file():
            raise ModelNotFoundError(
                f"{folder} has no config.json, so it is not a model folder lightpipe can load. "
                "Pass the folder that holds config.json and the weights (for a Hub model, the "
                "repository id)."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelNotFoundError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ModelNotFoundError(f"{path} does not hold a JSON object.")
        config = cls.from_dict(data, **overrides)
        config._fields.setdefault("_name_or_path", str(folder))
        return config

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | None = None,
                        local_files_only: bool = False, trust_remote_code: bool | None = None,
                        **overrides: Any) -> "Config":
        refuse_remote_code(trust_remote_code)
        folder = resolve(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                         local_files_only=local_files_only)
        return cls.from_folder(folder, **overrides)


class AutoConfig:
    """``AutoConfig.from_pretrained(name_or_path)`` -> :class:`Config`."""

    def __init__(self) -> None:
        raise TypeError("Use AutoConfig.from_pretrained(name_or_path).")

    from_pretrained = Config.from_pretrained
