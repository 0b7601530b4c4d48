"""Text generation: ``GenerationMixin.generate`` (greedy search, sampling, beam search),
GenerationConfig, logits processors, stopping criteria and streamers.

Behaviour follows transformers 5's ``generation/`` package (``utils.py``, ``logits_process.py``,
``stopping_criteria.py``, ``streamers.py``, ``configuration_utils.py``): the same arguments,
the same defaults and merge order (call arguments > ``generation_config.json`` > global
defaults), the same processor order, and the same beam search, so greedy and beam outputs are
token for token those of the reference on the same checkpoint.

One concern per module: ``config`` (settings), ``processors`` and ``stopping`` (built once per
call from the settings), ``streamers``, ``prompt`` (ids, an encoder's input or embeddings ->
one ``state.Prompt``), ``state`` (the growing sequences), ``search`` (prefill, one-token steps,
greedy / sampling / beam loops), ``mixin`` (generate() itself) and ``contract`` (what a model
must provide). The decoder layers and caches models build from live on the models' side
(``models/linear.py``, ``models/cache.py``, ``models/decoder.py``) and are re-exported here,
so ``from lightpipe.generation import X`` keeps working for every name it ever offered.
"""

from __future__ import annotations

from ..modeling import ModelOutput  # noqa: F401
from ..models.cache import EncoderDecoderCache, KVCache, open_cache
from ..models.decoder import causal_mask, decoder_attention, lm_logits
from ..models.linear import (_ONEDNN_LINEAR, _ONEDNN_PACK, Linear, PackableLinear,  # noqa: F401
                             _onednn_ops, linear, linear_add, linear_gelu_tanh)
from ..models.linear import available_memory as _available_memory  # noqa: F401
from .config import _UNSUPPORTED, GENERATION_DEFAULTS, GENERATION_FIELDS, GenerationConfig  # noqa: F401
from .contract import EncoderDecoderModel, GenerativeModel
from .mixin import GenerationMixin
from .processors import (ForcedTokenLogitsProcessor, InfNanRemoveLogitsProcessor,
                         LogitNormalization, LogitsProcessorList, MinLengthLogitsProcessor,
                         MinNewTokensLengthLogitsProcessor, MinPLogitsWarper,
                         NoBadWordsLogitsProcessor, NoRepeatNGramLogitsProcessor,
                         RepetitionPenaltyLogitsProcessor, SuppressTokensLogitsProcessor,
                         TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
                         TypicalLogitsWarper, _ban, make_logits_processors)  # noqa: F401
from .processors import merge_custom as _merge  # noqa: F401
from .search import _gather  # noqa: F401
from .state import DecodeState, Prompt
from .state import DecodeState as _DecodeState  # noqa: F401
from .stopping import (_BYTE_TABLE, EosTokenCriteria, MaxLengthCriteria,  # noqa: F401
                       MaxTimeCriteria, StoppingCriteriaList, StopStringCriteria,
                       _decoder_is_byte_level, _ends_across, _unicode_to_byte,
                       make_stopping_criteria)
from .streamers import BaseStreamer, TextIteratorStreamer, TextStreamer, _is_cjk  # noqa: F401

__all__ = [
    "GENERATION_DEFAULTS", "GENERATION_FIELDS", "BaseStreamer", "DecodeState",
    "EncoderDecoderCache", "EncoderDecoderModel", "EosTokenCriteria",
    "ForcedTokenLogitsProcessor", "GenerationConfig", "GenerationMixin", "GenerativeModel",
    "InfNanRemoveLogitsProcessor", "KVCache", "Linear", "LogitNormalization",
    "LogitsProcessorList", "MaxLengthCriteria", "MaxTimeCriteria", "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor", "MinPLogitsWarper", "NoBadWordsLogitsProcessor",
    "NoRepeatNGramLogitsProcessor", "PackableLinear", "Prompt",
    "RepetitionPenaltyLogitsProcessor", "StopStringCriteria", "StoppingCriteriaList",
    "SuppressTokensLogitsProcessor", "TemperatureLogitsWarper", "TextIteratorStreamer",
    "TextStreamer", "TopKLogitsWarper", "TopPLogitsWarper", "TypicalLogitsWarper",
    "causal_mask", "decoder_attention", "linear", "linear_add", "linear_gelu_tanh",
    "lm_logits", "make_logits_processors", "make_stopping_criteria", "open_cache",
]
