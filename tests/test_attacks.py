import numpy as np

from flcli.engine.attacks import attack_updates, flip_labels, malicious_clients
from flcli.engine.dropout import survivors


def test_malicious_clients_are_a_fixed_fraction_chosen_by_the_seed():
    bad = malicious_clients(seed=3, num_clients=50, fraction=0.2)
    assert len(bad) == 10 and len(set(bad)) == 10
    assert np.array_equal(bad, malicious_clients(3, 50, 0.2))
    assert not np.array_equal(bad, malicious_clients(4, 50, 0.2))


def test_the_malicious_count_rounds_half_up_like_the_cohort():
    assert [len(malicious_clients(0, 10, f)) for f in (0.25, 0.45, 0.24)] == [3, 5, 2]


def test_update_attacks_touch_only_the_malicious_rows():
    deltas = np.arange(12.0).reshape(4, 3)
    ids, bad = np.array([1, 4, 6, 9]), np.array([4, 9, 20])
    flipped = attack_updates("signflip", deltas, ids, bad, seed=0, round=1)
    assert np.array_equal(flipped[[0, 2]], deltas[[0, 2]])
    assert np.array_equal(flipped[[1, 3]], -4 * deltas[[1, 3]])
    scaled = attack_updates("scale", deltas, ids, bad, 0, 1, strength=2.0)
    assert np.array_equal(scaled[1], 2 * deltas[1])
    noisy = attack_updates("gaussian", deltas, ids, bad, seed=0, round=1)
    alone = attack_updates("gaussian", deltas[1:2], ids[1:2], bad, seed=0, round=1)
    assert np.array_equal(noisy[1], alone[0])  # addressed by (seed, round, client)
    assert np.array_equal(noisy[0], deltas[0])


def test_labelflip_maps_y_to_c_minus_1_minus_y_on_malicious_rows_only():
    y = np.array([0, 1, 2, 3, 4, 5, 6])
    offsets = np.array([0, 3, 5, 7])
    flipped = flip_labels(y, offsets, np.array([1]), num_classes=10)
    assert np.array_equal(flipped, [0, 1, 2, 6, 5, 5, 6])


def test_dropout_fails_each_client_independently_with_probability_p():
    ids = np.arange(5000)
    alive = survivors(seed=0, round=1, ids=ids, probability=0.3)
    assert 0.67 < alive.mean() < 0.73
    assert np.array_equal(alive[[7, 99]], survivors(0, 1, np.array([7, 99]), 0.3))
    assert survivors(0, 1, ids, 0.0).all()
