"""``KeyedDict``: a dict whose keys read as attributes (``features.pixel_values``), the base of
BatchFeature (processing) and BatchEncoding (tokenization). A leaf module: both import it."""

from __future__ import annotations

from typing import Any


class KeyedDict(dict):
    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: the keys, as attributes.
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key or attribute {name!r}; it has "
                                 f"{[key for key in self.keys() if isinstance(key, str)]}") from None
