"""scratchgpt: a GPT built from scratch in PyTorch, readable and fast on the same weights.

The public API is the import block below, listed once and grouped by what a user does with
it. Each name loads on first use (PEP 562), so ``import scratchgpt`` and ``scratchgpt --help``
never import PyTorch; type checkers and editors read the same block, whose ``X as X`` form
marks each name as re-exported.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the public API, one line per name
    from .adapters import (
        load_adapter_model as load_adapter_model,
        save_adapter as save_adapter,
    )
    from .analysis import (
        attention_weights as attention_weights,
        hidden_states as hidden_states,
        layer_statistics as layer_statistics,
    )
    from .checkpoint import (
        load_checkpoint as load_checkpoint,
        save_checkpoint as save_checkpoint,
    )
    from .classifier import (
        TextClassifier as TextClassifier,
    )
    from .config import (
        ClassifierRunConfig as ClassifierRunConfig,
        EncoderConfig as EncoderConfig,
        GPTConfig as GPTConfig,
        LoRAConfig as LoRAConfig,
        RunConfig as RunConfig,
        SamplingConfig as SamplingConfig,
        TrainConfig as TrainConfig,
        load_run_config as load_run_config,
        preset as preset,
    )
    from .data import (
        create_dataloader as create_dataloader,
        load_prepared as load_prepared,
        load_text as load_text,
        prepare as prepare,
    )
    from .data.labelled import (
        LabelledText as LabelledText,
        load_sms_spam as load_sms_spam,
        read_labelled_file as read_labelled_file,
    )
    from .errors import (
        CheckpointError as CheckpointError,
        ConfigError as ConfigError,
        DataError as DataError,
        MissingExtraError as MissingExtraError,
        ScratchGPTError as ScratchGPTError,
        TokenizerError as TokenizerError,
        TrainingError as TrainingError,
    )
    from .evaluation import (
        perplexity as perplexity,
    )
    from .generation import (
        Generator as Generator,
        generate as generate,
        stream as stream,
    )
    from .inference import (
        load_model as load_model,
        saved_template as saved_template,
    )
    from .judge import (
        judge_responses as judge_responses,
    )
    from .lora import (
        LoRALinear as LoRALinear,
        apply_lora as apply_lora,
        export_peft as export_peft,
        merge_lora as merge_lora,
    )
    from .merge import (
        merge_adapter as merge_adapter,
    )
    from .model import (
        GELU as GELU,
        FeedForward as FeedForward,
        GPTModel as GPTModel,
        LayerNorm as LayerNorm,
        MultiHeadAttention as MultiHeadAttention,
        SinusoidalPositionalEncoding as SinusoidalPositionalEncoding,
        TransformerBlock as TransformerBlock,
        add_class_head as add_class_head,
        last_token_logits as last_token_logits,
        num_parameters as num_parameters,
    )
    from .model.encoder import (
        TransformerClassifier as TransformerClassifier,
        TransformerEncoder as TransformerEncoder,
    )
    from .model.teaching import (
        CausalAttention as CausalAttention,
        MultiHeadAttentionWrapper as MultiHeadAttentionWrapper,
        SelfAttention as SelfAttention,
        SelfAttentionNoWeights as SelfAttentionNoWeights,
    )
    from .params import (
        parameter_breakdown as parameter_breakdown,
    )
    from .pretrained import (
        export_hf as export_hf,
        load_gpt2 as load_gpt2,
    )
    from .quantization import (
        quantize as quantize,
    )
    from .serving.app import (
        create_app as create_app,
    )
    from .serving.engine import (
        BatchEngine as BatchEngine,
        Job as Job,
    )
    from .serving.run import (
        serve as serve,
    )
    from .templates import (
        Message as Message,
        Template as Template,
        get_template as get_template,
    )
    from .tokenizers import (
        BPETokenizer as BPETokenizer,
        CharTokenizer as CharTokenizer,
        SimpleTokenizerV1 as SimpleTokenizerV1,
        SimpleTokenizerV2 as SimpleTokenizerV2,
        TiktokenTokenizer as TiktokenTokenizer,
        Tokenizer as Tokenizer,
        get_tokenizer as get_tokenizer,
    )
    from .training import (
        TrainResult as TrainResult,
        train as train,
    )
    from .training.classify import (
        train_classifier as train_classifier,
    )
    from .training.instruct import (
        train_instruct as train_instruct,
    )


def _public_names() -> dict[str, str]:
    """{name: module} of the import block above, read from this file's own source, so the
    list exists once and the lazy loader can never disagree with what type checkers see."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: "." * node.level + (node.module or "")
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


_EXPORTS = _public_names()
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'scratchgpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
