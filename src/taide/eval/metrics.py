"""Reference metrics for the office tasks: chrF and BLEU (sacrebleu) for translations, character-level
ROUGE-L for summaries, and answer length.

Chinese has no spaces between words, so every metric here works on characters or on sacrebleu's
Chinese tokenizer: BLEU uses ``tokenize="zh"`` (each CJK character a token, other text split as 13a)
for Chinese targets and ``13a`` for English ones; chrF is a character n-gram F-score, right for both
as it is. Scores are on sacrebleu's 0-100 scale; ROUGE-L on 0-1.

A reference is a string or a list of strings (several acceptable answers for the same input); items
may have different numbers of references.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from taide.errors import TaideError

Reference = str | Sequence[str]


def bleu_tokenizer(language: str) -> str:
    """sacrebleu's tokenizer for text in ``language``: ``zh`` for Chinese (zh, zh-TW, ...), ``13a`` otherwise."""
    return "zh" if language.lower().startswith("zh") else "13a"


def _ref_lists(references: Sequence[Reference]) -> list[list[str]]:
    return [[r] if isinstance(r, str) else list(r) for r in references]


def _ref_streams(hypotheses: Sequence[str], references: Sequence[Reference]) -> list[list[str | None]]:
    """sacrebleu's layout: one stream per reference position, padded with None where an item has fewer."""
    if len(hypotheses) != len(references):
        raise TaideError(f"{len(hypotheses)} hypotheses but {len(references)} references; give one reference "
                         "(or a list of them) per hypothesis")
    refs = _ref_lists(references)
    if not hypotheses:
        raise TaideError("no hypotheses to score")
    if any(not r for r in refs):
        raise TaideError("every hypothesis needs at least one reference")
    width = max(map(len, refs))
    return [[r[i] if i < len(r) else None for r in refs] for i in range(width)]


@lru_cache(maxsize=8)
def _bleu(tokenize: str, sentence: bool):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize, effective_order=sentence)


@lru_cache(maxsize=2)
def _chrf(word_order: int):
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=word_order)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Reference], language: str = "zh-TW") -> float:
    """Corpus BLEU (0-100) of the hypotheses against their references, tokenized for ``language``."""
    return float(_bleu(bleu_tokenizer(language), False).corpus_score(list(hypotheses),
                                                                     _ref_streams(hypotheses, references)).score)


def sentence_bleu(hypothesis: str, reference: Reference, language: str = "zh-TW") -> float:
    """BLEU (0-100) of one sentence, with effective order so short sentences are not zeroed out."""
    refs = _ref_lists([reference])[0]
    return float(_bleu(bleu_tokenizer(language), True).sentence_score(hypothesis, refs).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[Reference], word_order: int = 0) -> float:
    """Corpus chrF (0-100; ``word_order=2`` gives chrF++)."""
    return float(_chrf(word_order).corpus_score(list(hypotheses), _ref_streams(hypotheses, references)).score)


def sentence_chrf(hypothesis: str, reference: Reference, word_order: int = 0) -> float:
    """chrF (0-100) of one sentence."""
    return float(_chrf(word_order).sentence_score(hypothesis, _ref_lists([reference])[0]).score)


# --- character-level ROUGE-L ---

def rouge_chars(text: str) -> str:
    """The characters ROUGE-L compares: NFKC-normalized and case-folded, without whitespace, punctuation
    and control characters (so full- and half-width punctuation, spacing and line breaks do not count)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PZC")


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``: bit-parallel (Hyyrö 2004), one big-int
    step per character of ``b``, so two 5,000-character texts take milliseconds."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for ch in b:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(hypothesis: str, reference: Reference) -> dict[str, float]:
    """Character ROUGE-L of one answer: precision, recall and F1 (0-1) against the best-matching reference."""
    hyp = rouge_chars(hypothesis)
    best = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    for ref in _ref_lists([reference])[0]:
        ref = rouge_chars(ref)
        lcs = lcs_length(hyp, ref)
        if not lcs:
            continue
        p, r = lcs / len(hyp), lcs / len(ref)
        f1 = 2 * p * r / (p + r)
        if f1 > best["f1"]:
            best = {"precision": p, "recall": r, "f1": f1}
    return best


def rouge_l_f1(hypothesis: str, reference: Reference) -> float:
    return rouge_l(hypothesis, reference)["f1"]


def mean_rouge_l(hypotheses: Sequence[str], references: Sequence[Reference]) -> float:
    """Mean character ROUGE-L F1 (0-1) over answers, the usual way ROUGE is reported for a test set."""
    if len(hypotheses) != len(references):
        raise TaideError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise TaideError("no hypotheses to score")
    return sum(rouge_l_f1(h, r) for h, r in zip(hypotheses, references)) / len(hypotheses)


def answer_length(text: str) -> int:
    """Characters in an answer, not counting whitespace (a Chinese answer's length in 字)."""
    return sum(1 for ch in text if not ch.isspace())


def reference_scores(hypotheses: Sequence[str], references: Sequence[Reference], language: str = "zh-TW") -> dict:
    """All corpus-level reference metrics at once: chrF, BLEU, mean ROUGE-L F1 and mean answer length."""
    return {"n": len(hypotheses), "chrf": corpus_chrf(hypotheses, references),
            "bleu": corpus_bleu(hypotheses, references, language),
            "rouge_l": mean_rouge_l(hypotheses, references),
            "mean_length": sum(map(answer_length, hypotheses)) / len(hypotheses) if hypotheses else 0.0}
