"""TAPAS's tokenizer: moved to ``lightpipe.tokenization.tapas``; this path keeps working."""

from .tokenization.tapas import *  # noqa: F401,F403
