"""Bark's processor, as transformers' ``BarkProcessor``: its BERT tokenizer (texts padded to 256
tokens, no special tokens) and the voice presets (speaker prompts): a name listed in the
folder's ``speaker_embeddings_path.json``, a ``.npz`` file, or a dict of arrays
(``semantic_prompt`` 1-D, ``coarse_prompt`` and ``fine_prompt`` 2-D), returned as
``history_prompt`` for ``BarkModel.generate``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelNotFoundError

PRESET_DIMS = {"semantic_prompt": 1, "coarse_prompt": 2, "fine_prompt": 2}


class BarkProcessor:
    """``processor(text, voice_preset=None)`` -> ``input_ids``, ``attention_mask`` (and
    ``history_prompt`` with a preset). ``available_voice_presets`` lists the folder's presets."""

    text_only = True  # AutoProcessor returns it for a folder holding only a tokenizer

    def __init__(self, tokenizer: Any, speaker_embeddings: dict | None = None):
        self.tokenizer = tokenizer
        self.speaker_embeddings = speaker_embeddings

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike,
                        speaker_embeddings_dict_path: str | None = "speaker_embeddings_path.json",
                        **kwargs: Any) -> BarkProcessor:
        from ..hub import resolve
        from ..tokenization import AutoTokenizer

        hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
        folder = resolve(name_or_path, weights=False, **hub)
        speaker_embeddings = None
        if speaker_embeddings_dict_path is not None and (folder / speaker_embeddings_dict_path).is_file():
            with open(folder / speaker_embeddings_dict_path, encoding="utf-8") as file:
                speaker_embeddings = json.load(file)
            # As the reference: the preset files are read from this folder (or Hub repo).
            speaker_embeddings["repo_or_path"] = str(name_or_path)
            speaker_embeddings["_folder"] = str(folder)
            speaker_embeddings["_hub"] = hub
        return cls(AutoTokenizer.from_pretrained(folder), speaker_embeddings)

    @property
    def available_voice_presets(self) -> list[str]:
        if not self.speaker_embeddings:
            return []
        return [k for k in self.speaker_embeddings if k != "repo_or_path" and not k.startswith("_")]

    def _preset_file(self, relative: str) -> Path:
        """A preset file listed in speaker_embeddings_path.json, inside the model's folder
        (fetched from the Hub repository when the folder lacks it)."""
        embeddings = self.speaker_embeddings
        folder = Path(embeddings.get("_folder") or embeddings.get("repo_or_path") or "/")
        path = folder / relative
        if os.path.commonpath([os.path.abspath(folder), os.path.abspath(path)]) != os.path.abspath(folder):
            raise InputError(f"Invalid voice preset path: {relative!r} leaves the model's folder.")
        if path.is_file():
            return path
        source = str(embeddings.get("repo_or_path") or "")
        if source and not Path(source).is_dir():
            from huggingface_hub import hf_hub_download

            hub = embeddings.get("_hub") or {}
            return Path(hf_hub_download(source, relative, **{k: v for k, v in hub.items() if v is not None}))
        raise ModelNotFoundError(f"The voice preset file {path} does not exist: check the paths in "
                                 "speaker_embeddings_path.json.")

    def _load_voice_preset(self, name: str) -> dict[str, np.ndarray]:
        paths = self.speaker_embeddings[name]
        missing = [key for key in PRESET_DIMS if key not in paths]
        if missing:
            raise InputError(f"Voice preset {name!r} lists no {missing[0]} in "
                             "speaker_embeddings_path.json.")
        return {key: np.load(self._preset_file(paths[key])) for key in PRESET_DIMS}

    def _check_voice_preset(self, preset: Any) -> None:
        for key, dims in PRESET_DIMS.items():
            if key not in preset:
                raise InputError(f"The voice preset has no {key!r}: it needs semantic_prompt, "
                                 "coarse_prompt and fine_prompt.")
            value = preset[key]
            if not isinstance(value, np.ndarray) or value.ndim != dims:
                raise InputError(f"The voice preset's {key} must be a {dims}-D numpy array.")

    def voice_preset(self, voice_preset: Any) -> dict[str, np.ndarray]:
        """A preset name, a .npz path or a dict -> the checked dict of arrays."""
        if isinstance(voice_preset, str) and voice_preset in self.available_voice_presets:
            preset = self._load_voice_preset(voice_preset)
        elif isinstance(voice_preset, (str, os.PathLike)):
            path = str(voice_preset)
            path = path if path.endswith(".npz") else path + ".npz"
            if not os.path.isfile(path):
                known = ", ".join(self.available_voice_presets[:8]) or "none in this folder"
                raise InputError(f"Unknown voice preset {str(voice_preset)!r}: give one of the "
                                 f"model's presets ({known}), a .npz file or a dict of arrays.")
            with np.load(path) as archive:
                preset = {key: archive[key] for key in archive.files}
        elif isinstance(voice_preset, dict):
            preset = dict(voice_preset)
        else:
            raise InputError(f"voice_preset must be a preset name, a .npz path or a dict, not "
                             f"{type(voice_preset).__name__}.")
        self._check_voice_preset(preset)
        return preset

    def __call__(self, text: Any = None, voice_preset: Any = None, return_tensors: str | None = "pt",
                 max_length: int = 256, add_special_tokens: bool = False,
                 return_attention_mask: bool = True, return_token_type_ids: bool = False,
                 **kwargs: Any):
        preset = None if voice_preset is None else self.voice_preset(voice_preset)
        encoded = self.tokenizer(text, return_tensors=return_tensors, padding="max_length",
                                 max_length=max_length, return_attention_mask=return_attention_mask,
                                 return_token_type_ids=return_token_type_ids,
                                 add_special_tokens=add_special_tokens, **kwargs)
        if preset is not None:
            if return_tensors == "pt":
                import torch

                preset = {key: torch.from_numpy(np.asarray(value)) for key, value in preset.items()}
            encoded["history_prompt"] = preset
        return encoded

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """The tokenizer's files, and the presets as .npy files with their index."""
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder)
        if not self.speaker_embeddings:
            return
        index: dict[str, Any] = {"repo_or_path": str(folder)}
        (folder / "speaker_embeddings").mkdir(parents=True, exist_ok=True)
        for name in self.available_voice_presets:
            preset, entry = self._load_voice_preset(name), {}
            for key, value in preset.items():
                relative = f"speaker_embeddings/{name}_{key}.npy"
                (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                np.save(folder / relative, value, allow_pickle=False)
                entry[key] = relative
            index[name] = entry
        (folder / "speaker_embeddings_path.json").write_text(json.dumps(index), encoding="utf-8")

    def __repr__(self) -> str:
        return (f"BarkProcessor(tokenizer={type(self.tokenizer).__name__}, "
                f"voice_presets={len(self.available_voice_presets)})")
