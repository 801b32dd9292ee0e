"""Data: named corpora, local files and Hugging Face datasets; token shards; training windows."""

from ..errors import DataError
from .corpora import CORPORA, DOWNLOADS, cache_directory, corpus_path, pydocs_text
from .loaders import RandomWindows, SequentialWindows, WindowLoader
from .shards import PreparedData, is_prepared, load_prepared, prepare, token_dtype
from .sources import iter_documents, load_text, resolve_sources
from .windows import SlidingWindowDataset, create_dataloader, split_ids

__all__ = [
    "CORPORA",
    "DOWNLOADS",
    "DataError",
    "PreparedData",
    "RandomWindows",
    "SequentialWindows",
    "SlidingWindowDataset",
    "WindowLoader",
    "cache_directory",
    "corpus_path",
    "create_dataloader",
    "is_prepared",
    "iter_documents",
    "load_prepared",
    "load_text",
    "prepare",
    "pydocs_text",
    "resolve_sources",
    "split_ids",
    "token_dtype",
]
