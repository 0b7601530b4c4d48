"""The SentencePiece tokenizers (Marian, T5): moved to ``lightpipe.tokenization.spm``; this path keeps working."""

from .tokenization.spm import *  # noqa: F401,F403
