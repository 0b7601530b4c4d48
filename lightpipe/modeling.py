"""PreTrainedModel: the base of every model class. Building, loading, saving, devices.

Loading builds the module tree on the ``meta`` device (no memory, no random init), then
assigns the checkpoint's tensors in place: a checkpoint already in the target dtype on the
CPU is used straight from its memory map, without a copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config, ConfigError, check_fields, layer_counts, layer_fields, size_terms
from .errors import WeightsError, refuse_remote_code
from .hub import resolve
from .threads import choose_threads
from . import weights as weights_io

logger = logging.getLogger("lightpipe")

# Legacy names found in old checkpoints (TF-era LayerNorm parameters).
_LEGACY_RENAMES = [(r"\.gamma$", ".weight"), (r"\.beta$", ".bias"),
                   (r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")]


# A config may ask for this many more parameters than its checkpoint holds (fresh heads,
# weights stored packed) before it is taken as not describing the checkpoint.
_SPARE_PARAMETERS = 50_000_000
# The deepest published transformers have about a thousand layers.
_MAX_LAYERS = 10_000

_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                   "kaiming_normal_", "orthogonal_", "sparse_")
_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def skip_init():
    """Build modules without torch's random init: every weight is about to be replaced by the
    checkpoint's. (Running init on the meta device also pulls in torch._dynamo: ~1 s.)"""
    init = torch.nn.init
    with _INIT_LOCK:
        saved = {name: getattr(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)}
        fill_padding = nn.Embedding._fill_padding_idx_with_zero
        try:
            for name in saved:
                setattr(init, name, lambda tensor, *args, **kwargs: tensor)
            nn.Embedding._fill_padding_idx_with_zero = lambda self: None
            yield
        finally:
            for name, function in saved.items():
                setattr(init, name, function)
            nn.Embedding._fill_padding_idx_with_zero = fill_padding


_NUMBERED = re.compile(r"(.*?)\.(\d+)\.")  # "encoder.layer.3.attention" -> encoder.layer, 3


def _shorten_names(names: list[str], limit: int = 8) -> str:
    """Weight names in short, as the reference's load report merges them: a numbered list's
    entries as one ("encoder.layer.{2-5}.* (64 weights)"), the leaves of one module as one
    ("classifier.{bias, weight}"); at most ``limit`` groups, then how many more."""
    groups: dict[str, list] = {}
    for name in names:
        match = _NUMBERED.match(name)
        if match:
            groups.setdefault(match.group(1) + ".{}.*", []).append(int(match.group(2)))
        else:
            module, _, leaf = name.rpartition(".")
            groups.setdefault(module + ".{}" if module else "{}", []).append(leaf)
    parts = []
    for key, items in groups.items():
        distinct = sorted(set(items))
        if isinstance(distinct[0], int):
            runs: list[list[int]] = []
            for number in distinct:
                if runs and number == runs[-1][-1] + 1:
                    runs[-1].append(number)
                else:
                    runs.append([number])
            shown = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
            count = f" ({len(items)} weights)" if len(items) > 1 else ""
        else:
            shown, count = ", ".join(distinct), ""
        parts.append(key.format(shown if len(distinct) == 1 else f"{{{shown}}}") + count)
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def _available_memory() -> int | None:
    """Bytes free for new allocations: Linux's MemAvailable, less when a cgroup limit is lower;
    elsewhere the machine's RAM; None when nothing says."""
    amounts = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            amounts += [int(line.split()[1]) * 1024 for line in meminfo
                        if line.startswith("MemAvailable:")]
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            amounts.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError, IndexError):
        pass
    if amounts:
        return min(amounts)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_buildable(config: Config, state: dict | None = None) -> None:
    """Refuse, before anything is built, a config (already through ``check_fields``, defaults
    filled) whose sizes cannot be right: with a checkpoint, more layers than it has tensors or
    far more parameters than it holds; without one, more than memory can hold."""
    layers = layer_counts(config)
    deepest = max(layers, default=(0, ""))
    terms = size_terms(config)
    estimate = sum(count for count, _ in terms)
    largest = max(terms, default=(0, ""))[1]
    fix = "Correct config.json (or pass the config the checkpoint was saved with)."
    if state is not None:
        total = sum(count for count, _ in layers)
        if total > len(state):  # every layer has weights of its own
            raise ConfigError(
                f"config.json asks for {total:,} layers ({', '.join(t for _, t in layers)}), but "
                f"the checkpoint holds only {len(state)} tensors: config.json does not match the "
                f"weights. {fix}")
        held = sum(tensor.numel() for tensor in state.values())
        if estimate > 4 * held + _SPARE_PARAMETERS:
            raise ConfigError(
                f"config.json describes a model of at least {estimate:,} parameters (mostly "
                f"{largest}), but the checkpoint holds {held:,}: config.json does not match the "
                f"weights. {fix}")
        return
    if deepest[0] > _MAX_LAYERS:
        raise ConfigError(f"config.json asks for {deepest[0]:,} layers ({deepest[1]}); lightpipe "
                          f"builds at most {_MAX_LAYERS:,}. {fix}")
    needed = estimate * torch.empty((), dtype=torch.get_default_dtype()).element_size()
    available = _available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"config.json describes a model of at least {estimate:,} parameters (mostly "
            f"{largest}): {needed / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB "
            f"of memory available. {fix}")


