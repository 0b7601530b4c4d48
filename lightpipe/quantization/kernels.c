/* lightpipe's AVX2/FMA products of a few float32 rows by quantized weights: read by
   lightpipe/quantization/kernels.py, compiled at first use (see its docstring). */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <math.h>

/* acc + the pairwise int16 products of a and b (madd_epi16), and acc + the four-wise u8 x s8
   products of a and b (maddubs_epi16 then madd_epi16 with ones; callers keep each int16 pair sum
   within range, so the two forms give the same integers): one VNNI instruction where the CPU has
   it (kernels.py adds -mavxvnni, or -mavx512vnni -mavx512vl, from /proc/cpuinfo), else two or
   three AVX2 ones. */
/* The weights stream once per product, from L3 or memory: each loop asks for the bytes
   PREFETCH_AHEAD ahead of those it reads (the hardware prefetcher alone kept a decode step's
   products at 6-8 GB/s on a Xeon with AVX-512, 10-12 GB/s with this; measured 2048-4096 best) */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 3072
#endif
#define PREFETCH_W(p) _mm_prefetch((const char *)(p) + PREFETCH_AHEAD, _MM_HINT_T0)

#if defined(__AVXVNNI__)
#define DPWSSD(acc, a, b) _mm256_dpwssd_avx_epi32((acc), (a), (b))
#define DPBUSD(acc, a, b) _mm256_dpbusd_avx_epi32((acc), (a), (b))
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPWSSD(acc, a, b) _mm256_dpwssd_epi32((acc), (a), (b))
#define DPBUSD(acc, a, b) _mm256_dpbusd_epi32((acc), (a), (b))
#else
#define DPWSSD(acc, a, b) _mm256_add_epi32((acc), _mm256_madd_epi16((a), (b)))
#define DPBUSD(acc, a, b) _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((a), (b)), \
                                                                   _mm256_set1_epi16(1)))
#endif

/* e^x for 8 floats, for the sources compiled after this one (the C step's SiLU, int8-dynamic's
   GELU): Cephes' expf, range reduction by ln 2 in two parts, degree-5 polynomial; ~1 ulp over
   the range SiLU meets; clamped to [-87.3, 88.7]. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.72283f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* scales and zeros of 8 rows from interleaved (scale, zero) pairs, float32 or bfloat16 */
static inline void load_sz(const void *sz, int bf16, size_t index, __m256 *s, __m256 *z) {
    if (bf16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)((const uint16_t *)sz + 2 * index));
        *s = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        *z = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u)));
    } else {
        const float *p = (const float *)sz + 2 * index;
        __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
        __m256 ss = _mm256_shuffle_ps(a, b, 0x88), zz = _mm256_shuffle_ps(a, b, 0xDD);
        *s = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ss), 0xD8));
        *z = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(zz), 0xD8));
    }
}

/* One tile of 32 output rows for R (1 or 2) input rows. */
static inline __attribute__((always_inline)) void int4_tile(
        const float *x, long K, int R, const uint8_t *tile, const void *sz, int bf16,
        long rows_pad, long tile_index, int group, const float *xsum, long groups,
        float *acc /* R x 32 */) {
    const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int r = 0; r < R; r++) memset(acc + 32 * r, 0, 32 * sizeof(float));
    for (long g = 0; g < groups; g++) {
        __m256 q[2][4];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 4; j++) q[r][j] = _mm256_setzero_ps();
        const uint8_t *p = tile + (size_t)g * group * 16;
        for (int k = 0; k < group; k++) {
            if ((k & 3) == 0) PREFETCH_W(p + (size_t)k * 16);
            __m128i v = _mm_loadu_si128((const __m128i *)(p + (size_t)k * 16));
            __m128i lo = _mm_sub_epi8(_mm_and_si128(v, mask), eight);
            __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), mask), eight);
            __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
            __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
            __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
            __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
            for (int r = 0; r < R; r++) {
                __m256 xv = _mm256_broadcast_ss(x + (size_t)r * K + (size_t)g * group + k);
                q[r][0] = _mm256_fmadd_ps(w0, xv, q[r][0]);
                q[r][1] = _mm256_fmadd_ps(w1, xv, q[r][1]);
                q[r][2] = _mm256_fmadd_ps(w2, xv, q[r][2]);
                q[r][3] = _mm256_fmadd_ps(w3, xv, q[r][3]);
            }
        }
        size_t base = (size_t)g * rows_pad + (size_t)tile_index * 32;
        for (int j = 0; j < 4; j++) {
            __m256 s, z;
            load_sz(sz, bf16, base + 8 * j, &s, &z);
            for (int r = 0; r < R; r++) {
                __m256 a = _mm256_loadu_ps(acc + 32 * r + 8 * j);
                a = _mm256_fmadd_ps(s, q[r][j], a);
                a = _mm256_fmadd_ps(z, _mm256_set1_ps(xsum[(size_t)r * groups + g]), a);
                _mm256_storeu_ps(acc + 32 * r + 8 * j, a);
            }
        }
    }
}

static inline float scale_at(const void *scales, int bf16, long n) {
    if (bf16) {
        uint32_t bits = (uint32_t)((const uint16_t *)scales)[n] << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    return ((const float *)scales)[n];
}

/* sum_k x[r, k] * w[k] for R (1 or 2) rows; group > 0: w[k] * scale[k / group] (group a
   multiple of 32 dividing K), else one sum (scaled by the caller). */
static inline __attribute__((always_inline)) void int8_row(
        const float *x, long K, int R, const int8_t *w, const void *scales, int bf16,
        long group, float *out) {
    __m256 total[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    long span = group > 0 ? group : (K / 32) * 32, k = 0;
    for (long start = 0; start + span <= K && span > 0; start += span) {
        __m256 a[2][4];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 4; j++) a[r][j] = _mm256_setzero_ps();
        for (k = start; k < start + span; k += 32) {
            PREFETCH_W(w + k);
            __m128i v0 = _mm_loadu_si128((const __m128i *)(w + k));
            __m128i v1 = _mm_loadu_si128((const __m128i *)(w + k + 16));
            __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v0));
            __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v0, 8)));
            __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v1));
            __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v1, 8)));
            for (int r = 0; r < R; r++) {
                const float *xr = x + (size_t)r * K + k;
                a[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr), a[r][0]);
                a[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), a[r][1]);
                a[r][2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), a[r][2]);
                a[r][3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), a[r][3]);
            }
        }
        for (int r = 0; r < R; r++) {
            __m256 part = _mm256_add_ps(_mm256_add_ps(a[r][0], a[r][1]),
                                        _mm256_add_ps(a[r][2], a[r][3]));
            if (group > 0)
                total[r] = _mm256_fmadd_ps(_mm256_set1_ps(scale_at(scales, bf16, start / group)),
                                           part, total[r]);
            else
                total[r] = part;
        }
    }
    for (int r = 0; r < R; r++) {
        float s = hsum8(total[r]);
        for (long j = k; j < K; j++) s += (float)w[j] * x[(size_t)r * K + j];
        out[r] = s;
    }
}

/* ---- int8-activation products (opt-in): x quantized per row per block of 32 inputs to int8
   (symmetric, d = max|x| / 127, round to nearest even), integer dot products, one float
   multiply-add per block. Same signatures and weight layouts as int4_mm / int8_mm. ---- */

/* x quantized per row per block of 32 to ``levels`` (127: int8 codes to q8, 32767: int16
   codes to q16; the other pointer NULL): q[m, k] (rows padded to Kp, a multiple of 32, with
   zeros), dx[m, b] = max|x| / levels (the block scale) and sq[m, b] (sums of the block's codes,
   |sum| <= 32 * 32767: int32; or NULL) for M rows of x; codes round(x / d) to nearest even. */
static void quantize_rows(const float *x, long M, long K, long Kp, float levels, int8_t *q8,
                          int16_t *q16, float *dx, int32_t *sq) {
    long nb = Kp / 32;
    for (long m = 0; m < M; m++)
        for (long b = 0; b < nb; b++) {
            const float *p = x + m * K + b * 32;
            long n = K - b * 32 < 32 ? K - b * 32 : 32;
            float amax = 0.f;
            if (n == 32) {
                const __m256 sign = _mm256_set1_ps(-0.f);
                __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p));
                for (int j = 1; j < 4; j++)
                    a = _mm256_max_ps(a, _mm256_andnot_ps(sign, _mm256_loadu_ps(p + 8 * j)));
                __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
                h = _mm_max_ps(h, _mm_movehl_ps(h, h));
                h = _mm_max_ss(h, _mm_movehdup_ps(h));
                amax = _mm_cvtss_f32(h);
            } else
                for (long k = 0; k < n; k++) { float a = p[k] < 0 ? -p[k] : p[k]; if (a > amax) amax = a; }
            float d = amax / levels, id = d != 0.f ? 1.f / d : 0.f;
            int32_t s = 0;
            if (n == 32) {
                const __m256 vid = _mm256_set1_ps(id);
                __m256i i[4];
                for (int j = 0; j < 4; j++)  /* cvtps_epi32 rounds to nearest even */
                    i[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 8 * j), vid));
                /* packs interleave 128-bit lanes: the permutes restore the order */
                __m256i s01 = _mm256_packs_epi32(i[0], i[1]), s23 = _mm256_packs_epi32(i[2], i[3]);
                if (q16) {
                    int16_t *q = q16 + m * Kp + b * 32;
                    _mm256_storeu_si256((__m256i *)q, _mm256_permute4x64_epi64(s01, 0xD8));
                    _mm256_storeu_si256((__m256i *)(q + 16), _mm256_permute4x64_epi64(s23, 0xD8));
                } else {
                    __m256i b8 = _mm256_packs_epi16(s01, s23);
                    b8 = _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                    _mm256_storeu_si256((__m256i *)(q8 + m * Kp + b * 32), b8);
                }
                if (sq) {
                    __m256i t = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
                    __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
                    u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4E));
                    u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xB1));
                    s = _mm_cvtsi128_si32(u);
                }
            } else {
                for (long k = 0; k < 32; k++) {
                    int v = k < n ? _mm_cvtss_si32(_mm_set_ss(p[k] * id)) : 0;
                    if (q16) q16[m * Kp + b * 32 + k] = (int16_t)v;
                    else q8[m * Kp + b * 32 + k] = (int8_t)v;
                    s += v;
                }
            }
            dx[m * nb + b] = d;
            if (sq) sq[m * nb + b] = s;
        }
}

static void quantize_rows_q8(const float *x, long M, long K, long Kp, int8_t *xq, float *dx,
                             int32_t *sq) {
    quantize_rows(x, M, K, Kp, 127.f, xq, NULL, dx, sq);
}

/* a[r] += scale * ga[r] + zero * zx[r, g] for the tile's 32 rows (8 a vector) at the end of
   group g of the quantized-x tiles (int4_tile_q8 / int4_tile_q16) */
static inline __attribute__((always_inline)) void int4_group_end(
        const void *sz, int bf16, size_t base, const float *zx, long groups, long g, int R,
        __m256 ga[2][4], __m256 a[2][4]) {
    for (int j = 0; j < 4; j++) {
        __m256 s, z;
        load_sz(sz, bf16, base + 8 * j, &s, &z);
        for (int r = 0; r < R; r++) {
            a[r][j] = _mm256_fmadd_ps(s, ga[r][j], a[r][j]);
            a[r][j] = _mm256_fmadd_ps(z, _mm256_set1_ps(zx[(size_t)r * groups + g]), a[r][j]);
        }
    }
}

