"""A model name or folder -> a folder of files on disk.

A local folder is used as it is. Anything else is a Hub repository id fetched through
``huggingface_hub`` (its cache, ``revision``, ``token`` / ``HF_TOKEN``, ``HF_HUB_OFFLINE``).
Only the files an inference run needs are fetched: configs, tokenizer and processor files and
one weights format (safetensors when the repository has it, else ``pytorch_model*.bin``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .errors import ModelNotFoundError

# Files any model may need besides its weights.
_SIDE_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.py.jinja", "*.jinja", "*.spm"]
_SAFETENSORS = ["*.safetensors", "*.safetensors.index.json"]
_TORCH_BIN = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
# Other frameworks' exports and bulky extras never used here.
_IGNORE = ["onnx/*", "openvino/*", "coreml/*", "*.onnx", "*.msgpack", "*.h5", "*.ot", "*.gguf",
           "flax_model*", "tf_model*", "rust_model*", "*.tflite", "*.mlmodel", "*.pb"]

logger = logging.getLogger("lightpipe")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def is_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    subfolder: str = "",
    weights: bool = True,
) -> Path:
    """Return the local folder holding ``name_or_path``'s files, downloading them if needed.

    ``weights=False`` fetches only configs and tokenizer/processor files (for a tokenizer)."""
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        folder = path / subfolder if subfolder else path
        if not folder.is_dir():
            raise ModelNotFoundError(f"The folder {folder} does not exist.")
        return folder
    name = str(name_or_path)
    if path.exists():
        raise ModelNotFoundError(
            f"{name} is a file, not a model folder. Pass the folder that holds config.json and "
            "the weights."
        )
    if not _REPO_ID.match(name) or name.count("/") > 1 or name.startswith((".", "/", "~")):
        raise ModelNotFoundError(
            f"There is no folder {name!r}, and it is not a Hugging Face Hub id (like "
            "'org/model-name'). Check the path."
        )
    folder = _download(name, revision=revision, token=token, cache_dir=cache_dir,
                       local_files_only=local_files_only or is_offline(), subfolder=subfolder,
                       weights=weights)
    logger.info("%s%s: files in %s", name, f" ({revision})" if revision else "", folder)
    return folder


def _download(repo_id: str, *, revision, token, cache_dir, local_files_only, subfolder,
              weights) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hub_errors

    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    kwargs = dict(revision=revision, token=token, cache_dir=cache_dir,
                  local_files_only=local_files_only, library_name="lightpipe",
                  ignore_patterns=_IGNORE)
    where = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        if not weights:
            folder = Path(snapshot_download(
                repo_id, allow_patterns=[prefix + p for p in _SIDE_FILES], **kwargs))
            return folder / subfolder if subfolder else folder
        folder = Path(snapshot_download(
            repo_id, allow_patterns=[prefix + p for p in _SIDE_FILES + _SAFETENSORS], **kwargs))
        if not any(folder.glob(prefix + "*.safetensors")):
            # No safetensors in this repository: fall back to PyTorch pickles (loaded safely).
            folder = Path(snapshot_download(
                repo_id, allow_patterns=[prefix + p for p in _SIDE_FILES + _TORCH_BIN], **kwargs))
    except hub_errors.GatedRepoError as err:
        raise ModelNotFoundError(
            f"{where} is a gated model. Accept its licence on its Hub page, then pass "
            "token='hf_...' (or set HF_TOKEN, or run `hf auth login`)."
        ) from err
    except hub_errors.RepositoryNotFoundError as err:
        raise ModelNotFoundError(
            f"{where} was not found on the Hub, and there is no local folder of that name. "
            "Check the spelling; if the repository is private, pass token= or set HF_TOKEN."
        ) from err
    except hub_errors.RevisionNotFoundError as err:
        raise ModelNotFoundError(f"{where}: revision {revision!r} does not exist.") from err
    except hub_errors.LocalEntryNotFoundError as err:
        if local_files_only:
            raise ModelNotFoundError(
                f"{where} is not in the local Hugging Face cache and downloads are off "
                "(HF_HUB_OFFLINE=1 or local_files_only=True). Download it once while online "
                f"(`hf download {repo_id}`), or pass the path of a local folder."
            ) from err
        raise ModelNotFoundError(
            f"Could not download {where} from the Hub and it is not in the local cache: "
            f"{err}. Check the network connection, or pass the path of a local folder."
        ) from err
    except (hub_errors.HfHubHTTPError, OSError) as err:
        raise ModelNotFoundError(
            f"Could not fetch {where} from the Hub: {err}. Check the network connection, the "
            "id and the token, or pass the path of a local folder."
        ) from err
    return folder / subfolder if subfolder else folder


def find_file(folder: Path, *names: str) -> Path | None:
    """The first of ``names`` that exists in ``folder``."""
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None
