"""What generate() needs from a model: the contract a class takes on by listing
``GenerationMixin`` first in its bases.

``GenerationMixin`` supplies the flags and the hooks with defaults (``begin_decode``,
``end_decode``, ``new_cache``); a model family supplies the rest: ``max_positions`` and a
forward of the shape below, and for an encoder-decoder ``encode`` and ``decode``.
``PreTrainedModel`` supplies ``config``, ``device``, ``dtype`` and ``main_input_name``.
These Protocols are documentation and type hints; nothing checks them at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from ..models.cache import EncoderDecoderCache, KVCache


class GenerativeModel(Protocol):
    """A decoder-only language model (GPT-2, Llama, OPT, LLaVA's language side)."""

    config: Any
    main_input_name: str
    # Learned absolute positions cannot go past their table: generate() then stops early,
    # with a warning, instead of extrapolating (GPT-2, OPT).
    learned_positions: bool
    # True for encoder-decoders (see ``EncoderDecoderModel``).
    is_encoder_decoder: bool
    # On the CPU, keep a copy of the linear weights in oneDNN's layout while generating.
    pack_weights: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def max_positions(self) -> int | None:
        """How many positions the model reads at most (None: no limit)."""

    def __call__(self, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                 inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                 logits_to_keep: int = 0) -> Any:
        """The forward over the tokens not yet in ``cache``, which it extends: a ModelOutput
        with ``logits`` (batch, new or ``logits_to_keep`` positions, vocab). ``attention_mask``
        covers the past and the new tokens (None: no padding); ``inputs_embeds`` replaces
        ``input_ids`` on the first step of ``generate(inputs_embeds=...)``, which also needs
        ``get_input_embeddings()``. ``position_ids`` (batch, tokens) count the real tokens; a
        model with positions of its own maps them (Qwen2-VL's generate() keeps the prompt's
        M-RoPE positions, and each plane's offset from them for the new tokens)."""

    def get_input_embeddings(self) -> torch.nn.Embedding:
        """The token embeddings (their width checks ``generate(inputs_embeds=...)``)."""

    def default_generation_config(self) -> Any:
        """The GenerationConfig used when the folder has no ``generation_config.json``."""

    def new_cache(self, capacity: int) -> KVCache | EncoderDecoderCache:
        """The empty cache of one generate() call, sized for ``capacity`` tokens."""

    def keeps_cache(self, cache: KVCache | EncoderDecoderCache, length: int) -> bool:
        """Whether the next step may extend ``cache`` to ``length`` tokens; False: generate()
        empties it and feeds the whole sequence so far (Phi-3's LongRoPE does once its
        positions pass the trained length, as the reference does)."""

    def begin_decode(self) -> None:
        """Called once the weights are packed, before the first step: a model with a lean
        one-token path resolves what it needs here (GPT-2, Llama)."""

    def end_decode(self) -> None:
        """Called when generate() returns or fails: drop what ``begin_decode`` kept."""

    def modules(self) -> Any:
        """Every submodule (generate() packs the ``PackableLinear`` ones)."""


class EncoderDecoderModel(GenerativeModel, Protocol):
    """An encoder-decoder (T5, BART, Marian, Whisper, BLIP, VisionEncoderDecoder): the encoder
    runs once, then the decoder generates over an ``EncoderDecoderCache``."""

    # False where generate() is given the whole decoder prompt (Whisper's, BLIP's); True:
    # ``decoder_start_token_id`` goes before a given ``decoder_input_ids``.
    prepend_decoder_start: bool

    def encode(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The encoder's states (batch, source length, width) for ``inputs`` (the
        ``main_input_name`` tensor: token ids, features or pixels)."""

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
               encoder_attention_mask: torch.Tensor | None = None,
               cache: EncoderDecoderCache | None = None, use_cache: bool = False,
               logits_to_keep: int = 0) -> Any:
        """The decoder over the tokens not yet in ``cache``: a ModelOutput with ``logits``."""
