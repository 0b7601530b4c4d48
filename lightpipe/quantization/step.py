"""A Llama-shaped decoding step in C: one call per generated token for all layers and rows.

A quantized small model's step is mostly overhead around the products (SmolLM2-135M, 30
layers: ~1,700 torch calls a token, ~18 ms of a 34 ms token on one thread, where llama.cpp
spends 14 ms on the whole token). For greedy/sampled decoding of the plain Llama shape
(RMSNorm, RoPE, grouped-query attention, SwiGLU, optional per-head query/key RMSNorms; Llama,
SmolLM2, Qwen2, Qwen3, Mistral with its window, Phi-3 with its fused q/k/v and gate/up layers -
one product each - where RoPE turns whole heads) with every projection quantized (``Int4Linear``
/ ``Int8Linear`` / ``Int5Linear``, ``DynamicInt8Linear``, or fused groups of them) or float32
(the weight as it is, ``kernels.f32_mm``: real SmolLM2-135M float32 at batch 1, 26.8 -> 34.9
tok/s at 1 thread, 38 -> 62 at 2) and float32 activations, this module runs each layer's maths
in C - norm, q/k/v product, RoPE, the cache write, attention over the cache, o product and
residual, norm, gate/up product, SiLU x up, down product and residual - calling the products of
``kernels.py`` directly, with the
activations each layer chooses (int16 by default, ``kernels.layer_activations``; int8-dynamic
layers their own per-row 8-bit codes, ``kernels.dyn8_mm``). It is the same maths as the
Python plan (``LlamaModel._decode_one``) in another summation order (~1e-6 relative; an
int8-dynamic activation one float bit off may round to the next 8-bit code).

A batch of B rows is one call too (the products take all rows at once: 8 rows of SmolLM2
int8-dynamic cost ~2x one row, not 8x): each row has its own cache rows (the KVCache's
(batch, kv_heads, capacity, head_dim) buffers), RoPE position (left padding) and key mask
(padding, a sliding window in reach: the boolean mask the Python plan would use, one byte a
key).

The C source is compiled into ``kernels.py``'s library (``EXTRA_SOURCES``). Any other case -
several windows with a mask, a 16-bit model, no kernel, more than MAX_BATCH rows - is left to
the Python plan: ``DecodeStep.build`` returns None or ``__call__``
returns None. ``LIGHTPIPE_NATIVE_STEP=0`` switches it off.
"""

from __future__ import annotations

import ctypes
import os
import time

import torch
import torch.nn.functional as F

from ..threads import ThreadChooser  # noqa: F401 (step.ThreadChooser, as before)
from . import kernels
from .fuse import FusedPart
from .dynamic import DynamicInt8Linear
from .linear import Int4Linear, Int5Linear, Int8Linear, QuantizedLinear

