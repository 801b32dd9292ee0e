"""Configuration: typed, frozen dataclasses, read from plain data at one boundary.

- :mod:`.model`: :class:`GPTConfig` (the model's shape), its presets, model config files;
- :mod:`.sections` and :mod:`.run`: the run config's sections and :class:`RunConfig`,
  YAML/JSON files and ``section.field`` overrides;
- :mod:`.sampling`: :class:`SamplingConfig`, how generation picks each token;
- :mod:`.encoder`: :class:`EncoderConfig`, the shape of the encoder text classifier;
- :mod:`.classifier`: :class:`ClassifierRunConfig`, a classifier run (encoder, data, training);
- :mod:`.convert`: other projects' configs (``scratchgpt config convert``);
- :mod:`.validate`: :func:`from_data`, where plain data is coerced (by pydantic) and bad
  values become one-line messages, and :func:`option`, which puts each field's help on it.

The errors live in :mod:`scratchgpt.errors`; ``ConfigError`` and ``MissingExtraError`` are
importable from here too, as they were before.
"""

from ..errors import ConfigError, MissingExtraError
from .classifier import (
    BACKBONES,
    CLASSIFIER_TRAINING,
    GPT_CLASSIFIER_TRAINING,
    ClassifierDataConfig,
    ClassifierRunConfig,
    load_classifier_config,
)
from .convert import ALIASES, convert_config
from .encoder import EncoderConfig
from .finetune import TRAINABLE_HELP, LoRAConfig, parse_trainable
from .instruct import INSTRUCT_TRAINING, InstructDataConfig, InstructRunConfig
from .model import (
    ATTENTION_IMPLS,
    POS_ENCODINGS,
    PRESETS,
    WEIGHT_INITS,
    AttentionImpl,
    GPTConfig,
    PosEncoding,
    WeightInit,
    load_model_config,
    preset,
    preset_fields,
)
from .run import SECTIONS, ModelSource, RunConfig, apply_overrides, load_run_config
from .sampling import SamplingConfig
from .sections import (
    LOADERS,
    PRECISIONS,
    DataConfig,
    Loader,
    Precision,
    TokenizerConfig,
    TrainConfig,
)
from .validate import (
    check_field_types,
    from_data,
    option,
    read_config_file,
)

__all__ = [
    "ALIASES",
    "ATTENTION_IMPLS",
    "BACKBONES",
    "CLASSIFIER_TRAINING",
    "GPT_CLASSIFIER_TRAINING",
    "INSTRUCT_TRAINING",
    "LOADERS",
    "POS_ENCODINGS",
    "PRECISIONS",
    "PRESETS",
    "SECTIONS",
    "TRAINABLE_HELP",
    "WEIGHT_INITS",
    "AttentionImpl",
    "ClassifierDataConfig",
    "ClassifierRunConfig",
    "ConfigError",
    "DataConfig",
    "EncoderConfig",
    "GPTConfig",
    "InstructDataConfig",
    "InstructRunConfig",
    "LoRAConfig",
    "Loader",
    "MissingExtraError",
    "ModelSource",
    "PosEncoding",
    "Precision",
    "RunConfig",
    "SamplingConfig",
    "TokenizerConfig",
    "TrainConfig",
    "WeightInit",
    "apply_overrides",
    "check_field_types",
    "convert_config",
    "from_data",
    "load_classifier_config",
    "load_model_config",
    "load_run_config",
    "option",
    "parse_trainable",
    "preset",
    "preset_fields",
    "read_config_file",
]
