"""The compressors' elementwise passes, compiled: one pass over a block of rows that hashes the
addressed random bits, rounds, and writes the decoded value, with no [K, P] temporaries.

Same arithmetic as the NumPy functions of flcli.compression, operation for operation (no
fastmath), so the results are bit-identical; tests/test_compression.py compares the two. The
per-row scalars whose value depends on a summation order (norms, sums) stay NumPy's, computed by
the caller and passed in. Imported lazily: `fl --help` and the NumPy path do not need numba.

The random bits are flcli.rng's: word j of client c is mix(mix(prefix ^ c) ^ j) (splitmix64's
finalizer), whose low 32 bits give coordinate j's uniform and high 32 bits coordinate half + j's
(flcli.rng.paired_uniforms); rand-k ranks coordinates by mix(mix(prefix ^ c) ^ j)
(flcli.rng.hash_bits).
"""

import numpy as np
from numba import njit

M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
S27, S30, S31, S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
LOW32 = np.uint64(0xFFFFFFFF)
HALF = np.uint64(0x80000000)
GRID = 2.0**-32
QSGD, UNIFORM, TERNGRAD = 0, 1, 2


@njit(inline="always")
def mix(z):
    z = (z ^ (z >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


@njit(inline="always")
def one(code, v, u, factor, mult, offset, flag):
    """The decoded value of one coordinate v with uniform u, per compressor (see compression)."""
    if code == QSGD:
        r = abs(v) * factor
        low = np.floor(r)
        r = (1.0 if u < r - low else 0.0) + low
        return np.copysign(r, v) * mult
    if code == UNIFORM:
        if not flag:
            return v
        r = (v - offset) * factor
        low = np.floor(r)
        r = (1.0 if u < r - low else 0.0) + low
        return r * mult + offset
    if code == TERNGRAD:
        r = 1.0 if u < abs(v) * factor else 0.0
    return np.copysign(r, v) * mult


@njit(inline="always")
def rows(code, x, clients, prefix, factor, mult, offset, flag, out):
    """out[k] = C(x[k]) for each row; factor, mult, offset and flag are per-row scalars. Word j
    gives the uniforms of coordinates j and half + j; they go to a row buffer first, so that
    both loops are branch-free and vectorize."""
    K, P = x.shape
    half = (P + 1) // 2
    u = np.empty(2 * half)
    for k in range(K):
        c = mix(prefix ^ clients[k])
        for j in range(half):
            z = mix(c ^ np.uint64(j))
            u[j] = np.float64(np.int64(z & LOW32)) * GRID
            u[j + half] = np.float64(np.int64(z >> S32)) * GRID
        f, m, o, g = factor[k], mult[k], offset[k], flag[k]
        xs, ys = x[k], out[k]
        for j in range(P):
            ys[j] = one(code, xs[j], u[j], f, m, o, g)


@njit(cache=True, nogil=True)
def quantize_qsgd(x, clients, prefix, factor, mult, offset, flag, out):
    rows(QSGD, x, clients, prefix, factor, mult, offset, flag, out)


@njit(cache=True, nogil=True)
def quantize_uniform(x, clients, prefix, factor, mult, offset, flag, out):
    rows(UNIFORM, x, clients, prefix, factor, mult, offset, flag, out)


@njit(cache=True, nogil=True)
def quantize_terngrad(x, clients, prefix, factor, mult, offset, flag, out):
    rows(TERNGRAD, x, clients, prefix, factor, mult, offset, flag, out)


@njit(cache=True, nogil=True)
def quantize_sign(x, clients, prefix, factor, mult, offset, flag, out):
    """No random bits: out = mult sign(x)."""
    K, P = x.shape
    for k in range(K):
        m, xs, ys = mult[k], x[k], out[k]
        for j in range(P):
            ys[j] = m if xs[j] >= 0 else -m


QUANTIZERS = {
    "qsgd": quantize_qsgd,
    "uniform": quantize_uniform,
    "terngrad": quantize_terngrad,
    "sign": quantize_sign,
}


@njit(cache=True, nogil=True)
def rand_k(x, k, clients, prefix, scale, out):
    """out[r] keeps the k coordinates of x[r] whose hashes are smallest, times scale. The hashes
    are distinct and uniform over uint64: the k smallest are looked for among those below about
    2 k / P of the range (about 2k candidates), and among all of them if fewer than k are."""
    K, P = x.shape
    order = np.empty(P, dtype=np.uint64)
    bound = np.uint64(min(2.0**63, (2.0 * k + 64.0) / P * 2.0**64))
    for r in range(K):
        c = mix(prefix ^ clients[r])
        count = 0
        for j in range(P):
            h = mix(c ^ np.uint64(j))
            order[j] = h
            if h < bound:
                count += 1
        if count >= k:
            candidates = np.empty(count, dtype=np.uint64)
            n = 0
            for j in range(P):
                if order[j] < bound:
                    candidates[n] = order[j]
                    n += 1
        else:
            candidates = order.copy()
        threshold = np.partition(candidates, k - 1)[k - 1]
        for j in range(P):
            out[r, j] = x[r, j] * scale if order[j] <= threshold else 0.0


@njit(inline="always")
def butterflies(a, h, d):
    """Stage h alone: (a[j], a[j + h]) <- (a[j] + a[j + h], a[j] - a[j + h])."""
    for i in range(0, d, 2 * h):
        for j in range(i, i + h):
            p, q = a[j], a[j + h]
            a[j] = p + q
            a[j + h] = p - q


@njit(inline="always")
def radix2(a0, a1):
    """One stage on the halves a0, a1 of a block (separate views, so the loop vectorizes)."""
    for t in range(a0.shape[0]):
        p, q = a0[t], a1[t]
        a0[t] = p + q
        a1[t] = p - q


@njit(inline="always")
def radix4(a0, a1, a2, a3):
    """Two stages (h, then 2h) on the quarters of a block."""
    for t in range(a0.shape[0]):
        p, q, r, s = a0[t], a1[t], a2[t], a3[t]
        p, q, r, s = p + q, p - q, r + s, r - s
        a0[t], a2[t] = p + r, p - r
        a1[t], a3[t] = q + s, q - s


@njit(inline="always")
def radix8(a0, a1, a2, a3, a4, a5, a6, a7):
    """Three stages (h, 2h, 4h) on the eighths of a block."""
    for t in range(a0.shape[0]):
        p0, p1, p2, p3 = a0[t] + a1[t], a0[t] - a1[t], a2[t] + a3[t], a2[t] - a3[t]
        p4, p5, p6, p7 = a4[t] + a5[t], a4[t] - a5[t], a6[t] + a7[t], a6[t] - a7[t]
        p0, p2, p1, p3 = p0 + p2, p0 - p2, p1 + p3, p1 - p3
        p4, p6, p5, p7 = p4 + p6, p4 - p6, p5 + p7, p5 - p7
        a0[t], a4[t], a1[t], a5[t] = p0 + p4, p0 - p4, p1 + p5, p1 - p5
        a2[t], a6[t], a3[t], a7[t] = p2 + p6, p2 - p6, p3 + p7, p3 - p7


@njit(inline="always")
def first_three_stages(a):
    """Stages 1, 2 and 4 on each group of 8 coordinates, in registers."""
    b = a.reshape((a.shape[0] // 8, 8))
    for g in range(b.shape[0]):
        a0, a1, a2, a3 = b[g, 0] + b[g, 1], b[g, 0] - b[g, 1], b[g, 2] + b[g, 3], b[g, 2] - b[g, 3]
        a4, a5, a6, a7 = b[g, 4] + b[g, 5], b[g, 4] - b[g, 5], b[g, 6] + b[g, 7], b[g, 6] - b[g, 7]
        b0, b1, b2, b3 = a0 + a2, a1 + a3, a0 - a2, a1 - a3
        b4, b5, b6, b7 = a4 + a6, a5 + a7, a4 - a6, a5 - a7
        b[g, 0], b[g, 1], b[g, 2], b[g, 3] = b0 + b4, b1 + b5, b2 + b6, b3 + b7
        b[g, 4], b[g, 5], b[g, 6], b[g, 7] = b0 - b4, b1 - b5, b2 - b6, b3 - b7


@njit(inline="always")
def fwht(a):
    """The unnormalized Walsh-Hadamard transform of one row in place, Sylvester order: the same
    butterflies, operand for operand, as compression.hadamard's constant-geometry passes (which
    combine index bit 0 first, then bit 1, ...). Stages 1, 2 and 4 go together on groups of 8 in
    registers; then three stages a pass (radix 8), one or two first when their count asks: a pass
    over the row for every three stages, each on separate views of a block's eighths."""
    d = a.shape[0]
    if d < 8:
        h = 1
        while h < d:
            butterflies(a, h, d)
            h *= 2
        return
    first_three_stages(a)
    stages, h = 0, 8
    while h < d:
        stages, h = stages + 1, 2 * h
    h = 8
    if stages % 3 == 1:
        for i in range(0, d, 2 * h):
            radix2(a[i : i + h], a[i + h : i + 2 * h])
        h *= 2
    elif stages % 3 == 2:
        for i in range(0, d, 4 * h):
            q0, q1, q2, q3 = quarters(a, i, h)
            radix4(q0, q1, q2, q3)
        h *= 4
    while h < d:
        for i in range(0, d, 8 * h):
            q0, q1, q2, q3 = quarters(a, i, h)
            q4, q5, q6, q7 = quarters(a, i + 4 * h, h)
            radix8(q0, q1, q2, q3, q4, q5, q6, q7)
        h *= 8


@njit(inline="always")
def quarters(a, i, h):
    """The four consecutive views a[i : i + h], ..., a[i + 3h : i + 4h]."""
    return a[i : i + h], a[i + h : i + 2 * h], a[i + 2 * h : i + 3 * h], a[i + 3 * h : i + 4 * h]


@njit(inline="always")
def sign(z, j, half):
    """The rotation's sign of coordinate j from word z (uniform < 1/2 gives -1)."""
    word = z & LOW32 if j < half else z >> S32
    return -1.0 if word < HALF else 1.0


@njit(cache=True, nogil=True)
def rotate(padded, clients, prefix, root):
    """padded[k] <- H D padded[k] / root in place, D the client's random signs."""
    K, d = padded.shape
    half = (d + 1) // 2
    for k in range(K):
        c = mix(prefix ^ clients[k])
        row = padded[k]
        for j in range(half):
            z = mix(c ^ np.uint64(j))
            row[j] *= sign(z, j, half)
            if j + half < d:
                row[j + half] *= sign(z, j + half, half)
        fwht(row)
        for j in range(d):
            row[j] /= root


@njit(cache=True, nogil=True)
def unrotate(rotated, clients, prefix, root, out):
    """out[k] <- (D H rotated[k] / root)[:P] (rotated is overwritten)."""
    K, d = rotated.shape
    P = out.shape[1]
    half = (d + 1) // 2
    for k in range(K):
        c = mix(prefix ^ clients[k])
        row = rotated[k]
        fwht(row)
        for j in range(half):
            z = mix(c ^ np.uint64(j))
            if j < P:
                out[k, j] = row[j] * sign(z, j, half) / root
            if j + half < P:
                out[k, j + half] = row[j + half] * sign(z, j + half, half) / root


@njit(cache=True, nogil=True)
def bfloat16(x, out):
    """out = x rounded to the nearest even on the upper 16 bits of its float32 pattern."""
    K, P = x.shape
    buf = np.empty(P, dtype=np.float32)
    words = buf.view(np.uint32)
    for k in range(K):
        for j in range(P):
            buf[j] = np.float32(x[k, j])
        for j in range(P):
            w = words[j]
            words[j] = (w + (BF_HALF + ((w >> BF_SHIFT) & BF_ONE))) & BF_UPPER
        for j in range(P):
            out[k, j] = np.float64(buf[j])


BF_HALF, BF_SHIFT, BF_ONE, BF_UPPER = (np.uint32(v) for v in (0x7FFF, 16, 1, 0xFFFF0000))
SIGN64, EXP64, SIG64 = (np.uint64(v) for v in (1 << 63, 0x7FF << 52, (1 << 52) - 1))


@njit(inline="always")
def half_bits(d):
    """NumPy's npy_doublebits_to_halfbits: the IEEE half nearest (ties to even) to the double
    whose bits are d, as an integer (the overflow and underflow flags left out)."""
    h_sgn = (d & SIGN64) >> np.uint64(48)
    d_exp = d & EXP64
    if d_exp >= np.uint64(0x40F0000000000000):
        d_sig = d & SIG64
        if d_exp == EXP64 and d_sig != np.uint64(0):
            ret = np.uint64(0x7C00) + (d_sig >> np.uint64(42))
            return h_sgn + (ret + np.uint64(1) if ret == np.uint64(0x7C00) else ret)
        return h_sgn + np.uint64(0x7C00)  # inf, or overflow to inf
    if d_exp <= np.uint64(0x3F00000000000000):
        if d_exp < np.uint64(0x3E60000000000000):
            return h_sgn
        e = d_exp >> np.uint64(52)
        d_sig = (np.uint64(0x0010000000000000) + (d & SIG64)) << (e - np.uint64(998))
        if (d_sig & np.uint64(0x003FFFFFFFFFFFFF)) != np.uint64(0x0010000000000000):
            d_sig += np.uint64(0x0010000000000000)
        return h_sgn + (d_sig >> np.uint64(53))
    h_exp = (d_exp - np.uint64(0x3F00000000000000)) >> np.uint64(42)
    d_sig = d & SIG64
    if (d_sig & np.uint64(0x000007FFFFFFFFFF)) != np.uint64(0x0000020000000000):
        d_sig += np.uint64(0x0000020000000000)
    return h_sgn + h_exp + (d_sig >> np.uint64(42))


@njit(inline="always")
def float16_one(d, out, out_bits, k, j):
    """out[k, j] = the double of bits d rounded to half and back, any d."""
    h = half_bits(d) & np.uint64(0xFFFF)
    sgn = (h & np.uint64(0x8000)) << np.uint64(48)
    h_exp = h & np.uint64(0x7C00)
    if h_exp == np.uint64(0):
        value = np.float64(np.int64(h & np.uint64(0x3FF))) * 2.0**-24
        out[k, j] = -value if sgn else value
    elif h_exp == np.uint64(0x7C00):
        out_bits[k, j] = sgn + EXP64 + ((h & np.uint64(0x3FF)) << np.uint64(42))
    else:
        out_bits[k, j] = sgn + (((h & np.uint64(0x7FFF)) + np.uint64(0xFC000)) << np.uint64(42))


@njit(cache=True, nogil=True)
def float16(x, x_bits, out, out_bits):
    """out = x rounded to IEEE half and back (x_bits, out_bits: the uint64 views of x, out). A
    branch-free pass does the doubles whose half is normal (exponent 2^-14 .. 2^14: no subnormal,
    no overflow even after rounding up); below, the half's grid is 2^-24 and rint (ties to even)
    finds it; the rare others (2^15 and up, inf, NaN) go through half_bits one by one."""
    K, P = x_bits.shape
    for k in range(K):
        for j in range(P):
            d = x_bits[k, j]
            sig = d & SIG64
            tie = (sig & np.uint64(0x000007FFFFFFFFFF)) == np.uint64(0x0000020000000000)
            sig += np.uint64(0) if tie else np.uint64(0x0000020000000000)
            h = (((d & EXP64) - np.uint64(0x3F00000000000000)) >> np.uint64(42)) + (
                sig >> np.uint64(42)
            )
            out_bits[k, j] = (d & SIGN64) + ((h + np.uint64(0xFC000)) << np.uint64(42))
        for j in range(P):
            e = x_bits[k, j] & EXP64
            if e <= np.uint64(0x3F00000000000000):  # a subnormal half (or zero): exact here
                out[k, j] = np.rint(x[k, j] * 2.0**24) * 2.0**-24
        for j in range(P):
            if x_bits[k, j] & EXP64 >= np.uint64(0x40E0000000000000):
                float16_one(x_bits[k, j], out, out_bits, k, j)


@njit(inline="always")
def top_k_row(x, k, out, magnitudes, positions):
    """out keeps the k coordinates of row x of largest magnitude: those above the k-th largest
    |x|, then those equal to it from the lowest index (np.argpartition may take other ones among
    equal magnitudes; the kept values differ only if such a tie is not all zeros). No NaN.

    A strided sample of 256 gives a bound that about k + 6 P / 256 values reach: the k-th largest
    is looked for among those (all of them if fewer than k do: the same value either way), whose
    positions, in increasing order, are then the only ones written besides the zeros."""
    P = x.shape[0]
    S = 256
    for j in range(P):
        magnitudes[j] = abs(x[j])
    bound = 0.0
    if P >= 4 * S:
        sample = np.empty(S)
        for i in range(S):
            sample[i] = magnitudes[i * (P // S)]
        sample.sort()
        bound = sample[max(0, S - 1 - (k * S) // P - 6)]
    n = 0
    for j in range(P):
        m = magnitudes[j]
        if m >= bound:
            magnitudes[n] = m
            positions[n] = j
            n += 1
    if n < k:  # the sample's bound was too high: all of them
        n = P
        for j in range(P):
            magnitudes[j] = abs(x[j])
            positions[j] = j
    threshold = np.partition(magnitudes[:n], n - k)[n - k]
    ties = k
    for i in range(n):
        if abs(x[positions[i]]) > threshold:
            ties -= 1
    out[:] = 0.0
    for i in range(n):
        j = positions[i]
        m = abs(x[j])
        if m > threshold or (m == threshold and ties > 0):
            out[j] = x[j]
            if m == threshold:
                ties -= 1


@njit(cache=True, nogil=True)
def top_k(x, k, out):
    """out[r] = top_k_row(x[r])."""
    K, P = x.shape
    magnitudes, positions = np.empty(P), np.empty(P, dtype=np.int64)
    for r in range(K):
        top_k_row(x[r], k, out[r], magnitudes, positions)


@njit(cache=True, nogil=True)
def top_k_fed_back(table, ids, alive, x, k, keep, out):
    """gather_add, top_k and feed_back one row at a time, the row's source in cache: ef (keep =
    0) compresses x[r] + e_i and leaves e_i = source - sent; ef21 (keep = 1) compresses x[r] -
    g_i and sends (and stores) g_i + that. The same sums and differences as the three passes."""
    K, P = x.shape
    source = np.empty(P)
    magnitudes, positions = np.empty(P), np.empty(P, dtype=np.int64)
    for r in range(K):
        row, sent = table[ids[r]], out[r]
        for j in range(P):
            source[j] = x[r, j] - row[j] if keep else row[j] + x[r, j]
        top_k_row(source, k, sent, magnitudes, positions)
        if keep:
            for j in range(P):
                sent[j] = row[j] + sent[j]
            if alive[r]:
                row[:] = sent
        elif alive[r]:
            for j in range(P):
                row[j] = source[j] - sent[j]


@njit(cache=True, nogil=True)
def gather_add(table, ids, x, sign, out):
    """out[r] = table[ids[r]] + sign x[r] (error feedback's p = x + e_i for sign = 1; for
    sign = -1, x[r] - table[ids[r]] is computed as such), without a copy of the table's rows."""
    K, P = x.shape
    for r in range(K):
        row = table[ids[r]]
        if sign > 0:
            for j in range(P):
                out[r, j] = row[j] + x[r, j]
        else:
            for j in range(P):
                out[r, j] = x[r, j] - row[j]


@njit(cache=True, nogil=True)
def feed_back(table, ids, alive, source, sent, keep):
    """ef (keep = 0): table[ids[r]] = source[r] - sent[r] for the rows that arrive. ef21 (keep =
    1): sent[r] += table[ids[r]] (what the server takes), stored back for the rows that arrive."""
    K, P = sent.shape
    for r in range(K):
        row = table[ids[r]]
        if keep:
            for j in range(P):
                value = row[j] + sent[r, j]
                sent[r, j] = value
                if alive[r]:
                    row[j] = value
        elif alive[r]:
            for j in range(P):
                row[j] = source[r, j] - sent[r, j]