SOURCE = r"""
#include <math.h>

/* One product: kind 4 (int4 tiles), 8 (int8 rows), 5 (5-bit codes: w the low nibbles,
   rows_pad the 5th bits, group the offsets or 0, bf16 the float16 flag), 9 (int8-dynamic: w
   the codes, s the float32 scales, group the row sums, rows_pad the VNNI-order form or 0;
   kernels.c's dyn8_mm / dyn8v_mm) or 32 (a float32 weight: kernels.c's f32_mm), 0 = none; its
   output goes to out + offset (row m at out + m * ldo + offset). */
/* act: the activations (ACTIVATION_CODES): 0 float32 x, 1 x quantized to int8 per block of 32
   (int8_activations), 2 to int16 (the default); kind 9 has its own */
typedef struct { long kind, w, s, bf16, rows_pad, n, group, bias, offset, weights, act; } Product;

/* threads for products of at least parallel_from weights (others run on the calling thread) */
static int step_threads = 1;
static long step_parallel_from = 0;

/* M rows of x (K each) times the product's weight into out (rows ldo apart); tmp: M * n
   floats, for the kinds whose kernels write rows n apart when those are not ldo apart */
static void step_product(const Product *p, const float *x, long M, long K, float *out, long ldo,
                         float *tmp) {
    if (!p->kind) return;
    int threads = p->weights * M >= step_parallel_from ? step_threads : 1;
    if (p->kind == 32) {  /* a float32 (n, K) weight as it is */
        f32_mm(x, M, K, (const float *)p->w, p->n, (const float *)p->bias, out + p->offset, ldo, threads);
        return;
    }
    if (p->kind == 9) {  /* rows_pad: the weight's VNNI-order form, or 0 (the rows as they are) */
        (p->rows_pad ? dyn8v_mm : dyn8_mm)(x, M, K, (const int8_t *)(p->rows_pad ? p->rows_pad : p->w),
                (const float *)p->s, (const float *)p->group, (const float *)p->bias, p->n,
                out + p->offset, ldo, threads);
        return;
    }
    int direct = M == 1 || (p->offset == 0 && p->n == ldo);
    float *y = direct ? out + p->offset : tmp;
    if (p->kind == 4)
        (p->act == 2 ? int4_mm_q16 : p->act ? int4_mm_q8 : int4_mm)(x, M, K, (const uint8_t *)p->w, (const void *)p->s, (int)p->bf16, p->rows_pad,
                p->n, (int)p->group, (const float *)p->bias, y, threads);
    else if (p->kind == 8)
        (p->act == 2 ? int8_mm_q16 : p->act ? int8_mm_q8 : int8_mm)(x, M, K, (const int8_t *)p->w, (const void *)p->s, (int)p->bf16, p->group,
                p->n, (const float *)p->bias, y, threads);
    else if (p->kind == 5)
        (p->act == 2 ? int5_mm_q16 : p->act ? int5_mm_q8 : int5_mm)(x, M, K, (const uint8_t *)p->w, (const uint64_t *)p->rows_pad,
                (const void *)p->s, (const void *)p->group, (int)p->bf16, p->n,
                (const float *)p->bias, y, threads);
    if (!direct)
        for (long m = 0; m < M; m++)
            memcpy(out + m * ldo + p->offset, tmp + m * p->n, p->n * sizeof(float));
}

static float dot(const float *a, const float *b, long n) {  /* n a multiple of 8 */
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i < n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    return hsum8(_mm256_add_ps(s0, s1));
}

/* sc[j] = e^(sc[j] - top) (0 where sc[j] is -inf: a masked key); *total = their sum */
static void softmax_weights(float *sc, long n, float top, float *total) {
    const __m256 vt = _mm256_set1_ps(top), masked = _mm256_set1_ps(-INFINITY);
    __m256 sum = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(sc + j);
        __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(v, masked, _CMP_EQ_OQ), exp8(_mm256_sub_ps(v, vt)));
        _mm256_storeu_ps(sc + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    float s = hsum8(sum);
    for (; j < n; j++) s += (sc[j] = sc[j] == -INFINITY ? 0.f : expf(sc[j] - top));
    *total = s;
}

/* gu[i] = silu(gu[i]) * gu[inner + i] */
static void silu_mul(float *gu, long inner) {
    long i = 0;
    for (; i + 8 <= inner; i += 8) {
        __m256 g = _mm256_loadu_ps(gu + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.f), e));
        _mm256_storeu_ps(gu + i, _mm256_mul_ps(silu, _mm256_loadu_ps(gu + inner + i)));
    }
    for (; i < inner; i++) gu[i] = gu[i] / (1.f + expf(-gu[i])) * gu[inner + i];
}

static void rms_norm(const float *x, const float *w, long n, float eps, float *out) {
    __m256 s = _mm256_setzero_ps();
    for (long i = 0; i < n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        s = _mm256_fmadd_ps(v, v, s);
    }
    float r = 1.f / sqrtf(hsum8(s) / (float)n + eps);
    for (long i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

/* RoPE of one head: out[i] = x[i] cos[i] + x[(i + half) % d] sin[i] (sin carries the sign). */
static void rope(float *x, const float *c, const float *s, long d) {
    float tmp[1024];
    long half = d / 2;
    for (long i = 0; i < d; i++) tmp[i] = x[i] * c[i] + x[i < half ? i + half : i - half] * s[i];
    memcpy(x, tmp, d * sizeof(float));
}

/* Per layer, 7 longs (norm 1, norm 2, key cache, value cache, capacity, query norm, key norm:
   0 when none) and 7 products (q, k, v, o, gate, up, down; q/k/v and gate/up may be one fused
   product and empty ones). */
#define HEADER 7
#define LAYER_LONGS (HEADER + 7 * 11)

/* One token for each of B rows (batch): hidden (B, H) in place; the caches (B, kv_heads,
   capacity, head_dim), this token at pos in every row; cos / sin rows rope_stride apart (0:
   one for all); mask: NULL, or (B, pos + 1) bytes mask_stride apart (0: one row for all),
   nonzero where a row may attend (left padding, a window). chunk = 1: the B rows are instead
   B consecutive tokens of one sequence (assisted generation's check), at pos, pos + 1, ...
   of a one-row cache, row b attending to the first pos + 1 + b keys (mask rows as above). */
void llama_step(const long *table, long layers, float *hidden, long B, long H, long heads,
                long kv_heads, long head_dim, long inner, float eps, float scale, const float *cos,
                const float *sin, long rope_stride, const unsigned char *mask, long mask_stride,
                long pos, float *scratch, int threads, long parallel_from, long chunk) {
    step_threads = threads;
    step_parallel_from = parallel_from;
    long qsize = heads * head_dim, kvsize = kv_heads * head_dim;
    long width = qsize + 2 * kvsize, capacity = table[4];
    float *xn = scratch, *qkv = xn + B * H, *ctx = qkv + B * width, *gu = ctx + B * qsize;
    float *tmp = gu + 2 * B * inner, *scores = tmp + B * H;
    float *ptmp = scores + B * heads * capacity;  /* B * (the widest product) */
    long groups = heads / kv_heads;
    for (long layer = 0; layer < layers; layer++) {
        const long *t = table + layer * LAYER_LONGS;
        const Product *p = (const Product *)(t + HEADER);
        const float *qn = (const float *)t[5], *kn = (const float *)t[6];
        float *kc = (float *)t[2], *vc = (float *)t[3];
        for (long b = 0; b < B; b++) rms_norm(hidden + b * H, (const float *)t[0], H, eps, xn + b * H);
        for (int i = 0; i < 3; i++) step_product(p + i, xn, B, H, qkv, width, ptmp);
        for (long b = 0; b < B; b++) {
            float *q = qkv + b * width, *k = q + qsize, *v = k + kvsize;
            const float *c = cos + b * rope_stride, *s = sin + b * rope_stride;
            if (qn) for (long h = 0; h < heads; h++) rms_norm(q + h * head_dim, qn, head_dim, eps, q + h * head_dim);
            if (kn) for (long h = 0; h < kv_heads; h++) rms_norm(k + h * head_dim, kn, head_dim, eps, k + h * head_dim);
            for (long h = 0; h < heads; h++) rope(q + h * head_dim, c, s, head_dim);
            for (long h = 0; h < kv_heads; h++) {
                rope(k + h * head_dim, c, s, head_dim);
                long at = chunk ? (h * capacity + pos + b) * head_dim
                                : ((b * kv_heads + h) * capacity + pos) * head_dim;
                memcpy(kc + at, k + h * head_dim, head_dim * sizeof(float));
                memcpy(vc + at, v + h * head_dim, head_dim * sizeof(float));
            }
        }
        #pragma omp parallel for num_threads(threads) if (threads > 1 && B * (pos + 1) * heads >= 4096)
        for (long bh = 0; bh < B * heads; bh++) {
            long b = bh / heads, h = bh % heads, cb = chunk ? 0 : b;
            long length = chunk ? pos + 1 + b : pos + 1;
            const float *qh = qkv + b * width + h * head_dim;
            const float *kh = kc + (cb * kv_heads + h / groups) * capacity * head_dim;
            const float *vh = vc + (cb * kv_heads + h / groups) * capacity * head_dim;
            const unsigned char *allowed = mask ? mask + b * mask_stride : NULL;
            float *sc = scores + bh * capacity, *out = ctx + b * qsize + h * head_dim;
            float top = -INFINITY, total = 0.f;
            for (long j = 0; j < length; j++) {
                if (allowed && !allowed[j]) { sc[j] = -INFINITY; continue; }
                sc[j] = dot(qh, kh + j * head_dim, head_dim) * scale;
                if (sc[j] > top) top = sc[j];
            }
            softmax_weights(sc, length, top, &total);
            for (long i = 0; i < head_dim; i++) out[i] = 0.f;
            for (long j = 0; j < length; j++) {
                if (sc[j] == 0.f) continue;
                float w = sc[j] / total;
                const float *vj = vh + j * head_dim;
                for (long i = 0; i < head_dim; i++) out[i] += w * vj[i];
            }
        }
        step_product(p + 3, ctx, B, qsize, tmp, H, ptmp);
        for (long i = 0; i < B * H; i++) hidden[i] += tmp[i];
        for (long b = 0; b < B; b++) rms_norm(hidden + b * H, (const float *)t[1], H, eps, xn + b * H);
        for (int i = 4; i < 6; i++) step_product(p + i, xn, B, H, gu, 2 * inner, ptmp);
        for (long b = 0; b < B; b++) {  /* then the rows side by side: the down product's x */
            silu_mul(gu + b * 2 * inner, inner);
            if (b) memmove(gu + b * inner, gu + b * 2 * inner, inner * sizeof(float));
        }
        step_product(p + 6, gu, B, inner, tmp, H, ptmp);
        for (long i = 0; i < B * H; i++) hidden[i] += tmp[i];
    }
}
"""

