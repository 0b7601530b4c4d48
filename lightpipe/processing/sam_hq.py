"""SAM-HQ's processor: SAM's (``processing/sam.py``) under the name SAM-HQ folders record
(``"processor_class": "SamHQProcessor"``), so AutoProcessor finds it. Unlike the reference's, it
also pads unequal point counts (with ``point_pad_value``, -10) as SamProcessor does."""

from __future__ import annotations

from .sam import SamProcessor


class SamHQProcessor(SamProcessor):
    pass