/* One tile of 32 output rows for R (1 or 2) quantized input rows. */
static inline __attribute__((always_inline)) void int4_tile_q8(
        const int8_t *xq, const float *dx, const int32_t *sq, const float *zx, long Kp, int R,
        const uint8_t *tile, const void *sz, int bf16, long rows_pad, long tile_index, int group,
        long groups, float *acc /* R x 32 */) {
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i pairs = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                           2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    long nb = Kp / 32, per = group / 32;
    __m256 a[2][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 4; j++) a[r][j] = _mm256_setzero_ps();
    for (long g = 0; g < groups; g++) {
        __m256 ga[2][4];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 4; j++) ga[r][j] = _mm256_setzero_ps();
        for (long b = g * per; b < (g + 1) * per; b++) {
            const uint8_t *p = tile + (size_t)b * 32 * 16;
            for (int line = 0; line < 8; line++) PREFETCH_W(p + line * 64);
            __m256i s16[2][4];
            for (int r = 0; r < R; r++)
                for (int j = 0; j < 4; j++) s16[r][j] = _mm256_setzero_si256();
            /* 4 inputs k..k+3 a step: lanes (k, k+2) and (k+1, k+3) interleaved bytewise give
               each row's codes for (k, k+1) | (k+2, k+3) side by side for maddubs; at most 8
               steps of |pair sums| <= 2 * 15 * 127 stay within int16 */
            for (int k = 0; k < 32; k += 4) {
                const __m128i *q = (const __m128i *)(p + (size_t)k * 16);
                __m256i va = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(q)),
                                                     _mm_loadu_si128(q + 2), 1);
                __m256i vb = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(q + 1)),
                                                     _mm_loadu_si128(q + 3), 1);
                __m256i lo = _mm256_unpacklo_epi8(va, vb), hi = _mm256_unpackhi_epi8(va, vb);
                __m256i w0 = _mm256_and_si256(lo, mask), w1 = _mm256_and_si256(hi, mask);
                __m256i w2 = _mm256_and_si256(_mm256_srli_epi16(lo, 4), mask);
                __m256i w3 = _mm256_and_si256(_mm256_srli_epi16(hi, 4), mask);
                for (int r = 0; r < R; r++) {
                    int32_t four;
                    memcpy(&four, xq + (size_t)r * Kp + b * 32 + k, 4);
                    __m256i xv = _mm256_shuffle_epi8(_mm256_set1_epi32(four), pairs);
                    s16[r][0] = _mm256_add_epi16(s16[r][0], _mm256_maddubs_epi16(w0, xv));
                    s16[r][1] = _mm256_add_epi16(s16[r][1], _mm256_maddubs_epi16(w1, xv));
                    s16[r][2] = _mm256_add_epi16(s16[r][2], _mm256_maddubs_epi16(w2, xv));
                    s16[r][3] = _mm256_add_epi16(s16[r][3], _mm256_maddubs_epi16(w3, xv));
                }
            }
            /* sum_k (q - 8) xq_k per row, exact in int32, times the block's scale */
            for (int r = 0; r < R; r++) {
                __m256 d = _mm256_set1_ps(dx[r * nb + b]);
                __m256i eight = _mm256_set1_epi32(8 * sq[r * nb + b]);
                for (int j = 0; j < 4; j++) {
                    __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(s16[r][j]));
                    __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16[r][j], 1));
                    __m256i s = _mm256_sub_epi32(_mm256_add_epi32(lo, hi), eight);
                    ga[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, ga[r][j]);
                }
            }
        }
        int4_group_end(sz, bf16, (size_t)g * rows_pad + (size_t)tile_index * 32, zx, groups, g, R,
                       ga, a);
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(acc + 32 * r + 8 * j, a[r][j]);
}


/* ---- int16-activation products (the default of the layers on this kernel): x quantized per
   row per block of 32 inputs to int16 (d = max|x| / 32767, round to nearest even: the error is
   at most d / 2, ~1.5e-5 of the block's largest |x|), integer dot products with madd_epi16
   (16 int16 x int16 products summed in pairs into int32), one float multiply-add per block.
   Same signatures and weight layouts as int4_mm / int8_mm / int5_mm. ---- */

static void quantize_rows_q16(const float *x, long M, long K, long Kp, int16_t *xq, float *dx,
                              int32_t *sq) {
    quantize_rows(x, M, K, Kp, 32767.f, NULL, xq, dx, sq);
}

/* One tile of 32 output rows for R (1 or 2) int16 input rows. Two inputs k, k + 1 a step: the
   bytes of k and k + 1 interleaved (unpack) and widened to int16 give, per output row, its
   codes for (k, k + 1) side by side; madd_epi16 with (x_k, x_k+1) broadcast sums the pair into
   the row's int32 lane. Per block |sum| <= 16 * 2 * 15 * 32767 = 15.7M: int32. */
static inline __attribute__((always_inline)) void int4_tile_q16(
        const int16_t *xq, const float *dx, const int32_t *sq, const float *zx, long Kp, int R,
        const uint8_t *tile, const void *sz, int bf16, long rows_pad, long tile_index, int group,
        long groups, float *acc /* R x 32 */) {
    const __m256i mask = _mm256_set1_epi16(0x0F);
    long nb = Kp / 32, per = group / 32;
    __m256 a[2][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 4; j++) a[r][j] = _mm256_setzero_ps();
    for (long g = 0; g < groups; g++) {
        __m256 ga[2][4];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 4; j++) ga[r][j] = _mm256_setzero_ps();
        for (long b = g * per; b < (g + 1) * per; b++) {
            const uint8_t *p = tile + (size_t)b * 32 * 16;
            for (int line = 0; line < 8; line++) PREFETCH_W(p + line * 64);
            __m256i s32[2][4];
            for (int r = 0; r < R; r++)
                for (int j = 0; j < 4; j++) s32[r][j] = _mm256_setzero_si256();
            for (int k = 0; k < 32; k += 2) {
                __m128i v0 = _mm_loadu_si128((const __m128i *)(p + (size_t)k * 16));
                __m128i v1 = _mm_loadu_si128((const __m128i *)(p + (size_t)k * 16 + 16));
                /* rows 0..7 (low nibbles) and 16..23 (high); rows 8..15 and 24..31 */
                __m256i lo = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v0, v1));
                __m256i hi = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v0, v1));
                __m256i w0 = _mm256_and_si256(lo, mask), w1 = _mm256_and_si256(hi, mask);
                __m256i w2 = _mm256_srli_epi16(lo, 4), w3 = _mm256_srli_epi16(hi, 4);
                for (int r = 0; r < R; r++) {
                    int32_t two;
                    memcpy(&two, xq + (size_t)r * Kp + b * 32 + k, 4);
                    __m256i xv = _mm256_set1_epi32(two);
                    s32[r][0] = DPWSSD(s32[r][0], w0, xv);
                    s32[r][1] = DPWSSD(s32[r][1], w1, xv);
                    s32[r][2] = DPWSSD(s32[r][2], w2, xv);
                    s32[r][3] = DPWSSD(s32[r][3], w3, xv);
                }
            }
            /* sum_k (q - 8) xq_k per row (|.| <= 32 * 15 * 32767 + 8 * 32 * 32767), times dx */
            for (int r = 0; r < R; r++) {
                __m256 d = _mm256_set1_ps(dx[r * nb + b]);
                __m256i eight = _mm256_set1_epi32(8 * sq[r * nb + b]);
                for (int j = 0; j < 4; j++)
                    ga[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s32[r][j], eight)),
                                               d, ga[r][j]);
            }
        }
        int4_group_end(sz, bf16, (size_t)g * rows_pad + (size_t)tile_index * 32, zx, groups, g, R,
                       ga, a);
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(acc + 32 * r + 8 * j, a[r][j]);
}

/* 8 consecutive scales (float32 or bfloat16) as floats */
static inline __m256 load8_scales(const void *scales, int bf16, long index) {
    if (bf16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(
            _mm_loadu_si128((const __m128i *)((const uint16_t *)scales + index))), 16));
    return _mm256_loadu_ps((const float *)scales + index);
}

/* cs[r]: the block factors of row r of x: dx itself (group 0), or dx times the group's scale
   (written to c, R * nb floats), out of the product's loop. */
static inline void block_factors(const float *dx, long nb, int R, const void *scales, int bf16,
                                 long group, float *c, const float **cs) {
    for (int r = 0; r < R; r++) cs[r] = dx + r * nb;
    if (group <= 0) return;
    long per = group / 32;
    for (int r = 0; r < R; r++) {
        float *cr = c + r * nb;
        const float *d = dx + r * nb;
        long b = 0;
        if (per == 1)
            for (; b + 8 <= nb; b += 8)
                _mm256_storeu_ps(cr + b, _mm256_mul_ps(_mm256_loadu_ps(d + b),
                                                       load8_scales(scales, bf16, b)));
        for (; b < nb; b++) cr[b] = d[b] * scale_at(scales, bf16, b / per);
        cs[r] = cr;
    }
}

/* sum over blocks of c_b * sum_k w_k xq_k for R (1 or 2) rows, c_b = dx_b * (the group's scale,
   group > 0; else 1, the row's scale applied by the caller); ``c`` scratch of R * nb floats.
   A tail of K past the last whole block (per-row scales only) in scalar. */
static inline __attribute__((always_inline)) void int8_row_q8(
        const int8_t *xq, const float *dx, long K, long Kp, int R, const int8_t *w,
        const void *scales, int bf16, long group, float *c, float *out) {
    long nb = Kp / 32, full = K / 32;
    const float *cs[2];
    block_factors(dx, nb, R, scales, bf16, group, c, cs);
    __m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()},
                        {_mm256_setzero_ps(), _mm256_setzero_ps()}};
    long b = 0;
    for (; b + 2 <= full; b += 2) {  /* two blocks a step: two independent sums per row */
        PREFETCH_W(w + b * 32);
        for (int h = 0; h < 2; h++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(w + (b + h) * 32));
            __m256i aw = _mm256_sign_epi8(wv, wv);  /* |w| (-128: 128 as unsigned) */
            for (int r = 0; r < R; r++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + (size_t)r * Kp + (b + h) * 32));
                __m256i p = DPBUSD(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv, wv));
                acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(cs[r] + b + h),
                                            acc[r][h]);
            }
        }
    }
    for (; b < full; b++) {
        __m256i wv = _mm256_loadu_si256((const __m256i *)(w + b * 32));
        __m256i aw = _mm256_sign_epi8(wv, wv);
        for (int r = 0; r < R; r++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + (size_t)r * Kp + b * 32));
            __m256i p = DPBUSD(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv, wv));
            acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(cs[r] + b), acc[r][0]);
        }
    }
    for (int r = 0; r < R; r++) {
        float s = hsum8(_mm256_add_ps(acc[r][0], acc[r][1]));
        if (full < nb) {
            int32_t t = 0;
            for (long k = full * 32; k < K; k++) t += (int32_t)w[k] * xq[(size_t)r * Kp + k];
            s += (float)t * dx[r * nb + full];
        }
        out[r] = s;
    }
}

/* int8_row_q8 with int16 x: per block the 32 codes widened to int16 (cvtepi8_epi16 from memory),
   two madd_epi16 with x: |lane| <= 4 * 128 * 32767 < 2^24 (int32, and exact in float). */
