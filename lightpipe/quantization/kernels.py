"""A small AVX2/FMA C kernel for weight-only int4 / int8 products of a few rows (batch-1 decode).

torch's own weight-only kernels (``_weight_int4pack_mm_for_cpu``, ``_weight_int8pack_mm``) are
vectorised for 16-bit activations only: on an AVX2 CPU without AVX-512 they read a weight at
~3 GB/s in bfloat16 and ~13x slower in float32. This module compiles, at first use, a plain C
kernel that reads the *same* packed layouts (no second copy of the codes) with float32
activations (or x quantized per block of 32: "Activations" below) and float32 accumulation:

- int4: torch's CPU int4 layout (per tile of 32 output rows, ``(in, 16)`` bytes, byte ``[k, d]``
  holding row ``d`` in its low nibble and row ``d + 16`` in its high nibble) with
  ``scales_and_zeros`` of shape ``(in / group, rows, 2)`` in float32 or bfloat16;
  ``w = (q - 8) * scale + zero``. Per group: ``sum_k (q - 8) x_k`` accumulated in float32, then
  ``scale * that + zero * sum_k x_k``.
- int8: ``(out, in)`` int8 codes, one scale per row or per group of 32k inputs (float32 or
  bfloat16): ``w = q * scale``.
- int5 (``int5_mm`` / ``int5_mm_q8``, ``linear.Int5Linear``): GGUF's Q5_0 / Q5_1 blocks as they
  are, 5.5 / 6 bits a weight: per row and block of 32, 16 bytes of nibbles (GGUF's order), the
  5th bits (one uint64 per pair of blocks, ordered so one variable shift per 8 bytes places
  them) and a float16 (or float32) ``d`` (and ``m``): ``w = d * (q - 16)`` or ``d * q + m``.
  Per block ``d * sum q x`` plus the offset times the block's sum of x; two blocks decoded a step.

Activations: each product multiplies float32 x (``int4_mm`` / ``int8_mm`` / ``int5_mm``: exact,
float32 accumulation), or x quantized per row per block of 32 inputs to int16 (``*_mm_q16``) or
int8 (``*_mm_q8``); the functions below take ``activations="float32" | "int16" | "int8"``
(default float32, or int8 with ``int8_activations=True``). The layers choose with
``layer_activations``:

- int16 (the **default** of the quantized layers on this kernel): scale max|x| / 32767, round to
  nearest even (the error at most half a step, ~1.5e-5 of the block's largest |x|: logits within
  ~1e-5 of the float32 product's), integer dot products with ``madd_epi16`` (int4: the codes of
  inputs k and k + 1 interleaved per output row and widened to int16; int8 / int5: the codes
  widened to int16), one float multiply-add per block and row; ~1.4-2x faster than float32 x.
- ``LIGHTPIPE_EXACT_ACTIVATIONS=1`` (read each time a layer's product is chosen, and when the
  C decoding step is built): float32 x instead, the exact products.
- int8, opt-in (``int8_activations=True``; ``int4_mm_q8`` / ``int8_mm_q8`` in C, same signatures and
  layouts): x is quantized per row per block of 32 inputs to int8 (scale max|x| / 127, round to
nearest even, as llama.cpp's Q8 blocks) and the products are integer dot products (``maddubs``:
int4 codes 0..15 unsigned, paired along k by interleaving two k's bytes; int8 codes with the sign
trick), one float multiply-add per block and row: ~2x faster, and the product of the weight
with the dequantized x (not float32-exact; the zero term of int4 uses the quantized x too).

Output rows are split across ``torch.get_num_threads()`` OpenMP threads (the library links the
process's ``libgomp.so.1``, the runtime torch already loaded: one thread pool). The library is
built with the system C compiler into ``~/.cache/lightpipe/kernels/<hash>.so`` (hash of source,
compiler, flags and CPU flags; written under a temporary name and renamed), with the VNNI
instructions where the CPU has them (``build_flags``: the integer dot products in one
instruction, same numbers) and software prefetch of the weight stream (on a Xeon with AVX-512
the hardware prefetcher alone left batch-1 decode ~1.4x slower). No compiler, no
AVX2/FMA, a failed build or ``LIGHTPIPE_KERNELS=0``: ``available()`` is false, one
``logger.info`` line says why, and the layers use torch's kernels as before.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger("lightpipe.quantization")

# Products with fewer weights than this run on the calling thread alone: measured on the busy
# 2-core machine, an OpenMP region of the kernel between torch's own (MKL, at::parallel_for)
# often stalled for a scheduler time slice (SmolLM2 decode at 2 threads: 1.4 tok/s against 15
# at 1 thread); a decode step's projections (< 5M weights) take ~0.04-0.4 ms on one thread.
PARALLEL_FROM = 8_000_000

# Products of up to this many rows use the kernel (it re-reads the weight per pair of rows;
# from some number of rows on, dequantizing once and one float32 GEMM is faster). Measured on
# real SmolLM2 Q4_1 prompts, 1 thread (time to the first token, kernel vs dequantize + GEMM):
# float32 x 16 rows 122 vs 393 ms, 64: 439 vs 561, 128: 866 vs 757; int8 activations 128 rows
# 402 vs 757, 256: 804 vs 1,144.
MAX_ROWS = 96
MAX_ROWS_Q8 = 384
# int16 activations (the layers' default), measured on real prompts, 1 thread, busy machine
# (time of the whole forward, kernel vs dequantize + GEMM): SmolLM2 Q4_1 128 rows 677 vs 741 ms,
# 192: 1,058 vs 955; Qwen2.5 Q4_K_M (int5 / int4 / int8 groups) 128: 2,977 vs 7,802, 192: 4,859
# vs 8,776, 384: 12,605 vs 15,954.
MAX_ROWS_Q16 = 192

ACTIVATIONS = ("float32", "int16", "int8")
EXACT_ENV = "LIGHTPIPE_EXACT_ACTIVATIONS"


def exact_activations() -> bool:
    """Whether ``LIGHTPIPE_EXACT_ACTIVATIONS`` asks for float32 activations (read each call)."""
    return os.environ.get(EXACT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def layer_activations(int8_activations: bool = False) -> str:
    """The activations of a quantized layer's C-kernel product: "int8" when the layer opted in
    (``int8_activations``), else "float32" under ``LIGHTPIPE_EXACT_ACTIVATIONS=1``, else
    "int16" (the default)."""
    if int8_activations:
        return "int8"
    return "float32" if exact_activations() else "int16"


def _activations(activations: str | None, int8_activations: bool) -> str:
    """The product's activations: given, or float32 / int8 (``int8_activations``)."""
    if activations is None:
        return "int8" if int8_activations else "float32"
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {', '.join(ACTIVATIONS)}, "
                         f"not {activations!r}")
    return activations