HEADER = 7
PRODUCT_LONGS = 11
# a product's activations as the C side's Product.act reads them
ACTIVATION_CODES = {"float32": 0, "int8": 1, "int16": 2}
LAYER_LONGS = HEADER + 7 * PRODUCT_LONGS

# Products of at least this many weights (times rows) are split across the threads a step runs with.
PARALLEL_FROM = 65_536
# Rows (sequences) a step takes; more go to the Python plan.
MAX_BATCH = 64
# Tokens of one sequence a step takes at once (assisted generation checks its candidates so).
MAX_CHUNK = 32


def _declare(library) -> None:
    p, long, f = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
    library.llama_step.argtypes = [p, long, p, long, long, long, long, long, long, f, f, p, p,
                                   long, p, long, long, p, ctypes.c_int, long, long]
    library.llama_step.restype = None


kernels.EXTRA_SOURCES.append((SOURCE, _declare))


def enabled() -> bool:
    return os.environ.get("LIGHTPIPE_NATIVE_STEP", "1").strip().lower() not in ("0", "false", "no", "off")


def _product(layer, offset: int) -> list[int] | None:
    """A product's PRODUCT_LONGS longs, or None when the C step cannot run it."""
    bias = layer.bias
    if bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous()):
        return None
    # the last four longs: bias, output offset, weights (the thread rule), activations (the
    # layer's choice, LIGHTPIPE_EXACT_ACTIVATIONS read now: once per generate() call)
    tail = [0 if bias is None else bias.data_ptr(), offset,
            layer.out_features * layer.in_features, ACTIVATION_CODES[layer.activations()]]
    if isinstance(layer, DynamicInt8Linear):
        if layer.in_features % 4:
            return None
        vnni = layer.vnni_form()  # (the VNNI-order form replaces the row-order codes)
        codes = layer.codes if vnni is None else vnni
        tensors = [codes, layer.scales, layer._row_sums] + [layer._bias] * (layer._bias is not None)
        if (any(t.dtype != d for t, d in zip(tensors, (torch.int8,) + (torch.float32,) * 3))
                or any(not t.is_contiguous() or t.device.type != "cpu" for t in tensors)):
            return None
        bias = layer._bias
        return [9, 0 if vnni is not None else codes.data_ptr(), layer.scales.data_ptr(), 0,
                0 if vnni is None else vnni.data_ptr(), layer.out_features,
                layer._row_sums.data_ptr(), 0 if bias is None else bias.data_ptr(), offset,
                layer.out_features * layer.in_features, 0]
    if isinstance(layer, Int4Linear):
        scales = layer.scales_and_zeros
        if (scales.dtype not in (torch.float32, torch.bfloat16) or not scales.is_contiguous()
                or not layer.packed.is_contiguous() or layer.packed.device.type != "cpu"):
            return None
        return [4, layer.packed.data_ptr(), scales.data_ptr(), int(scales.dtype == torch.bfloat16),
                layer.packed.shape[0], layer.out_features, layer.group_size, *tail]
    if isinstance(layer, Int8Linear):
        scales = layer.scales
        if (scales.dtype not in (torch.float32, torch.bfloat16) or not scales.is_contiguous()
                or not layer.codes.is_contiguous() or layer.codes.device.type != "cpu"):
            return None
        return [8, layer.codes.data_ptr(), scales.data_ptr(), int(scales.dtype == torch.bfloat16),
                0, layer.out_features, layer.group_size or 0, *tail]
    if isinstance(layer, Int5Linear):
        tensors = [layer.low, layer.high, layer.scales] + [layer.offsets] * (layer.offsets is not None)
        if any(not t.is_contiguous() or t.device.type != "cpu" for t in tensors):
            return None
        return [5, layer.low.data_ptr(), layer.scales.data_ptr(), int(layer.scales.dtype != torch.float32),
                layer.high.data_ptr(), layer.out_features,
                0 if layer.offsets is None else layer.offsets.data_ptr(), *tail]
    return None