static inline __attribute__((always_inline)) void int8_row_q16(
        const int16_t *xq, const float *dx, long K, long Kp, int R, const int8_t *w,
        const void *scales, int bf16, long group, float *c, float *out) {
    long nb = Kp / 32, full = K / 32;
    const float *cs[2];
    block_factors(dx, nb, R, scales, bf16, group, c, cs);
    __m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()},
                        {_mm256_setzero_ps(), _mm256_setzero_ps()}};
    long b = 0;
    for (; b + 2 <= full; b += 2) {  /* two blocks a step: two independent sums per row */
        PREFETCH_W(w + b * 32);
        for (int h = 0; h < 2; h++) {
            const int8_t *wb = w + (b + h) * 32;
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb + 16)));
            for (int r = 0; r < R; r++) {
                const int16_t *xr = xq + (size_t)r * Kp + (b + h) * 32;
                __m256i p = DPWSSD(_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)xr)),
                                   w1, _mm256_loadu_si256((const __m256i *)(xr + 16)));
                acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(cs[r] + b + h),
                                            acc[r][h]);
            }
        }
    }
    for (; b < full; b++) {
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + b * 32)));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + b * 32 + 16)));
        for (int r = 0; r < R; r++) {
            const int16_t *xr = xq + (size_t)r * Kp + b * 32;
            __m256i p = DPWSSD(_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)xr)),
                               w1, _mm256_loadu_si256((const __m256i *)(xr + 16)));
            acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(cs[r] + b), acc[r][0]);
        }
    }
    for (int r = 0; r < R; r++) {
        float s = hsum8(_mm256_add_ps(acc[r][0], acc[r][1]));
        if (full < nb) {
            int32_t t = 0;
            for (long k = full * 32; k < K; k++) t += (int32_t)w[k] * xq[(size_t)r * Kp + k];
            s += (float)t * dx[r * nb + full];
        }
        out[r] = s;
    }
}

/* ---- the products: tiles / rows split across threads, with float32 x (xq NULL) or x
   quantized to int8 (xq, dx, sq from quantize_rows_q8) or to int16 (xw, dx, sq from
   quantize_rows_q16; xq NULL); zs per (row, group): the sums of x that multiply the zeros,
   float or quantized ---- */

static void int4_tiles(const float *x, const int8_t *xq, const int16_t *xw, const float *dx,
                       const int32_t *sq, const float *zs, long M, long K, const uint8_t *packed, const void *sz,
                       int bf16, long rows_pad, long N, int group, const float *bias, float *y,
                       int threads) {
    long groups = K / group, tiles = rows_pad / 32, nb = K / 32;
    long chunk = tiles / (4L * threads) > 0 ? tiles / (4L * threads) : 1;
    /* dynamic: on a busy machine a descheduled thread's share is taken by the others */
    #pragma omp parallel for schedule(dynamic, chunk) num_threads(threads)
    for (long t = 0; t < tiles; t++) {
        float acc[64];
        const uint8_t *tile = packed + (size_t)t * K * 16;
        long rows = N - t * 32 < 32 ? N - t * 32 : 32;
        for (long m = 0; m < M; m += 2) {
            int R = M - m >= 2 ? 2 : 1;
            if (xw && R == 2)
                int4_tile_q16(xw + m * K, dx + m * nb, sq + m * nb, zs + m * groups, K, 2, tile, sz,
                              bf16, rows_pad, t, group, groups, acc);
            else if (xw)
                int4_tile_q16(xw + m * K, dx + m * nb, sq + m * nb, zs + m * groups, K, 1, tile, sz,
                              bf16, rows_pad, t, group, groups, acc);
            else if (xq && R == 2)
                int4_tile_q8(xq + m * K, dx + m * nb, sq + m * nb, zs + m * groups, K, 2, tile, sz,
                             bf16, rows_pad, t, group, groups, acc);
            else if (xq)
                int4_tile_q8(xq + m * K, dx + m * nb, sq + m * nb, zs + m * groups, K, 1, tile, sz,
                             bf16, rows_pad, t, group, groups, acc);
            else if (R == 2)
                int4_tile(x + m * K, K, 2, tile, sz, bf16, rows_pad, t, group, zs + m * groups, groups, acc);
            else
                int4_tile(x + m * K, K, 1, tile, sz, bf16, rows_pad, t, group, zs + m * groups, groups, acc);
            for (int r = 0; r < R; r++)
                for (long d = 0; d < rows; d++)
                    y[(m + r) * N + t * 32 + d] = acc[32 * r + d] + (bias ? bias[t * 32 + d] : 0.f);
        }
    }
}

/* y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) for n < N (rows of the packed tiles). */
void int4_mm(const float *x, long M, long K, const uint8_t *packed, const void *sz, int bf16,
             long rows_pad, long N, int group, const float *bias, float *y, int threads) {
    long groups = K / group;
    float xsum[16 * 1024];  /* M * groups sums of x per group (M <= 8, groups <= 2048) */
    for (long m = 0; m < M; m++)
        for (long g = 0; g < groups; g++) {
            float s = 0.f;
            for (int k = 0; k < group; k++) s += x[m * K + g * group + k];
            xsum[m * groups + g] = s;
        }
    int4_tiles(x, NULL, NULL, NULL, NULL, xsum, M, K, packed, sz, bf16, rows_pad, N, group, bias, y, threads);
}

/* int4_mm with x quantized to int8 per block of 32: the product of the weight with the
   dequantized x (the zero term too uses the quantized x: measured 3-6% closer to the float32
   product than x's float sums) */
void int4_mm_q8(const float *x, long M, long K, const uint8_t *packed, const void *sz, int bf16,
                long rows_pad, long N, int group, const float *bias, float *y, int threads) {
    long groups = K / group, nb = K / 32;
    int8_t *xq = (int8_t *)malloc((size_t)M * K + (size_t)M * nb * 8 + (size_t)M * groups * 4 + 64);
    float *dx = (float *)(((uintptr_t)(xq + M * K) + 15) & ~(uintptr_t)15);
    int32_t *sq = (int32_t *)(dx + M * nb);
    float *zx = (float *)(sq + M * nb);
    quantize_rows_q8(x, M, K, K, xq, dx, sq);
    for (long m = 0; m < M; m++)
        for (long g = 0; g < groups; g++) {
            float s = 0.f;
            for (long b = g * (group / 32); b < (g + 1) * (group / 32); b++)
                s += dx[m * nb + b] * (float)sq[m * nb + b];
            zx[m * groups + g] = s;
        }
    int4_tiles(x, xq, NULL, dx, sq, zx, M, K, packed, sz, bf16, rows_pad, N, group, bias, y, threads);
    free(xq);
}

/* int4_mm with x quantized to int16 per block of 32 (the zero term uses the quantized x too) */
void int4_mm_q16(const float *x, long M, long K, const uint8_t *packed, const void *sz, int bf16,
                 long rows_pad, long N, int group, const float *bias, float *y, int threads) {
    long groups = K / group, nb = K / 32;
    int16_t *xq = (int16_t *)malloc((size_t)M * K * 2 + (size_t)M * nb * 8 + (size_t)M * groups * 4 + 64);
    float *dx = (float *)(((uintptr_t)(xq + M * K) + 15) & ~(uintptr_t)15);
    int32_t *sq = (int32_t *)(dx + M * nb);
    float *zx = (float *)(sq + M * nb);
    quantize_rows_q16(x, M, K, K, xq, dx, sq);
    for (long m = 0; m < M; m++)
        for (long g = 0; g < groups; g++) {
            float s = 0.f;
            for (long b = g * (group / 32); b < (g + 1) * (group / 32); b++)
                s += dx[m * nb + b] * (float)sq[m * nb + b];
            zx[m * groups + g] = s;
        }
    int4_tiles(x, NULL, xq, dx, sq, zx, M, K, packed, sz, bf16, rows_pad, N, group, bias, y, threads);
    free(xq);
}

static void int8_rows(const float *x, const int8_t *xq, const int16_t *xw, const float *dx,
                      long M, long K,
                      const int8_t *codes, const void *scales, int bf16, long group, long N,
                      const float *bias, float *y, int threads) {
    long Kp = (K + 31) / 32 * 32, nb = Kp / 32;
    long chunk = N / (4L * threads) > 0 ? N / (4L * threads) : 1;
    #pragma omp parallel num_threads(threads)
    {
        float *c = xq || xw ? (float *)malloc((size_t)2 * nb * sizeof(float)) : NULL;  /* int8_row_q8's */
        #pragma omp for schedule(dynamic, chunk)
        for (long n = 0; n < N; n++) {
            const int8_t *w = codes + (size_t)n * K;
            float b = bias ? bias[n] : 0.f, out[2];
            float scale = group > 0 ? 1.f : scale_at(scales, bf16, n);
            const void *row_scales = group > 0
                ? (const void *)((const char *)scales + (size_t)n * (K / group) * (bf16 ? 2 : 4))
                : scales;
            for (long m = 0; m < M; m += 2) {
                int R = M - m >= 2 ? 2 : 1;
                if (xw && R == 2)
                    int8_row_q16(xw + m * Kp, dx + m * nb, K, Kp, 2, w, row_scales, bf16, group, c, out);
                else if (xw)
                    int8_row_q16(xw + m * Kp, dx + m * nb, K, Kp, 1, w, row_scales, bf16, group, c, out);
                else if (xq && R == 2)
                    int8_row_q8(xq + m * Kp, dx + m * nb, K, Kp, 2, w, row_scales, bf16, group, c, out);
                else if (xq)
                    int8_row_q8(xq + m * Kp, dx + m * nb, K, Kp, 1, w, row_scales, bf16, group, c, out);
                else if (R == 2)
                    int8_row(x + m * K, K, 2, w, row_scales, bf16, group, out);
                else
                    int8_row(x + m * K, K, 1, w, row_scales, bf16, group, out);
                for (int r = 0; r < R; r++) y[(m + r) * N + n] = out[r] * scale + b;
            }
        }
        free(c);
    }
}

/* y[m, n] = sum_k x[m, k] * q[n, k] * scale (+ bias[n]); scale: scales[n] (group 0) or
   scales[n, k / group]. */
void int8_mm(const float *x, long M, long K, const int8_t *codes, const void *scales, int bf16,
             long group, long N, const float *bias, float *y, int threads) {
    int8_rows(x, NULL, NULL, NULL, M, K, codes, scales, bf16, group, N, bias, y, threads);
}

/* int8_mm with x quantized to int8 per block of 32 */
void int8_mm_q8(const float *x, long M, long K, const int8_t *codes, const void *scales, int bf16,
                long group, long N, const float *bias, float *y, int threads) {
    long Kp = (K + 31) / 32 * 32, nb = Kp / 32;
    int8_t *xq = (int8_t *)malloc((size_t)M * Kp + (size_t)M * nb * 4 + 64);
    float *dx = (float *)(((uintptr_t)(xq + M * Kp) + 15) & ~(uintptr_t)15);
    quantize_rows_q8(x, M, K, Kp, xq, dx, NULL);
    int8_rows(x, xq, NULL, dx, M, K, codes, scales, bf16, group, N, bias, y, threads);
    free(xq);
}

/* int8_mm with x quantized to int16 per block of 32 */
void int8_mm_q16(const float *x, long M, long K, const int8_t *codes, const void *scales, int bf16,
                 long group, long N, const float *bias, float *y, int threads) {
    long Kp = (K + 31) / 32 * 32, nb = Kp / 32;
    int16_t *xq = (int16_t *)malloc((size_t)M * Kp * 2 + (size_t)M * nb * 4 + 64);
    float *dx = (float *)(((uintptr_t)(xq + M * Kp) + 15) & ~(uintptr_t)15);
    quantize_rows_q16(x, M, K, Kp, xq, dx, NULL);
    int8_rows(x, NULL, xq, dx, M, K, codes, scales, bf16, group, N, bias, y, threads);
    free(xq);
}

/* ---- 5-bit codes (GGUF's Q5_0 / Q5_1 blocks): per output row, per block of 32 inputs,
   ``low`` 16 bytes (byte j: value j in its low nibble, value j + 16 in its high nibble, GGUF's
   order), a scale d and, for Q5_1, an offset m (float16, f16 = 1, or float32):
   w = d * (q - 16) (offsets NULL) or w = d * q + m. The 5th bits of each pair of blocks (b0, b1)
   in one uint64 (``high``, (K / 32 + 1) / 2 a row; an odd last block pairs with zeros): bit t of
   byte j is the 5th bit of value 8 g + j of block h, t = (0, 1, 4, 5)[g] for h = 0 and
   (2, 3, 6, 7)[g] for h = 1, so that one variable shift per 8 bytes brings each byte's bit to
   bit 4 (no byte shuffle). K a multiple of 32. ---- */

