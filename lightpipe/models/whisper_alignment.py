"""Whisper's word-level alignment helpers: the median filter over cross-attention weights and
the dynamic-time-warping path from tokens to audio frames (as transformers' Whisper uses them
for ``return_token_timestamps`` / ``return_timestamps="word"``)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError


def median_filter(values: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of odd ``width`` along the last axis (edges reflected)."""
    if width <= 0 or width % 2 != 1:
        raise InputError("median_filter_width must be an odd positive number.")
    half = width // 2
    if values.shape[-1] <= half:
        return values
    padded = torch.nn.functional.pad(values, (half, half, 0, 0), mode="reflect")
    return padded.unfold(-1, width, 1).sort(dim=-1).values[..., half]


def dtw(cost_matrix: Any) -> tuple[Any, Any]:
    """The cheapest monotonic path through (tokens, frames) ``cost_matrix``: (token index,
    frame index) per step. Costs accumulate in float32 and ties go to the frame step, as in
    the reference."""
    import numpy as np

    rows, cols = cost_matrix.shape
    cost = np.full((rows + 1, cols + 1), np.inf, dtype=np.float32)
    move = np.zeros((rows + 1, cols + 1), dtype=np.int8)
    cost[0, 0] = 0
    for j in range(1, cols + 1):
        for i in range(1, rows + 1):
            diagonal, up, left = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if diagonal < up and diagonal < left:
                best, step = diagonal, 0
            elif up < diagonal and up < left:
                best, step = up, 1
            else:
                best, step = left, 2
            cost[i, j] = cost_matrix[i - 1, j - 1] + best
            move[i, j] = step
    move[0, :], move[:, 0] = 2, 1
    i, j = rows, cols
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = move[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    return np.array([p[0] for p in path]), np.array([p[1] for p in path])


def token_timestamps(model: Any, sequences: torch.Tensor, encoded: torch.Tensor, heads: list,
                     begin: int, frames: list[int] | None) -> torch.Tensor:
    """Each token's time (seconds) from the cross-attention of the alignment heads, as
    the reference computes it: the decoder re-run on the output (the weights each step
    saw), the weights cut to the audio's frames, normalised over the tokens, median
    filtered, averaged over the heads and aligned to the frames by dynamic time warping;
    the prompt gets 0.0 and the last token repeats the time before it."""
    import numpy as np

    weights: list[torch.Tensor] = []
    model.model.decoder(sequences[:, :-1].to(encoded.device), encoded, None, weights)
    chosen = torch.stack([weights[layer][:, head] for layer, head in heads], dim=1)
    chosen = chosen[:, :, begin:].float().cpu()  # (batch, heads, tokens, frames)
    width = int(model.config.get("median_filter_width", 7))
    if frames is not None and len(set(frames)) == 1:
        # The reference cuts a batch with one frame count once more before the rows are
        # cut (which only matters when the count is below zero after a seek past the audio).
        chosen = chosen[..., :frames[0] // 2]
    out = torch.zeros(sequences.shape[0], sequences.shape[1], dtype=torch.float32)
    if chosen.shape[2] == 0:
        return out
    for row in range(sequences.shape[0]):
        matrix = chosen[row] if frames is None else chosen[row, ..., :frames[row] // 2]
        mean = matrix.mean(dim=-2, keepdim=True)
        std = (matrix - mean).square().mean(dim=-2, keepdim=True).sqrt()
        matrix = median_filter((matrix - mean) / std, width).mean(dim=0)
        text_index, time_index = dtw(-matrix.double().numpy())
        jumps = np.diff(text_index, prepend=-1) != 0
        times = torch.tensor(time_index[jumps] * 0.02, dtype=torch.float32)
        out[row, begin:begin + len(times)] = times
        out[row, begin + len(times):] = times[-1]
    return out
