"""How to choose each generated token: one typed, validated dataclass.

Generation turns the last position's logits into a choice (Raschka ch. 5.3): a repetition
penalty (Keskar et al. 2019), a temperature, then top-k and top-p filtering (Holtzman et al.
2020) before sampling. :func:`scratchgpt.generation.stream` takes these settings as one
``SamplingConfig`` or as keywords, from which it builds one, so every value is checked here
and only here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .validate import check_field_types, option


@dataclass(frozen=True)
class SamplingConfig:
    """The sampling settings of :func:`~scratchgpt.generation.stream` and ``generate``.

    The defaults sample from the model's own distribution, unchanged.
    """

    temperature: float = option(
        "0 is greedy (always the most likely token); below 1 sharpens, above 1 flattens", 1.0
    )
    top_k: int | None = option("sample only among the k most likely tokens (none: all)", None)
    top_p: float | None = option(
        "sample only in the nucleus of probability mass p, 0 < p <= 1 (none: all)", None
    )
    repetition_penalty: float = option(
        "above 1 makes tokens already in the text less likely (1: off)", 1.0
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if not self.temperature >= 0:
            raise ConfigError(f"temperature={self.temperature}: must be >= 0 (0 means greedy)")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k={self.top_k}: must be >= 1, or None to keep every token")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p={self.top_p}: must be in (0, 1], or None to keep every token")
        if not self.repetition_penalty > 0:
            raise ConfigError(
                f"repetition_penalty={self.repetition_penalty}: must be > 0 (1 is off, > 1 "
                "discourages repeats)"
            )