static inline float half_or_float(const void *p, int f16, size_t n) {
    return f16 ? _cvtsh_ss(((const uint16_t *)p)[n]) : ((const float *)p)[n];
}

/* the codes 0..31 of blocks b0, b1 as unsigned bytes: qa = [b0 values 0..15 | b1 values 0..15],
   qb = [b0 values 16..31 | b1 values 16..31]; two = 0: b0 only (b1's halves are zeros) */
static inline void int5_codes2(const uint8_t *low, uint64_t bits, int two, __m256i *qa, __m256i *qb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), five = _mm256_set1_epi8(0x10);
    __m256i v = two ? _mm256_loadu_si256((const __m256i *)low)
                    : _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const __m128i *)low), 0);
    __m256i h = _mm256_set1_epi64x((long long)bits);
    __m256i a = _mm256_and_si256(_mm256_sllv_epi64(h, _mm256_setr_epi64x(4, 3, 2, 1)), five);
    __m256i b = _mm256_and_si256(_mm256_srlv_epi64(h, _mm256_setr_epi64x(0, 1, 2, 3)), five);
    *qa = _mm256_or_si256(_mm256_and_si256(v, m4), a);
    *qb = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), b);
}

/* sum_k q_k x_k of one block in float32 (8 lanes), from its codes 0..15 (lo) and 16..31 (hi) */
static inline __m256 int5_block_dot(__m128i lo, __m128i hi, const float *x) {
    __m256 s0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_loadu_ps(x));
    __m256 s1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))),
                              _mm256_loadu_ps(x + 8));
    s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_loadu_ps(x + 16), s0);
    s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))),
                         _mm256_loadu_ps(x + 24), s1);
    return _mm256_add_ps(s0, s1);
}

/* A row's block factors for one row of x: c[b] = d_b (times dx[b], the block scale of a
   quantized x, when dx is not NULL); returns sum_b o_b * X[b], o_b the block's offset (Q5_1's m,
   Q5_0's -16 d) and X[b] the sum of x (or of the dequantized x) over the block. */
static inline float int5_factors(const void *scales, const void *offsets, int f16, const float *dx,
                                 const float *X, long nb, float *c) {
    __m256 acc = _mm256_setzero_ps();
    long b = 0;
    for (; b + 8 <= nb; b += 8) {
        __m256 d = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)scales + b)))
                       : _mm256_loadu_ps((const float *)scales + b);
        __m256 o = !offsets ? _mm256_mul_ps(d, _mm256_set1_ps(-16.f))
                 : f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)offsets + b)))
                       : _mm256_loadu_ps((const float *)offsets + b);
        acc = _mm256_fmadd_ps(o, _mm256_loadu_ps(X + b), acc);
        _mm256_storeu_ps(c + b, dx ? _mm256_mul_ps(d, _mm256_loadu_ps(dx + b)) : d);
    }
    float sum = hsum8(acc);
    for (; b < nb; b++) {
        float d = half_or_float(scales, f16, b);
        sum += (offsets ? half_or_float(offsets, f16, b) : -16.f * d) * X[b];
        c[b] = dx ? d * dx[b] : d;
    }
    return sum;
}

/* sum_k x[r, k] w[k] for R (1 or 2) rows of x: per block d * sum q x (float32), plus the
   offsets times the blocks' sums of x (xs[r * nb + b]); c: scratch of R * nb floats. */
static inline __attribute__((always_inline)) void int5_row(
        const float *x, const float *xs, long K, int R, const uint8_t *low, const uint64_t *high,
        const void *scales, const void *offsets, int f16, float *c, float *out) {
    long nb = K / 32;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    float off[2];
    for (int r = 0; r < R; r++) off[r] = int5_factors(scales, offsets, f16, NULL, xs + r * nb, nb, c);
    for (long b = 0; b < nb; b += 2) {
        int two = b + 1 < nb;
        __m256i qa, qb;
        PREFETCH_W(low + b * 16);
        PREFETCH_W(high + b / 2);
        int5_codes2(low + b * 16, high[b / 2], two, &qa, &qb);
        __m128i a0 = _mm256_castsi256_si128(qa), b0 = _mm256_castsi256_si128(qb);
        __m256 d0 = _mm256_broadcast_ss(c + b);
        for (int r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(d0, int5_block_dot(a0, b0, x + (size_t)r * K + b * 32), acc[r]);
        if (two) {
            __m128i a1 = _mm256_extracti128_si256(qa, 1), b1 = _mm256_extracti128_si256(qb, 1);
            __m256 d1 = _mm256_broadcast_ss(c + b + 1);
            for (int r = 0; r < R; r++)
                acc[r] = _mm256_fmadd_ps(d1, int5_block_dot(a1, b1, x + (size_t)r * K + b * 32 + 32),
                                         acc[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r] = hsum8(acc[r]) + off[r];
}

/* the same with x quantized (xq, dx of quantize_rows_q8; xs the sums of the dequantized x per
   block): q unsigned, xq signed in maddubs, two blocks a step (lanes 0-3 block b, 4-7 block
   b + 1), one float multiply-add with d * dx per block. */
static inline __attribute__((always_inline)) void int5_row_q8(
        const int8_t *xq, const float *dx, const float *xs, long K, int R, const uint8_t *low,
        const uint64_t *high, const void *scales, const void *offsets, int f16, float *c,
        float *out) {
    long nb = K / 32;
    __m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()},
                        {_mm256_setzero_ps(), _mm256_setzero_ps()}};
    float off[2];
    for (int r = 0; r < R; r++)
        off[r] = int5_factors(scales, offsets, f16, dx + r * nb, xs + r * nb, nb, c + r * nb);
    for (long b = 0; b < nb; b += 2) {
        int two = b + 1 < nb;
        __m256i qa, qb;
        PREFETCH_W(low + b * 16);
        PREFETCH_W(high + b / 2);
        int5_codes2(low + b * 16, high[b / 2], two, &qa, &qb);
        for (int r = 0; r < R; r++) {
            const int8_t *xr = xq + (size_t)r * K + b * 32;
            const float *cr = c + r * nb + b;
            /* a whole pair's x is stored [b0 0..15 | b1 0..15 | b0 16..31 | b1 16..31] (int5_mm_q8) */
            __m256i x0 = _mm256_loadu_si256((const __m256i *)xr), xa, xb;
            if (two) {
                xa = x0;
                xb = _mm256_loadu_si256((const __m256i *)(xr + 32));
            } else {
                xa = _mm256_permute2x128_si256(x0, _mm256_setzero_si256(), 0x20);
                xb = _mm256_permute2x128_si256(x0, _mm256_setzero_si256(), 0x31);
            }
            /* |two pair sums| <= 2 * 2 * 31 * 127 = 15,748: still int16 */
            __m256i p = DPBUSD(DPBUSD(_mm256_setzero_si256(), qa, xa), qb, xb);
            __m256 f = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(cr)),
                                            two ? _mm_broadcast_ss(cr + 1) : _mm_setzero_ps(), 1);
            int h = (b >> 1) & 1;  /* two independent sums per row */
            acc[r][h] = _mm256_fmadd_ps(f, _mm256_cvtepi32_ps(p), acc[r][h]);
        }
    }
    for (int r = 0; r < R; r++) out[r] = hsum8(_mm256_add_ps(acc[r][0], acc[r][1])) + off[r];
}

/* int5_row_q8 with int16 x (xq of quantize_rows_q16, each whole pair of blocks re-laid by
   int5_mm_q16 as [b0 0..7 | b1 0..7], [b0 8..15 | b1 8..15], [b0 16..23 | b1 16..23],
   [b0 24..31 | b1 24..31]: the order in which unpacking int5_codes2's bytes with zeros brings the
   codes): four madd_epi16 a pair, the low 128-bit lane summing block b0 and the high one b1,
   |lane| <= 8 * 31 * 32767 (int32, exact in float); one float multiply-add with (d * dx of b0 |
   of b1) per pair. An odd last block (x in its own order) widens its codes with cvtepu8_epi16. */
static inline __attribute__((always_inline)) void int5_row_q16(
        const int16_t *xq, const float *dx, const float *xs, long K, int R, const uint8_t *low,
        const uint64_t *high, const void *scales, const void *offsets, int f16, float *c,
        float *out) {
    long nb = K / 32;
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()},
                        {_mm256_setzero_ps(), _mm256_setzero_ps()}};
    float off[2];
    for (int r = 0; r < R; r++)
        off[r] = int5_factors(scales, offsets, f16, dx + r * nb, xs + r * nb, nb, c + r * nb);
    long b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i qa, qb;
        PREFETCH_W(low + b * 16);
        PREFETCH_W(high + b / 2);
        int5_codes2(low + b * 16, high[b / 2], 1, &qa, &qb);
        __m256i w0 = _mm256_unpacklo_epi8(qa, zero), w1 = _mm256_unpackhi_epi8(qa, zero);
        __m256i w2 = _mm256_unpacklo_epi8(qb, zero), w3 = _mm256_unpackhi_epi8(qb, zero);
        int h = (b >> 1) & 1;  /* two independent sums per row */
        for (int r = 0; r < R; r++) {
            const __m256i *xr = (const __m256i *)(xq + (size_t)r * K + b * 32);
            const float *cr = c + r * nb + b;
            __m256i p = _mm256_add_epi32(
                DPWSSD(_mm256_madd_epi16(w0, _mm256_loadu_si256(xr)), w1, _mm256_loadu_si256(xr + 1)),
                DPWSSD(_mm256_madd_epi16(w2, _mm256_loadu_si256(xr + 2)), w3, _mm256_loadu_si256(xr + 3)));
            __m256 f = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(cr)),
                                            _mm_broadcast_ss(cr + 1), 1);
            acc[r][h] = _mm256_fmadd_ps(f, _mm256_cvtepi32_ps(p), acc[r][h]);
        }
    }
    if (b < nb) {  /* the odd last block */
        __m256i qa, qb;
        int5_codes2(low + b * 16, high[b / 2], 0, &qa, &qb);
        __m256i a0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(qa));  /* values 0..15 */
        __m256i b0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(qb));  /* values 16..31 */
        for (int r = 0; r < R; r++) {
            const __m256i *xr = (const __m256i *)(xq + (size_t)r * K + b * 32);
            __m256i p = DPWSSD(_mm256_madd_epi16(a0, _mm256_loadu_si256(xr)), b0,
                               _mm256_loadu_si256(xr + 1));
            acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(c + r * nb + b),
                                        acc[r][0]);
        }
    }
    for (int r = 0; r < R; r++) out[r] = hsum8(_mm256_add_ps(acc[r][0], acc[r][1])) + off[r];
}

