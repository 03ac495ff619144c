"""Text samples as token sequences (`fl partition --text chars|words`), or as today's hashed bag
of words (`--text hashed`, the default, done by the loader).

- chars: each character's id in LEAF's Shakespeare alphabet (the 80 characters of LEAF's
  models/utils/language_utils.py), after the reserved PAD and UNKNOWN;
- words: LEAF's Sent140 split of a line into words and punctuation, lowercased; the vocabulary
  is the training rows' words, most frequent first (ties alphabetical), at most vocabulary_size
  ids in all.

A sequence keeps its first T tokens and is padded with PAD after its last (flcli.data.sample_format
says which ids are reserved). T is --sequence-length, or else for chars the longest text (train
and test rows: none is cut), for words 25.
"""

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flcli.data.sample_format import (
    DEFAULT_VOCABULARY_SIZE,
    DEFAULT_WORDS_LENGTH,
    PAD_ID,
    RESERVED,
    UNKNOWN_ID,
)
from flcli.errors import FLError

LEAF_ALPHABET = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
CHAR_VOCABULARY = (*RESERVED, *LEAF_ALPHABET)
WORD = re.compile(r"[\w']+|[.,!?;]")
CHUNK = 65_536  # texts encoded at once, to bound the fixed-width copy of them


@dataclass(frozen=True)
class TextOptions:
    """fl partition's --text, --sequence-length and --vocabulary-size."""

    mode: str = "hashed"
    sequence_length: int | None = None
    vocabulary_size: int | None = None

    def check(self) -> None:
        """Refuse the options that do not apply to the mode."""
        if self.mode == "hashed" and self.sequence_length is not None:
            raise FLError("--sequence-length applies to --text chars or words; add one of them")
        if self.mode != "words" and self.vocabulary_size is not None:
            raise FLError(f"--vocabulary-size applies to --text words, not --text {self.mode}")

    @property
    def as_sequences(self) -> bool:
        return self.mode != "hashed"


@dataclass(frozen=True)
class Encoded:
    """Token sequences: ids [n, T] (int64) and the vocabulary that names them."""

    ids: np.ndarray
    vocabulary: tuple[str, ...]


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower())


def word_vocabulary(token_lists: Sequence[Sequence[str]], size: int) -> tuple[str, ...]:
    """PAD, UNKNOWN, then the words of token_lists, most frequent first (ties alphabetical):
    size in all, or fewer when they hold fewer words."""
    counts = Counter(word for tokens in token_lists for word in tokens)
    ranked = sorted(counts, key=lambda word: (-counts[word], word))
    return (*RESERVED, *ranked[: size - len(RESERVED)])


def encode_tokens(token_lists: Sequence[Sequence[str]], vocabulary, length: int) -> np.ndarray:
    """[n, length] int64 ids: each list's first length tokens, UNKNOWN_ID for a token outside
    the vocabulary, then PAD_ID."""
    index = {token: i for i, token in enumerate(vocabulary)}
    ids = np.full((len(token_lists), length), PAD_ID, dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        kept = tokens[:length]
        ids[row, : len(kept)] = [index.get(token, UNKNOWN_ID) for token in kept]
    return ids


def encode_chars(texts: Sequence[str], length: int) -> np.ndarray:
    """[n, length >= 1] int64 ids of the characters of texts in CHAR_VOCABULARY (vectorized: the
    texts as fixed-width code points, looked up in a table)."""
    table = np.full(max(map(ord, LEAF_ALPHABET)) + 1, UNKNOWN_ID, dtype=np.int64)
    for i, char in enumerate(CHAR_VOCABULARY[len(RESERVED) :], start=len(RESERVED)):
        table[ord(char)] = i
    ids = np.empty((len(texts), length), dtype=np.int64)
    positions = np.arange(length)
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        points = np.array(chunk, dtype=f"<U{length}").view(np.uint32).reshape(len(chunk), length)
        known = points < len(table)
        block = np.where(known, table[np.where(known, points, 0)], UNKNOWN_ID)
        lengths = np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk))
        block[positions[None, :] >= lengths[:, None]] = PAD_ID
        ids[start : start + len(chunk)] = block
    return ids


def decode(ids: np.ndarray, vocabulary: Sequence[str]) -> list[list[str]]:
    """The tokens of each row of ids, its padding left out."""
    return [[vocabulary[i] for i in row if i != PAD_ID] for row in np.asarray(ids, dtype=np.int64)]


def encode_texts(texts: Sequence[str], is_train: np.ndarray, options: TextOptions) -> Encoded:
    """texts as token sequences; the word vocabulary is built from the rows is_train marks."""
    if options.mode == "chars":
        length = options.sequence_length or max(1, max(map(len, texts), default=1))
        return Encoded(encode_chars(texts, length), CHAR_VOCABULARY)
    size = options.vocabulary_size or DEFAULT_VOCABULARY_SIZE
    words = [words_of(text) for text in texts]
    vocabulary = word_vocabulary([words[i] for i in np.flatnonzero(is_train)], size)
    length = options.sequence_length or DEFAULT_WORDS_LENGTH
    return Encoded(encode_tokens(words, vocabulary, length), vocabulary)