def _float_product(weight, bias, offset: int) -> list[int] | None:
    """A float32 layer's product (its ``parts()``: the weight as it is, the bias; oneDNN's
    packed copy is not read), or None."""
    tensors = [weight] + [bias] * (bias is not None)
    if (weight.dim() != 2 or any(not isinstance(t, torch.Tensor) or t.dtype != torch.float32
                                 or not t.is_contiguous() or t.device.type != "cpu"
                                 for t in tensors)):
        return None
    rows, columns = weight.shape
    return [32, weight.data_ptr(), 0, 0, 0, rows, 0, 0 if bias is None else bias.data_ptr(),
            offset, rows * columns, 0]


def _products(parts: list, sizes: list[int]) -> list[list[int]] | None:
    """q/k/v (or gate/up): one fused product when the parts are consecutive slices of one fused
    layer, else one product each (float32 weights: each as it is); padded with empty products
    to ``len(parts)``."""
    layers = [part[0] for part in parts]
    if len(parts) == 1 and len(sizes) > 1:  # one layer computes them all (Phi-3's qkv, gate_up)
        layer, bias, packed = parts[0]
        if isinstance(layer, torch.Tensor):
            product, rows = _float_product(layer, bias, 0), layer.shape[0]
        elif bias is None and packed is None and not isinstance(layer, FusedPart):
            product, rows = _product(layer, 0), layer.out_features
        else:
            return None
        if product is None or rows != sum(sizes):
            return None
        return [product] + [[0] * PRODUCT_LONGS] * (len(sizes) - 1)
    floats = [isinstance(layer, torch.Tensor) for layer in layers]  # parts (weight, bias, packed)
    if any(floats) and not all(floats):  # a group partly float, partly quantized (a skip list)
        return None
    if all(floats):
        products, offset = [], 0
        for (weight, bias, _), size in zip(parts, sizes):
            product = _float_product(weight, bias, offset)
            if product is None or weight.shape[0] != size:
                return None
            products.append(product)
            offset += size
        return products
    if any(part[1] is not None or part[2] is not None for part in parts):
        return None
    if all(isinstance(layer, FusedPart) for layer in layers):
        fused = layers[0].fused
        starts = [0]
        for size in sizes[:-1]:
            starts.append(starts[-1] + size)
        if (all(layer.fused is fused for layer in layers)
                and [layer.start for layer in layers] == starts
                and fused.layer.out_features == sum(sizes)):
            product = _product(fused.layer, 0)
            return None if product is None else [product] + [[0] * PRODUCT_LONGS] * (len(parts) - 1)
        return None
    products, offset = [], 0
    for layer, size in zip(layers, sizes):
        product = _product(layer, offset) if not isinstance(layer, FusedPart) else None
        if product is None or layer.out_features != size:
            return None
        products.append(product)
        offset += size
    return products


