"""WordPiece token ids as UDA makes them, computed once and cached on disk.

A review becomes [CLS] + its last L-2 WordPiece tokens + [SEP], padded with id 0 to L (UDA's
trunc_keep_right). The tokenizer is transformers' BERT WordPiece over the folder's vocab.txt,
lower-cased with accents stripped (uncased BERT), in its Rust ("fast") implementation: it gives the
same ids as the Python BertTokenizer and UDA's FullTokenizer (tests/test_text_data.py checks this on
mixed text) about 6x faster, which matters for the 165k reviews of a run.

The cache is one .npz per input fingerprint (vocab, case, L, augmentation, every text in order), in
`cache_dir`: a second run with the same inputs reads it instead of augmenting and tokenizing again.
"""
import hashlib
import json
import os

import numpy as np

# Raised when what is cached for the same inputs changes (2: paraphrases chosen on byte lengths, with the
# "replaced" mask).
TOKEN_CACHE_FORMAT = "influence_ssl.imdb_tokens/2"
_CHUNK = 2000


class WordPiece:
    """BERT's uncased WordPiece tokenizer of a vocab.txt."""

    def __init__(self, vocab_path, lower_case=True):
        from transformers import BertTokenizerFast

        self.vocab_path, self.lower_case = vocab_path, lower_case
        self._tok = BertTokenizerFast(vocab_file=vocab_path, do_lower_case=lower_case)
        self.cls_id, self.sep_id = self._tok.cls_token_id, self._tok.sep_token_id

    def words(self, text):
        """BERT's basic tokenization (clean, lower-case, strip accents, split punctuation): UDA's
        tokenize_to_word, the words its TF-IDF augmentation replaces."""
        normalized = self._tok.backend_tokenizer.normalizer.normalize_str(text)
        return [w for w, _ in self._tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]

    def encode(self, texts, seq_length):
        """[N, seq_length] int32: [CLS] + the last seq_length-2 tokens + [SEP], 0-padded."""
        if seq_length < 3:
            raise ValueError(f"seq_length must be >= 3, got {seq_length}.")
        out = np.zeros((len(texts), seq_length), np.int32)
        keep = seq_length - 2
        for start in range(0, len(texts), _CHUNK):
            pieces = self._tok(list(texts[start:start + _CHUNK]), add_special_tokens=False)["input_ids"]
            for row, ids in enumerate(pieces, start):
                ids = ids[-keep:] if len(ids) > keep else ids
                out[row, :len(ids) + 2] = [self.cls_id, *ids, self.sep_id]
        return out

    def fingerprint(self):
        with open(self.vocab_path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()


def texts_fingerprint(digest, texts):
    """Feed a list of texts into a hashlib digest, unambiguously (length-prefixed)."""
    digest.update(f"[{len(texts)}]".encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(f"{len(data)}:".encode())
        digest.update(data)


def cached_arrays(cache_dir, key, text_lists, compute, log=print):
    """compute() -> {name: array}, stored under a fingerprint of `key` (a JSON-able dict) and of
    `text_lists` (lists of str); later calls with the same inputs load the file instead."""
    digest = hashlib.sha256(json.dumps({"format": TOKEN_CACHE_FORMAT, **key}, sort_keys=True).encode())
    for texts in text_lists:
        texts_fingerprint(digest, texts)
    path = os.path.join(cache_dir, f"imdb_tokens_{digest.hexdigest()[:20]}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            log(f"token ids from the cache {path}")
            return {name: f[name] for name in f.files}
    arrays = compute()
    os.makedirs(cache_dir, exist_ok=True)
    partial = f"{path}.{os.getpid()}.tmp.npz"  # written whole, then renamed: no half file is ever read
    np.savez(partial, **arrays)
    os.replace(partial, path)
    log(f"token ids cached in {path}")
    return arrays
