"""Loading a tokenizer from a folder (tokenizer_config.json, special_tokens_map.json, chat
templates, the backend) and saving it so that lightpipe and transformers both read it back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, ModelNotFoundError
from ..jsonfile import read_json
from .backend import _load_backend, set_post_processor
from .chat import _read_chat_templates
from .classes import _CLASS_DEFAULT_TOKENS, _default_padding_side, _family, _model_input_names, _resolve_class

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

# Config keys that name files or loading state, never written back by save_pretrained.
_UNSAVED_KEYS = {"name_or_path", "tokenizer_file", "vocab_file", "merges_file",
                 "special_tokens_map_file", "added_tokens_decoder", "chat_template", "auto_map",
                 "backend", "files_loaded", "is_local", "local_files_only", "tokenizer_class",
                 "additional_special_tokens", "extra_special_tokens"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "content") and hasattr(value, "special"):  # AddedToken
        return value.content
    return value


class LoadingMixin:
    """Loading and saving for :class:`Tokenizer`: ``from_folder`` reads the settings and the
    backend, builds the tokenizer with ``cls(backend, settings, ...)`` and sets its
    post-processor; ``save_pretrained`` writes the files back."""

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs: Any) -> Tokenizer:
        """Load the tokenizer saved in ``folder``; ``kwargs`` override tokenizer_config.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelNotFoundError(f"The tokenizer folder {folder} does not exist.")
        config = read_json(folder / "tokenizer_config.json")
        model_config = read_json(folder / "config.json")
        settings = dict(config)
        if "added_tokens_decoder" not in config:
            # transformers reads the legacy special_tokens_map.json only in this case.
            for key, value in read_json(folder / "special_tokens_map.json").items():
                settings[key] = value
        template = _read_chat_templates(folder, settings.get("chat_template"))
        if template is not None:
            settings["chat_template"] = template
        settings.update(kwargs)

        tokenizer_class = _resolve_class(settings, model_config)
        family = _family(tokenizer_class)
        built = not (folder / "tokenizer.json").is_file()
        if built and family == "generic":  # no class to go by: the files decide
            family = "wordpiece" if (folder / "vocab.txt").is_file() else "gpt2"
        for key, value in {**_CLASS_DEFAULT_TOKENS.get(family, {}),
                           **_CLASS_DEFAULT_TOKENS.get(tokenizer_class, {})}.items():
            settings.setdefault(key, value)
        if not built:
            # transformers drops the config's add_bos/eos_token when there is a tokenizer.json.
            for key in ("add_bos_token", "add_eos_token"):
                if key not in kwargs:
                    settings.pop(key, None)
        backend = cls.load_backend(folder, family, settings)
        side = _default_padding_side(tokenizer_class, model_config.get("model_type"), backend)
        if side is not None:  # the class default, after tokenizer_config.json and tokenizer.json
            settings.setdefault("padding_side", side)
        tokenizer = cls(backend, settings, tokenizer_class=tokenizer_class,
                        name_or_path=str(folder))
        set_post_processor(tokenizer, family, settings, built=built, explicit_bos_eos=any(
            key in kwargs for key in ("add_bos_token", "add_eos_token")))
        return tokenizer

    # The backend from the folder's files; a class that reads files of its own overrides it.
    load_backend = staticmethod(_load_backend)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> Tokenizer:
        """Same as :meth:`AutoTokenizer.from_pretrained`."""
        from .auto import AutoTokenizer

        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json (and the chat
        template) so that lightpipe and transformers both load the tokenizer back."""
        folder = Path(save_directory)
        if folder.is_file():
            raise InputError(f"{folder} is a file; save_pretrained needs a folder.")
        folder.mkdir(parents=True, exist_ok=True)

        # Special tokens are written from their current values below, so drop the loaded ones
        # (flags like add_bos_token stay).
        config = {key: value for key, value in self.init_kwargs.items()
                  if key not in _UNSAVED_KEYS
                  and not (key.endswith("_token") and not isinstance(value, bool))}
        config.update(self.special_tokens_map)
        if self.extra_special_tokens:
            config["additional_special_tokens"] = list(self.extra_special_tokens)
        config.update(model_max_length=self.model_max_length, padding_side=self.padding_side,
                      truncation_side=self.truncation_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                      tokenizer_class=self.tokenizer_class)
        if self.model_input_names != _model_input_names(self.tokenizer_class):
            config["model_input_names"] = list(self.model_input_names)
        written = []
        templates = self.chat_template
        if isinstance(templates, str):
            templates = {"default": templates}
        for name, source in (templates or {}).items():
            if name == "default":
                path = folder / "chat_template.jinja"
            else:
                path = folder / "additional_chat_templates" / f"{name}.jinja"
                if path.resolve().parent != (folder / "additional_chat_templates").resolve():
                    raise InputError(f"Invalid chat template name {name!r}.")
                path.parent.mkdir(exist_ok=True)
            path.write_text(source, encoding="utf-8")
            written.append(str(path))

        special_map = dict(self.special_tokens_map)
        if self.extra_special_tokens:
            special_map["additional_special_tokens"] = list(self.extra_special_tokens)
        with self._lock:
            serialized = json.loads(self._backend.to_str())
        serialized["truncation"] = None  # per-call state, not part of the tokenizer
        serialized["padding"] = None
        files = {"tokenizer_config.json": config, "special_tokens_map.json": special_map,
                 "tokenizer.json": serialized}
        for name, content in files.items():
            path = folder / name
            indent = None if name == "tokenizer.json" else 2
            path.write_text(json.dumps(_jsonable(content), indent=indent, ensure_ascii=False,
                                       sort_keys=name != "tokenizer.json") + "\n",
                            encoding="utf-8")
            written.append(str(path))
        return tuple(written)
