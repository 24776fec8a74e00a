"""Back-translated paraphrases in UDA's format (`unsup_in/sample_0.9/para/para_0.txt`).

One stripped line per review of the unlabeled set, in its order (the unsup_in IDs). A paraphrase
replaces its original only if both have at least 10 characters and their lengths differ by at most
50% of the original's (UDA's replace_with_length_check); otherwise the "augmented" view is the
original text.
"""
MIN_CHARS = 10
MAX_LENGTH_CHANGE = 0.5


class ParaphraseFileError(ValueError):
    """The back-translation file cannot be used with this unlabeled set (one-line message)."""


def use_paraphrase(original, paraphrase):
    """UDA's rule for whether `paraphrase` replaces `original`."""
    if len(original) < MIN_CHARS or len(paraphrase) < MIN_CHARS:
        return False
    return abs(len(paraphrase) - len(original)) / len(original) <= MAX_LENGTH_CHANGE


def read_paraphrases(path, originals):
    """The augmented view of every original text (list of str, same order), from the file at `path`.

    Returns (texts, fraction of originals replaced). Raises ParaphraseFileError if the file is
    missing or its line count is not len(originals)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f.read().split("\n")]
    except OSError as e:
        raise ParaphraseFileError(f"--bt_file={path!r} cannot be read: {e.strerror or e}.") from None
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if len(lines) != len(originals):
        raise ParaphraseFileError(
            f"--bt_file={path!r} has {len(lines)} lines but the unlabeled set has {len(originals)} reviews: it "
            "must hold one paraphrase per unlabeled review, in the unlabeled order (see --export_unlabeled_text).")
    used = [use_paraphrase(o, p) for o, p in zip(originals, lines)]
    texts = [p if u else o for o, p, u in zip(originals, lines, used)]
    return texts, sum(used) / max(len(used), 1)
