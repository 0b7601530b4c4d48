"""Dataset views for pipelines, as transformers' ``pipelines.pt_utils`` offers them:
``pipe(KeyDataset(dataset, "audio"))`` streams one column of a dataset through a pipeline."""

from __future__ import annotations

from typing import Any


class KeyDataset:
    """``dataset[i][key]`` for each row: one column of a `datasets.Dataset` (or any sized,
    indexable collection of dicts), read lazily."""

    def __init__(self, dataset: Any, key: str):
        self.dataset, self.key = dataset, key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index][self.key]


class KeyPairDataset:
    """``{"text": dataset[i][key1], "text_pair": dataset[i][key2]}`` for each row (text pairs
    for text-classification)."""

    def __init__(self, dataset: Any, key1: str, key2: str):
        self.dataset, self.key1, self.key2 = dataset, key1, key2

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[index]
        return {"text": row[self.key1], "text_pair": row[self.key2]}