static void int5_rows(const float *x, const float *xs, const int8_t *xq, const int16_t *xw,
                      const float *dx, long M, long K, const uint8_t *low, const uint64_t *high,
                      const void *scales, const void *offsets, int f16, long N, const float *bias,
                      float *y, int threads) {
    long nb = K / 32, pairs = (nb + 1) / 2, size = f16 ? 2 : 4;
    long chunk = N / (4L * threads) > 0 ? N / (4L * threads) : 1;
    #pragma omp parallel num_threads(threads)
    {
        float *c = (float *)malloc((size_t)2 * nb * sizeof(float));  /* the rows' block factors */
        #pragma omp for schedule(dynamic, chunk)
        for (long n = 0; n < N; n++) {
            const uint8_t *l = low + (size_t)n * nb * 16;
            const uint64_t *h = high + (size_t)n * pairs;
            const void *s = (const char *)scales + (size_t)n * nb * size;
            const void *o = offsets ? (const char *)offsets + (size_t)n * nb * size : NULL;
            float b = bias ? bias[n] : 0.f, out[2];
            for (long m = 0; m < M; m += 2) {
                int R = M - m >= 2 ? 2 : 1;
                if (xw && R == 2)
                    int5_row_q16(xw + m * K, dx + m * nb, xs + m * nb, K, 2, l, h, s, o, f16, c, out);
                else if (xw)
                    int5_row_q16(xw + m * K, dx + m * nb, xs + m * nb, K, 1, l, h, s, o, f16, c, out);
                else if (xq && R == 2)
                    int5_row_q8(xq + m * K, dx + m * nb, xs + m * nb, K, 2, l, h, s, o, f16, c, out);
                else if (xq)
                    int5_row_q8(xq + m * K, dx + m * nb, xs + m * nb, K, 1, l, h, s, o, f16, c, out);
                else if (R == 2)
                    int5_row(x + m * K, xs + m * nb, K, 2, l, h, s, o, f16, c, out);
                else
                    int5_row(x + m * K, xs + m * nb, K, 1, l, h, s, o, f16, c, out);
                for (int r = 0; r < R; r++) y[(m + r) * N + n] = out[r] + b;
            }
        }
        free(c);
    }
}

/* y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) with w the 5-bit codes above (float32 x and
   accumulation: the sums of q x per block times d, plus the offset (-16 d or m) times the
   block's sum of x). */
void int5_mm(const float *x, long M, long K, const uint8_t *low, const uint64_t *high,
             const void *scales, const void *offsets, int f16, long N, const float *bias,
             float *y, int threads) {
    long nb = K / 32;
    float *xs = (float *)malloc((size_t)M * nb * sizeof(float) + 16);
    for (long m = 0; m < M; m++)
        for (long b = 0; b < nb; b++) {
            const float *p = x + m * K + b * 32;
            __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)),
                                     _mm256_add_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)));
            xs[m * nb + b] = hsum8(s);
        }
    int5_rows(x, xs, NULL, NULL, NULL, M, K, low, high, scales, offsets, f16, N, bias, y, threads);
    free(xs);
}

/* int5_mm with x quantized to int8 per block of 32 (as int4_mm_q8 / int8_mm_q8) */
void int5_mm_q8(const float *x, long M, long K, const uint8_t *low, const uint64_t *high,
                const void *scales, const void *offsets, int f16, long N, const float *bias,
                float *y, int threads) {
    long nb = K / 32;
    int8_t *xq = (int8_t *)malloc((size_t)M * K + (size_t)M * nb * 12 + 64);
    float *dx = (float *)(((uintptr_t)(xq + M * K) + 15) & ~(uintptr_t)15);
    int32_t *sq = (int32_t *)(dx + M * nb);
    float *xs = (float *)(sq + M * nb);  /* sums of the dequantized x per block */
    quantize_rows_q8(x, M, K, K, xq, dx, sq);
    for (long i = 0; i < M * nb; i++) xs[i] = dx[i] * (float)sq[i];
    for (long m = 0; m < M; m++)  /* each whole pair of blocks in the order of int5_codes2's halves */
        for (long b = 0; b + 2 <= nb; b += 2) {
            __m256i *q = (__m256i *)(xq + m * K + b * 32);
            __m256i x0 = _mm256_loadu_si256(q), x1 = _mm256_loadu_si256(q + 1);
            _mm256_storeu_si256(q, _mm256_permute2x128_si256(x0, x1, 0x20));
            _mm256_storeu_si256(q + 1, _mm256_permute2x128_si256(x0, x1, 0x31));
        }
    int5_rows(NULL, xs, xq, NULL, dx, M, K, low, high, scales, offsets, f16, N, bias, y, threads);
    free(xq);
}

/* int5_mm with x quantized to int16 per block of 32 */
void int5_mm_q16(const float *x, long M, long K, const uint8_t *low, const uint64_t *high,
                 const void *scales, const void *offsets, int f16, long N, const float *bias,
                 float *y, int threads) {
    long nb = K / 32;
    int16_t *xq = (int16_t *)malloc((size_t)M * K * 2 + (size_t)M * nb * 12 + 64);
    float *dx = (float *)(((uintptr_t)(xq + M * K) + 15) & ~(uintptr_t)15);
    int32_t *sq = (int32_t *)(dx + M * nb);
    float *xs = (float *)(sq + M * nb);  /* sums of the dequantized x per block */
    quantize_rows_q16(x, M, K, K, xq, dx, sq);
    for (long i = 0; i < M * nb; i++) xs[i] = dx[i] * (float)sq[i];
    for (long m = 0; m < M; m++)  /* each whole pair of blocks in int5_row_q16's order */
        for (long b = 0; b + 2 <= nb; b += 2) {
            __m256i *q = (__m256i *)(xq + m * K + b * 32);
            __m256i a0 = _mm256_loadu_si256(q), a1 = _mm256_loadu_si256(q + 1);
            __m256i b0 = _mm256_loadu_si256(q + 2), b1 = _mm256_loadu_si256(q + 3);
            _mm256_storeu_si256(q, _mm256_permute2x128_si256(a0, b0, 0x20));
            _mm256_storeu_si256(q + 1, _mm256_permute2x128_si256(a0, b0, 0x31));
            _mm256_storeu_si256(q + 2, _mm256_permute2x128_si256(a1, b1, 0x20));
            _mm256_storeu_si256(q + 3, _mm256_permute2x128_si256(a1, b1, 0x31));
        }
    int5_rows(NULL, xs, NULL, xq, dx, M, K, low, high, scales, offsets, f16, N, bias, y, threads);
    free(xq);
}

/* ---- int8-dynamic products (quantization/dynamic.py's maths, without FBGEMM): each row of x
   onto the codes 0..255 by its own minimum and span (c = round((x - low) / span * 255)), int8
   weight codes (7-bit there: |q| <= 63) with one scale per output row, integer dot products
   (u8 x s8; |pair sums| <= 2 * 255 * 64 < 32767, so AVX2's maddubs form gives the same
   integers as VNNI's), and y = (acc * scale / 255 + (low / span) * rowsum) * span + bias, the
   form of DynamicInt8Linear's passes (rowsum: the dequantized weight's row sums). The weight
   stays in its (out, in) rows: blocks of 4 rows of x times 4 weight rows, each pair summed in
   one vector over the inputs, the 16 sums reduced together at the end. With AVX-512 (BW and
   VNNI) the vectors are 64 bytes, else 32. Used by the C decode step (any batch) and by
   DynamicInt8Linear for a few rows. ---- */

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define D8_BYTES 64
typedef __m512i d8v;
#define D8_ZERO() _mm512_setzero_si512()
#define D8_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define D8_DOT(acc, x, w) _mm512_dpbusd_epi32((acc), (x), (w))
/* the four vectors' sums, in order, as one 128-bit vector */
static inline __m128i d8_sums4(d8v a, d8v b, d8v c, d8v d) {
    __m512i ab = _mm512_add_epi32(_mm512_shuffle_i64x2(a, b, 0x44), _mm512_shuffle_i64x2(a, b, 0xEE));
    __m512i cd = _mm512_add_epi32(_mm512_shuffle_i64x2(c, d, 0x44), _mm512_shuffle_i64x2(c, d, 0xEE));
    /* 128-bit lanes: [a, b, c, d] partial sums of 4 lanes each */
    __m512i t = _mm512_add_epi32(_mm512_shuffle_i64x2(ab, cd, 0x88), _mm512_shuffle_i64x2(ab, cd, 0xDD));
    t = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, (_MM_PERM_ENUM)0x4E));
    t = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, (_MM_PERM_ENUM)0xB1));
    return _mm512_castsi512_si128(_mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), t));
}
#else
#define D8_BYTES 32
typedef __m256i d8v;
#define D8_ZERO() _mm256_setzero_si256()
#define D8_LOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define D8_DOT(acc, x, w) DPBUSD((acc), (x), (w))
static inline __m128i d8_sums4(d8v a, d8v b, d8v c, d8v d) {
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}
#endif

/* The smallest and largest of a row of K floats (NaNs left out); returns whether it holds a
   NaN. Shared by dyn8_quantize and dynamic_passes.py's dyn_unit_rows (the same low, high). */
static inline int dyn8_row_range(const float *r, long K, float *low, float *high) {
    __m256 lo = _mm256_set1_ps(INFINITY), hi = _mm256_set1_ps(-INFINITY), bad = _mm256_setzero_ps();
    long k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 v = _mm256_loadu_ps(r + k);
        lo = _mm256_min_ps(lo, v);
        hi = _mm256_max_ps(hi, v);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    __m128 l4 = _mm_min_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
    __m128 h4 = _mm_max_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps(hi, 1));
    l4 = _mm_min_ps(l4, _mm_movehl_ps(l4, l4));
    h4 = _mm_max_ps(h4, _mm_movehl_ps(h4, h4));
    float l = _mm_cvtss_f32(_mm_min_ss(l4, _mm_shuffle_ps(l4, l4, 1)));
    float h = _mm_cvtss_f32(_mm_max_ss(h4, _mm_shuffle_ps(h4, h4, 1)));
    int nan = _mm256_movemask_ps(bad) != 0;
    for (; k < K; k++) {
        l = r[k] < l ? r[k] : l;
        h = r[k] > h ? r[k] : h;
        nan |= r[k] != r[k];
    }
    *low = l, *high = h;
    return nan;
}

/* A row's unit inverse: 1 / span, raised by float steps until span times it reaches 1, so the
   row's largest value (x = high) has the unit value 1 exactly once clamped (u = min((x - low)
   inv, 1)). Every row that is not constant then tops out at 1 and the codes' per-call scale
   (max u / 255) is 1 / 255 whatever rows come along: a row's numbers do not depend on the other
   rows of the product (a batch, a prefill, assisted generation's candidates). */
static inline float dyn8_inverse(float span) {
    float inv = 1.f / span;
    while (span * inv < 1.f && inv < INFINITY) {  /* the next float up: its bits plus one */
        uint32_t bits;
        memcpy(&bits, &inv, 4);
        bits++;
        memcpy(&inv, &bits, 4);
    }
    return inv;
}

/* Rows of x to codes (Kp bytes each, zeros past K), a[m] = low / span, span[m] and the codes'
   scale: as DynamicInt8Linear's Python path, float for float - dyn_unit_rows (dynamic_passes.py)
   gives u = min((x - low) * dyn8_inverse(span), 1), then FBGEMM's per-tensor parameters over
   all rows' u (zero point 0, scale = max u / 255 in double, as torch's ChooseQuantizationParams)
   and its codes round(u * (1 / scale)), nearest even. Returns the scale. */
