"""Real labelled corpora for demos and tests, and how to deal them out to data owners."""

from fedtune.datasets.stdlib_corpus import (
    DEFAULT_FAMILIES,
    Corpus,
    CorpusRecord,
    NonIidSplit,
    OwnerShard,
    build_corpus,
    label_counts,
    split_non_iid,
    write_split,
)

__all__ = [
    "DEFAULT_FAMILIES",
    "Corpus",
    "CorpusRecord",
    "NonIidSplit",
    "OwnerShard",
    "build_corpus",
    "label_counts",
    "split_non_iid",
    "write_split",
]
