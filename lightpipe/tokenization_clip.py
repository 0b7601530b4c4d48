"""CLIP's tokenizer: moved to ``lightpipe.tokenization.clip``; this path keeps working."""

from .tokenization.clip import *  # noqa: F401,F403