static float dyn8_quantize(const float *x, long M, long K, long Kp, uint8_t *xq, float *a, float *span) {
    float top = 0.f, *inv = (float *)malloc((size_t)M * 2 * sizeof(float) + 16), *low = inv + M;
    for (long m = 0; m < M; m++) {
        float l, h;
        int nan = dyn8_row_range(x + (size_t)m * K, K, &l, &h);
        float s = h - l;
        s = s > 1e-30f ? s : 1e-30f;
        inv[m] = dyn8_inverse(s);
        low[m] = l;
        float u = (h - l) * inv[m];  /* the row's largest unit value: 1 (0 for a constant row) */
        u = u < 1.f ? u : 1.f;
        top = u > top && u == u ? u : top;
        /* a NaN in the row: its outputs NaN (the codes cannot hold it), as dyn_unit_rows does */
        a[m] = nan ? NAN : l * inv[m];
        span[m] = s;
    }
    double wide = (double)top / 255.0;
    float scale = (float)wide;
    if (scale == 0.f || isinf(1.f / scale)) scale = 0.1f;
    const float inverse = 1.f / scale;
    for (long m = 0; m < M; m++) {
        const float *r = x + (size_t)m * K;
        uint8_t *q = xq + (size_t)m * Kp;
        /* no clamp at 1 here: a unit value a float step above 1 times 1 / scale rounds to the
           same code 255 as 1 does */
        const __m256 vl = _mm256_set1_ps(low[m]), vi = _mm256_set1_ps(inv[m]), vq = _mm256_set1_ps(inverse);
        long k = 0;
        for (; k + 32 <= K; k += 32) {
            __m256i i[4];
            for (int j = 0; j < 4; j++)
                i[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(
                    _mm256_sub_ps(_mm256_loadu_ps(r + k + 8 * j), vl), vi), vq));
            __m256i s01 = _mm256_packs_epi32(i[0], i[1]), s23 = _mm256_packs_epi32(i[2], i[3]);
            __m256i b8 = _mm256_packus_epi16(s01, s23);  /* saturates to 0..255 */
            b8 = _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(q + k), b8);
        }
        for (; k < K; k++) {
            int c = _mm_cvtss_si32(_mm_set_ss((r[k] - low[m]) * inv[m] * inverse));
            q[k] = (uint8_t)(c < 0 ? 0 : c > 255 ? 255 : c);
        }
        for (; k < Kp; k++) q[k] = 0;
    }
    free(inv);
    return scale;
}

/* x's codes (rows Kp apart) in one allocation with a[] and span[] after them (free the codes to
   free all), their scale in *xscale: dyn8_quantize for dyn8_mm and dyn8v_mm */
static uint8_t *dyn8_codes(const float *x, long M, long K, long Kp, float **a, float **span,
                           float *xscale) {
    uint8_t *xq = (uint8_t *)malloc((size_t)M * Kp + (size_t)M * 8 + 64);
    *a = (float *)(((uintptr_t)(xq + M * Kp) + 15) & ~(uintptr_t)15);
    *span = *a + M;
    *xscale = dyn8_quantize(x, M, K, Kp, xq, *a, *span);
    return xq;
}

/* sums[r][j] = sum_k xq[r, k] w[j, k] for R (1-4) rows of codes and NR (1 or 4) weight rows. */
static inline __attribute__((always_inline)) void dyn8_block(
        const uint8_t *xq, long Kp, int R, const int8_t *w, long K, int NR, int32_t sums[4][4]) {
    d8v acc[4][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = D8_ZERO();
    long k = 0;
    for (; k + D8_BYTES <= K; k += D8_BYTES) {
        d8v wv[4];
        for (int j = 0; j < NR; j++) {
            PREFETCH_W(w + (size_t)j * K + k);
            wv[j] = D8_LOAD(w + (size_t)j * K + k);
        }
        for (int r = 0; r < R; r++) {
            d8v xv = D8_LOAD(xq + (size_t)r * Kp + k);
            for (int j = 0; j < NR; j++) acc[r][j] = D8_DOT(acc[r][j], xv, wv[j]);
        }
    }
    for (int r = 0; r < R; r++) {
        if (NR == 4) {
            _mm_storeu_si128((__m128i *)sums[r], d8_sums4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
        } else {
            d8v z = D8_ZERO();
            sums[r][0] = _mm_cvtsi128_si32(d8_sums4(acc[r][0], z, z, z));
        }
        for (long t = k; t < K; t++)  /* a tail of fewer than D8_BYTES inputs */
            for (int j = 0; j < NR; j++) sums[r][j] += (int32_t)xq[(size_t)r * Kp + t] * w[(size_t)j * K + t];
    }
}

/* y[m, n] (row stride ldy) = (sums * (xscale * scale[n]) + a[m] rowsum[n]) * span[m] + bias[n]
   (the float operations of FBGEMM's output and dyn_out_rows) for R rows and NR output rows
   from n */
static inline __attribute__((always_inline)) void dyn8_finish(
        int32_t sums[4][4], int R, int NR, long n, float xscale, const float *a, const float *span,
        const float *scales, const float *row_sums, const float *bias, float *y, long ldy) {
    if (NR == 4) {
        __m128 s = _mm_mul_ps(_mm_set1_ps(xscale), _mm_loadu_ps(scales + n));
        __m128 rs = _mm_loadu_ps(row_sums + n);
        for (int r = 0; r < R; r++) {
            __m128 v = _mm_mul_ps(_mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)sums[r])), s);
            v = _mm_fmadd_ps(_mm_set1_ps(a[r]), rs, v);
            v = bias ? _mm_fmadd_ps(v, _mm_set1_ps(span[r]), _mm_loadu_ps(bias + n))
                     : _mm_mul_ps(v, _mm_set1_ps(span[r]));
            _mm_storeu_ps(y + (size_t)r * ldy + n, v);
        }
    } else {
        for (int r = 0; r < R; r++) {
            float v = (float)sums[r][0] * (xscale * scales[n]);
            v = fmaf(a[r], row_sums[n], v);
            y[(size_t)r * ldy + n] = bias ? fmaf(v, span[r], bias[n]) : v * span[r];
        }
    }
}

static void dyn8_rows(const uint8_t *xq, float xscale, const float *a, const float *span, long M, long K,
                      long Kp, const int8_t *codes, const float *scales, const float *row_sums,
                      const float *bias, long N, float *y, long ldy, int threads) {
    long blocks = (N + 3) / 4;
    long chunk = blocks / (4L * threads) > 0 ? blocks / (4L * threads) : 1;
    /* dynamic: on a busy machine a descheduled thread's share is taken by the others */
    #pragma omp parallel for schedule(dynamic, chunk) num_threads(threads) if (threads > 1)
    for (long blk = 0; blk < blocks; blk++) {
        long n = blk * 4;
        int32_t sums[4][4];
        for (long m = 0; m < M; m += 4) {
            int R = M - m >= 4 ? 4 : (int)(M - m);
            const uint8_t *xm = xq + (size_t)m * Kp;
            float *ym = y + (size_t)m * ldy;
            /* R and NR as constants in each call: the loops unroll */
            #define DYN8_BLOCK(w, NR) switch (R) { \
                case 4: dyn8_block(xm, Kp, 4, w, K, NR, sums); break; \
                case 3: dyn8_block(xm, Kp, 3, w, K, NR, sums); break; \
                case 2: dyn8_block(xm, Kp, 2, w, K, NR, sums); break; \
                default: dyn8_block(xm, Kp, 1, w, K, NR, sums); }
            if (N - n >= 4) {
                DYN8_BLOCK(codes + (size_t)n * K, 4)
                dyn8_finish(sums, R, 4, n, xscale, a + m, span + m, scales, row_sums, bias, ym, ldy);
            } else
                for (long n1 = n; n1 < N; n1++) {  /* the last 1-3 output rows one at a time */
                    DYN8_BLOCK(codes + (size_t)n1 * K, 1)
                    dyn8_finish(sums, R, 1, n1, xscale, a + m, span + m, scales, row_sums, bias, ym, ldy);
                }
            #undef DYN8_BLOCK
        }
    }
}

/* ---- dyn8 on the weight in VNNI order (every build; the path of CPUs without AMX): per block
   of D8V_ROWS output rows (16 with AVX-512, 8 with AVX2) and group of 4 inputs, one vector -
   row r's 4 codes at 4r - so one vector product (VPDPBUSD, or AVX2's maddubs + madd) adds 4
   inputs to D8V_ROWS outputs of one x row at once, with no sums to reduce at the end (the row
   layout spends ~2/3 of an 8-row product there: measured 1.9-3.3x faster on MiniLM / Whisper /
   SmolLM2 layers, sums alone). Blocks of 2 x D8V_ROWS weight rows times up to D8V_XROWS rows of
   x (the weight block then comes from L1); x in blocks of DYN8V_X_BYTES that stay in L2 while
   every weight pair passes (a prefill's or an encoder's thousands of rows: 1.0-1.4x the
   unblocked loop at 1,500-4,096 rows). The same integer sums and float operations as
   dyn8_rows: bit for bit its numbers. ---- */
#if D8_BYTES == 64
#define D8V_ROWS 16  /* weight rows a block: one vector of their 16 int32 sums */
#define D8V_XROWS 8  /* x rows a step */
typedef __m512i d8w;
#define D8V_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define D8V_DOT(acc, x, w) _mm512_dpbusd_epi32((acc), (x), (w))
#define D8V_ZERO() _mm512_setzero_si512()
#define D8V_SET1(v) _mm512_set1_epi32(v)
typedef __m512 d8f;  /* D8V_ROWS floats, and the mask of the first count of them */
typedef __mmask16 d8m;
#define D8F_MASK(count) ((count) >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count)) - 1))
#define D8F_LOAD(k, p) _mm512_maskz_loadu_ps((k), (p))
#define D8F_STORE(p, k, v) _mm512_mask_storeu_ps((p), (k), (v))
#define D8F_CVT(v) _mm512_cvtepi32_ps(v)
#define D8F_SET1(v) _mm512_set1_ps(v)
#define D8F_MUL(a, b) _mm512_mul_ps((a), (b))
#define D8F_FMADD(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define D8F_ZERO() _mm512_setzero_ps()
/* 16 vectors of 16 int32 -> their transpose (out[j] lane i = in[i] lane j) */
static inline void dyn8_transpose16(const __m512i in[16], __m512i out[16]) {
    __m512i a[16], b[16], c[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i + 0], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i + 0], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    for (int q = 0; q < 2; q++)  /* b[4q + s]: rows 4q..4q+3 x columns 4L + s per 128-bit lane L */
        for (int s = 0; s < 4; s++) {
            __m512i x = b[4 * (2 * q) + s], y = b[4 * (2 * q + 1) + s];
            c[8 * q + s] = _mm512_shuffle_i32x4(x, y, 0x88);
            c[8 * q + 4 + s] = _mm512_shuffle_i32x4(x, y, 0xDD);
        }
    for (int s = 0; s < 8; s++) {
        out[s] = _mm512_shuffle_i32x4(c[s], c[8 + s], 0x88);
        out[8 + s] = _mm512_shuffle_i32x4(c[s], c[8 + s], 0xDD);
    }
}

/* rows n..n+15 of (N, K) codes (rows past N zero) in VNNI order, dyn8_pack's layout: quads x 64
   bytes, 16 rows x 64 inputs transposed in registers at a time */
static inline void dyn8_pack_block(const int8_t *codes, long K, long n, long N, long quads, int8_t *dst) {
    long rows = N - n < 16 ? N - n : 16;
    for (long q0 = 0; q0 < quads; q0 += 16) {
        long nq = quads - q0 < 16 ? quads - q0 : 16;
        __mmask16 km = nq == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nq) - 1);
        __m512i in[16], out[16];
        for (int r = 0; r < 16; r++)
            in[r] = r < rows ? _mm512_maskz_loadu_epi32(km, codes + (size_t)(n + r) * K + q0 * 4)
                             : _mm512_setzero_si512();
        dyn8_transpose16(in, out);
        for (long q = 0; q < nq; q++) _mm512_storeu_si512((void *)(dst + (q0 + q) * 64), out[q]);
    }
}

#else
/* 32-byte vectors (AVX2; AVX-VNNI's VPDPBUSD where the CPU has it, else maddubs + madd, exact
   for 7-bit codes): blocks of 8 weight rows, 4 x rows a step (16 registers) */