class DecodeStep:
    """The C step of a ``LlamaModel`` for one generate() call (see the module's docstring)."""

    def __init__(self, model, plan, layer_longs: list[list[int]], sizes: dict):
        self.model, self.plan, self.layer_longs = model, plan, layer_longs
        self.__dict__.update(sizes)
        self._keys: list | None = None
        self._table = self._scratch = None
        self._rows = 0
        self._last: tuple[float, int] | None = None  # (start, threads) of the last C step
        self.threads = ThreadChooser(torch.get_num_threads())

    @classmethod
    def build(cls, model, plan) -> "DecodeStep | None":
        from ..models import llama, phi3

        first = plan[0][13][0][0] if plan else None
        if not (isinstance(first, QuantizedLinear)
                or (isinstance(first, torch.Tensor) and first.dtype == torch.float32
                    and first.device.type == "cpu")):
            return None  # checked first: a 16-bit or GPU model never builds the kernels
        if not (enabled() and kernels.available()):
            return None
        config = model.config
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        hidden = config.hidden_size
        head_dim = plan[0][6]
        if hidden % 8 or head_dim % 8 or head_dim > 1024 or heads % kv_heads:
            return None
        layer_longs, eps, scale, inner = [], None, None, None
        windows = {layer[4] for layer in plan}
        # Phi-3's rotation over a part of each head: the C step's RoPE turns whole heads
        whole = (getattr(config, "partial_rotary_factor", None) or 1.0) == 1.0
        ropes = (llama.rotate, phi3.rotate_part) if whole else (llama.rotate,)
        for (norm_1, norm_2, post_1, post_2, window, kind, dim, attend, act, q_norm, k_norm, rope,
             sizes, qkv, o_proj, gate_up, down) in plan:
            attention = getattr(attend, "__self__", None)
            # a window is fine: once it comes in reach the mask is not None and the Python plan runs
            head_norms = [norm for norm in (q_norm, k_norm) if norm is not None]
            fused_qkv = [heads * head_dim] + [kv_heads * head_dim] * 2
            if (post_1 is not None or post_2 is not None or kind is not None
                    or len(head_norms) == 1 or (sizes is not None and list(sizes) != fused_qkv)
                    or any(type(norm) is not llama.RMSNorm or norm.eps != norm_1.eps
                           or norm.weight.dtype != torch.float32 or norm.weight.numel() != head_dim
                           for norm in head_norms)
                    or rope not in ropes or act is not F.silu or dim != head_dim
                    or getattr(attend, "__func__", None) is not llama.LlamaAttention.attend
                    or type(norm_1) is not llama.RMSNorm or type(norm_2) is not llama.RMSNorm
                    or attention.groups != heads // kv_heads):
                return None
            norms = (norm_1.weight, norm_2.weight)
            if any(w.dtype != torch.float32 or not w.is_contiguous() for w in norms):
                return None
            if eps is None:
                eps, scale = norm_1.eps, attention.scale
            if norm_1.eps != eps or norm_2.eps != eps or attention.scale != scale:
                return None
            gate, halves = gate_up[0][0], len(gate_up) == 1  # one layer: [gate | up] (Phi-3)
            rows = gate.shape[0] if isinstance(gate, torch.Tensor) else gate.out_features
            layer_inner = rows // 2 if halves and rows % 2 == 0 else None if halves else rows
            if len(gate_up) > 2:
                layer_inner = None
            inner = inner or layer_inner
            if layer_inner is None or layer_inner != inner:
                return None
            longs = [norms[0].data_ptr(), norms[1].data_ptr(), 0, 0, 0,
                     *(norm.weight.data_ptr() for norm in head_norms)] + [0, 0][:2 - len(head_norms)]
            for products in (_products(qkv, fused_qkv),
                             _products([o_proj], [hidden]),
                             _products(gate_up, [inner, inner]),
                             _products([down], [hidden])):
                if products is None:
                    return None
                longs.extend(value for product in products for value in product)
            layer_longs.append(longs)
        widest = max(product[5] for longs in layer_longs
                     for product in (longs[HEADER + i * PRODUCT_LONGS:HEADER + (i + 1) * PRODUCT_LONGS]
                                     for i in range(7)))
        return cls(model, plan, layer_longs,
                   dict(hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                        inner=inner, eps=float(eps), scale=float(scale), widest=widest,
                        window=next(iter(windows)) if len(windows) == 1 else "mixed"))

    def close(self) -> None:
        """generate() ended: products go back to their own thread counts."""
        kernels.thread_cap = None
        self._last = None

    def _prepare(self, cache, batch: int, rows: int) -> bool:
        """The table with this cache's buffers (rebuilt when they were reallocated) and a
        scratch for ``rows`` rows (the batch, or a chunk's tokens)."""
        keys, values = cache.keys, cache.values
        if (self._keys is not None and keys and keys[0].shape[0] == batch
                and all(a is b for a, b in zip(self._keys, keys))):
            if rows > self._rows:
                self._scratch = torch.empty(self._scratch_size(rows, keys[0].shape[2]),
                                            dtype=torch.float32)
                self._rows = rows
            return True
        if len(keys) != len(self.layer_longs):
            return False
        for store in (keys, values):
            for tensor in store:
                if (tensor.dtype != torch.float32 or not tensor.is_contiguous()
                        or tensor.shape[0] != batch or tensor.device.type != "cpu"):
                    return False
        capacity = keys[0].shape[2]
        if any(k.shape[2] != capacity or v.shape[2] != capacity for k, v in zip(keys, values)):
            return False
        table = [longs[:2] + [k.data_ptr(), v.data_ptr(), capacity] + longs[5:]
                 for longs, k, v in zip(self.layer_longs, keys, values)]
        self._table = torch.tensor(table, dtype=torch.long)
        self._rows = max(rows, batch)
        self._scratch = torch.empty(self._scratch_size(self._rows, capacity), dtype=torch.float32)
        self._keys = list(keys)
        return True

    def _scratch_size(self, rows: int, capacity: int) -> int:
        return rows * (2 * self.hidden + (self.heads + 2 * self.kv_heads) * self.head_dim
                       + self.heads * self.head_dim + 2 * self.inner + self.heads * capacity
                       + self.widest)

    def _mask(self, masks: dict, batch: int, length: int, chunk: int = 0):
        """(mask, row stride) for the C side: (None, 0) when every row sees the whole past;
        None when this call's masks are not the C step's (several windows, another shape).
        ``chunk``: the number of tokens of a one-row chunk (0: one token a row), whose mask
        has a row per token (``length`` keys: the past and the chunk)."""
        if all(mask is None for mask in masks.values()):
            return None, 0
        if self.window == "mixed":
            return None
        mask = masks.get(self.window)
        if mask is None:
            return None, 0
        queries = chunk or 1
        if (mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1:3] != (1, queries)
                or mask.shape[3] != length or mask.shape[0] not in (1, batch)
                or mask.device.type != "cpu"):
            return None
        if chunk:
            return mask.reshape(chunk, length).contiguous(), length
        rows = mask.reshape(mask.shape[0], length).contiguous()
        return rows, (length if rows.shape[0] == batch and batch > 1 else 0)

    def __call__(self, hidden_states, cos, sin, masks, cache):
        """The hidden states after all layers, or None when this call is not the C step's.
        (batch, 1, hidden): one token a row; (1, n, hidden) with n > 1: n tokens of one
        sequence after its cached past (up to MAX_CHUNK: assisted generation's check)."""
        from ..models.cache import KVCache

        now = time.perf_counter()
        batch, seq = hidden_states.shape[0], hidden_states.shape[1] if hidden_states.dim() == 3 else 0
        chunk = seq if seq > 1 else 0
        if self._last is not None and not chunk:  # the previous token, whole: step, head, sampling
            self.threads.record(self._last[1], now - self._last[0])
        self._last = None
        rows = chunk or batch
        if (type(cache) is not KVCache or hidden_states.dim() != 3
                or (chunk and (batch != 1 or chunk > MAX_CHUNK)) or batch > MAX_BATCH
                or hidden_states.dtype != torch.float32 or hidden_states.device.type != "cpu"
                or cos.dtype != torch.float32 or sin.dtype != torch.float32
                or cos.shape != sin.shape or cos.shape[-1] != self.head_dim
                or cos.numel() // self.head_dim not in ((rows,) if chunk else (1, batch))):
            return None
        lengths = cache.lengths
        pos = lengths[0] if lengths else 0
        if not lengths or any(length != pos for length in lengths) or (chunk and not pos):
            return None
        masked = self._mask(masks, batch, pos + (chunk or 1), chunk)
        if masked is None:
            return None
        mask, mask_stride = masked
        if pos + (chunk or 1) > cache.keys[0].shape[2]:
            for layer in range(len(cache.keys)):
                cache._grow(layer, max(pos + (chunk or 1), 2 * cache.keys[layer].shape[2]))
        if not self._prepare(cache, batch, rows):
            return None
        hidden = hidden_states.reshape(rows, -1).to(torch.float32, copy=True)
        cos, sin = cos.contiguous(), sin.contiguous()
        rope_stride = self.head_dim if cos.numel() == rows * self.head_dim and rows > 1 else 0
        if torch.get_num_threads() != self.threads.candidates[0]:  # lightpipe.threads adapted it
            self.threads = ThreadChooser(torch.get_num_threads())
        # a chunk runs with the count chosen for tokens (its time is not a token's)
        threads = (self.threads.chosen or self.threads.candidates[0]) if chunk else self.threads.next()
        kernels.thread_cap = threads  # the output projection's product follows the choice
        kernels._loaded().llama_step(
            self._table.data_ptr(), len(self.layer_longs), hidden.data_ptr(), rows, self.hidden,
            self.heads, self.kv_heads, self.head_dim, self.inner, self.eps, self.scale,
            cos.data_ptr(), sin.data_ptr(), rope_stride,
            None if mask is None else mask.data_ptr(), mask_stride, pos,
            self._scratch.data_ptr(), threads, PARALLEL_FROM, 1 if chunk else 0)
        if not chunk:
            self._last = (now, threads)
        for layer in range(len(lengths)):
            lengths[layer] = pos + (chunk or 1)
        return hidden.view(hidden_states.shape)
