"""The elementwise passes around int8-dynamic's FBGEMM product, in C (``dynamic.py``).

``DynamicInt8Linear`` maps each row of x onto [0, 1] before FBGEMM's per-tensor kernel and
back after it (per-row activation ranges, see ``dynamic.py``). In torch that is six passes
(``amin``, ``amax``, ``x - low``, ``* 1/span`` before; ``addcmul_``, ``addcmul`` after) and,
in BERT-like encoders and Whisper, the GELU that follows (torch's erf GELU: 1.2 ns a value on
this AVX2 CPU). Profile of real all-MiniLM-L6-v2 int8-dynamic on 300 sentences, 1 thread:
FBGEMM 62%, these passes 8%, the GELU 15%. Here:

- ``unit_rows``: per row, one pass for the minimum and maximum and one writing
  ``min((x - low) * inv, 1)``, inv = 1 / span or a float step above (``dynamic.unit_inverse``:
  the same float operations as the torch path, the same values);
- ``out_rows``: one pass ``y = bias + (y + a * rowsum) * span`` with ``a = low / span``,
  optionally followed by GELU ``0.5 y (1 + erf(y / sqrt 2))`` with erf vectorised by the
  classic Abramowitz-Stegun 7.1.26 rational approximation (absolute error <= 1.5e-7, the
  formula torch's own vectorised CPU erf uses).

The source is compiled into ``kernels.py``'s library (``EXTRA_SOURCES``); without it the torch
passes run (``available()`` false).
"""

from __future__ import annotations

import ctypes

import torch

from . import kernels

SOURCE = r"""
/* ---- int8-dynamic's passes (dynamic_passes.py) ---- */
#include <math.h>
/* unit[m, k] = min((x[m, k] - low_m) * inv_m, 1), span_m = max(max_m - low_m, 1e-30), inv_m =
   dyn8_inverse(span_m) (1 / span_m, or a float step above); a[m] = low_m * inv_m, span[m] = span_m */
void dyn_unit_rows(const float *x, long M, long K, float *unit, float *a, float *span, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < M; m++) {
        const float *r = x + (size_t)m * K;
        float *u = unit + (size_t)m * K;
        float l, h;
        int nan = dyn8_row_range(r, K, &l, &h);  /* kernels.c */
        long k;
        float s = h - l;
        s = s > 1e-30f ? s : 1e-30f;
        float inv = dyn8_inverse(s);  /* kernels.c: the largest unit value is then 1 */
        __m256 vl = _mm256_set1_ps(l), vi = _mm256_set1_ps(inv), one = _mm256_set1_ps(1.f);
        for (k = 0; k + 8 <= K; k += 8)
            _mm256_storeu_ps(u + k, _mm256_min_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(r + k), vl), vi), one));
        for (; k < K; k++) {
            float v = (r[k] - l) * inv;
            u[k] = v < 1.f ? v : 1.f;
        }
        a[m] = nan ? NAN : l * inv;  /* a NaN in the row: its outputs NaN, not finite garbage */
        span[m] = s;
    }
}

/* 0.5 v (1 + erf(v / sqrt 2)); erf(z) = sign(z) (1 - t (a1 + t (a2 + ... a5)) e^(-z^2)),
   t = 1 / (1 + p |z|) (Abramowitz and Stegun 7.1.26) */
static inline __m256 dyn_gelu8(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
    /* |z| capped at 10 (erf is 1 in float32 from ~3.9): an infinite v keeps t finite */
    __m256 az = _mm256_min_ps(_mm256_andnot_ps(sign, z), _mm256_set1_ps(10.f));
    /* t = 1 / d by the approximate reciprocal and one Newton step (a division here takes
       ~10 cycles a vector on this class of CPU): relative error ~1e-7 */
    __m256 d = _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, _mm256_set1_ps(1.f));
    __m256 t = _mm256_rcp_ps(d);
    t = _mm256_mul_ps(t, _mm256_fnmadd_ps(d, t, _mm256_set1_ps(2.f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = exp8(_mm256_mul_ps(_mm256_xor_ps(az, sign), az));  /* e^(-z^2) */
    __m256 erf = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.f));
    erf = _mm256_or_ps(erf, _mm256_and_ps(z, sign));  /* erf(|z|) >= 0: the sign of z */
    __m256 half = _mm256_mul_ps(v, _mm256_set1_ps(0.5f));
    return _mm256_fmadd_ps(half, erf, half);
}

/* y[m, n] = bias[n] + (y[m, n] + a[m] * rowsum[n]) * span[m] (no bias: times span), then GELU
   when gelu is set */
void dyn_out_rows(float *y, long M, long N, const float *a, const float *rowsum,
                  const float *span, const float *bias, int gelu, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < M; m++) {
        float *r = y + (size_t)m * N;
        __m256 va = _mm256_set1_ps(a[m]), vs = _mm256_set1_ps(span[m]);
        long n = 0;
        for (; n + 8 <= N; n += 8) {
            __m256 v = _mm256_fmadd_ps(va, _mm256_loadu_ps(rowsum + n), _mm256_loadu_ps(r + n));
            v = bias ? _mm256_fmadd_ps(v, vs, _mm256_loadu_ps(bias + n)) : _mm256_mul_ps(v, vs);
            _mm256_storeu_ps(r + n, gelu ? dyn_gelu8(v) : v);
        }
        for (; n < N; n++) {
            float v = (r[n] + a[m] * rowsum[n]) * span[m] + (bias ? bias[n] : 0.f);
            r[n] = gelu ? 0.5f * v * (1.f + erff(v * 0.70710678118654752f)) : v;
        }
    }
}
"""


