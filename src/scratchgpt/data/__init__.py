"""Data: named corpora, local files and Hugging Face datasets; token shards; training windows;
labelled texts for classification."""

from ..errors import DataError
from .corpora import CORPORA, DOWNLOADS, cache_directory, corpus_path, pydocs_text
from .labelled import (
    LabelledText,
    download_sms_spam,
    load_sms_spam,
    read_labelled_file,
    split_examples,
    toy_sentiment_examples,
)
from .loaders import RandomWindows, SequentialWindows, WindowLoader
from .shards import PreparedData, is_prepared, load_prepared, prepare, token_dtype
from .sources import iter_documents, load_text, resolve_sources
from .windows import SlidingWindowDataset, create_dataloader, split_ids

__all__ = [
    "CORPORA",
    "DOWNLOADS",
    "DataError",
    "LabelledText",
    "PreparedData",
    "RandomWindows",
    "SequentialWindows",
    "SlidingWindowDataset",
    "WindowLoader",
    "cache_directory",
    "corpus_path",
    "create_dataloader",
    "download_sms_spam",
    "is_prepared",
    "iter_documents",
    "load_prepared",
    "load_sms_spam",
    "load_text",
    "prepare",
    "pydocs_text",
    "read_labelled_file",
    "resolve_sources",
    "split_examples",
    "split_ids",
    "token_dtype",
    "toy_sentiment_examples",
]
