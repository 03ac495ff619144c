"""Text as token sequences: --text chars (LEAF's Shakespeare alphabet) and --text words (a
vocabulary of the training rows), through their encoders and through fl partition leaf:PATH."""

import json

import numpy as np
import pytest
from conftest import assert_one_line_error
from hypothesis import given
from hypothesis import strategies as st

from flcli.data.sample_format import PAD, PAD_ID, UNKNOWN, UNKNOWN_ID
from flcli.data.store import load_partition
from flcli.data.text import (
    CHAR_VOCABULARY,
    LEAF_ALPHABET,
    decode,
    encode_chars,
    encode_tokens,
    word_vocabulary,
    words_of,
)

in_alphabet = st.text(alphabet=LEAF_ALPHABET, max_size=40)
outside = st.characters(blacklist_characters=LEAF_ALPHABET, blacklist_categories=("Cs",))


def test_the_alphabet_is_leafs_80_characters_after_padding_and_unknown():
    assert len(LEAF_ALPHABET) == 80 and len(set(LEAF_ALPHABET)) == 80
    assert CHAR_VOCABULARY[PAD_ID] == PAD and CHAR_VOCABULARY[UNKNOWN_ID] == UNKNOWN
    assert len(CHAR_VOCABULARY) == 82


@given(st.lists(in_alphabet, min_size=1, max_size=5), st.integers(0, 20))
def test_chars_decode_to_their_text_padded_to_the_length(texts, extra):
    length = max(1, *map(len, texts)) + extra
    ids = encode_chars(texts, length)
    assert ids.shape == (len(texts), length) and ids.dtype == np.int64
    assert decode(ids, CHAR_VOCABULARY) == [list(text) for text in texts]
    for text, row in zip(texts, ids, strict=True):
        assert (row[len(text) :] == PAD_ID).all() and (row[: len(text)] > UNKNOWN_ID).all()


@given(st.lists(in_alphabet, min_size=1, max_size=5), st.integers(1, 10))
def test_chars_keep_the_first_tokens_of_a_longer_text(texts, length):
    decoded = decode(encode_chars(texts, length), CHAR_VOCABULARY)
    assert decoded == [list(text[:length]) for text in texts]


@given(in_alphabet, outside, in_alphabet)
def test_a_character_outside_the_alphabet_is_unknown(before, stranger, after):
    text = before + stranger + after
    ids = encode_chars([text], len(text))[0]
    assert ids[len(before)] == UNKNOWN_ID
    assert (np.delete(ids, len(before)) > UNKNOWN_ID).all()


@given(st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=12), min_size=1, max_size=8))
def test_words_rank_most_frequent_first_then_alphabetical(token_lists):
    vocabulary = word_vocabulary(token_lists, size=5)
    assert vocabulary[:2] == (PAD, UNKNOWN) and len(vocabulary) <= 5
    counts = {w: sum(tokens.count(w) for tokens in token_lists) for w in "abcdefgh"}
    ranked = sorted((w for w in counts if counts[w]), key=lambda w: (-counts[w], w))
    assert list(vocabulary[2:]) == ranked[:3]


@given(
    st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=12), min_size=1, max_size=8),
    st.integers(1, 15),
)
def test_words_outside_the_vocabulary_are_unknown_and_rows_padded(token_lists, length):
    vocabulary = (PAD, UNKNOWN, "a", "b")
    ids = encode_tokens(token_lists, vocabulary, length)
    assert ids.shape == (len(token_lists), length)
    for tokens, row in zip(token_lists, ids, strict=True):
        kept = tokens[:length]
        expected = [vocabulary.index(t) if t in vocabulary else UNKNOWN_ID for t in kept]
        assert row[: len(kept)].tolist() == expected and (row[len(kept) :] == PAD_ID).all()


def test_words_split_like_leafs_sent140_and_lowercase():
    assert words_of("So GOOD, isn't it?!") == ["so", "good", ",", "isn't", "it", "?", "!"]


SPEECH = "To be, or not to be: that is the question. Whether 'tis nobler in the mind to suffer"


