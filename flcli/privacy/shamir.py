"""Shamir secret sharing (Shamir 1979, "How to Share a Secret") over the prime field GF(2^521 - 1).

A secret s < 2^521 - 1 becomes the points (x, p(x)), x = 1..n, of a random polynomial p of degree
t - 1 with p(0) = s; any t of them give s back by Lagrange interpolation at 0, fewer reveal nothing.

Written here rather than imported: the PyPI packages for it are unmaintained or tied to one format
(GF(256) bytes, BIP39 words, 16-byte secrets), and the whole scheme is the two functions below.
"""

import numpy as np

PRIME = 2**521 - 1  # a Mersenne prime: larger than any 256-bit key
SHARE_BYTES = 66  # one field element


def random_element(generator: np.random.Generator) -> int:
    return int.from_bytes(generator.bytes(SHARE_BYTES), "big") % PRIME


def share(
    secret: int, threshold: int, num_shares: int, generator: np.random.Generator
) -> list[tuple[int, int]]:
    """num_shares points (x, p(x)), x = 1..num_shares, any threshold of which recover secret."""
    if not 1 <= threshold <= num_shares:
        raise ValueError(f"threshold {threshold} must be between 1 and {num_shares}")
    if not 0 <= secret < PRIME:
        raise ValueError("the secret must be a field element")
    coefficients = [secret] + [random_element(generator) for _ in range(threshold - 1)]
    points = []
    for x in range(1, num_shares + 1):
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        points.append((x, y))
    return points


def reconstruct(points: list[tuple[int, int]]) -> int:
    """p(0) from points of p by Lagrange interpolation (needs at least threshold distinct x)."""
    secret = 0
    for i, (x_i, y_i) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (x_j, _) in enumerate(points):
            if j != i:
                numerator = numerator * -x_j % PRIME
                denominator = denominator * (x_i - x_j) % PRIME
        secret = (secret + y_i * numerator * pow(denominator, -1, PRIME)) % PRIME
    return secret