class ModelOutput(dict):
    """A model's outputs: ``out.logits``, ``out["logits"]`` and ``out[0]`` all work.

    Only the outputs that were computed are kept, so integer indexing follows transformers.
    """

    def __init__(self, **outputs: Any):
        super().__init__((k, v) for k, v in outputs.items() if v is not None)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this output has no {name!r}; it has {list(self)}") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        return tuple(self.values())


def resolve_dtype(dtype: Any, config: Config | None = None, state: dict | None = None) -> torch.dtype | None:
    """``"auto"`` -> the checkpoint's dtype (config first, then the weights); a name or a torch
    dtype -> that dtype; None -> torch's default dtype."""
    if dtype is None:
        return torch.get_default_dtype()
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        name = dtype.replace("torch.", "")
        if name == "auto":
            declared = (config.get("torch_dtype") or config.get("dtype")) if config is not None else None
            if declared:
                return resolve_dtype(declared)
            found = weights_io.checkpoint_dtype(state) if state else None
            return found or torch.get_default_dtype()
        aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
                   "float": "float32", "double": "float64"}
        candidate = getattr(torch, aliases.get(name, name), None)
        if isinstance(candidate, torch.dtype):
            return candidate
    raise ValueError(f"dtype={dtype!r} is not a dtype: use 'auto', a torch dtype such as "
                     "torch.bfloat16, or its name ('bfloat16', 'float16', 'float32').")


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


def resolve_device(device: Any = None, device_map: Any = None) -> torch.device:
    """One device from the pipeline/model arguments: -1 / 0 / "cpu" / "cuda:0" / torch.device,
    or a ``device_map`` of "auto", a device, or ``{"": device}``."""
    if device_map is not None and device is not None:
        raise ValueError("Pass either device= or device_map=, not both.")
    if device_map is not None:
        if isinstance(device_map, dict):
            places = set(device_map.values())
            if len(places) != 1:
                raise ValueError("device_map with several devices is not supported yet: lightpipe "
                                 "places the whole model on one device. Use device_map='auto'.")
            device = places.pop()
        elif device_map == "auto" or device_map == "balanced" or device_map == "sequential":
            if torch.cuda.is_available():
                device = 0
            elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                device = "mps"
            else:
                device = "cpu"
        else:
            device = device_map
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        result = device
    elif isinstance(device, int):
        result = torch.device("cpu") if device < 0 else torch.device("cuda", device)
    elif isinstance(device, str):
        try:
            result = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"device={device!r} is not a device: use 'cpu', 'cuda', 'cuda:0', "
                             "0 or -1.") from err
    else:
        raise ValueError(f"device={device!r} is not a device: use 'cpu', 'cuda', 'cuda:0', 0 or -1.")
    if result.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asks for a CUDA GPU, but this torch build "
                             f"({torch.__version__}) sees none. Use device='cpu' (or -1).")
        if result.index is None:
            result = torch.device("cuda", torch.cuda.current_device())
        if result.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: there are only {torch.cuda.device_count()} GPUs.")
    return result


def _is_split(device_map: Any, device: Any, max_memory: Any, quantization: Any) -> bool:
    """Whether ``device_map`` asks for a placement plan (``lightpipe.offload``): a strategy
    ("auto", ...), or a dict over several devices or the disk; not one device."""
    if device_map is None or device is not None:
        return False
    if isinstance(device_map, dict):
        split = True  # checked against the model, even when it names one device
    else:
        split = device_map in ("auto", "balanced", "sequential")
    if split and quantization is not None:
        if isinstance(device_map, dict) or max_memory is not None:
            raise ValueError("quantization= with a device_map over several devices (or "
                             "max_memory) is not supported yet: quantize on one device "
                             "(device_map='auto' or device='cpu').")
        return False
    return split