def write_leaf_text(root, sentences: bool, test_only_word: str = "zebra"):
    """A LEAF tree of 2 users: Shakespeare-like 80-character lines with their next character,
    or Sent140-like [id, date, query, user, tweet] rows; the test rows hold a word the training
    rows do not."""
    generator = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        (root / split).mkdir(parents=True, exist_ok=True)
        user_data = {}
        for user in ("u0", "u1"):
            starts = generator.integers(0, len(SPEECH) // 2, n)
            lines = [(SPEECH * 2)[s : s + 80] for s in starts]
            if split == "test":
                lines[0] = f"{test_only_word} {lines[0]}"[:80]
            if sentences:
                x = [["id", "date", "NO_QUERY", user, line] for line in lines]
                y = [int(i % 2) for i in range(n)]
            else:
                x, y = lines, [(SPEECH * 2)[s + 80] for s in starts]
            user_data[user] = {"x": x, "y": y}
        content = {"users": ["u0", "u1"], "num_samples": [n, n], "user_data": user_data}
        (root / split / f"{split}.json").write_text(json.dumps(content))
    return root


def partition_of(cli, tmp_path, root, *flags):
    out = tmp_path / "p"
    result = cli("partition", f"leaf:{root}", "--scheme", "natural", *flags, "--out", out)
    assert result.code == 0, result.err
    return load_partition(out), result


def test_shakespeare_as_chars_through_fl_partition(cli, tmp_path):
    root = write_leaf_text(tmp_path / "shakespeare", sentences=False)
    part, result = partition_of(cli, tmp_path, root, "--text", "chars")
    assert part.input_shape == (80,) and part.vocabulary == CHAR_VOCABULARY
    assert part.meta["params"]["text"] == "chars"
    lines = json.loads((root / "train" / "train.json").read_text())["user_data"]["u0"]["x"]
    decoded = decode(part.x_train[:12].astype(np.int64), part.vocabulary)
    assert ["".join(tokens) for tokens in decoded] == lines
    assert "vocabulary" in result.out and "82 tokens" in result.out
    assert cli("train", tmp_path / "p", "--rounds", "1", "--out", tmp_path / "r").code == 0


def test_sent140_as_words_through_fl_partition(cli, tmp_path):
    root = write_leaf_text(tmp_path / "sent140", sentences=True)
    flags = ("--text", "words", "--sequence-length", "6", "--vocabulary-size", "12")
    part, _ = partition_of(cli, tmp_path, root, *flags)
    assert part.input_shape == (6,) and len(part.vocabulary) == 12
    assert "zebra" not in part.vocabulary  # only in the test rows
    tweet = json.loads((root / "test" / "test.json").read_text())["user_data"]["u0"]["x"][0][-1]
    first = part.x_test[0].astype(np.int64)
    expected = [
        part.vocabulary.index(w) if w in part.vocabulary else UNKNOWN_ID
        for w in words_of(tweet)[:6]
    ]
    assert first.tolist() == expected and first[0] == UNKNOWN_ID
    assert part.meta["params"]["sequence_length"] == 6


def test_words_default_to_25_tokens(cli, tmp_path):
    root = write_leaf_text(tmp_path / "sent140", sentences=True)
    part, _ = partition_of(cli, tmp_path, root, "--text", "words")
    assert part.input_shape == (25,) and part.x_train.shape[1] == 25


def test_hashed_is_todays_bag_of_words(cli, tmp_path):
    root = write_leaf_text(tmp_path / "sent140", sentences=True)
    part, _ = partition_of(cli, tmp_path, root)
    again, _ = partition_of(cli, tmp_path / "again", root, "--text", "hashed")
    assert part.x_train.shape[1] == 1024 and part.vocabulary is None
    assert part.hash == again.hash and "input_shape" not in part.meta
    assert "text" not in part.meta["params"]


@pytest.mark.parametrize(
    "dataset, flags, fragments",
    [
        ("digits", ["--text", "chars"], ["--text chars", "leaf:PATH", "'digits'"]),
        ("digits", ["--sequence-length", "5"], ["--sequence-length", "--text chars or words"]),
        ("numbers", ["--text", "words"], ["--text words", "holds numbers", "drop --text"]),
        ("text", ["--text", "chars", "--vocabulary-size", "9"], ["--vocabulary-size", "words"]),
        ("text", ["--text", "bytes"], ["--text 'bytes'", "hashed, chars, words"]),
        ("text", ["--text", "chars", "--sequence-length", "0"], ["--sequence-length 0"]),
    ],
)
def test_text_options_that_do_not_apply_are_one_line(cli, tmp_path, dataset, flags, fragments):
    if dataset == "numbers":
        from test_leaf import write_leaf

        dataset = f"leaf:{write_leaf(tmp_path / 'femnist')}"
    elif dataset == "text":
        dataset = f"leaf:{write_leaf_text(tmp_path / 'sent140', sentences=True)}"
    result = cli("partition", dataset, *flags, "--out", tmp_path / "p")
    assert_one_line_error(result, *fragments)


def test_the_noise_scheme_cannot_perturb_token_ids(cli, tmp_path):
    root = write_leaf_text(tmp_path / "shakespeare", sentences=False)
    args = ("partition", f"leaf:{root}", "--text", "chars", "--scheme", "noise", "--clients", "2")
    result = cli(*args, "--out", tmp_path / "p")
    assert_one_line_error(result, "--scheme noise", "token ids")
