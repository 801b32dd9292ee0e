"""Data: named corpora and text files, and the sliding-window dataset over their tokens."""

from .corpora import CORPORA, load_text, pydocs_text
from .windows import DataError, SlidingWindowDataset, create_dataloader, split_ids

__all__ = [
    "CORPORA",
    "DataError",
    "SlidingWindowDataset",
    "create_dataloader",
    "load_text",
    "pydocs_text",
    "split_ids",
]