class PreTrainedModel(nn.Module):
    """Base of every model class: ``from_pretrained``, ``save_pretrained``, ``device``, ``dtype``.

    Subclasses set:
      - ``model_type`` names this family registers for (used in error messages);
      - ``base_model_prefix``: the attribute holding the base model in head classes (``"bert"``);
      - ``config_defaults``: the config fields the model reads, with their defaults;
      - ``checkpoint_renames``: (regex, replacement) pairs for checkpoint names;
      - ``tied_weights``: {parameter name: name of the parameter it shares} when tied;
      - ``optional_weights``: regexes of parameters that may be missing (freshly initialised,
        with a warning); everything else missing is an error;
      - ``ignored_weights``: regexes of checkpoint entries to drop silently.
    """

    base_model_prefix = ""
    config_defaults: dict[str, Any] = {}
    checkpoint_renames: list[tuple[str, str]] = []
    tied_weights: dict[str, str] = {}
    optional_weights: list[str] = []
    ignored_weights: list[str] = []
    main_input_name = "input_ids"

    def __init__(self, config: Config):
        super().__init__()
        config.set_defaults(type(self).config_defaults)
        self.config = config

    # --- properties transformers users reach for ---
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p for p in self.parameters() if p.is_floating_point()).dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        params = {id(p): p for name, p in self.named_parameters()
                  if not (exclude_embeddings and "embeddings" in name)}
        return sum(p.numel() for p in params.values())

    @property
    def has_base_prefix(self) -> bool:
        return bool(self.base_model_prefix) and hasattr(self, self.base_model_prefix)

    # --- loading ---
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, config: Config | None = None,
                        dtype: Any = "auto", torch_dtype: Any = None, device_map: Any = None,
                        device: Any = None, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | None = None,
                        local_files_only: bool = False, trust_remote_code: bool | None = None,
                        subfolder: str = "", output_loading_info: bool = False,
                        gguf_file: str | os.PathLike | None = None, quantization: Any = None,
                        dequantize: bool = True, **config_overrides: Any):
        """Load a checkpoint folder or Hub id into this model class; with ``gguf_file``, the
        config and (dequantised) weights of that llama.cpp file (see ``lightpipe.gguf``).
        ``quantization`` ("int8", "int4", a torchao-style config: ``lightpipe.quantization``)
        quantizes the linear layers while loading; ``dequantize=False`` keeps a GGUF file's
        quantized blocks packed (``lightpipe.gguf.packed``); ``int8_activations=True`` (with
        either) has the quantized layers' C kernel use int8 activations (faster, not exact:
        ``lightpipe.quantization.set_int8_activations``)."""
        refuse_remote_code(trust_remote_code)
        choose_threads()  # once per process: fewer threads when cores are busy (lightpipe.threads)
        if quantization is None:  # transformers' name for it
            quantization = config_overrides.pop("quantization_config", None)
        hub = dict(revision=revision, token=token, cache_dir=cache_dir,
                   local_files_only=local_files_only, subfolder=subfolder)
        if gguf_file is not None:
            from .gguf import read_checkpoint

            file_config, state = read_checkpoint(name_or_path, gguf_file, dequantize, **hub)
            config = file_config if config is None else config
        else:
            folder = resolve(name_or_path, **hub)
            if config is None:
                config = Config.from_folder(folder)
        # big-model placement (lightpipe.placement): not config fields
        max_memory = config_overrides.pop("max_memory", None)
        offload_folder = config_overrides.pop("offload_folder", None)
        int8_activations = config_overrides.pop("int8_activations", False)  # quantized layers only
        config.update({k: v for k, v in config_overrides.items() if v is not None})
        check_fields(config)
        if gguf_file is None:
            state = weights_io.read_weights(folder)
        if torch_dtype is not None and dtype == "auto":
            dtype = torch_dtype
        if not dequantize:
            from .quantization.loading import packed_arguments

            quantization, dtype = packed_arguments(gguf_file, quantization, dtype)
        if int8_activations:
            from .quantization.loading import check_int8_activations

            check_int8_activations(quantization)  # before the model is built
        target_dtype = resolve_dtype(dtype, config, state)
        if _is_split(device_map, device, max_memory, quantization):
            from .offload import load_split

            model, info = load_split(cls, config, state, None if gguf_file is not None else folder,
                                     target_dtype, device_map, max_memory, offload_folder)
        else:
            target_device = resolve_device(device, device_map)
            model, info = cls._from_state(config, state, target_dtype, target_device,
                                          quantization=quantization)
        model.name_or_path = str(name_or_path)
        if int8_activations:
            from .quantization import set_int8_activations

            set_int8_activations(model)
        return (model, info) if output_loading_info else model

    @classmethod
    def from_config(cls, config: Config, dtype: Any = None, device: Any = None):
        """A model with fresh random weights (as transformers' ``from_config``)."""
        check_fields(config)
        check_buildable(config.set_defaults(cls.config_defaults))
        model = cls(config).to(dtype=resolve_dtype(dtype), device=resolve_device(device))
        model.apply(model._init_weights)
        model.tie_weights()
        return model.eval()

    @classmethod
    def _from_state(cls, config: Config, state: dict, dtype: torch.dtype, device: torch.device,
                    quantization: Any = None):
        check_buildable(config.set_defaults(cls.config_defaults), state)
        with torch.device("meta"), skip_init():
            model = cls(config)
        state = model._adapt_state(state)
        if quantization is not None:  # linear layers quantized as they load
            from .quantization.loading import load_quantized

            info = load_quantized(model, state, quantization, dtype, device)
        else:
            info = model._assign(state, dtype, device)
        return model.eval(), info

    def _adapt_state(self, state: dict) -> dict:
        """Checkpoint names -> our names: legacy renames, the model's own rules, and the base
        model prefix added or removed as the class needs."""
        state = weights_io.rename_keys(state, _LEGACY_RENAMES + list(self.checkpoint_renames))
        prefix = self.base_model_prefix
        if not prefix:
            return state
        own = set(self.state_dict().keys())
        has_prefix = any(k.startswith(prefix + ".") for k in state)
        if self.has_base_prefix and not has_prefix:
            # A base-model checkpoint loaded into a head class: put the base under its prefix.
            return {(f"{prefix}.{k}" if f"{prefix}.{k}" in own else k): v for k, v in state.items()}
        if not self.has_base_prefix and has_prefix:
            # A head checkpoint loaded into the base class: the base without its prefix; the
            # head's weights stay as they are, reported as unused.
            return {(k[len(prefix) + 1:] if k.startswith(prefix + ".") else k): v
                    for k, v in state.items()}
        return state

    def _assign(self, state: dict, dtype: torch.dtype, device: torch.device) -> dict:
        expected = self.state_dict(keep_vars=True)
        tied = self.active_ties()
        ignored = [re.compile(p) for p in list(self.ignored_weights) + [r"(^|\.)position_ids$"]]
        optional = [re.compile(p) for p in self.optional_weights]

        unexpected = [k for k in state if k not in expected and not any(p.search(k) for p in ignored)]
        missing = [k for k in expected if k not in state and k not in tied]
        # A tie whose two weights the checkpoint holds with different values is not made (as
        # the reference: a checkpoint saved untied keeps both).
        self._kept_untied = {target for target, source in tied.items()
                             if target in state and source in state
                             and not _same_tensor(state[target], state[source])}
        hard_missing = [k for k in missing if not any(p.search(k) for p in optional)]
        if hard_missing:
            shown = ", ".join(hard_missing[:8]) + (" ..." if len(hard_missing) > 8 else "")
            raise WeightsError(
                f"The checkpoint does not fit {type(self).__name__}: {len(hard_missing)} weights "
                f"are missing ({shown}). Is this the right model class for the checkpoint "
                f"(config model_type={self.config.get('model_type')!r})?")
        loaded = {}
        for name, target in expected.items():
            if name not in state:
                continue
            tensor = state[name]
            if tuple(tensor.shape) != tuple(target.shape):
                raise WeightsError(
                    f"Weight {name!r} has shape {tuple(tensor.shape)} in the checkpoint but the "
                    f"config asks for {tuple(target.shape)}: config.json and the weights disagree.")
            if tensor.is_floating_point() and tensor.dtype != dtype:
                tensor = tensor.to(dtype)
            loaded[name] = tensor.to(device)
        self.load_state_dict(loaded, strict=False, assign=True)
        if missing:
            self._init_missing(missing, dtype, device)
            logger.warning(
                "Some weights of %s were not in the checkpoint and are newly initialised: %s. "
                "Train the model on a down-stream task before using its predictions.",
                type(self).__name__, ", ".join(missing))
        self.tie_weights()
        self._materialize_buffers(device)
        if unexpected:
            logger.warning(self._unused_report(unexpected))
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    def _unused_report(self, unexpected: list[str]) -> str:
        """The warning for checkpoint weights left unused (the reference warns too), saying
        when they are layers beyond those config.json builds."""
        text = (f"Some weights of the checkpoint were not used by {type(self).__name__}: "
                f"{_shorten_names(unexpected)}.")
        modules = dict(self.named_modules())
        for name in dict.fromkeys(unexpected):
            match = _NUMBERED.match(name)
            stack = modules.get(match.group(1)) if match else None
            if isinstance(stack, nn.ModuleList) and int(match.group(2)) >= len(stack):
                fields = " or ".join(layer_fields(self.config, len(stack))) or "its layer count"
                return (f"{text} The checkpoint has more {match.group(1)} entries than the "
                        f"{len(stack)} that config.json builds ({fields}): the model is not the "
                        "one that was saved, and its outputs will differ. Fix the layer count in "
                        "config.json.")
        return (f"{text} This is expected when the checkpoint was saved from another head or "
                f"task; if it was saved from {type(self).__name__}, config.json does not match "
                "the weights.")

    def _init_missing(self, names: list[str], dtype: torch.dtype, device: torch.device) -> None:
        modules = dict(self.named_modules())
        for name in names:
            module_name, _, attr = name.rpartition(".")
            module = modules[module_name]
            old = getattr(module, attr)
            fresh = torch.empty(old.shape, dtype=dtype if old.is_floating_point() else old.dtype,
                                device=device)
            if isinstance(old, nn.Parameter):
                setattr(module, attr, nn.Parameter(fresh, requires_grad=old.requires_grad))
            else:
                module.register_buffer(attr, fresh)
            self._init_weights(module, only=attr)

    def _init_weights(self, module: nn.Module, only: str | None = None) -> None:
        """Random init as transformers' for encoders: normal(0, initializer_range) weights,
        zero biases, unit norms."""
        std = self.config.get("initializer_range", 0.02)
        with torch.no_grad():
            for attr, param in module.named_parameters(recurse=False):
                if only is not None and attr != only:
                    continue
                if isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower():
                    param.fill_(1.0 if attr == "weight" else 0.0)
                elif attr == "bias" or param.ndim == 1:
                    param.zero_()
                else:
                    param.normal_(0.0, std)
                    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                        param[module.padding_idx].zero_()

    def active_ties(self) -> dict[str, str]:
        """The ties in force: all of ``tied_weights``, less those to the input embeddings when
        the config says ``tie_word_embeddings: false``."""
        if self.config.get("tie_word_embeddings", True):
            return dict(self.tied_weights)
        return {t: s for t, s in self.tied_weights.items() if "embeddings" not in s}

    def tie_weights(self) -> None:
        """Make each tied parameter share its source parameter."""
        modules = dict(self.named_modules())
        params = dict(self.named_parameters(remove_duplicate=False))
        for target, source in self.active_ties().items():
            if source not in params or target in getattr(self, "_kept_untied", ()):
                continue
            module_name, _, attr = target.rpartition(".")
            setattr(modules[module_name], attr, params[source])

    def _materialize_buffers(self, device: torch.device) -> None:
        """Non-persistent buffers built on ``meta`` are recomputed by their module."""
        for module in self.modules():
            if any(b.is_meta for b in module.buffers(recurse=False)):
                reset = getattr(module, "reset_buffers", None)
                if reset is None:
                    raise WeightsError(f"{type(module).__name__} has buffers left unset after loading.")
                reset(device)

    # --- saving ---
    def save_pretrained(self, folder: str | os.PathLike, safe_serialization: bool = True) -> None:
        """Write config.json and model.safetensors, loadable by lightpipe and transformers."""
        from .quantization import QuantizationError, QuantizedEmbedding, QuantizedLinear

        if any(isinstance(module, (QuantizedLinear, QuantizedEmbedding)) for module in self.modules()):
            raise QuantizationError(
                "save_pretrained() writes float checkpoints, and this model's layers are quantized "
                "(their packed codes are lightpipe's runtime layout, not a checkpoint format): save "
                "the float model instead and quantize when loading it, "
                "from_pretrained(folder, quantization=...) - or, for a GGUF file, keep the file.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.torch_dtype = str(self.dtype).replace("torch.", "")
        self.config.save_pretrained(folder)
        state = self.state_dict()
        for target in self.active_ties():
            if target not in getattr(self, "_kept_untied", ()):
                state.pop(target, None)
        weights_io.save_safetensors(state, folder / weights_io.SAFE_SINGLE)

