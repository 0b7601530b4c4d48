"""Whisper's tokenizer: moved to ``lightpipe.tokenization.whisper``; this path keeps working."""

from .tokenization.whisper import *  # noqa: F401,F403
