"""Back-translated paraphrases in UDA's format (`unsup_in/sample_0.9/para/para_0.txt`).

One stripped line per review of the unlabeled set, in its order (the unsup_in IDs, UDA's train_id_list.txt
order). A paraphrase replaces its original only if both have at least 10 bytes and their lengths differ by at
most 50% of the original's (UDA's replace_with_length_check); otherwise the "augmented" view is the original
text.

Lengths are UTF-8 bytes and lines are split at b"\\n" alone: UDA ran this under Python 2, where both texts are
byte strings (the original from its csv file, the paraphrase from reading this file) and readlines() splits
at "\\n" only. A review with accented letters is longer in bytes than in characters, so counting characters
would accept or refuse other paraphrases than UDA did; and Python 3's universal newlines would split a line
at a lone "\\r" and shift every later line onto the wrong review.
"""
import numpy as np

from influence_ssl.data.text.imdb import utf8_length

MIN_BYTES = 10
MAX_LENGTH_CHANGE = 0.5
# What Python 2's str.strip() removes from a byte string (C isspace), and no other (unicode) spaces.
_ASCII_SPACE = b" \t\n\r\x0b\x0c"


class ParaphraseFileError(ValueError):
    """The back-translation file cannot be used with this unlabeled set (one-line message)."""


def use_paraphrase(original, paraphrase):
    """UDA's rule for whether `paraphrase` replaces `original` (both str), on their UTF-8 byte lengths."""
    n_original, n_paraphrase = utf8_length(original), utf8_length(paraphrase)
    if n_original < MIN_BYTES or n_paraphrase < MIN_BYTES:
        return False
    return abs(n_paraphrase - n_original) / n_original <= MAX_LENGTH_CHANGE


def _lines(path):
    """The file's lines as UDA read them: split at b"\\n", ASCII-stripped, decoded; the final newline's empty
    line dropped. ParaphraseFileError (one line) if it cannot be read or is not UTF-8."""
    try:
        with open(path, "rb") as f:
            raw = f.read().split(b"\n")
    except OSError as e:
        raise ParaphraseFileError(f"--bt_file={path!r} cannot be read: {e.strerror or e}.") from None
    if raw and raw[-1] == b"":
        raw.pop()  # the final newline
    lines = []
    for number, line in enumerate(raw, 1):
        try:
            lines.append(line.strip(_ASCII_SPACE).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ParaphraseFileError(f"--bt_file={path!r}: line {number} is not UTF-8 ({e.reason}).") from None
    return lines


def read_paraphrases(path, originals):
    """The augmented view of every original text (list of str, same order), from the file at `path`.

    Returns (texts, replaced): texts a list of str like `originals`; replaced a bool array [len(originals)],
    True where the paraphrase replaced its original. Raises ParaphraseFileError if the file is missing or its
    line count is not len(originals)."""
    lines = _lines(path)
    if len(lines) != len(originals):
        raise ParaphraseFileError(
            f"--bt_file={path!r} has {len(lines)} lines but the unlabeled set has {len(originals)} reviews: it "
            "must hold one paraphrase per unlabeled review, in the unlabeled order (see --export_unlabeled_text).")
    used = np.array([use_paraphrase(o, p) for o, p in zip(originals, lines)], bool)
    texts = [p if u else o for o, p, u in zip(originals, lines, used)]
    return texts, used
