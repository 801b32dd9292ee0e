import pytest

from scratchgpt.tokenizers import (
    CharTokenizer,
    TiktokenTokenizer,
    TokenizerError,
    get_tokenizer,
    load_tokenizer,
)


@pytest.fixture(scope="module")
def gpt2(shared_data):
    return TiktokenTokenizer.from_gpt2_files(
        shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )


def test_gpt2_from_local_files(gpt2, shared_data):
    ids = gpt2.encode("Hello, world. Is this-- a test?")
    assert ids == [15496, 11, 995, 13, 1148, 428, 438, 257, 1332, 30]
    assert gpt2.decode(ids) == "Hello, world. Is this-- a test?"
    verdict = shared_data("the-verdict.txt").read_text(encoding="utf-8")
    assert len(gpt2.encode(verdict)) == 5145
    assert gpt2.vocab_size == 50257 and gpt2.eot_id == 50256


def test_special_text_is_ordinary_unless_allowed(gpt2):
    assert 50256 not in gpt2.encode("a <|endoftext|> b")
    assert gpt2.encode("a<|endoftext|>", allowed_special={"<|endoftext|>"}) == [64, 50256]


def test_gpt2_files_directory_and_save_load(gpt2, shared_data, tmp_path):
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "encoder.json").write_bytes(shared_data("gpt2-encoder.json").read_bytes())
    (d / "vocab.bpe").write_bytes(shared_data("gpt2-vocab.bpe").read_bytes())
    assert get_tokenizer(d).encode("It's 2024!") == gpt2.encode("It's 2024!")
    hf = tmp_path / "hf"  # Hugging Face's names for the same two files
    hf.mkdir()
    (hf / "vocab.json").write_bytes(shared_data("gpt2-encoder.json").read_bytes())
    (hf / "merges.txt").write_bytes(shared_data("gpt2-vocab.bpe").read_bytes())
    assert get_tokenizer(hf).encode("It's 2024!") == gpt2.encode("It's 2024!")
    gpt2.save(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")
    assert again.encode("naïve café 東京 🙂") == gpt2.encode("naïve café 東京 🙂")


def test_mismatched_gpt2_files(shared_data, tmp_path):
    lines = shared_data("gpt2-vocab.bpe").read_text(encoding="utf-8").split("\n")
    lines[1], lines[2] = lines[2], lines[1]
    (tmp_path / "vocab.bpe").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(TokenizerError, match="do not match"):
        TiktokenTokenizer.from_gpt2_files(shared_data("gpt2-encoder.json"), tmp_path / "vocab.bpe")
    with pytest.raises(TokenizerError, match="not found"):
        TiktokenTokenizer.from_gpt2_files(tmp_path / "nope.json", tmp_path / "vocab.bpe")


def test_char_tokenizer_round_trip_and_errors(tmp_path):
    tok = CharTokenizer.from_text("abcabc d\n")
    assert tok.vocab_size == 6 and tok.eot_id is None
    assert tok.decode(tok.encode("cab d\n")) == "cab d\n"
    with pytest.raises(TokenizerError, match=r"'z' \(position 2\)"):
        tok.encode("abz")
    with pytest.raises(TokenizerError, match="outside this tokenizer's vocabulary"):
        tok.decode([9])
    tok.save(tmp_path)
    assert load_tokenizer(tmp_path / "tokenizer.json").encode("dab") == tok.encode("dab")


def test_get_tokenizer_names(tmp_path):
    assert isinstance(get_tokenizer("char", text="xyz"), CharTokenizer)
    with pytest.raises(TokenizerError, match="pass text"):
        get_tokenizer("char")
    with pytest.raises(TokenizerError) as info:
        get_tokenizer("gpt-2")
    assert "gpt2" in str(info.value) and "char" in str(info.value)
    (tmp_path / "tokenizer.json").write_text('{"type": "nope"}')
    with pytest.raises(TokenizerError, match="unknown tokenizer type 'nope'"):
        load_tokenizer(tmp_path)
