import numpy as np

from flcli.rng import Purpose, rng


def test_same_address_same_stream():
    a = rng(7, Purpose.SHUFFLE, 3, 11).random(5)
    b = rng(7, Purpose.SHUFFLE, 3, 11).random(5)
    assert np.array_equal(a, b)


def test_every_part_of_the_address_matters():
    base = rng(7, Purpose.SHUFFLE, 3, 11).random(5)
    for other in (
        rng(8, Purpose.SHUFFLE, 3, 11),
        rng(7, Purpose.SAMPLE, 3, 11),
        rng(7, Purpose.SHUFFLE, 4, 11),
        rng(7, Purpose.SHUFFLE, 3, 12),
    ):
        assert not np.array_equal(base, other.random(5))
