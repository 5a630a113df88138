"""Tokenizers rebuilt from a GGUF file's own vocabulary (``tokenizer.ggml.*``).

``transformers`` converts GGUF tokenizers too, but not faithfully for the two models bitmod
ships: Gemma 3's comes out at ~2.3 characters a token (perplexity ~314), and SmolLM2's loses
its digit splitting and adds a BOS the file says not to add. The file holds everything needed,
so the tokenizer is rebuilt here with the ``tokenizers`` library, following llama.cpp (the
reference implementation of GGUF):

* ``tokenizer.ggml.model == "llama"`` (SentencePiece BPE, Gemma): the text's spaces become
  ``▁`` (a ``▁`` is prepended only if ``add_space_prefix``), then pairs of adjacent pieces are
  merged greedily, highest score of the merged piece first; characters outside the
  vocabulary fall back to ``<0xNN>`` byte tokens. As a BPE model: the merges are every split
  ``(a, b)`` of every normal piece ``a + b`` with both halves in the vocabulary, ordered by the
  merged piece's score (the construction of ``transformers``' SentencePiece converter).
  User-defined pieces (type 4: runs of newlines or spaces, HTML tags) are matched in the raw
  text before BPE, as llama.cpp does.
* ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE, SmolLM2): the file's merges, GPT-2's
  byte-to-unicode mapping, and the pre-tokenizer ``tokenizer.ggml.pre`` names (``smollm``
  splits every digit first; ``gpt2``/``default`` do not).

The BOS token is prepended by the evaluation, not the tokenizer: :func:`gguf_bos_id` says
whether the file asks for one (``tokenizer.ggml.add_bos_token``) and which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bitmod.compiler.llm.gguf_file import GGUFError, GGUFHeader

__all__ = ["TextTokenizer", "gguf_bos_id", "gguf_tokenizer"]

_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_BYTE_LEVEL_PRE = ("gpt2", "default", "smollm")


@dataclass
class TextTokenizer:
    """Text to token ids and back, without special tokens (BOS is the evaluation's business)."""

    backend: Any  # tokenizers.Tokenizer, or a transformers tokenizer for HF directories
    vocab_size: int
    description: str

    def encode(self, text: str) -> list[int]:
        if hasattr(self.backend, "encode_batch"):  # tokenizers.Tokenizer
            return list(self.backend.encode(text, add_special_tokens=False).ids)
        return list(self.backend(text, add_special_tokens=False)["input_ids"])

    def encode_documents(self, documents: Sequence[str]) -> list[list[int]]:
        if hasattr(self.backend, "encode_batch"):
            encodings = self.backend.encode_batch(list(documents), add_special_tokens=False)
            return [list(e.ids) for e in encodings]
        return [self.encode(d) for d in documents]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.backend.decode(list(ids)))


def gguf_bos_id(header: GGUFHeader) -> int | None:
    """The BOS id to prepend, or None when the file says not to (``add_bos_token``)."""
    if not bool(header.get("tokenizer.ggml.add_bos_token", False)):
        return None
    bos = header.get("tokenizer.ggml.bos_token_id")
    return None if bos is None else int(bos)


def gguf_tokenizer(header: GGUFHeader) -> TextTokenizer:
    """The tokenizer of a GGUF file (see the module docstring)."""
    model = header.require("tokenizer.ggml.model")
    tokens = header.require("tokenizer.ggml.tokens")
    types = header.get("tokenizer.ggml.token_type")
    types = np.full(len(tokens), _NORMAL) if types is None else np.asarray(types)
    if len(types) != len(tokens):
        raise GGUFError(f"{header.path}: {len(types)} token types for {len(tokens)} tokens")
    if model == "llama":
        scores = header.require("tokenizer.ggml.scores")
        backend = _sentencepiece_bpe(header, tokens, np.asarray(scores), types)
        description = "SentencePiece BPE from the GGUF vocabulary and scores"
    elif model == "gpt2":
        pre = header.get("tokenizer.ggml.pre", "default")
        if pre not in _BYTE_LEVEL_PRE:
            raise GGUFError(
                f"{header.path}: GGUF pre-tokenizer {pre!r} is not supported (supported: "
                f"{', '.join(_BYTE_LEVEL_PRE)})"
            )
        merges = header.require("tokenizer.ggml.merges")
        backend = _byte_level_bpe(tokens, merges, types, digits=pre == "smollm")
        description = f"byte-level BPE ({pre}) from the GGUF vocabulary and merges"
    else:
        raise GGUFError(
            f"{header.path}: GGUF tokenizer model {model!r} is not supported (llama, gpt2)"
        )
    return TextTokenizer(backend, len(tokens), description)


def _added_tokens(tokens: Sequence[str], types: np.ndarray) -> tuple[list[Any], list[Any]]:
    from tokenizers import AddedToken

    user = [
        AddedToken(tokens[i], normalized=False, special=False)
        for i in np.flatnonzero(types == _USER_DEFINED)
    ]
    control = [
        AddedToken(tokens[i], normalized=False, special=True)
        for i in np.flatnonzero(types == _CONTROL)
    ]
    return user, control


def _sentencepiece_bpe(
    header: GGUFHeader, tokens: Sequence[str], scores: np.ndarray, types: np.ndarray
) -> Any:
    from tokenizers import Tokenizer, decoders, normalizers
    from tokenizers.models import BPE

    if len(scores) != len(tokens):
        raise GGUFError(f"{header.path}: {len(scores)} token scores for {len(tokens)} tokens")
    vocab = {token: index for index, token in enumerate(tokens)}
    mergeable = {tokens[i] for i in np.flatnonzero(types == _NORMAL)}
    merges: list[tuple[float, int, int, str, str]] = []
    for piece in mergeable:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                merges.append(
                    (-float(scores[vocab[piece]]), vocab[left], vocab[right], left, right)
                )
    merges.sort()
    unknown = header.get("tokenizer.ggml.unknown_token_id")
    model = BPE(
        vocab,
        [(left, right) for *_, left, right in merges],
        unk_token=None if unknown is None else tokens[int(unknown)],
        fuse_unk=True,
        byte_fallback=True,
    )
    tokenizer = Tokenizer(model)
    steps = [normalizers.Replace(" ", "▁")]
    if header.get("tokenizer.ggml.add_space_prefix", False):
        steps.insert(0, normalizers.Prepend("▁"))
    tokenizer.normalizer = normalizers.Sequence(steps)
    decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if header.get("tokenizer.ggml.add_space_prefix", False):
        decode.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(decode)
    user, control = _added_tokens(tokens, types)
    tokenizer.add_tokens(user)
    tokenizer.add_special_tokens(control)
    return tokenizer


def _byte_level_bpe(
    tokens: Sequence[str], merges: Sequence[str], types: np.ndarray, *, digits: bool
) -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    tokenizer = Tokenizer(BPE(vocab, pairs))  # type: ignore[arg-type]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if digits
        else byte_level
    )
    tokenizer.decoder = decoders.ByteLevel()
    user, control = _added_tokens(tokens, types)
    tokenizer.add_tokens(user)
    tokenizer.add_special_tokens(control)
    return tokenizer