# The C source (a file of the package, compiled at first use: see _build).
SOURCE = (Path(__file__).parent / "kernels.c").read_text(encoding="utf-8")

# C sources compiled into the same library after SOURCE (``step.py``'s decode step calls the
# products above); each entry ``(source, declare)``: ``declare(library)`` sets its argtypes.
EXTRA_SOURCES: list[tuple[str, object]] = []


def full_source() -> str:
    return SOURCE + "".join(source for source, _ in EXTRA_SOURCES)


FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-fPIC", "-shared"]
# The integer dot products in one instruction (kernels.c's DPWSSD / DPBUSD): AVX-VNNI (Alder
# Lake, Sapphire Rapids, Zen 5), else AVX512-VNNI's 256-bit forms (Ice Lake, Cascade Lake, Zen 4).
VNNI_FLAGS = (({"avx_vnni"}, ["-mavxvnni"]),
              ({"avx512_vnni", "avx512vl", "avx512f"}, ["-mavx512f", "-mavx512vl", "-mavx512vnni"]))


# 64-byte vectors for the int8-dynamic products (kernels.c's dyn8_*), where the CPU has them
AVX512_FLAGS = ({"avx512f", "avx512bw", "avx512vl", "avx512_vnni"},
                ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"])


# the AMX tiles for dyn8's products of a few rows (with AVX-512's; a compiler too old for them
# builds the library without)
AMX_FLAGS = ({"amx_tile", "amx_int8"}, ["-mamx-tile", "-mamx-int8"])


def build_flags(cpu: set[str], amx: bool = True) -> list[str]:
    """FLAGS, plus the VNNI ones this CPU has, AVX-512's and AMX's (the library is built for
    the machine it runs on: its file name holds the CPU's flags)."""
    flags = list(FLAGS)
    for needed, extra in VNNI_FLAGS:
        if needed <= cpu:
            flags += extra
            break
    if AVX512_FLAGS[0] <= cpu:
        flags += [flag for flag in AVX512_FLAGS[1] if flag not in flags]
        if amx and AMX_FLAGS[0] <= cpu:
            flags += AMX_FLAGS[1]
    return flags
COMPILER_ENV = "CC"
MAX_GROUPS_ROWS = 16 * 1024  # the C side's xsum buffer: rows * (in / group)

_library: ctypes.CDLL | None = None
_state: str | None = None  # None: not tried; "ok"; or why it is unavailable


def compiler_command() -> list[str]:
    """The C compiler to build with: $CC, else ``cc``."""
    return shlex.split(os.environ.get(COMPILER_ENV) or "cc")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "lightpipe" / "kernels"


def _build(compiler: list[str], amx: bool = True) -> Path:
    flags = cpu_flags()
    options = build_flags(flags, amx)
    key = "\0".join([full_source(), *compiler, *options, " ".join(sorted(flags)), platform.machine()])
    target = cache_dir() / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".so")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("lightpipe: compiling its C kernels once for this CPU (a few seconds; cached in %s)",
                target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "kernels.c"
        source.write_text(full_source())
        output = Path(work) / "kernels.so"
        result = subprocess.run([*compiler, *options, str(source), "-o", str(output)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not output.is_file():
            message = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(f"{' '.join(compiler)} exited with {result.returncode}"
                               + (f": {message[0]}" if message else ""))
        os.replace(output, target)  # atomic: another process may build the same file
    return target


def _load() -> str:
    global _library
    if os.environ.get("LIGHTPIPE_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return "LIGHTPIPE_KERNELS=0"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the CPU is {platform.machine()}, not x86-64"
    missing = {"avx2", "fma", "f16c"} - cpu_flags()
    if missing:
        return f"the CPU lacks {', '.join(sorted(missing))}"
    try:
        try:
            path = _build(compiler_command())
        except RuntimeError:
            if build_flags(cpu_flags()) == build_flags(cpu_flags(), amx=False):
                raise
            path = _build(compiler_command(), amx=False)  # a compiler without AMX's intrinsics
        library = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        return f"building it failed ({error})"
    p, long, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    library.int4_mm.argtypes = [p, long, long, p, p, i, long, long, i, p, p, i]
    library.int4_mm.restype = None
    library.int8_mm.argtypes = [p, long, long, p, p, i, long, long, p, p, i]
    library.int8_mm.restype = None
    library.int4_mm_q8.argtypes = library.int4_mm.argtypes
    library.int4_mm_q8.restype = None
    library.int8_mm_q8.argtypes = library.int8_mm.argtypes
    library.int8_mm_q8.restype = None
    library.int5_mm.argtypes = [p, long, long, p, p, p, p, i, long, p, p, i]
    library.int5_mm.restype = None
    library.int5_mm_q8.argtypes = library.int5_mm.argtypes
    library.int5_mm_q8.restype = None
    library.dyn8_mm.argtypes = [p, long, long, p, p, p, p, long, p, long, i]
    library.dyn8_mm.restype = None
    library.dyn8v_mm.argtypes = library.dyn8_mm.argtypes
    library.dyn8v_mm.restype = None
    library.f32_mm.argtypes = [p, long, long, p, long, p, p, long, i]
    library.f32_mm.restype = None
    library.argmax_rows.argtypes = [p, long, long, long, p]
    library.argmax_rows.restype = None
    library.dyn8_pack.argtypes = [p, long, long, p, i]
    library.dyn8_pack.restype = None
    library.dyn8v_block_rows.argtypes = []
    library.dyn8v_block_rows.restype = i
    if hasattr(library, "dyn8_amx_usable"):
        library.dyn8_amx_usable.argtypes = []
        library.dyn8_amx_usable.restype = i
    for kind in ("int4", "int8", "int5"):
        product = getattr(library, f"{kind}_mm_q16")
        product.argtypes = getattr(library, f"{kind}_mm").argtypes
        product.restype = None
    for _, declare in EXTRA_SOURCES:
        declare(library)
    _library = library
    return "ok"


def available() -> bool:
    """Whether the C kernel is built and loaded (tried once per process; ``reset()`` retries)."""
    global _state
    if _state is None:
        _state = _load()
        if _state != "ok":
            logger.info("lightpipe: int4/int8 C kernel not used (%s); using torch's kernels", _state)
    return _state == "ok"


def _loaded() -> ctypes.CDLL:
    """The library (loaded again after a ``reset()``); callers checked ``available()``."""
    if _library is None and not available():
        raise RuntimeError(f"lightpipe's C kernel is not available ({_state})")
    return _library


def reset() -> None:
    """Forget the outcome of the last attempt (tests; a changed ``LIGHTPIPE_KERNELS`` / ``CC``)."""
    global _library, _state
    _library, _state = None, None


# At most this many threads per product while set (the C decoding step sets it for the
# token's remaining products - the output projection - to the count it timed fastest).
thread_cap: int | None = None


def _threads(weights: int) -> int:
    threads = torch.get_num_threads() if weights >= PARALLEL_FROM else 1
    return threads if thread_cap is None else max(1, min(threads, thread_cap))


def _pointer(tensor: torch.Tensor | None):
    return None if tensor is None else tensor.data_ptr()


def int4_mm(x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor,
            group_size: int, out_features: int, bias: torch.Tensor | None = None, *,
            int8_activations: bool = False, activations: str | None = None) -> torch.Tensor:
    """(rows, in) float32 x times the int4 weight in the packed layout of linear.pack_int4 -> (rows, out)
    float32. ``scales_and_zeros``: (in / group, padded rows, 2), float32 or bfloat16; ``bias``
    float32 or None. ``int8_activations``: x quantized to int8 per row per block of 32 inputs
    and integer dot products (``int4_mm_q8``: faster, not exact: the product of the weight
    with the dequantized x). ``activations``: "float32", "int16" (``int4_mm_q16``) or "int8"
    (see the module docstring; default float32, or int8 with ``int8_activations``). Call only
    when ``available()``."""
    activations = _activations(activations, int8_activations)
    rows, in_features = x.shape
    step = MAX_GROUPS_ROWS // (in_features // group_size)  # the float path's per-group sums
    if activations == "float32" and rows > step:
        return torch.cat([int4_mm(x[start:start + step], packed, scales_and_zeros, group_size,
                                  out_features, bias) for start in range(0, rows, step)])
    out = torch.empty(rows, out_features, dtype=torch.float32)
    product = _product(_loaded(), "int4", activations)
    product(x.data_ptr(), rows, in_features, packed.data_ptr(),
            scales_and_zeros.data_ptr(), int(scales_and_zeros.dtype == torch.bfloat16),
            packed.shape[0], out_features, group_size, _pointer(bias), out.data_ptr(),
            _threads(rows * out_features * in_features))
    return out


def int8_mm(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor,
            bias: torch.Tensor | None = None, *, int8_activations: bool = False,
            activations: str | None = None) -> torch.Tensor:
    """(rows, in) float32 x times (out, in) int8 codes -> (rows, out) float32; ``scales`` (out,)
    one per row, or (out, in / group) one per group of ``group`` (a multiple of 32) inputs.
    ``int8_activations``: x quantized to int8 per block of 32 (``int8_mm_q8``, not exact);
    ``activations`` as ``int4_mm``'s."""
    rows, in_features = x.shape
    group = in_features // scales.shape[1] if scales.dim() == 2 else 0
    out = torch.empty(rows, codes.shape[0], dtype=torch.float32)
    product = _product(_loaded(), "int8", _activations(activations, int8_activations))
    product(x.data_ptr(), rows, in_features, codes.data_ptr(), scales.data_ptr(),
            int(scales.dtype == torch.bfloat16), group, codes.shape[0], _pointer(bias),
            out.data_ptr(), _threads(rows * codes.numel()))
    return out


def int5_mm(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, scales: torch.Tensor,
            offsets: torch.Tensor | None = None, bias: torch.Tensor | None = None, *,
            int8_activations: bool = False, activations: str | None = None) -> torch.Tensor:
    """(rows, in) float32 x times 5-bit codes -> (rows, out) float32 (``int5_mm`` in C). Per
    output row and block of 32 inputs: ``low`` (out, in / 2) uint8 (byte j of a block: value j
    in the low nibble, j + 16 in the high one, GGUF's order), ``high`` (out, pairs of blocks)
    int64, the 5th bits (``linear.pack_int5``'s order), ``scales`` / ``offsets`` (out, in / 32)
    float16 bits as int16, or float32: ``w = d * (q - 16)`` without offsets (Q5_0),
    ``d * q + m`` with (Q5_1).
    ``int8_activations``: x quantized to int8 per block of 32 (``int5_mm_q8``, not exact);
    ``activations`` as ``int4_mm``'s."""
    rows, in_features = x.shape
    out = torch.empty(rows, low.shape[0], dtype=torch.float32)
    product = _product(_loaded(), "int5", _activations(activations, int8_activations))
    product(x.data_ptr(), rows, in_features, low.data_ptr(), high.data_ptr(), scales.data_ptr(),
            _pointer(offsets), int(scales.dtype != torch.float32), low.shape[0], _pointer(bias),
            out.data_ptr(), _threads(rows * low.shape[0] * in_features))
    return out


def amx_usable() -> bool:
    """Whether dyn8_mm's products run on the AMX tiles (built with them, the tile state granted,
    LIGHTPIPE_AMX not 0)."""
    if not available():
        return False
    library = _loaded()
    return hasattr(library, "dyn8_amx_usable") and bool(library.dyn8_amx_usable())


def vnni_block_rows() -> int:
    """The weight rows in a block of the VNNI-order form: 16 (AVX-512 builds) or 8 (AVX2)."""
    return int(_loaded().dyn8v_block_rows())


def dyn8_pack(codes: torch.Tensor) -> torch.Tensor:
    """(out, in) int8 codes (in a multiple of 4) -> dyn8v_mm's form in VNNI order: per block of
    ``vnni_block_rows()`` output rows (zero rows past ``out``) and group of 4 inputs, one vector
    (row r's 4 codes at 4r), made in C (the codes transposed in registers)."""
    out_features, in_features = codes.shape
    block = vnni_block_rows()
    codes = codes.contiguous()
    packed = torch.empty(-(-out_features // block) * block * in_features, dtype=torch.int8)
    _loaded().dyn8_pack(codes.data_ptr(), out_features, in_features, packed.data_ptr(),
                        _threads(codes.numel() * 8))
    return packed


def f32_mm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           threads: int | None = None) -> torch.Tensor:
    """(rows, in) float32 x times the (out, in) float32 weight (+ bias) -> (rows, out): the C
    decode step's float32 product (kernels.c f32_mm), for a few rows. Call only when
    ``available()``."""
    rows, in_features = x.shape
    out_features = weight.shape[0]
    out = torch.empty(rows, out_features, dtype=torch.float32)
    _loaded().f32_mm(x.data_ptr(), rows, in_features, weight.data_ptr(), out_features,
                     _pointer(bias), out.data_ptr(), out_features,
                     threads or _threads(rows * out_features * in_features))
    return out


def argmax_rows(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(dim=-1)`` of a (rows, n) float32 CPU tensor with unit stride along n
    (kernels.c argmax_rows: the first largest value, or the first NaN, as torch's), as int64.
    Call only when ``available()``."""
    rows, n = scores.shape
    out = torch.empty(rows, dtype=torch.int64)
    _loaded().argmax_rows(scores.data_ptr(), rows, n, scores.stride(0), out.data_ptr())
    return out


def dyn8_unpack(packed: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """``dyn8_pack``'s inverse: the (out, in) int8 codes."""
    blocks = packed.view(-1, in_features // 4, vnni_block_rows(), 4)
    return blocks.permute(0, 2, 1, 3).reshape(-1, in_features)[:out_features].contiguous()


def dyn8v_mm(x: torch.Tensor, packed: torch.Tensor, out_features: int, scales: torch.Tensor,
             row_sums: torch.Tensor, bias: torch.Tensor | None = None,
             threads: int | None = None) -> torch.Tensor:
    """dyn8_mm from the VNNI-order form (``dyn8_pack``): the same numbers, bit for bit. Call only
    when ``available()``."""
    rows, in_features = x.shape
    out = torch.empty(rows, out_features, dtype=torch.float32)
    _loaded().dyn8v_mm(x.data_ptr(), rows, in_features, packed.data_ptr(), scales.data_ptr(),
                       row_sums.data_ptr(), _pointer(bias), out_features, out.data_ptr(),
                       out_features, threads or _threads(rows * out_features * in_features))
    return out


def set_amx_from_rows(rows: int) -> int:
    """Products of at least ``rows`` rows take the AMX path where it runs (tests force either
    path); the previous value returned."""
    value = ctypes.c_long.in_dll(_loaded(), "dyn8_amx_from")
    previous, value.value = value.value, rows
    return previous


def dyn8_mm(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, row_sums: torch.Tensor,
            bias: torch.Tensor | None = None, threads: int | None = None) -> torch.Tensor:
    """(rows, in) float32 x times (out, in) int8 codes the int8-dynamic way (``dyn8_mm`` in C:
    each row of x onto 0..255 by its own range; ``DynamicInt8Linear``'s maths) -> (rows, out)
    float32. ``scales``, ``row_sums`` (the dequantized weight's row sums) and ``bias``: (out,)
    float32; ``in`` a multiple of 4; codes within +-63 (AVX2's pair sums). Call only when
    ``available()``."""
    rows, in_features = x.shape
    out = torch.empty(rows, codes.shape[0], dtype=torch.float32)
    _loaded().dyn8_mm(x.data_ptr(), rows, in_features, codes.data_ptr(), scales.data_ptr(),
                      row_sums.data_ptr(), _pointer(bias), codes.shape[0], out.data_ptr(),
                      codes.shape[0], threads or _threads(rows * codes.numel()))
    return out


def _product(library: ctypes.CDLL, kind: str, activations: str):
    suffix = {"float32": "", "int16": "_q16", "int8": "_q8"}[activations]
    return getattr(library, f"{kind}_mm{suffix}")


def usable(x: torch.Tensor, activations: str | bool = "float32") -> bool:
    """Whether a product with input ``x`` (2-D) and these activations ("float32", "int16",
    "int8"; True / False: int8 / float32) goes to the kernel."""
    if isinstance(activations, bool):
        activations = "int8" if activations else "float32"
    limit = {"float32": MAX_ROWS, "int16": MAX_ROWS_Q16, "int8": MAX_ROWS_Q8}[activations]
    return x.shape[0] <= limit and x.device.type == "cpu" and available()
