"""Wav2Vec2's CTC tokenizer: moved to ``lightpipe.tokenization.ctc``; this path keeps working."""

from .tokenization.ctc import *  # noqa: F401,F403
