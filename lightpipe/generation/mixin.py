"""``GenerationMixin``: generate() on a model class, with loading and saving of its
``generation_config.json``. generate() merges the call's settings, prepares the prompt
(``prompt.py``), builds the processors and criteria once, and runs a search loop
(``search.py``). What a model class must provide is written down in ``contract.py``."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..errors import UnsupportedModelError
from ..jsonfile import read_json
from ..models.cache import EncoderDecoderCache, KVCache
from ..models.linear import PackableLinear, available_memory
from .assisted import assisted_search, check_assistant
from .config import GenerationConfig, config_for_call, unsupported_settings
from .processors import make_logits_processors
from .prompt import embeds_prompt, encoder_decoder_prompt, encoder_inputs, ids_prompt, set_lengths
from .search import Search, beam_search, sample
from .state import DecodeState
from .stopping import make_stopping_criteria
from .streamers import BaseStreamer

logger = logging.getLogger("lightpipe")
# KV-cache positions generate() allocates for new tokens up front (it grows past them).
PREALLOCATED_NEW_TOKENS = 4096


class GenerationMixin:
    """``generate()`` for causal language models and encoder-decoders (see
    ``is_encoder_decoder``). A model class lists it first in its bases and fulfils
    ``contract.GenerativeModel`` (an encoder-decoder: ``contract.EncoderDecoderModel``)."""

    # Models with learned absolute positions cannot go past their table (GPT-2, OPT).
    learned_positions = False
    # Encoder-decoder models (T5, BART, Whisper) set this and define ``encode`` and ``decode``
    # (see contract.EncoderDecoderModel); generate() then starts the decoder from
    # ``decoder_start_token_id``, prepended to a given ``decoder_input_ids`` unless
    # ``prepend_decoder_start`` is False (Whisper's prompts).
    is_encoder_decoder = False
    prepend_decoder_start = True
    # tie_word_embeddings when config.json does not say (transformers' class default).
    tie_word_embeddings_default = True
    # On the CPU, generate() keeps a copy of the linear weights in oneDNN's blocked layout:
    # 1.5-2.5x faster decoding steps, for twice the weights' memory. False: no copy.
    pack_weights = True

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, generation_config=None,
                        revision: str | None = None, token: Any = None, cache_dir: Any = None,
                        local_files_only: bool = False, subfolder: str = "", **kwargs: Any):
        """Load the model and its ``generation_config.json`` (or the generation fields of its
        config.json when there is none)."""
        from ..config import Config
        from ..hub import resolve

        folder = resolve(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                         local_files_only=local_files_only, subfolder=subfolder)
        config = kwargs.pop("config", None) or Config.from_folder(folder)
        # (a GGUF file's config says it: tied when the file has no output.weight)
        if kwargs.get("gguf_file") is None and \
                "tie_word_embeddings" not in read_json(folder / "config.json"):
            config.tie_word_embeddings = cls.tie_word_embeddings_default
        model = super().from_pretrained(folder, config=config, **kwargs)
        model.name_or_path = str(name_or_path)
        if generation_config is None:
            generation_config = GenerationConfig.from_pretrained(folder) \
                if (folder / "generation_config.json").is_file() else model.default_generation_config()
        model.generation_config = generation_config
        return model

    def default_generation_config(self) -> GenerationConfig:
        """The settings of a model whose folder has no ``generation_config.json``: the
        generation fields of its config.json (a family whose sub-configs hold them overrides
        this)."""
        return GenerationConfig.from_model_config(self.config)

    @property
    def generation_config(self) -> GenerationConfig:
        if "_generation_config" not in self.__dict__:
            self.__dict__["_generation_config"] = self.default_generation_config()
        return self.__dict__["_generation_config"]

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        self.__dict__["_generation_config"] = value

    def can_generate(self) -> bool:
        return True

    def save_pretrained(self, folder: str | os.PathLike, **kwargs: Any) -> None:
        super().save_pretrained(folder, **kwargs)
        self.generation_config.save_pretrained(folder)

    # -- hooks around decoding (see contract.GenerativeModel)
    def new_cache(self, capacity: int) -> KVCache | EncoderDecoderCache:
        """The cache of one generate() call, preallocated for ``capacity`` tokens."""
        return EncoderDecoderCache(capacity) if self.is_encoder_decoder else KVCache(capacity)

    def keeps_cache(self, cache: KVCache | EncoderDecoderCache, length: int) -> bool:
        """Whether the next step may extend ``cache`` to ``length`` tokens (True); False:
        generate() empties it and feeds the whole sequence so far."""
        return True

    def begin_decode(self) -> None:
        """Called by generate() once the weights are packed: a model with a lean path for its
        one-token decoding steps resolves what that path needs here (GPT-2)."""

    def end_decode(self) -> None:
        """Called when generate() returns or fails: drop what ``begin_decode`` kept."""

    def pack_linear_weights(self) -> None:
        """Keep each linear weight also in oneDNN's layout (CPU; see ``models.linear``), when
        the memory for a second copy of the weights is there."""
        modules = [m for m in self.modules() if isinstance(m, PackableLinear)]
        missing = [m for m in modules if m.packed_weight() is None]
        if not missing:
            return
        needed = sum(m.weight.numel() * m.weight.element_size() for m in missing)
        available = available_memory()
        if available is not None and needed * 1.25 > available:
            if not getattr(self, "_warned_pack", False):
                logger.info("Not packing the linear weights for the CPU (%.1f GB needed, %.1f GB "
                            "available): decoding will be slower.", needed / 1e9, available / 1e9)
                self._warned_pack = True
            return
        for module in missing:
            module.pack()

    def unpack_linear_weights(self) -> None:
        """Free the packed copies made by ``pack_linear_weights``."""
        for module in self.modules():
            if isinstance(module, PackableLinear):
                module.unpack()

    # -- the entry point
    @torch.inference_mode()
    def generate(self, inputs: torch.Tensor | None = None,
                 generation_config: GenerationConfig | None = None,
                 logits_processor: list | None = None, stopping_criteria: list | None = None,
                 streamer: BaseStreamer | None = None, tokenizer: Any = None,
                 generator: torch.Generator | None = None, assistant_model: Any = None,
                 assistant_tokenizer: Any = None, **kwargs: Any):
        """Generate token ids after ``inputs`` (or ``input_ids=``), as transformers does.

        Generation settings come from the keyword arguments, then ``generation_config``, then
        the model's ``generation_config``, then the global defaults. Returns the sequences
        (prompt + new tokens; rows that stop early are padded with ``pad_token_id``), or a
        ModelOutput with ``sequences`` (and ``scores`` / ``logits`` / ``sequences_scores``)
        when ``return_dict_in_generate=True``. ``generator`` (lightpipe's addition) seeds
        sampling without touching torch's global random state.

        Decoder-only models also take the prompt as ``inputs_embeds=`` (batch, sequence,
        hidden size), with or without the ``input_ids`` they stand for: the sequences returned
        then start with those ids (none given: only the new tokens); see
        ``prompt.embeds_prompt``.

        ``prompt_lookup_num_tokens=`` or ``assistant_model=`` (a smaller model with the same
        tokenizer) turn on assisted generation for greedy search and sampling of one sequence:
        see ``generation.assisted``.
        """
        config, model_kwargs, default_max = self._generation_config_for_call(generation_config, kwargs)
        given = None
        if self.is_encoder_decoder:  # the encoder's inputs, then the decoder's prompt if any
            given = encoder_inputs(self, inputs, model_kwargs)
            inputs = None
        input_ids = model_kwargs.pop("input_ids", None)
        if inputs is not None and input_ids is not None:
            raise ValueError("Pass the prompt either as `inputs` or as `input_ids`, not both.")
        input_ids = inputs if inputs is not None else input_ids
        attention_mask = model_kwargs.pop("attention_mask", None)
        # A decoder-only prompt given as embeddings (encoder-decoders: refused below, as before).
        inputs_embeds = None if self.is_encoder_decoder else model_kwargs.pop("inputs_embeds", None)
        for name in ("use_cache", "output_attentions", "output_hidden_states", "token_type_ids"):
            model_kwargs.pop(name, None)
        if model_kwargs:
            raise ValueError(f"The following `model_kwargs` are not used by the model: "
                             f"{sorted(model_kwargs)} (note: typos in the generate arguments will "
                             "also show up in this list)")
        unsupported = unsupported_settings(config)
        if unsupported:
            raise UnsupportedModelError(
                f"lightpipe's generate() does not implement {', '.join(unsupported)}. Supported: "
                "greedy, sampling (temperature, top_k, top_p, min_p), beam search, assisted "
                "generation (prompt_lookup_num_tokens, assistant_model), "
                "repetition_penalty, no_repeat_ngram_size, min/max lengths, stop strings.")
        beams = config.get_generation_mode().startswith("beam")
        assisted = assistant_model is not None or config.prompt_lookup_num_tokens is not None
        if assisted and beams:
            logger.warning("You've set `assistant_model` or `prompt_lookup_num_tokens`, which "
                           "triggers assisted generate. Currently, assisted generate is only "
                           "supported with Greedy Search and Sample: beam search runs as usual "
                           "and ignores them.")
            assisted = False
        if assistant_model is not None and assisted:
            check_assistant(self, assistant_model, assistant_tokenizer)
        if streamer is not None and beams:
            raise ValueError("`streamer` cannot be used with beam search (yet!). Make sure that "
                             "`num_beams` is set to 1.")

        if self.pack_weights and self.device.type == "cpu":
            self.pack_linear_weights()
        self.begin_decode()
        try:
            if given is not None:
                prompt = encoder_decoder_prompt(self, given, config)
            elif inputs_embeds is not None:
                prompt = embeds_prompt(self, inputs_embeds, input_ids, attention_mask, config)
            else:
                prompt = ids_prompt(self, input_ids, attention_mask, config)
            prompt = prompt.repeat(max(config.num_beams, config.num_return_sequences),
                                   share_encoder=getattr(self, "shares_encoder_states", False))
            if streamer is not None:
                streamer.put(prompt.input_ids.cpu())
            prompt_length = prompt.input_ids.shape[1]
            set_lengths(self, config, prompt_length, default_max, prompt.offset)
            search = Search(
                config, make_logits_processors(config, prompt_length, prompt.attention_mask,
                                               prompt.eos, logits_processor),
                make_stopping_criteria(config, prompt.eos, tokenizer, stopping_criteria),
                prompt.pad, prompt.eos, prompt.batch_size, streamer, generator)
            # The cache grows by doubling past its capacity: preallocate at most
            # PREALLOCATED_NEW_TOKENS new tokens, not a huge max_new_tokens at once.
            capacity = min(config.max_length, prompt_length + PREALLOCATED_NEW_TOKENS)
            cache = self.new_cache(capacity + prompt.offset) if config.use_cache else None
            state = DecodeState(prompt, config.max_length, cache)
            if assisted:
                return assisted_search(self, state, search, assistant_model)
            return beam_search(self, state, search) if beams else sample(self, state, search)
        finally:
            self.end_decode()

    def _generation_config_for_call(self, generation_config, kwargs):
        """Call kwargs > the given config > the model's generation_config > global defaults;
        see ``config.config_for_call`` (Whisper's generate() calls this too)."""
        return config_for_call(self.generation_config, generation_config, kwargs)