#define D8V_ROWS 8
#define D8V_XROWS 4
typedef __m256i d8w;
#define D8V_LOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define D8V_DOT(acc, x, w) DPBUSD((acc), (x), (w))
#define D8V_ZERO() _mm256_setzero_si256()
#define D8V_SET1(v) _mm256_set1_epi32(v)
typedef __m256 d8f;
typedef __m256i d8m;
#define D8F_MASK(count) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define D8F_LOAD(k, p) _mm256_maskload_ps((p), (k))
#define D8F_STORE(p, k, v) _mm256_maskstore_ps((p), (k), (v))
#define D8F_CVT(v) _mm256_cvtepi32_ps(v)
#define D8F_SET1(v) _mm256_set1_ps(v)
#define D8F_MUL(a, b) _mm256_mul_ps((a), (b))
#define D8F_FMADD(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define D8F_ZERO() _mm256_setzero_ps()
/* rows n..n+7 of (N, K) codes (rows past N zero) in VNNI order: quads x 32 bytes, 8 rows x 32
   inputs transposed in registers at a time */
static inline void dyn8_pack_block(const int8_t *codes, long K, long n, long N, long quads, int8_t *dst) {
    long rows = N - n < 8 ? N - n : 8;
    for (long q0 = 0; q0 < quads; q0 += 8) {
        long nq = quads - q0 < 8 ? quads - q0 : 8;
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nq), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256i r[8], t[8], u[8];
        for (int i = 0; i < 8; i++)
            r[i] = i < rows ? _mm256_maskload_epi32((const int *)(codes + (size_t)(n + i) * K + q0 * 4), mask)
                            : _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        for (int h = 0; h < 2; h++) {  /* rows 4h..4h+3 */
            u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
            u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
            u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
            u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
        }
        for (long q = 0; q < nq; q++)  /* quad q: lane (q & 3) + 4 (q >> 2) of each row */
            _mm256_storeu_si256((__m256i *)(dst + (q0 + q) * 32),
                                _mm256_permute2x128_si256(u[q & 3], u[4 + (q & 3)], q < 4 ? 0x20 : 0x31));
    }
}

#endif
#ifndef DYN8V_X_BYTES
#define DYN8V_X_BYTES (384L * 1024)
#endif
/* y for up to D8V_ROWS outputs from n (count of them valid) of R rows: dyn8_finish's operations */
static inline void dyn8v_finish(const d8w *acc, int R, long n, long count, float xscale,
                                const float *a, const float *span, const float *scales,
                                const float *row_sums, const float *bias, float *y, long ldy,
                                int which) {
    d8m k = D8F_MASK(count);
    d8f s = D8F_MUL(D8F_SET1(xscale), D8F_LOAD(k, scales + n));
    d8f rs = D8F_LOAD(k, row_sums + n);
    d8f b = bias ? D8F_LOAD(k, bias + n) : D8F_ZERO();
    for (int r = 0; r < R; r++) {
        d8f v = D8F_MUL(D8F_CVT(acc[2 * r + which]), s);
        v = D8F_FMADD(D8F_SET1(a[r]), rs, v);
        v = bias ? D8F_FMADD(v, D8F_SET1(span[r]), b) : D8F_MUL(v, D8F_SET1(span[r]));
        D8F_STORE(y + (size_t)r * ldy + n, k, v);
    }
}

static inline __attribute__((always_inline)) void dyn8v_block(
        const uint8_t *xq, long Kp, int R, const int8_t *p0, const int8_t *p1, long quads,
        d8w acc[D8V_XROWS][2]) {
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = D8V_ZERO();
    for (long q = 0; q < quads; q++) {
        if (D8V_ROWS == 16 || !(q & 1)) {  /* a line a prefetch */
            PREFETCH_W(p0 + q * 4 * D8V_ROWS);
            PREFETCH_W(p1 + q * 4 * D8V_ROWS);
        }
        d8w w0 = D8V_LOAD(p0 + q * 4 * D8V_ROWS), w1 = D8V_LOAD(p1 + q * 4 * D8V_ROWS);
        for (int r = 0; r < R; r++) {
            d8w xb = D8V_SET1(*(const int32_t *)(xq + (size_t)r * Kp + 4 * q));
            acc[r][0] = D8V_DOT(acc[r][0], xb, w0);
            acc[r][1] = D8V_DOT(acc[r][1], xb, w1);
        }
    }
}

/* M rows of codes (Kp apart) times the VNNI-order form P of N weight rows (K a multiple of 4;
   P holds ceil(N / D8V_ROWS) blocks, zero rows past N) */
static void dyn8v_rows(const uint8_t *xq, float xscale, const float *a, const float *span, long M,
                       long K, long Kp, const int8_t *P, const float *scales, const float *row_sums,
                       const float *bias, long N, float *y, long ldy, int threads) {
    const long BR = D8V_ROWS, XR = D8V_XROWS, bytes = (K / 4) * 4 * BR;  /* a block's bytes */
    long quads = K / 4, blocks = (N + BR - 1) / BR, pairs = (blocks + 1) / 2;
    long chunk = pairs / (4L * threads) > 0 ? pairs / (4L * threads) : 1;
    /* x in blocks of rows that stay in L2 (DYN8V_X_BYTES) while every weight pair passes */
    long mb = DYN8V_X_BYTES / Kp / XR * XR;
    mb = mb < XR ? XR : mb;
    #pragma omp parallel num_threads(threads) if (threads > 1)
    for (long m0 = 0; m0 < M; m0 += mb) {
        long m1 = m0 + mb < M ? m0 + mb : M;
        #pragma omp for schedule(dynamic, chunk) nowait
        for (long pair = 0; pair < pairs; pair++) {
            long j = 2 * pair, n = j * BR;
            const int8_t *p0 = P + (size_t)j * bytes;
            const int8_t *p1 = j + 1 < blocks ? p0 + bytes : p0;  /* a last single block: itself twice */
            long count0 = N - n < BR ? N - n : BR, count1 = j + 1 < blocks ? (N - n - BR < BR ? N - n - BR : BR) : 0;
            for (long m = m0; m < m1; m += XR) {
                int R = m1 - m >= XR ? (int)XR : (int)(m1 - m);
                d8w acc[D8V_XROWS][2];
                const uint8_t *xm = xq + (size_t)m * Kp;
                switch (R) {  /* constant R: the loops unroll */
#if D8V_XROWS == 8
                    case 8: dyn8v_block(xm, Kp, 8, p0, p1, quads, acc); break;
                    case 7: dyn8v_block(xm, Kp, 7, p0, p1, quads, acc); break;
                    case 6: dyn8v_block(xm, Kp, 6, p0, p1, quads, acc); break;
                    case 5: dyn8v_block(xm, Kp, 5, p0, p1, quads, acc); break;
#endif
                    case 4: dyn8v_block(xm, Kp, 4, p0, p1, quads, acc); break;
                    case 3: dyn8v_block(xm, Kp, 3, p0, p1, quads, acc); break;
                    case 2: dyn8v_block(xm, Kp, 2, p0, p1, quads, acc); break;
                    default: dyn8v_block(xm, Kp, 1, p0, p1, quads, acc); break;
                }
                float *ym = y + (size_t)m * ldy;
                dyn8v_finish(&acc[0][0], R, n, count0, xscale, a + m, span + m, scales, row_sums, bias, ym, ldy, 0);
                if (count1 > 0)
                    dyn8v_finish(&acc[0][0], R, n + BR, count1, xscale, a + m, span + m, scales, row_sums, bias, ym, ldy, 1);
            }
        }
    }
}

/* the weight rows in a block of the VNNI-order form (16 with AVX-512, 8 with AVX2) */
int dyn8v_block_rows(void) {
    return D8V_ROWS;
}

/* (N, K) codes -> their VNNI-order form (kernels.dyn8_pack; ceil(N / D8V_ROWS) * D8V_ROWS * K
   bytes) */
void dyn8_pack(const int8_t *codes, long N, long K, int8_t *out, int threads) {
    long quads = K / 4, blocks = (N + D8V_ROWS - 1) / D8V_ROWS;
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (long b = 0; b < blocks; b++)
        dyn8_pack_block(codes, K, b * D8V_ROWS, N, quads, out + (size_t)b * quads * 4 * D8V_ROWS);
}

/* dyn8_mm with the weight in its VNNI-order form P (kernels.dyn8_pack) */
void dyn8v_mm(const float *x, long M, long K, const int8_t *P, const float *scales,
              const float *row_sums, const float *bias, long N, float *y, long ldy, int threads) {
    long Kp = (K + 63) / 64 * 64;
    float *a, *span, xscale;
    uint8_t *xq = dyn8_codes(x, M, K, Kp, &a, &span, &xscale);
    dyn8v_rows(xq, xscale, a, span, M, K, Kp, P, scales, row_sums, bias, N, y, ldy, threads);
    free(xq);
}

/* ---- dyn8 on the AMX tiles (Intel Xeon from Sapphire Rapids on; built with -mamx-tile
   -mamx-int8 where the CPU has them): C = W x^T with the weight's 16 rows x 64 inputs as the
   signed A tile read straight from its (out, in) rows, x's codes re-laid once a product as the
   unsigned B tiles (16 groups of 4 inputs x up to 16 rows, TDPBSUD), 3 blocks of 16 weight
   rows a step sharing each B tile (two B tiles in turn), the next group of weight rows
   prefetched to L2 (DYN8_AMX_HINT / DYN8_AMX_AHEAD: T1, one group ahead measured best among
   T0-T2 and 1-4 groups). The same integer sums as the vector path, the same float operations
   after (dyn8_finish's, 16 outputs a vector): bit for bit its numbers. The tile state is asked
   of the kernel once a process (arch_prctl); where it is refused, or LIGHTPIPE_AMX=0, the
   vector path runs. ---- */
#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512BW__)
#include <sys/syscall.h>
#include <unistd.h>
#define DYN8_AMX 1
typedef struct { uint8_t palette, start; uint8_t reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } dyn8_tilecfg;
#ifndef DYN8_AMX_HINT
#define DYN8_AMX_HINT _MM_HINT_T1
#endif
#ifndef DYN8_AMX_AHEAD
#define DYN8_AMX_AHEAD 1
#endif
static int dyn8_amx_state = 0;  /* 0 not asked, 1 granted, -1 not */

int dyn8_amx_usable(void) {
    if (!dyn8_amx_state) {
        const char *e = getenv("LIGHTPIPE_AMX");
        int off = e && (!strcmp(e, "0") || !strcmp(e, "off") || !strcmp(e, "false") || !strcmp(e, "no"));
        /* ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA */
        dyn8_amx_state = !off && syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 1 : -1;
    }
    return dyn8_amx_state > 0;
}

/* 16 x 16 int32 transpose: out[j] = lane j of in[0..15] */

/* y for 16 weight rows from n: the C tile's sums (16 rows of R int32, 64 bytes apart),
   transposed to one vector per x row (a gather per row cost 20% of a decode step's product) */
static inline void dyn8_amx_finish(const int32_t *c, long R, long n, float xscale, const float *a,
                                   const float *span, const float *scales, const float *row_sums,
                                   const float *bias, float *y, long ldy) {
    __m512i rows[16], cols[16];
    for (int i = 0; i < 16; i++) rows[i] = _mm512_load_si512((const void *)(c + 16 * i));
    dyn8_transpose16(rows, cols);
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(xscale), _mm512_loadu_ps(scales + n));
    __m512 rs = _mm512_loadu_ps(row_sums + n);
    __m512 b = bias ? _mm512_loadu_ps(bias + n) : _mm512_setzero_ps();
    for (long r = 0; r < R; r++) {
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(cols[r]), s);
        v = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), rs, v);
        v = bias ? _mm512_fmadd_ps(v, _mm512_set1_ps(span[r]), b) : _mm512_mul_ps(v, _mm512_set1_ps(span[r]));
        _mm512_storeu_ps(y + (size_t)r * ldy + n, v);
    }
}

