"""Config: attribute access over ``config.json``; AutoConfig."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelNotFoundError, refuse_remote_code  # noqa: F401 (re-exported)
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


# The most labels a config may ask for by ``num_labels`` alone (each gets a generated name);
# the largest classification heads on the Hub have about 10^5.
MAX_GENERATED_LABELS = 1_000_000



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
            self._fields["label2id"] = _label_map(label2id, "label2id", str, int)
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
        mapping = _label_map(value, "id2label", int, str)
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
        if not _is_whole(value):
            raise ConfigError(f"config.json: num_labels is {value!r:.40} (a {type(value).__name__}), "
                              "but it must be a whole number. Fix num_labels in config.json.")
        if not 0 <= value <= MAX_GENERATED_LABELS:
            raise ConfigError(
                f"config.json: num_labels={value} is out of range: it must be between 0 and "
                f"{MAX_GENERATED_LABELS:,} (a larger label set is given by name, as id2label). "
                "Fix num_labels in config.json.")
        current = self._fields.get("id2label")
        if current is None or len(current) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(int(value))}

    # --- files ---
    def to_dict(self) -> dict[str, Any]:
        # nested configs (a model's text_config / vision_config once read) as plain dicts
        out = {key: value.to_dict() if isinstance(value, Config) else copy.deepcopy(value)
               for key, value in self._fields.items()}
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


# --- checks before a model is built ---
# The size fields transformers configs share, with the smallest value each may take: one whole
# number, or a list of them (per-stage sizes of vision models). None means "not set".
_SIZE_FIELDS: dict[str, int] = {
    **dict.fromkeys((
        "hidden_size", "d_model", "n_embd", "dim", "embed_dim", "intermediate_size", "ffn_dim",
        "encoder_ffn_dim", "decoder_ffn_dim", "d_ff", "n_inner", "hidden_dim",
        "num_attention_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads",
        "decoder_attention_heads", "num_key_value_heads", "head_dim", "d_kv", "vocab_size",
        "max_position_embeddings", "n_positions", "max_source_positions", "max_target_positions",
        "num_channels", "patch_size", "image_size", "num_mel_bins"), 1),
    **dict.fromkeys((
        "num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers",
        "decoder_layers", "num_decoder_layers", "type_vocab_size", "depths"), 0),
}
_EPSILON_FIELDS = ("layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps", "initializer_range")
# (width, heads): each head gets width / heads features, unless head_dim says otherwise.
_HEAD_PAIRS = (("hidden_size", "num_attention_heads"), ("d_model", "encoder_attention_heads"),
               ("d_model", "decoder_attention_heads"), ("n_embd", "n_head"), ("dim", "n_heads"))
_WIDTHS = ("hidden_size", "d_model", "n_embd", "dim")
_INNER_WIDTHS = ("intermediate_size", "ffn_dim", "encoder_ffn_dim", "d_ff", "n_inner", "hidden_dim")
_LAYER_FIELDS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
_STACK_FIELDS = _LAYER_FIELDS + ("encoder_layers", "decoder_layers", "num_decoder_layers")
_ROTARY_FIELDS = ("rope_theta", "rope_scaling", "rope_parameters", "rotary_dim")


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label_map(value: Any, name: str, key_type: type, value_type: type) -> dict:
    """id2label / label2id as a dict of the right key and value types, or a ConfigError."""
    example = '{"0": "NEGATIVE", "1": "POSITIVE"}' if name == "id2label" else '{"NEGATIVE": 0}'
    if not isinstance(value, dict):
        raise ConfigError(f"config.json: {name} is a {type(value).__name__}, but it must map "
                          f"{'label ids to names' if name == 'id2label' else 'names to ids'}, "
                          f"like {example}. Fix {name} in config.json.")
    try:
        return {key_type(k): value_type(v) for k, v in value.items()}
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config.json: {name} must map label ids (whole numbers) and names, "
                          f"like {example}; it has {next(iter(value.items()))!r:.60} ({err}). "
                          f"Fix {name} in config.json.") from err


def _items(config: Config | dict) -> dict[str, Any]:
    return object.__getattribute__(config, "_fields") if isinstance(config, Config) else config


def _nested(config: Config | dict) -> list[tuple[str, Config | dict]]:
    """The sub-configs a config holds (text_config, vision_config, encoder, decoder, ...)."""
    return [(key, value) for key, value in _items(config).items()
            if (key.endswith("_config") or key in ("encoder", "decoder"))
            and isinstance(value, (dict, Config))]


def _first(fields: dict, names: tuple[str, ...], prefix: str) -> tuple[int, str]:
    """The first of ``names`` set to a whole number, as (value, "name=value"); else (0, "")."""
    return next(((fields[n], f"{prefix}{n}={fields[n]}") for n in names
                 if _is_whole(fields.get(n))), (0, ""))


def _type_problem(name: str, value: Any, kind: str) -> str:
    quoted = isinstance(value, str) and value.strip().isdigit()
    hint = f" (write {value.strip()}, without quotes)" if quoted else ""
    return f"{name} is {value!r:.40} (a {type(value).__name__}), but it must be {kind}{hint}"


def _field_problems(config: Config | dict, prefix: str) -> list[str]:
    fields, problems = _items(config), []
    for name, smallest in _SIZE_FIELDS.items():
        value = fields.get(name)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values or not all(map(_is_whole, values)):
            problems.append(_type_problem(prefix + name, value, "a whole number"))
        elif min(values) < smallest:
            problems.append(f"{prefix}{name}={value!r:.40}, but it must be at least {smallest}")
    for name in _EPSILON_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(_type_problem(prefix + name, value, "a number"))
        elif value < 0:
            problems.append(f"{prefix}{name}={value!r}, but it must not be negative")
    pairs = _HEAD_PAIRS if fields.get("head_dim") is None else ()
    for width_name, heads_name in pairs + (("num_attention_heads", "num_key_value_heads"),):
        width, heads = fields.get(width_name), fields.get(heads_name)
        if _is_whole(width) and _is_whole(heads) and heads > 0 and width % heads:
            divisors = [h for h in range(1, min(width, 256) + 1) if width % h == 0]
            fits = sorted(sorted(divisors, key=lambda h: abs(h - heads))[:3])
            problems.append(f"{prefix}{width_name}={width} is not a multiple of {heads_name}="
                            f"{heads} ({heads_name} could be one of {fits})")
    for key, sub in _nested(config):
        problems += _field_problems(sub, f"{prefix}{key}.")
    return problems


def check_fields(config: Config) -> None:
    """Refuse a config whose common size fields have the wrong type, are out of range or do
    not fit together (hidden size and heads), naming each field and the fix."""
    problems = _field_problems(config, "")
    if problems:
        where = config.get("_name_or_path")
        raise ConfigError(
            f"config.json{f' of {where}' if where else ''} has values no model can be built from: "
            f"{'; '.join(problems)}. Fix {'them' if len(problems) > 1 else 'it'} in config.json "
            "(or pass the config the checkpoint was saved with).")


def _layers(fields: dict, prefix: str) -> tuple[int, str]:
    """One config's layer count, as (layers, the fields that say so)."""
    best = _first(fields, _LAYER_FIELDS, prefix)
    for first, second in (("encoder_layers", "decoder_layers"), ("num_layers", "num_decoder_layers")):
        a, b = fields.get(first), fields.get(second)
        if _is_whole(a) and _is_whole(b) and a + b > best[0]:
            best = (a + b, f"{prefix}{first}={a} + {prefix}{second}={b}")
    return best


