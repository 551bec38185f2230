"""Training data: chat-format masks, SFT records, CP tokenize/cache/mix/split, packing without cross-document
leakage (packed losses equal unpacked ones on the tiny Llama), rank sharding and resume."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from conftest import CORPUS, LLAMA3_VOCAB, needs_shared, write_jsonl

from taide.chat.formats import LLAMA3_TEMPLATE, Llama3Format, TemplateFormat
from taide.errors import ChatFormatError, InputError
from taide.train.packing import IGNORE, CPDataset, DocumentTokenizer, Loader, collate, forward_packed, tokenize_source
from taide.train.sft_data import SFTDataset, load_sft

CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "第一題：1+1=?"},
                {"role": "assistant", "content": "2。"},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi! 你好"}]
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def codec(tiny_tokenizer):
    from taide.models.loading import HFCodec

    return HFCodec(tiny_tokenizer)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def chatml_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=350, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")


def spans(ids, mask):
    """The contiguous runs of ids where the mask is True, as (start, stop, ids)."""
    out, start = [], None
    for i, m in enumerate([*mask, False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i, ids[start:i]))
            start = None
    return out


# ---- chat-format masks ----

def test_llama3_mask_marks_exactly_the_assistant_turns(codec, tiny_tokenizer):
    fmt = Llama3Format()
    [(ids, mask)] = fmt.training_sequences(CONVERSATION, codec)
    assert ids == fmt.render_ids(CONVERSATION, codec, add_generation_prompt=False)
    found = spans(ids, mask)
    assert [tiny_tokenizer.decode(s[2]) for s in found] == ["2。<|eot_id|>", "Hi! 你好<|eot_id|>"]
    # each span starts right after the assistant header and its "\n\n", and ends with that turn's <|eot_id|>
    for (start, stop, _), i in zip(found, (2, 4)):
        assert tiny_tokenizer.decode(ids[:start]) == fmt.render_text(CONVERSATION[:i], add_generation_prompt=True)
        assert tiny_tokenizer.decode(ids[:stop]) == fmt.render_text(CONVERSATION[:i + 1], add_generation_prompt=False)


@pytest.mark.slow
@needs_shared
def test_llama3_mask_on_the_real_vocab_agrees_with_prefix_rendering():
    from transformers import AutoTokenizer

    from taide.models.loading import HFCodec

    tokenizer = AutoTokenizer.from_pretrained(LLAMA3_VOCAB, gguf_file="ggml-vocab-llama-bpe.gguf")
    codec, fmt = HFCodec(tokenizer), Llama3Format()
    [(ids, mask)] = fmt.training_sequences(CONVERSATION, codec)
    assert [tokenizer.decode(s[2]) for s in spans(ids, mask)] == ["2。<|eot_id|>", "Hi! 你好<|eot_id|>"]
    # the model's own template, turn by turn, finds the same: Llama 3 tokenizes "\n\n" alone as in context
    own = TemplateFormat(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>")
    assert own.training_sequences(CONVERSATION, codec) == [(ids, mask)]


def test_llama3_template_trains_as_the_coded_format_on_the_tiny_vocab(codec):
    own = TemplateFormat(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>")
    assert own.training_sequences(CONVERSATION, codec) == Llama3Format().training_sequences(CONVERSATION, codec)


def test_chatml_mask_marks_content_and_im_end_not_the_newline(chatml_tokenizer):
    from taide.models.loading import HFCodec

    codec, fmt = HFCodec(chatml_tokenizer), TemplateFormat(SMOLLM2_TEMPLATE, "<|im_start|>", "<|im_end|>")
    messages = CONVERSATION[1:]  # the template adds its default system prompt
    [(ids, mask)] = fmt.training_sequences(messages, codec)
    assert ids == fmt.render_ids(messages, codec, add_generation_prompt=False)
    found = spans(ids, mask)
    assert [chatml_tokenizer.decode(s[2]) for s in found] == ["2。<|im_end|>", "Hi! 你好<|im_end|>"]
    header = fmt.render_ids(messages[:1], codec, add_generation_prompt=True)
    assert found[0][0] == len(header) and chatml_tokenizer.decode(ids[found[0][1]]) == "\n"
    assert found[1][1] == len(ids) - 1  # the last "\n" is not learned


def test_a_template_that_renders_earlier_turns_differently_trains_each_answer_in_its_own_context(codec,
                                                                                                 tiny_tokenizer):
    """This template closes a message with <|eot_id|> only once another follows, so a question renders differently
    as the last message (the prompt the model answers) than with its answer after it: no answer can be marked in
    the whole conversation, and each gets a sequence of its own: its prompt as the model sees it, then the answer."""
    last_differs = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{{ m['content'] }}"
                    "{% if not loop.last %}<|eot_id|>{% endif %}{% endfor %}"
                    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>{% endif %}")
    fmt = TemplateFormat(last_differs, eos_token="<|eot_id|>")
    messages = CONVERSATION[1:]
    sequences = fmt.training_sequences(messages, codec)
    assert len(sequences) == 2
    for (ids, mask), i, answer in zip(sequences, (1, 3), ("2。", "Hi! 你好")):
        head = fmt.render_ids(messages[:i], codec, add_generation_prompt=True)
        assert ids[:len(head)] == head and not any(mask[:len(head)]) and all(mask[len(head):])
        assert tiny_tokenizer.decode(ids[len(head):]) == answer
    # a template that closes every message the same way trains the conversation as one sequence
    closes_all = last_differs.replace("{% if not loop.last %}<|eot_id|>{% endif %}", "<|eot_id|>")
    [(ids, mask)] = TemplateFormat(closes_all, eos_token="<|eot_id|>").training_sequences(messages, codec)
    assert [tiny_tokenizer.decode(s[2]) for s in spans(ids, mask)] == ["2。<|eot_id|>", "Hi! 你好<|eot_id|>"]
    with pytest.raises(ChatFormatError, match="messages\\[0\\]"):
        TemplateFormat(SMOLLM2_TEMPLATE).training_sequences([{"role": "assistant", "content": "hi"}], codec)


# ---- SFT records ----

def test_bad_sft_records_are_reported_with_file_line_field(tmp_path, codec):
    path = tmp_path / "sft.jsonl"
    good = {"messages": CONVERSATION[1:3]}
    lines = [json.dumps(good), "{not json", json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
             json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}),
             json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}),
             json.dumps({"messages": [{"role": "user", "content": "長" * 300},
                                      {"role": "assistant", "content": "a"}]}),
             "", json.dumps(good)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sft = load_sft(path, Llama3Format(), codec, max_len=128, on_bad="skip")
    examples, problems = sft.examples, sft.problems
    assert [e.origin for e in examples] == [f"{path}:1", f"{path}:8"]
    assert [(p.line, p.field) for p in problems] == [(2, ""), (3, "messages"), (4, "messages[0].role"),
                                                     (5, "messages[1].content"), (6, "messages")]
    assert str(problems[0]).startswith(f"{path}:2: not valid JSON")
    assert str(problems[2]) == f"{path}:4: messages[0].role: 'robot' is not one of system, user, assistant"
    assert "more than max_len 128" in str(problems[4])
    assert sft.summary_lines()[0] == f"read 3 messages conversations from {path} (4 unusable)"
    assert sft.summary_lines()[1].startswith("5 of 7 conversations left out")
    for policy in ("error", "auto"):  # auto: 5 of 7 is far more than 1%
        with pytest.raises(InputError, match=f"{path}:2: not valid JSON.*5 of 7 conversations cannot be used"):
            load_sft(path, Llama3Format(), codec, max_len=128, on_bad=policy)


def test_sft_batch_trains_some_but_not_all_tokens(tmp_path, codec):
    records = [{"messages": CONVERSATION}, {"messages": CONVERSATION[1:3]}, {"messages": CONVERSATION[3:]}] * 2
    sft = load_sft(write_jsonl(tmp_path / "sft.jsonl", records), Llama3Format(), codec, max_len=96)
    examples = sft.examples
    assert not sft.problems
    batch = next(iter(Loader(SFTDataset(examples, 96, pad_id=0), batch_size=2)))
    fraction = (batch["labels"] != IGNORE).float().mean().item()
    assert 0 < fraction < 1


def test_sft_epochs_use_every_conversation_once_reshuffled(tmp_path, codec):
    records = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
               for i in range(12)]
    examples = load_sft(write_jsonl(tmp_path / "sft.jsonl", records), Llama3Format(), codec, max_len=64).examples
    ds = SFTDataset(examples, 64, pad_id=0, seed=3)
    epochs = [ds.pack(e) for e in range(3)]
    for rows in epochs:
        assert sorted(i for row in rows for i in row) == list(range(12))
        assert all(sum(len(examples[i].input_ids) for i in row) <= 64 for row in rows)
    assert epochs[0] != epochs[1] != epochs[2]
    assert SFTDataset(examples, 64, pad_id=0, seed=3).pack(1) == epochs[1]


# ---- packed == unpacked ----

def per_token_losses(model, input_ids, position_ids=None, labels=None):
    """Loss of each prediction t -> t+1 (nan where labels[t+1] is -100), as the HF loss shifts labels."""
    with torch.no_grad():
        kwargs = {"position_ids": position_ids, "use_cache": False} if position_ids is not None else {}
        logits = model(input_ids=input_ids, **kwargs).logits[0, :-1].float()
    targets = (input_ids if labels is None else labels)[0, 1:]
    loss = torch.nn.functional.cross_entropy(logits, targets.clamp(min=0), reduction="none")
    return torch.where(targets == IGNORE, torch.nan, loss)


def assert_packed_equals_unpacked(model, batch, pieces):
    """``pieces``: (start offset in row 0, ids, labels) of each document/conversation packed in the batch."""
    packed = per_token_losses(model, batch["input_ids"][:1], batch["position_ids"][:1], batch["labels"][:1])
    alone = []
    for start, ids, labels in pieces:
        ids, labels = torch.as_tensor(ids)[None], torch.as_tensor(labels)[None]
        single = per_token_losses(model, ids, labels=labels)
        torch.testing.assert_close(packed[start:start + len(single)], single, equal_nan=True, atol=1e-5, rtol=1e-5)
        alone.append(single[~single.isnan()])
    for start, ids, _ in pieces[1:]:  # the step into the next piece is not scored
        assert torch.isnan(packed[start - 1])
    with torch.no_grad():
        out = forward_packed(model, {k: v[:1] for k, v in batch.items()})
    torch.testing.assert_close(out.loss, torch.cat(alone).mean(), atol=1e-5, rtol=1e-5)


def test_cp_packed_loss_equals_documents_alone(tmp_path, tiny_model, tiny_tokenizer, codec):
    texts = CORPUS[:2]
    write_jsonl(tmp_path / "part-00000.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts)])
    tok = DocumentTokenizer.from_hf(tiny_tokenizer, codec)
    assert tok.eos_id == tiny_tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    assert tok.bos_id is None  # this tokenizer adds no BOS when it encodes; Llama 3's does, so test with one:
    tok = dataclasses.replace(tok, bos_id=tiny_tokenizer.convert_tokens_to_ids("<|begin_of_text|>"))
    docs = [tok(t) for t in texts]
    source = tokenize_source(tmp_path, tok, tmp_path / "cache")
    ds = CPDataset({"zh": source}, seq_len=sum(map(len, docs)), seed=1)
    assert ds.num_rows(0) == 1
    batch = collate([ds.row(0, 0)])
    order = [int(d) for d in ds.plan(0)[1]]
    starts = np.cumsum([0] + [len(docs[d]) for d in order])[:-1]
    assert batch["position_ids"][0, starts[1]] == 0 and batch["input_ids"][0, starts[1]] == tok.bos_id
    assert_packed_equals_unpacked(tiny_model, batch, [(int(s), docs[d], docs[d]) for s, d in zip(starts, order)])


def test_sft_packed_loss_equals_conversations_alone(tmp_path, tiny_model, codec):
    records = [{"messages": CONVERSATION}, {"messages": CONVERSATION[3:]}]
    examples = load_sft(write_jsonl(tmp_path / "sft.jsonl", records), Llama3Format(), codec, max_len=128).examples
    seq_len = sum(len(e.input_ids) for e in examples) + 5  # with padding at the end
    ds = SFTDataset(examples, seq_len, pad_id=0)
    (row,) = ds.pack(0)
    batch = collate([ds.row(0, 0)])
    starts = np.cumsum([0] + [len(examples[i].input_ids) for i in row])[:-1]
    assert (batch["labels"][0, -5:] == IGNORE).all()
    pieces = [(int(s), examples[i].input_ids, examples[i].labels) for s, i in zip(starts, row)]
    assert_packed_equals_unpacked(tiny_model, batch, pieces)


# ---- CP: cache, mixing, held-out, sharding, resume ----

class NumberCodec:
    """Text "5 5 5" -> [5, 5, 5]; counts its calls."""

    def __init__(self):
        self.calls = 0

    def encode_text(self, text, continuation=False):
        self.calls += 1
        return [int(w) for w in text.split()]


def number_docs(directory, base, count, seed, fmt="jsonl"):
    """``count`` documents of 5-40 tokens; document j is the token ``base + j`` repeated."""
    rng = np.random.default_rng(seed)
    records = [{"id": f"{base}-{j}", "text": " ".join([str(base + j)] * int(rng.integers(5, 40)))}
               for j in range(count)]
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": [r["id"] for r in records], "text": [r["text"] for r in records]}),
                       directory / "part-00000.parquet")
    else:
        write_jsonl(directory / "part-00000.jsonl", records)
    return directory


def number_sources(tmp_path, counts=(("legal", 1000, 60), ("news", 2000, 200), ("english", 3000, 200))):
    tok = DocumentTokenizer(NumberCodec(), "numbers-v1", eos_id=1)
    sources = {name: tokenize_source(number_docs(tmp_path / name, base, n, base, "parquet" if name == "english"
                                                 else "jsonl"), tok, tmp_path / "cache")
               for name, base, n in counts}
    return tok, sources


def test_token_cache_is_reused_and_invalidated(tmp_path):
    shards = number_docs(tmp_path / "legal", 1000, 30, 0)
    tok = DocumentTokenizer(NumberCodec(), "numbers-v1", eos_id=1)
    first = tokenize_source(shards, tok, tmp_path / "cache")
    assert tok.codec.calls == 30 and len(first) == 30
    assert {p.suffix for p in (tmp_path / "cache").rglob("*") if p.is_file()} == {".npy", ".json"}
    again = tokenize_source(shards, tok, tmp_path / "cache")
    assert tok.codec.calls == 30  # read from the cache
    assert np.array_equal(again.document(7), first.document(7)) and again.document(7).dtype == np.uint32
    assert list(first.document(0)[-1:]) == [1]  # EOS ends every document
    os.utime(shards / "part-00000.jsonl", ns=(1, 1))  # a changed input is tokenized again
    tokenize_source(shards, tok, tmp_path / "cache")
    assert tok.codec.calls == 60
    tokenize_source(shards, DocumentTokenizer(tok.codec, "numbers-v2", eos_id=1), tmp_path / "cache")
    assert tok.codec.calls == 90  # so is the same input with another tokenizer


def token_shares(ds, epoch, rows=None):
    ids = np.concatenate([ds.row(epoch, k).input_ids for k in range(rows or ds.num_rows(epoch))])
    ids = ids[ids >= 1000]
    return [float(np.mean((ids >= b) & (ids < b + 1000))) for b in (1000, 2000, 3000)]


def test_mixing_follows_weights_deterministically(tmp_path):
    _, sources = number_sources(tmp_path)
    weights = {"legal": 3, "news": 1, "english": 1}
    ds = CPDataset(sources, seq_len=64, weights=weights, seed=7)
    for share, want in zip(token_shares(ds, 0), (0.6, 0.2, 0.2)):
        assert abs(share - want) < 0.02
    for share, want in zip(token_shares(ds, 0, rows=ds.num_rows(0) // 4), (0.6, 0.2, 0.2)):
        assert abs(share - want) < 0.05  # interleaved smoothly, not source after source
    same = CPDataset(sources, seq_len=64, weights=weights, seed=7)
    assert all(np.array_equal(ds.row(0, k).input_ids, same.row(0, k).input_ids) for k in range(ds.num_rows(0)))
    assert not np.array_equal(ds.row(0, 0).input_ids, CPDataset(sources, 64, weights, seed=8).row(0, 0).input_ids)
    assert not np.array_equal(ds.row(0, 0).input_ids, ds.row(1, 0).input_ids)  # reshuffled each epoch
    row = ds.row(0, 3)
    starts = np.flatnonzero(row.position_ids == 0)
    assert (row.labels[starts] == IGNORE).all() and (row.labels[row.position_ids > 0] >= 1).all()


def test_heldout_documents_never_reach_training_rows(tmp_path):
    _, sources = number_sources(tmp_path)
    weights = {"legal": 3, "news": 1, "english": 1}
    train = CPDataset(sources, seq_len=64, weights=weights, seed=0, heldout_fraction=0.1)
    held = CPDataset(sources, seq_len=64, seed=0, heldout_fraction=0.1, split="heldout")
    held_ids = set(np.concatenate([held.row(0, k).input_ids for k in range(held.num_rows(0))]).tolist()) - {0, 1}
    assert 20 < len(held_ids) < 80  # about 10% of 460 documents
    for epoch in range(2):
        trained = set(np.concatenate([train.row(epoch, k).input_ids for k in range(train.num_rows(epoch))]).tolist())
        assert not trained & held_ids
    unweighted = CPDataset(sources, seq_len=64, seed=0, heldout_fraction=0.1)
    src, doc, _ = unweighted.plan(0)
    assert len(set(zip(src.tolist(), doc.tolist()))) == len(src) == 460 - len(held_ids)  # the rest, once each
    assert CPDataset(sources, seq_len=64, split="heldout").num_rows(0) == 0  # no fraction, nothing held out
    other_seed = CPDataset(sources, seq_len=64, seed=5, heldout_fraction=0.1, split="heldout")
    assert np.array_equal(other_seed.plan(0)[1], held.plan(0)[1])  # the split does not depend on the seed


def test_ranks_split_every_global_batch_exactly(tmp_path):
    _, sources = number_sources(tmp_path)
    ds = CPDataset(sources, seq_len=32, seed=0)
    single = list(Loader(ds, batch_size=6))
    ranks = [list(Loader(ds, batch_size=2, rank=r, world_size=3)) for r in range(3)]
    assert len(single) == ds.num_rows(0) // 6 and all(len(r) == len(single) for r in ranks)
    for step, whole in enumerate(single):
        for name in whole:
            assert torch.equal(torch.cat([ranks[r][step][name] for r in range(3)]), whole[name])


def test_resume_gives_the_same_next_batches(tmp_path):
    _, sources = number_sources(tmp_path)
    ds = CPDataset(sources, seq_len=64, seed=0)
    full = list(Loader(ds, batch_size=2, epochs=2))
    per_epoch = ds.num_rows(0) // 2
    for k in (3, per_epoch, per_epoch + 1):
        loader = Loader(ds, batch_size=2, epochs=2)
        it = iter(loader)
        for _ in range(k):
            next(it)
        state = json.loads(json.dumps(loader.state_dict()))
        resumed = Loader(CPDataset(sources, seq_len=64, seed=0), batch_size=2, epochs=2)
        resumed.load_state_dict(state)
        rest = list(resumed)
        assert len(rest) == len(full) - k
        assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(rest, full[k:]))
    with pytest.raises(Exception, match="global batches of 2 rows"):
        Loader(ds, batch_size=4).load_state_dict(state)


def test_packed_loss_is_the_same_whether_the_model_keeps_a_cache_or_not(tmp_path, tiny_model, codec):
    """A model loaded for inference keeps use_cache on; scoring packed rows with it (the build's held-out proof)
    must still keep the documents apart."""
    from taide.train.trainer import token_loss_sum

    docs = [codec.encode_text(t) for t in CORPUS[:3]]
    batch = collate([pack_row_for(docs)])
    tiny_model.config.use_cache = True
    cached, _ = token_loss_sum(tiny_model, batch, torch.no_grad)
    tiny_model.config.use_cache = False
    plain, _ = token_loss_sum(tiny_model, batch, torch.no_grad)
    assert torch.allclose(cached, plain)


def pack_row_for(docs: list[list[int]]):
    from taide.train.packing import pack_row

    return pack_row([(d, d) for d in docs], sum(len(d) for d in docs) + 4, pad_id=0)