def _declare(library) -> None:
    p, long, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    library.dyn_unit_rows.argtypes = [p, long, long, p, p, p, i]
    library.dyn_unit_rows.restype = None
    library.dyn_out_rows.argtypes = [p, long, long, p, p, p, p, i, i]
    library.dyn_out_rows.restype = None


kernels.EXTRA_SOURCES.append((SOURCE, _declare))

# passes over fewer values than this run on the calling thread
PARALLEL_FROM = 1 << 16


def available() -> bool:
    """Whether the library is loaded with these passes in it (a library loaded before this
    module registered its source lacks them: it is rebuilt once with it)."""
    if not kernels.available():
        return False
    if not hasattr(kernels._loaded(), "dyn_unit_rows"):
        kernels.reset()
        return kernels.available() and hasattr(kernels._loaded(), "dyn_unit_rows")
    return True


def _threads(values: int) -> int:
    return torch.get_num_threads() if values >= PARALLEL_FROM else 1


def unit_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(unit, a, span) of a contiguous float32 (M, K) ``x`` (see the module docstring)."""
    rows, width = x.shape
    unit = torch.empty_like(x)
    a = torch.empty(rows, 1, dtype=torch.float32)
    span = torch.empty(rows, 1, dtype=torch.float32)
    kernels._loaded().dyn_unit_rows(x.data_ptr(), rows, width, unit.data_ptr(), a.data_ptr(),
                                    span.data_ptr(), _threads(x.numel()))
    return unit, a, span


def out_rows(y: torch.Tensor, a: torch.Tensor, rowsum: torch.Tensor, span: torch.Tensor,
             bias: torch.Tensor | None, gelu: bool) -> torch.Tensor:
    """``y`` (contiguous float32 (M, N)) mapped back in place, GELU after when asked."""
    rows, width = y.shape
    kernels._loaded().dyn_out_rows(y.data_ptr(), rows, width, a.data_ptr(), rowsum.data_ptr(),
                                   span.data_ptr(), None if bias is None else bias.data_ptr(),
                                   int(gelu), _threads(y.numel()))
    return y
