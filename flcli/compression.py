"""Compressed updates: lossy encodings of a cohort's vectors [K, P] and their exact size in bits,
as plain vectorized NumPy (one expression for the whole cohort, no loop over clients).

Each compressor returns what the receiver decodes, x' = C(x), and the bits of each client's
message. Values that travel as floats (norms, scales, the kept coordinates of top-k and rand-k)
take the run's float width (64 bits in float64, 32 in float32), as the dense messages do.

- qsgd:bits=B  Alistarh et al. 2017, "QSGD: Communication-Efficient SGD via Gradient Quantization
  and Encoding". With s = 2^(B-1) - 1 levels, x'_i = ||x||_2 sign(x_i) l_i / s, where l_i is
  |x_i| s / ||x||_2 rounded down or up at random so that E[l_i] = |x_i| s / ||x||_2 (unbiased;
  E||x' - x||^2 <= min(P / s^2, sqrt(P) / s) ||x||^2, their Lemma 3.1). Sent: the norm and B bits
  per coordinate (a sign and B - 1 bits of level; the paper's Elias coding of the levels is left
  out, so the count is the fixed-width one).
- uniform:bits=B  stochastic rounding onto 2^B evenly spaced levels over [min x, max x] (Suresh et
  al. 2017, section 2): unbiased, E||x' - x||^2 <= P (max - min)^2 / (4 (2^B - 1)^2). Sent: min,
  max and B bits per coordinate.
- terngrad  Wen et al. 2017, "TernGrad": x'_i = s sign(x_i) b_i, s = max |x_i|, b_i ~
  Bernoulli(|x_i| / s): unbiased, E||x' - x||^2 = s ||x||_1 - ||x||^2. Sent: s and 2 bits per
  coordinate.
- sign  scaled sign (Karimireddy et al. 2019, "Error Feedback Fixes SignSGD"): x' = ||x||_1 / P
  sign(x), sign(0) = +1 (one bit cannot say 0). Biased. Sent: the scale and 1 bit per coordinate.
- topk:fraction=F  the k = ceil(F P) coordinates of largest magnitude (Stich et al. 2018;
  Aji and Heafield 2017). Biased. Sent: k values and their positions, k ceil(log2 P) bits or a
  P-bit bitmap, whichever is smaller.
- randk:fraction=F  k = ceil(F P) coordinates chosen by a seed both sides derive, scaled by P / k
  (Stich et al. 2018): unbiased, E||x' - x||^2 = (P / k - 1) ||x||^2. Sent: k values and the
  64-bit seed, no positions.
- bf16, fp16  each coordinate rounded to the nearest bfloat16 or IEEE half (deterministic, so
  slightly biased). Sent: 16 bits per coordinate.
- hadamard+SPEC  Suresh et al. 2017, "Distributed Mean Estimation with Limited Communication":
  x is padded to d = 2^ceil(log2 P), rotated by R = H D / sqrt(d) (H the Walsh-Hadamard matrix, D
  random signs from a 64-bit seed), quantized by SPEC, and rotated back by R^T = D H / sqrt(d).
  The rotation spreads a vector's mass evenly, which shrinks max - min (and ||x||_inf) towards
  ||x||_2 sqrt(log d / d); unbiased when SPEC is. Sent: SPEC's bits over d coordinates and the
  seed.

Randomness is addressed by (seed, purpose, round, client, coordinate) through flcli.rng.hash_bits,
so a client's message does not depend on who else was sampled.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np

from flcli.errors import FLError
from flcli.rng import Purpose, hash_bits, paired_uniforms, prefix

SEED_BITS = 64
QUANTIZERS = ("qsgd", "uniform", "terngrad", "sign")
KINDS = (*QUANTIZERS, "topk", "randk", "bf16", "fp16")
TAKES = {"qsgd": "bits", "uniform": "bits", "topk": "fraction", "randk": "fraction"}
EXAMPLES = "qsgd:bits=4, uniform:bits=8, terngrad, sign, topk:fraction=0.01, randk:fraction=0.1, "
EXAMPLES += "bf16, fp16, hadamard+qsgd:bits=4"


@dataclass(frozen=True)
class Compressor:
    """A parsed SPEC: the kind, its one parameter, and whether a Hadamard rotation comes first."""

    kind: str
    bits: int | None = None
    fraction: float | None = None
    rotate: bool = False

    @property
    def unbiased(self) -> bool:
        return self.kind in ("qsgd", "uniform", "terngrad", "randk")

    def __str__(self) -> str:
        name = "hadamard+" * self.rotate + self.kind
        if self.bits is not None:
            return f"{name}:bits={self.bits}"
        if self.fraction is not None:
            return f"{name}:fraction={self.fraction:g}"
        return name


def parse(spec: str, flag: str = "--compress") -> Compressor:
    """'hadamard+qsgd:bits=4' -> Compressor; FLError naming the value and the fix."""
    text = str(spec).strip()
    rotate = text.startswith("hadamard+")
    body = text.removeprefix("hadamard+")
    kind, _, argument = body.partition(":")
    if kind not in KINDS:
        raise FLError(f"{flag} {spec!r}: unknown compressor {kind!r}; give one of: {EXAMPLES}")
    if rotate and kind not in QUANTIZERS:
        raise FLError(
            f"{flag} {spec!r}: the Hadamard rotation precedes a quantizer "
            f"({', '.join(QUANTIZERS)}), e.g. hadamard+qsgd:bits=4"
        )
    takes = TAKES.get(kind)
    if takes is None:
        if argument:
            raise FLError(f"{flag} {spec!r}: {kind} takes no argument; give {kind}")
        return Compressor(kind, rotate=rotate)
    key, _, value = argument.partition("=")
    example = f"{kind}:bits=4" if takes == "bits" else f"{kind}:fraction=0.01"
    if key.strip() != takes:
        raise FLError(f"{flag} {spec!r}: {kind} needs {takes}=..., e.g. {example}")
    if takes == "bits":
        low = 2 if kind == "qsgd" else 1  # qsgd's sign bit leaves B - 1 bits of level
        if not value.strip().isdigit() or not low <= int(value) <= 16:
            raise FLError(
                f"{flag} {spec!r}: bits must be an integer in [{low}, 16], e.g. {example}"
            )
        return Compressor(kind, bits=int(value), rotate=rotate)
    try:
        fraction = float(value)
    except ValueError:
        fraction = math.nan
    if not 0 < fraction <= 1:
        raise FLError(f"{flag} {spec!r}: fraction must be in (0, 1], e.g. {example}")
    return Compressor(kind, fraction=fraction, rotate=rotate)


def uniforms(seed: int, purpose: Purpose, round: int, ids: np.ndarray, width: int) -> np.ndarray:
    """[K, width] uniforms in [0, 1) on a 2^-32 grid, one per (client, coordinate); one hash
    serves two coordinates (flcli.rng.paired_uniforms)."""
    return paired_uniforms(seed, purpose, round, np.asarray(ids), width)


def stochastic_round(r: np.ndarray, u: np.ndarray) -> np.ndarray:
    """floor(r) + 1 with probability r - floor(r): E = r (up to the 2^-32 grid of u). Overwrites
    r with the result."""
    low = np.floor(r)
    r -= low
    np.less(u, r, out=r)
    r += low
    return r


def kept(fraction: float, width: int) -> int:
    return max(1, math.ceil(fraction * width - 1e-9))


def position_bits(k: int, width: int) -> int:
    """The positions of k of width coordinates: k indices of ceil(log2 width) bits, or a bitmap."""
    return min(k * max(1, math.ceil(math.log2(width))), width)


def qsgd(x: np.ndarray, bits: int, u: np.ndarray) -> np.ndarray:
    s = 2 ** (bits - 1) - 1
    norm = np.linalg.norm(x, axis=1)[:, None]
    levels = np.abs(x)
    levels *= np.divide(s, norm, out=np.zeros_like(norm), where=norm > 0)
    levels = stochastic_round(levels, u)
    np.copysign(levels, x, out=levels)
    levels *= norm / s
    return levels


def uniform(x: np.ndarray, bits: int, u: np.ndarray) -> np.ndarray:
    steps = 2**bits - 1
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    width = np.where(high > low, high - low, 1.0)
    levels = x - low
    levels *= steps / width
    levels = stochastic_round(levels, u)
    levels *= width / steps
    levels += low
    return np.where(high > low, levels, x)


def terngrad(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    scale = np.abs(x).max(axis=1, keepdims=True)
    kept = np.abs(x)
    kept *= np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    np.less(u, kept, out=kept)
    np.copysign(kept, x, out=kept)
    kept *= scale
    return kept


def scaled_sign(x: np.ndarray) -> np.ndarray:
    scale = np.abs(x).sum(axis=1, keepdims=True) / x.shape[1]
    return scale * np.where(x >= 0, 1.0, -1.0)


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    keep = np.argpartition(-np.abs(x), k - 1, axis=1)[:, :k]
    out = np.zeros_like(x)
    np.put_along_axis(out, keep, np.take_along_axis(x, keep, axis=1), axis=1)
    return out


def rand_k(x: np.ndarray, k: int, seed: int, round: int, ids: np.ndarray) -> np.ndarray:
    order = hash_bits(seed, Purpose.SPARSIFY, round, ids[:, None], np.arange(x.shape[1])[None, :])
    keep = np.argpartition(order, k - 1, axis=1)[:, :k]
    out = np.zeros_like(x)
    scaled = np.take_along_axis(x, keep, axis=1) * (x.shape[1] / k)
    np.put_along_axis(out, keep, scaled, axis=1)
    return out


def bfloat16(x: np.ndarray) -> np.ndarray:
    """Round to nearest even on the upper 16 bits of the float32 pattern."""
    words = x.astype(np.float32).view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((words >> np.uint32(16)) & np.uint32(1))
    with np.errstate(over="ignore"):
        upper = (words + rounding) & np.uint32(0xFFFF0000)
    return upper.view(np.float32).astype(np.float64)


def hadamard(x: np.ndarray) -> np.ndarray:
    """H x for each row (unnormalized Walsh-Hadamard in Sylvester order, width a power of two):
    log2(d) constant-geometry passes y = [x_even + x_odd, x_even - x_odd] between two buffers
    (contiguous writes, no pass on a stride of 1)."""
    K, d = x.shape
    a = np.array(x, dtype=np.float64)
    b = np.empty_like(a)
    half = d // 2
    for _ in range(d.bit_length() - 1):
        pairs = a.reshape(K, half, 2)
        np.add(pairs[:, :, 0], pairs[:, :, 1], out=b[:, :half])
        np.subtract(pairs[:, :, 0], pairs[:, :, 1], out=b[:, half:])
        a, b = b, a
    return a


COMPILED = True  # the numba kernels of flcli.compression_kernels when numba imports


@cache
def kernels():
    """flcli.compression_kernels, or None without numba (the NumPy functions above then)."""
    try:
        from flcli import compression_kernels
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return compression_kernels


def compiled():
    return kernels() if COMPILED else None


def row_scalars(spec: Compressor, x: np.ndarray):
    """(factor, mult, offset, flag) [K] of the compiled quantizer: the per-row values of qsgd,
    uniform, terngrad and sign above, by the same NumPy expressions (so the same rounding)."""
    K, P = x.shape
    zeros, ones = np.zeros(K), np.ones(K, dtype=np.bool_)
    if spec.kind == "qsgd":
        s = 2 ** (spec.bits - 1) - 1
        norm = np.linalg.norm(x, axis=1)  # each row's alike in any block (einsum's is not)
        factor = np.divide(s, norm, out=np.zeros_like(norm), where=norm > 0)
        return factor, norm / s, zeros, ones
    if spec.kind == "uniform":
        steps = 2**spec.bits - 1
        low, high = x.min(axis=1), x.max(axis=1)
        width = np.where(high > low, high - low, 1.0)
        return steps / width, width / steps, low, high > low
    if spec.kind == "terngrad":
        scale = np.abs(x).max(axis=1)
        factor = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
        return factor, scale, zeros, ones
    scale = np.abs(x).sum(axis=1, keepdims=True) / P
    return zeros, scale[:, 0], zeros, ones


def compiled_top_k(spec: Compressor, P: int) -> bool:
    """Whether the compiled kernel selects this top-k (below 1024, NumPy's argpartition is
    faster)."""
    return spec.kind == "topk" and not spec.rotate and P >= 1024


def quantize_compiled(fast, spec: Compressor, x, seed: int, round: int, ids, out):
    """C(x) into out by the compiled kernels, or None for a kind they do not cover."""
    clients = np.asarray(ids).astype(np.uint64)
    if spec.kind in fast.QUANTIZERS:
        rows = max(1, CHUNK // x.shape[1])  # the scalars' temporaries stay in cache
        parts = [row_scalars(spec, x[i : i + rows]) for i in range(0, len(x), rows)]
        factor, mult, offset, flag = (np.concatenate(column) for column in zip(*parts, strict=True))
        where = prefix(seed, Purpose.QUANTIZE, round)
        fast.QUANTIZERS[spec.kind](x, clients, where, factor, mult, offset, flag, out)
        return out
    if spec.kind == "randk":
        k = kept(spec.fraction, x.shape[1])
        where = prefix(seed, Purpose.SPARSIFY, round)
        fast.rand_k(x, k, clients, where, x.shape[1] / k, out)
        return out
    if compiled_top_k(spec, x.shape[1]):
        fast.top_k(x, kept(spec.fraction, x.shape[1]), out)
        return out
    if spec.kind == "bf16":
        fast.bfloat16(x, out)
        return out
    if spec.kind == "fp16":
        x = np.ascontiguousarray(x)
        fast.float16(x, x.view(np.uint64), out, out.view(np.uint64))
        return out
    return None


def quantize(spec: Compressor, x: np.ndarray, seed: int, round: int, ids: np.ndarray, out=None):
    """(x', bits of each message) without the rotation; x' written into `out` when the compiled
    kernels cover the kind (else a new array)."""
    K, P = x.shape
    value = 64  # the caller narrows to the run's float width (see compress)
    kind = spec.kind
    fast = compiled()
    if fast is not None:
        done = quantize_compiled(
            fast, spec, x, seed, round, ids, np.empty_like(x) if out is None else out
        )
        if done is not None:
            return done, message_bits(spec, P, value)
    u = uniforms(seed, Purpose.QUANTIZE, round, ids, P) if spec.unbiased else None
    if kind == "qsgd":
        return qsgd(x, spec.bits, u), value + P * spec.bits
    if kind == "uniform":
        return uniform(x, spec.bits, u), 2 * value + P * spec.bits
    if kind == "terngrad":
        return terngrad(x, u), value + 2 * P
    if kind == "sign":
        return scaled_sign(x), value + P
    if kind in ("topk", "randk"):
        k = kept(spec.fraction, P)
        if kind == "topk":
            return top_k(x, k), k * value + position_bits(k, P)
        return rand_k(x, k, seed, round, ids), k * value + SEED_BITS
    if kind == "bf16":
        return bfloat16(x), 16 * P
    return x.astype(np.float16).astype(np.float64), 16 * P


def message_bits(spec: Compressor, P: int, value: int) -> int:
    """The bits of one message of P coordinates, floats of `value` bits (quantize's counts)."""
    kind = spec.kind
    if kind in ("topk", "randk"):
        k = kept(spec.fraction, P)
        return k * value + (position_bits(k, P) if kind == "topk" else SEED_BITS)
    per = {"qsgd": spec.bits, "uniform": spec.bits, "terngrad": 2, "sign": 1}.get(kind, 16)
    return {"qsgd": 1, "uniform": 2, "terngrad": 1, "sign": 1}.get(kind, 0) * value + P * per


def padded_width(P: int) -> int:
    """d = 2^ceil(log2 P): the width a rotated message is padded to."""
    return 1 << max(0, (P - 1).bit_length())


def sent_bits(spec: Compressor, P: int, float_bits: int = 64) -> int:
    """The bits of one compressed message of P coordinates, floats of float_bits bits (with a
    rotation, the padded width's codes and the rotation's seed)."""
    if not spec.rotate:
        return message_bits(spec, P, float_bits)
    return message_bits(spec, padded_width(P), float_bits) + SEED_BITS


def float_values(spec: Compressor, width: int) -> int:
    """How many floats a message of `width` coordinates carries (norms, scales, kept values)."""
    if spec.kind in ("topk", "randk"):
        return kept(spec.fraction, width)
    return {"qsgd": 1, "uniform": 2, "terngrad": 1, "sign": 1}.get(spec.kind, 0)


CHUNK = 1 << 17  # coordinates compressed at once: a block of clients' rows stays in cache
COMPILED_BLOCK = 1 << 20  # the compiled kernels go row by row: larger blocks, fewer calls


def compress(
    spec: Compressor,
    x: np.ndarray,
    seed: int,
    round: int,
    ids: np.ndarray,
    float_bits: int = 64,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(C(x) [K, P] as the receiver decodes it, float64; bits [K] of each client's message). The
    cohort goes through in blocks of rows (each one vectorized or compiled pass, the compiled
    blocks on up to `threads` threads; the randomness is addressed by client, so neither the
    blocks nor the threads change the result)."""
    ids = np.asarray(ids, dtype=np.int64)
    K, P = x.shape
    out = np.empty((K, P))

    def block(rows: slice) -> None:
        compress_into(spec, x[rows], seed, round, ids[rows], float_bits, out[rows])

    over_blocks(block, spec, K, P, threads)
    return out, np.full(K, sent_bits(spec, P, float_bits), dtype=np.int64)


def over_blocks(work, spec: Compressor, K: int, P: int, threads: int = 1) -> None:
    """work(rows) for each block of the K rows of a cohort's [K, P] updates: blocks of about
    COMPILED_BLOCK coordinates on up to `threads` threads (the kernels release the GIL), or of
    CHUNK coordinates in turn without the compiled kernels."""
    width = padded_width(P) if spec.rotate else P
    fast = compiled() is not None
    rows = max(1, (COMPILED_BLOCK if fast else CHUNK) // width)
    blocks = [slice(start, start + rows) for start in range(0, K, rows)]
    threads = min(threads, len(blocks)) if fast else 1
    if threads <= 1:
        for block in blocks:
            work(block)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, blocks))


def compress_into(spec: Compressor, x, seed: int, round: int, ids, float_bits: int, out) -> None:
    """out = C(x) for a block of rows (x of any float dtype, read as float64)."""
    x = np.asarray(x, dtype=np.float64)
    sent = compress_rows(spec, x, seed, round, ids, float_bits, out)[0]
    if sent is not out:
        out[...] = sent


def compress_fed_back(
    spec: Compressor, x, table, alive, feedback: str, seed: int, round: int, ids, float_bits, out
) -> None:
    """out = C(source) for a block of rows with error feedback through the [N, P] table, for the
    compiled kernels: ef sends C(x + e_i) and leaves e_i = source - out; ef21 sends g_i + C(x -
    g_i), which also becomes g_i; only the rows that arrive (alive) write the table. Top-k does
    the three steps row by row; the others in three passes over the block."""
    fast, keep = compiled(), feedback == "ef21"
    K, P = x.shape
    if compiled_top_k(spec, P):
        fast.top_k_fed_back(table, ids, alive, x, kept(spec.fraction, P), keep, out)
        return
    # the quantizers' per-row scalars go CHUNK coordinates at a time (quantize_compiled): the
    # same groups of rows here keep a group's source in cache through its three steps
    rows = max(1, CHUNK // (padded_width(P) if spec.rotate else P))
    scratch = np.empty((min(rows, K), P))
    for start in range(0, K, rows):
        group = slice(start, start + rows)
        source = scratch[: len(ids[group])]
        fast.gather_add(table, ids[group], x[group], -1 if keep else 1, source)
        compress_into(spec, source, seed, round, ids[group], float_bits, out[group])
        fast.feed_back(table, ids[group], alive[group], source, out[group], keep)


def compress_rows(spec: Compressor, x, seed: int, round: int, ids, float_bits: int, out=None):
    """(C(x), the bits of one message) for a block of rows (C(x) in `out` when given and the
    compiled kernels cover the kind)."""
    K, P = x.shape
    if not spec.rotate:
        out, bits = quantize(spec, x, seed, round, ids, out)
        return out, bits - float_values(spec, P) * (64 - float_bits)
    d = padded_width(P)
    fast = compiled()
    padded = np.zeros((K, d))
    padded[:, :P] = x
    if fast is not None:
        clients, where = np.asarray(ids).astype(np.uint64), prefix(seed, Purpose.ROTATE, round)
        fast.rotate(padded, clients, where, math.sqrt(d))
        rotated, bits = quantize(spec, padded, seed, round, ids, padded)
        back = np.empty((K, P)) if out is None else out
        fast.unrotate(rotated, clients, where, math.sqrt(d), back)
        return back, bits - float_values(spec, d) * (64 - float_bits) + SEED_BITS
    signs = np.where(uniforms(seed, Purpose.ROTATE, round, ids, d) < 0.5, -1.0, 1.0)
    padded *= signs
    rotated = hadamard(padded)
    rotated /= math.sqrt(d)
    out, bits = quantize(spec, rotated, seed, round, ids)
    bits -= float_values(spec, d) * (64 - float_bits)
    back = hadamard(out)
    back *= signs
    back /= math.sqrt(d)
    return back[:, :P], bits + SEED_BITS


# Under secure aggregation (Bonawitz et al. 2019, "Federated Learning with Autotuned
# Communication-Efficient Secure Aggregation"; the shared rotation as in Kairouz et al. 2021, "The
# Distributed Discrete Gaussian Mechanism"): every client of the round quantizes onto one grid, so
# that the server can add the integer codes in the masks' field and decode the sum once. The grid's
# scale M = 2^e is the power of two that bounds every survivor's own scale (qsgd: ||x||_2;
# terngrad and uniform: ||x||_inf); e is the largest of the survivors' ceil(log2 scale), which the
# server learns from a secure sum of one-hot exponents (the count of clients per exponent, not
# whose). The rotation's signs are the round's, shared by the cohort, so R^T applies to the sum.
# rand-k too: the round's k positions are shared by the cohort (drawn from the round's shared
# randomness instead of each client's), and each kept value, scaled by P / k, travels as a signed
# CODE_BITS-bit code on the grid, by stochastic rounding: still unbiased, as the positions are
# uniform for every client, and the codes add coordinate by coordinate.
SECURE = ("qsgd", "uniform", "terngrad", "randk")
CODE_BITS = 16  # rand-k's kept values under secure aggregation: a sign and 15 bits of level
EXPONENTS = (-60, 20)  # the scales 2^-60 .. 2^20 (secure aggregation's bound), clamped to them
SHARED = 2**64 - 1  # the client address of the round's shared randomness (no client has it)


@dataclass(frozen=True)
class Codes:
    """A cohort's messages on a shared grid: client k's decoded vector is R^T (offset + step
    codes[k]) cut to `width` coordinates (R the shared rotation, or none)."""

    codes: np.ndarray  # [K, d] int64
    offset: float
    step: float
    largest: int  # the largest |code|: the field must hold a weighted sum of them
    width: int  # P, the coordinates of the update (d >= P under a rotation)
    signs: np.ndarray | None  # [d] the shared rotation's signs D, None without a rotation
    positions: np.ndarray | None = None  # rand-k: the round's kept coordinates of the P

    def decode(self, total: np.ndarray, weight: float) -> np.ndarray:
        """sum_k w_k C(x_k) from sum_k w_k codes[k] (exact integers) and W = sum_k w_k."""
        values = self.offset * weight + self.step * np.asarray(total, dtype=np.float64)
        return self.placed(values[None, :])[0]

    def placed(self, values: np.ndarray) -> np.ndarray:
        """[K, P] vectors from [K, d] grid values: put at the kept positions (rand-k), rotated
        back (under hadamard+), cut to the update's width."""
        if self.positions is not None:
            full = np.zeros((len(values), self.width))
            full[:, self.positions] = values
            return full
        return unrotate(values, self.signs)[:, : self.width]


def unrotate(x: np.ndarray, signs: np.ndarray | None) -> np.ndarray:
    if signs is None:
        return x
    return signs * hadamard(x) / math.sqrt(x.shape[1])


def own_scale(kind: str, x: np.ndarray) -> np.ndarray:
    """[K] what bounds each client's grid in the published rule: ||x||_2 for qsgd, else max |x|."""
    if kind == "qsgd":
        return np.linalg.norm(x, axis=1)
    return np.abs(x).max(axis=1)


def exponents(kind: str, x: np.ndarray) -> np.ndarray:
    """[K] ceil(log2 scale), clamped to EXPONENTS: 2^e bounds the client's scale."""
    scale = own_scale(kind, x)
    low, high = EXPONENTS
    with np.errstate(divide="ignore"):
        e = np.ceil(np.log2(np.where(scale > 0, scale, 2.0**low)))
    return np.clip(e, low, high).astype(np.int64)


def shared_rotation(spec: Compressor, x: np.ndarray, seed: int, round: int):
    """(x padded and rotated by the round's shared R, its signs) or (x, None) without rotation."""
    if not spec.rotate:
        return x, None
    K, P = x.shape
    d = padded_width(P)
    signs = np.where(uniforms(seed, Purpose.ROTATE, round, np.array([SHARED]), d)[0] < 0.5, -1, 1)
    padded = np.zeros((K, d))
    padded[:, :P] = x
    return hadamard(signs * padded) / math.sqrt(d), signs.astype(np.float64)


def shared_selection(spec: Compressor, x: np.ndarray, seed: int, round: int):
    """(the values each client quantizes onto the grid, the round's kept positions): rand-k's k
    coordinates, drawn from the round's shared randomness and scaled by P / k; else (x, None)."""
    if spec.kind != "randk":
        return x, None
    width = x.shape[1]
    k = kept(spec.fraction, width)
    order = hash_bits(seed, Purpose.SPARSIFY, round, np.array([SHARED]), np.arange(width))
    positions = np.sort(np.argpartition(order, k - 1)[:k])
    return x[:, positions] * (width / k), positions


def grid_codes(
    spec: Compressor, x: np.ndarray, exponent: int, seed: int, round: int, ids: np.ndarray
) -> Codes:
    """The cohort's codes on the grid of scale M = 2^exponent (x rotated already when the spec
    rotates; the caller sets signs), by stochastic rounding: E[decoded] = x as |x_i| <= M.

    - qsgd: codes sign(x_i) l_i, l_i in 0..s rounded from |x_i| s / M; decoded M codes / s;
    - terngrad: codes sign(x_i) b_i, b_i ~ Bernoulli(|x_i| / M); decoded M codes;
    - randk: x the kept values already (shared_selection); qsgd's rule with 2^(CODE_BITS-1) - 1
      levels;
    - uniform: codes in 0..2^B - 1 rounded from (x_i + M) (2^B - 1) / 2M; decoded -M + codes 2M /
      (2^B - 1), the paper's 2^B levels over [-M, M] instead of [min x, max x]."""
    M = 2.0**exponent
    u = uniforms(seed, Purpose.QUANTIZE, round, ids, x.shape[1])
    if spec.kind == "uniform":
        steps = 2**spec.bits - 1
        codes = stochastic_round((np.clip(x, -M, M) + M) * (steps / (2 * M)), u)
        return Codes(codes.astype(np.int64), -M, 2 * M / steps, steps, x.shape[1], None)
    levels = {"qsgd": 2 ** ((spec.bits or 0) - 1) - 1, "randk": 2 ** (CODE_BITS - 1) - 1}
    levels = levels.get(spec.kind, 1)
    magnitude = stochastic_round(np.minimum(np.abs(x) / M, 1.0) * levels, u)
    codes = (np.sign(x) * magnitude).astype(np.int64)
    return Codes(codes, 0.0, M / levels, levels, x.shape[1], None)


def exponent_histogram(exponent: np.ndarray) -> np.ndarray:
    """[K, bins] one-hot rows: what each client adds to the secure sum that finds the grid."""
    low, high = EXPONENTS
    onehot = np.zeros((len(exponent), high - low + 1), dtype=np.uint64)
    onehot[np.arange(len(exponent)), exponent - low] = 1
    return onehot


def largest_exponent(histogram: np.ndarray) -> int:
    """The largest exponent any client reported, from the summed histogram (the lowest if none)."""
    used = np.flatnonzero(np.asarray(histogram) > 0)
    return EXPONENTS[0] + (int(used[-1]) if len(used) else 0)