/* M rows of codes xq (K apart, K a multiple of 64) times the first N16 (a multiple of 16)
   weight rows: per group of 64 weight rows, every 16 rows of x in turn (the group's weight then
   comes from cache after the first) */
static void dyn8_amx_rows(const uint8_t *xq, long M, float xscale, const float *a, const float *span,
                          long K, const int8_t *codes, const float *scales, const float *row_sums,
                          const float *bias, long N16, float *y, long ldy, int threads) {
    long kb = K / 64, blocks = N16 / 16, groups = (blocks + 2) / 3, chunks = (M + 15) / 16;
    long R = M < 16 ? M : 16;  /* the tiles' x rows (a last chunk of fewer rows: zeros) */
    /* x^T: per 16 rows of x and 64 inputs a 16 x 64-byte tile, row g holding inputs 4g..4g+3
       of each x row */
    int32_t *xt = (int32_t *)aligned_alloc(64, (size_t)chunks * kb * 1024);
    for (long ch = 0; ch < chunks; ch++)
        for (long b = 0; b < kb; b++)
            for (long g = 0; g < 16; g++)
                for (long r = 0; r < 16; r++) {
                    long m = ch * 16 + r;
                    xt[(ch * kb + b) * 256 + g * 16 + r] =
                        m < M ? ((const int32_t *)(xq + (size_t)m * K + b * 64))[g] : 0;
                }
    /* tiles: 0 and 7 x^T (B, alternate steps), 1-3 weight rows (A), 4-6 the sums (C): no tile
       is loaded again while a product may still read it */
    dyn8_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.rows[0] = cfg.rows[7] = 16;
    cfg.colsb[0] = cfg.colsb[7] = (uint16_t)(R * 4);
    for (int t = 1; t <= 3; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    for (int t = 4; t <= 6; t++) { cfg.rows[t] = 16; cfg.colsb[t] = (uint16_t)(R * 4); }
    long chunk = groups / (4L * threads) > 0 ? groups / (4L * threads) : 1;
    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        _tile_loadconfig(&cfg);
        int32_t c[3][256] __attribute__((aligned(64)));
        #pragma omp for schedule(dynamic, chunk)
        for (long grp = 0; grp < groups; grp++) {
            long n = grp * 48, count = blocks - grp * 3 < 3 ? blocks - grp * 3 : 3;
            const int8_t *w = codes + (size_t)n * K;
            const char *next = (const char *)(codes + (size_t)(n + 48 * DYN8_AMX_AHEAD) * K);
            long line = 0, lines = 48 * K / 64;  /* the group DYN8_AMX_AHEAD on, line by line */
            long per = (lines + kb * count - 1) / (kb * count);
            for (long ch = 0; ch < chunks; ch++) {
                _tile_zero(4); _tile_zero(5); _tile_zero(6);
                #define DYN8_AMX_STEP(i, A, C, B) \
                    if (i < count) { \
                        if (ch == 0) \
                            for (long p = 0; p < per && line < lines; p++, line++) \
                                _mm_prefetch(next + line * 64, DYN8_AMX_HINT); \
                        _tile_loadd(A, w + (size_t)(16 * i) * K + b * 64, K); \
                        _tile_dpbsud(C, A, B); \
                    }
                #define DYN8_AMX_K(B) \
                    _tile_loadd(B, xt + (ch * kb + b) * 256, 64); \
                    DYN8_AMX_STEP(0, 1, 4, B) \
                    DYN8_AMX_STEP(1, 2, 5, B) \
                    DYN8_AMX_STEP(2, 3, 6, B)
                for (long b = 0; b < kb; b++) {
                    if (b & 1) { DYN8_AMX_K(7) } else { DYN8_AMX_K(0) }
                }
                #undef DYN8_AMX_K
                #undef DYN8_AMX_STEP
                _tile_stored(4, c[0], 64);
                if (count > 1) _tile_stored(5, c[1], 64);
                if (count > 2) _tile_stored(6, c[2], 64);
                long rows = M - ch * 16 < 16 ? M - ch * 16 : 16;
                for (long i = 0; i < count; i++)
                    dyn8_amx_finish(c[i], rows, n + 16 * i, xscale, a + ch * 16, span + ch * 16,
                                    scales, row_sums, bias, y + (size_t)ch * 16 * ldy, ldy);
            }
        }
        _tile_release();
    }
    free(xt);
}
#endif

/* products of at least this many rows go to the AMX path where it runs (tests move it): one to
   three rows are faster on the vector path (1 row 0.6-0.9x, 4 rows 1.06-1.39x, 8 rows
   1.6-2.1x with AMX, a 2-core Sapphire Rapids-class Xeon, 1 thread) */
long dyn8_amx_from = 4;

/* y[m, n] (row stride ldy) = x[m] . w[n] the int8-dynamic way (above) for M rows of x (K
   inputs, a multiple of 4) and N output rows: codes (N, K) int8, scales and row_sums (N,)
   float32, bias (N,) or NULL. */
void dyn8_mm(const float *x, long M, long K, const int8_t *codes, const float *scales,
             const float *row_sums, const float *bias, long N, float *y, long ldy, int threads) {
    long Kp = (K + 63) / 64 * 64;
    float *a, *span, xscale;
    uint8_t *xq = dyn8_codes(x, M, K, Kp, &a, &span, &xscale);
#ifdef DYN8_AMX
    if (K % 64 == 0 && N >= 16 && M >= dyn8_amx_from && dyn8_amx_usable()) {
        long N16 = N / 16 * 16;
        dyn8_amx_rows(xq, M, xscale, a, span, K, codes, scales, row_sums, bias, N16, y, ldy, threads);
        if (N16 < N)  /* the last 1-15 weight rows */
            dyn8_rows(xq, xscale, a, span, M, K, Kp, codes + (size_t)N16 * K, scales + N16,
                      row_sums + N16, bias ? bias + N16 : NULL, N - N16, y + N16, ldy, threads);
        free(xq);
        return;
    }
#endif
    dyn8_rows(xq, xscale, a, span, M, K, Kp, codes, scales, row_sums, bias, N, y, ldy, threads);
    free(xq);
}

/* ---- greedy search's pick: out[b] = the index of the first largest value of row b of x (B
   rows of V floats, ld apart), or of its first NaN where the row holds one - torch.argmax's
   answer. Two vector passes (the largest value, then where it first is): torch's CPU argmax
   over a vocabulary row is ~12x its amax (1.56 ms for 8 rows of Qwen2.5's 151,936 logits, 5%
   of a batch-8 step). ---- */
void argmax_rows(const float *x, long B, long V, long ld, int64_t *out) {
    for (long b = 0; b < B; b++) {
        const float *r = x + (size_t)b * ld;
        __m256 top = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
        long k = 0;
        for (; k + 8 <= V; k += 8) {
            __m256 v = _mm256_loadu_ps(r + k);
            top = _mm256_max_ps(top, v);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        float m = hmax8(top);
        int has_nan = _mm256_movemask_ps(nan) != 0;
        for (long t = k; t < V; t++) {
            has_nan |= r[t] != r[t];
            m = r[t] > m ? r[t] : m;
        }
        long at = 0;
        if (has_nan) {
            while (r[at] == r[at]) at++;
        } else {
            const __m256 vm = _mm256_set1_ps(m);
            for (k = 0; k + 8 <= V; k += 8) {
                int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(r + k), vm, _CMP_EQ_OQ));
                if (hit) break;
            }
            at = k;
            while (at < V && r[at] != m) at++;
        }
        out[b] = at < V ? at : 0;
    }
}

/* ---- float32 products of a few rows (the C decode step's float32 layers): y[m, n] (row stride
   ldy) = x[m] . w[n] + bias[n] for M rows of x (K inputs) and the (N, K) float32 weight as it
   is (no packed copy). Blocks of 4 weight rows times up to 4 rows of x, 16 accumulators of 16
   (AVX-512) or 8 floats, the weight prefetched ahead; the sums reduced per block at the end.
   Measured against MKL's F.linear on SmolLM2-shaped layers streamed from memory (1 thread): 1-2
   rows 1.06-1.1x, 4 rows 1.7x, 8 rows 1.9x. ---- */
#if defined(__AVX512F__)
typedef __m512 f32v;
#define F32_WIDTH 16
#define F32_LOAD(p) _mm512_loadu_ps(p)
#define F32_TAIL(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), (p))
#define F32_FMADD(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define F32_ZERO() _mm512_setzero_ps()
#define F32_SUM(v) _mm512_reduce_add_ps(v)
#else
typedef __m256 f32v;
#define F32_WIDTH 8
#define F32_LOAD(p) _mm256_loadu_ps(p)
#define F32_TAIL(p, n) _mm256_maskload_ps((p), _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), \
                                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))
#define F32_FMADD(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define F32_ZERO() _mm256_setzero_ps()
#define F32_SUM(v) hsum8(v)
#endif

static inline __attribute__((always_inline)) void f32_block(
        const float *x, long K, int R, const float *w, int NR, float sums[4][4]) {
    f32v acc[4][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = F32_ZERO();
    long k = 0;
    for (; k + F32_WIDTH <= K; k += F32_WIDTH) {
        f32v wv[4];
        for (int j = 0; j < NR; j++) {
            PREFETCH_W(w + (size_t)j * K + k);
            wv[j] = F32_LOAD(w + (size_t)j * K + k);
        }
        for (int r = 0; r < R; r++) {
            f32v xv = F32_LOAD(x + (size_t)r * K + k);
            for (int j = 0; j < NR; j++) acc[r][j] = F32_FMADD(xv, wv[j], acc[r][j]);
        }
    }
    if (k < K) {  /* the last K % F32_WIDTH inputs, masked */
        long n = K - k;
        f32v wv[4];
        for (int j = 0; j < NR; j++) wv[j] = F32_TAIL(w + (size_t)j * K + k, n);
        for (int r = 0; r < R; r++) {
            f32v xv = F32_TAIL(x + (size_t)r * K + k, n);
            for (int j = 0; j < NR; j++) acc[r][j] = F32_FMADD(xv, wv[j], acc[r][j]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NR; j++) sums[r][j] = F32_SUM(acc[r][j]);
}

void f32_mm(const float *x, long M, long K, const float *w, long N, const float *bias, float *y,
            long ldy, int threads) {
    long blocks = (N + 3) / 4;
    long chunk = blocks / (4L * threads) > 0 ? blocks / (4L * threads) : 1;
    #pragma omp parallel for schedule(dynamic, chunk) num_threads(threads) if (threads > 1)
    for (long blk = 0; blk < blocks; blk++) {
        long n = blk * 4;
        int NR = N - n >= 4 ? 4 : (int)(N - n);
        const float *wn = w + (size_t)n * K;
        float sums[4][4];
        for (long m = 0; m < M; m += 4) {
            int R = M - m >= 4 ? 4 : (int)(M - m);
            const float *xm = x + (size_t)m * K;
            /* R and NR as constants in each call: the loops unroll */
            #define F32_BLOCK(NRC) switch (R) { \
                case 4: f32_block(xm, K, 4, wn, NRC, sums); break; \
                case 3: f32_block(xm, K, 3, wn, NRC, sums); break; \
                case 2: f32_block(xm, K, 2, wn, NRC, sums); break; \
                default: f32_block(xm, K, 1, wn, NRC, sums); }
            switch (NR) {
                case 4: F32_BLOCK(4) break;
                case 3: F32_BLOCK(3) break;
                case 2: F32_BLOCK(2) break;
                default: F32_BLOCK(1)
            }
            #undef F32_BLOCK
            for (int r = 0; r < R; r++)
                for (int j = 0; j < NR; j++)
                    y[(size_t)(m + r) * ldy + n + j] = sums[r][j] + (bias ? bias[n + j] : 0.f);
        }
    }
}