def layer_counts(config: Config | dict, prefix: str = "") -> list[tuple[int, str]]:
    """(layers, the fields that say so) for the config and each sub-config that has layers."""
    own = _layers(_items(config), prefix)
    counts = [own] if own[0] else []
    for key, sub in _nested(config):
        counts += layer_counts(sub, f"{prefix}{key}.")
    return counts


def layer_fields(config: Config | dict, count: int, prefix: str = "") -> list[str]:
    """The layer-count fields ("num_hidden_layers=2", "text_config.n_layer=2") equal to ``count``."""
    fields = _items(config)
    found = [f"{prefix}{name}={count}" for name in _STACK_FIELDS if fields.get(name) == count]
    for key, sub in _nested(config):
        found += layer_fields(sub, count, f"{prefix}{key}.")
    return found


def size_terms(config: Config | dict, prefix: str = "") -> list[tuple[int, str]]:
    """A lower bound of the parameters a config asks for, as (parameters, what asks for them)
    terms: layers (4 attention and 2 MLP products each), embeddings, positions, the labels'
    head; for the config and each sub-config. Read from the common size fields only."""
    fields, terms = _items(config), []
    width, width_text = _first(fields, _WIDTHS, prefix)
    if width:
        inner, inner_text = _first(fields, _INNER_WIDTHS, prefix)
        layers, layers_text = _layers(fields, prefix)
        if layers:
            terms.append((layers * (4 * width * width + 2 * width * inner), f"{layers_text} layers "
                          f"of {width_text}" + (f" and {inner_text}" if inner else "")))
        tables = [_first(fields, (name,), prefix)
                  for name in ("vocab_size", "max_source_positions", "max_target_positions")]
        if not any(fields.get(name) is not None for name in _ROTARY_FIELDS):
            tables.append(_first(fields, ("max_position_embeddings", "n_positions"), prefix))
        if isinstance(fields.get("id2label"), dict):
            tables.append((len(fields["id2label"]), f"{prefix}num_labels={len(fields['id2label'])}"))
        terms += [(count * width, f"{text} x {width_text}") for count, text in tables if count]
    for key, sub in _nested(config):
        terms += size_terms(sub, f"{prefix}{key}.")
    return terms
