"""IMDb for UDA's text experiment: reviews (raw aclImdb or TFDS), split, paraphrases, cached token ids."""
from influence_ssl.data.text.imdb import (
    ID_LIST,
    LABELS,
    UDA_LABELED,
    ImdbCorpus,
    TextSplit,
    TextSSLData,
    check_acl_imdb,
    clean_review,
    imdb_split,
    imdb_ssl_data,
    prepared_imdb_builder,
    read_acl_imdb,
    read_tfds_imdb,
)
from influence_ssl.data.text.paraphrases import ParaphraseFileError, read_paraphrases, use_paraphrase
from influence_ssl.data.text.tokens import WordPiece, cached_arrays

__all__ = ["ID_LIST", "LABELS", "UDA_LABELED", "ImdbCorpus", "TextSplit", "TextSSLData", "check_acl_imdb",
           "clean_review", "imdb_split", "imdb_ssl_data", "prepared_imdb_builder", "read_acl_imdb", "read_tfds_imdb",
           "ParaphraseFileError", "read_paraphrases", "use_paraphrase", "WordPiece", "cached_arrays"]
