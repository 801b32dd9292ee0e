"""Int8 weights (scratchgpt.quantization): close to the float model, refused where they must be."""

import importlib.util
import os
import sys

import pytest
import torch

from scratchgpt import quantization
from scratchgpt.checkpoint import CheckpointError, save_checkpoint
from scratchgpt.cli import main
from scratchgpt.config import preset
from scratchgpt.errors import MissingExtraError
from scratchgpt.generation import Generator, generate
from scratchgpt.model import GPTModel
from scratchgpt.quantization import is_quantized, quantize
from scratchgpt.tokenizers import CharTokenizer

if importlib.util.find_spec("torchao") is None:  # the quant extra; the test extra has it
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("torchao is missing: pip install -e '.[test]'", pytrace=False)
    pytest.skip("int8 needs torchao: pip install -e '.[quant]'", allow_module_level=True)

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 4


@pytest.fixture()
def tok():
    return CharTokenizer.from_text(TEXT)


def tiny(tok, **overrides):
    torch.manual_seed(0)
    return GPTModel(preset("tiny", vocab_size=tok.vocab_size, context_length=32, **overrides))


def test_int8_logits_are_close_to_the_float_model(tok):
    model = tiny(tok).eval()
    ids = torch.tensor([tok.encode(TEXT[:32])])  # (1, 32)
    with torch.inference_mode():
        ref = model(ids)
        reference = tiny(tok).eval().to(torch.bfloat16)(ids).float()
    quantize(model)
    assert is_quantized(model) and type(model.out_head.weight.data).__name__ != "Tensor"
    assert model.tok_emb.weight.dtype == torch.bfloat16  # the embedding is read, not quantized
    with torch.inference_mode():
        got = model(ids).float()
    # int8 rounding of weights with a spread of 0.02: within a few percent of the logits' range
    scale = ref.abs().max()
    assert (got - ref).abs().max() < 0.05 * scale
    assert (got - ref).abs().max() < 4 * (reference - ref).abs().max() + 0.01 * scale


def test_a_tied_head_gets_its_own_int8_copy(tok):
    model = tiny(tok)
    assert model.out_head.weight is model.tok_emb.weight
    quantize(model)
    assert type(model.tok_emb.weight.data) is torch.Tensor
    assert type(model.out_head.weight.data) is not torch.Tensor


def test_bad_requests_are_refused(tok, tmp_path):
    model = tiny(tok)
    with pytest.raises(ValueError, match="choose one of int8"):
        quantize(model, "int4")
    quantize(model)
    with pytest.raises(ValueError, match="already quantized"):
        quantize(model)
    with pytest.raises(CheckpointError, match="save the float model"):
        save_checkpoint(tmp_path / "ck", model, tok)
    assert not (tmp_path / "ck").exists()


def test_missing_torchao_names_the_extra(tok, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # import now fails
    with pytest.raises(MissingExtraError, match=r"scratchgpt\[quant\]"):
        quantize(tiny(tok))


def test_the_cli_knows_every_quantization_and_weight_format():
    from scratchgpt import inference
    from scratchgpt.cli import generate as generate_cli

    assert generate_cli.QUANTIZATIONS == quantization.QUANTIZATIONS
    assert generate_cli.DTYPES == inference.DTYPES


@pytest.mark.slow
def test_compiled_int8_decoding_matches_eager_int8(tok):
    model = quantize(tiny(tok).eval())
    gen = Generator(model, tok)
    eager = gen.generate_text("the ", 24, temperature=0)
    compiled = Generator(model, tok, compile=True)
    assert compiled.generate_text("the ", 24, temperature=0) == eager
    idx = torch.tensor([tok.encode("the c")])
    cached = generate(model, idx, 20, temperature=0)
    assert torch.equal(cached, generate(model, idx, 20, temperature=0, use_cache=False))


def test_cli_quantize_flag(tok, tmp_path, capsys):
    ck = save_checkpoint(tmp_path / "ck", tiny(tok), tok)
    args = ["--checkpoint", str(ck)]
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    assert main(["eval", *args, "--data", str(data)]) == 0
    float_out = capsys.readouterr().out
    assert main(["eval", *args, "--data", str(data), "--quantize", "int8"]) == 0
    int8_out = capsys.readouterr().out
    ppl = [float(out.split("perplexity ")[1].split()[0]) for out in (float_out, int8_out)]
    assert abs(ppl[1] / ppl[0] - 1) < 0.05
    gen = ["generate", *args, "--prompt", "the ", "--max-tokens", "8", "--temperature", "0"]
    assert main([*gen, "--quantize", "int8"]) == 0
    expected = Generator(quantize(tiny(tok).eval()), tok).generate_text("the ", 8, temperature=0)
    assert capsys.readouterr().out == "the " + expected + "\n"
    assert main([*gen, "--quantize", "int8", "--dtype", "float16"]) == 2
    assert "drop --dtype float16" in capsys.readouterr().err
