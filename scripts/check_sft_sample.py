#!/usr/bin/env python3
"""Check taide's sample instruction-tuning set, src/taide/train/data/sft-sample.jsonl: the file is the source (edit it
directly); this script says whether it still keeps its rules, and the tests run it.

    .venv/bin/python scripts/check_sft_sample.py [FILE]

420 conversations. Six office/daily-life tasks (25 each): article, letter, summary, translate_zh_en,
translate_en_zh, multi_turn; short_qa (150): short everyday questions, Taiwan facts, small office tasks,
one-sentence zh<->en translations and simple explanations (user turns 10-60 characters, answers 30-150, x2.5 for
English); and short_translate (120: 60 zh->en, 60 en->zh): a short instruction (eight phrasings each way) and one
sentence, answered with the bare translation, so that a tiny model learns to switch language when asked. One JSON
object per line, written as ``json.dumps(record, ensure_ascii=False)``:
{"id", "task", "messages": [{"role": "system"|"user"|"assistant", "content"}, ...]}, the shape
`taide train sft` reads.

All text was written for this project. Companies, people, documents and figures are invented (○○ marks a
placeholder). The checks (src/taide/train/data/README.md lists them) need only the standard library; run with the
venv, they also ask taide.eval.fidelity about the short_translate answers and taide.decontam about every
conversation. Every evaluation file in HELDOUT must exist: a check against data that is not there is no check.
Exit status 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SFT = ROOT / "src" / "taide" / "train" / "data" / "sft-sample.jsonl"
# Evaluation data that must stay out of training: the taide-bench sample, the build's held-out translation
# pairs and the Taiwan-usage prompts (scripts/make_taiwan_prompts.py). Validation rejects a turn close to them.
HELDOUT = [ROOT / "src" / "taide" / "eval" / "data" / "taide-bench",
           ROOT / "src" / "taide" / "builder" / "data" / "heldout-pairs.jsonl",
           ROOT / "src" / "taide" / "eval" / "data" / "taiwan-prompts.jsonl"]
MAX_SIMILARITY = 0.4  # Jaccard of character bigrams + English words (see features)

# The Llama3-TAIDE system prompt, verbatim.
TAIDE_SYSTEM = "你是一個來自台灣的AI助理，你的名字是 TAIDE，樂於以台灣人的立場幫助使用者，會用繁體中文回答問題。"
TASKS = ("article", "letter", "summary", "translate_zh_en", "translate_en_zh", "multi_turn", "short_qa",
         "short_translate")
# short_translate: the instructions, eight each way; each is followed by one sentence on the same line or the next.
ZH_EN_ASKS = ("翻成英文：", "請翻成英文：", "幫我翻成英文：", "翻譯成英文：", "把這句翻成英文：", "英文怎麼說：",
              "請把下面這句話翻譯成英文：", "這句話的英文是什麼？")
EN_ZH_ASKS = ("翻成中文：", "請翻成中文：", "幫我翻成中文：", "翻譯成中文：", "翻成繁體中文：", "請翻譯成繁體中文：",
              "這句英文是什麼意思？", "中文怎麼說：")

# Characters that exist only in Simplified Chinese (the brief's list, then more), and mainland/Japanese variants
# of characters Taiwan writes differently (说/說 is covered by the first set; 内/內, 温/溫, 户/戶, ...).
SIMPLIFIED = set("这们说对时为会个国进还样发经来现关门问间头动实见车东长让议语认较区与专业书师题张节热电话软视讯网络"
                 "么吗没给从过应该变边总钱银买卖带换转须导获态级观欢组织统证项额优势确护质负责务员单传达递运输设页账岁线图"
                 "讨论规则处闻报纸纳费补贴险医疗诊药请骑营录丢争净静启吴虚并够别")
VARIANTS = set("内温户戸强黄兑税脱悦絶宫産値査緑爲裏綫着説衞奥")
MAINLAND_WORDS = ["視頻", "軟件", "信息", "出租車", "地鐵", "質量", "網絡", "默認", "打印", "鼠標", "短信", "屏幕",
                  "硬盤", "博客", "服務器", "激活", "U盤", "數據庫", "高清", "互聯網", "營銷"]
CJK = r"[\u3400-\u9fff]"
ASCII_PUNCT_NEAR_CJK = re.compile(rf"{CJK}[,;:?!()]|[,;:?!()]{CJK}")
ROLES = ("system", "user", "assistant")
LIMITS = {"article": 700}  # assistant characters; other tasks 400; x2.5 for English (soft: reported, not an error)
SHORT = {"user": (10, 60), "assistant": (30, 150)}  # short_qa characters per turn, x2.5 for English (enforced)
SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?")
TRANSLATE_SOURCE = {"zh-en": (12, 40), "en-zh": (8, 25)}  # short_translate source: characters / English words
TRANSLATE_END = {"zh-en": ("。？！", ".?!"), "en-zh": (".?!", "。？！")}  # how a source / an answer ends
PREFACE = re.compile(r"^(以下|翻譯|譯文|譯成|中文|英文|意思|這句|好的|Here\b|Sure\b|Translation\b|In English\b)", re.I)
QUOTES = "「」『』\"“”‘’'"
FULL_WIDTH_PUNCT = re.compile(r"[，。、？！：；「」（）]")


def _mostly_latin(text: str) -> bool:
    return sum(c.isascii() and c.isalpha() for c in text) > len(text) / 2


def features(text: str) -> set[str]:
    """Character bigrams of the Chinese (punctuation dropped) plus lower-cased English words: for near-duplicates."""
    han = "".join(re.findall(CJK, text))
    return {han[i:i + 2] for i in range(len(han) - 1)} | {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z']+", text)}


def similarity(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def heldout_texts(heldout: list[Path] = HELDOUT) -> list[tuple[str, str]]:
    """(where, text) for every prompt and reference of the evaluation data in ``heldout`` (files or folders of
    .jsonl files; see missing_heldout for the ones that are not there)."""
    out = []
    for entry in heldout:
        for path in sorted(entry.glob("*.jsonl")) if entry.is_dir() else [entry] if entry.is_file() else []:
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                rid = rec.get("qid") or rec.get("id")
                for key in ("prompt", "source", "reference", "resp"):
                    if isinstance(rec.get(key), str):  # a bench prompt: the text after its instruction line
                        out.append((f"{path.name} {rid} {key}", rec[key].split("\n\n", 1)[-1]))
    return out


def missing_heldout(heldout: list[Path]) -> list[str]:
    """One error per evaluation file or folder (of .jsonl files) that is not there."""
    return [f"evaluation data {p} is missing (or holds no .jsonl file): the set cannot be checked against it"
            for p in heldout if not (p.is_file() or (p.is_dir() and any(p.glob("*.jsonl"))))]


def _decontamination(conversations: list[tuple[str, list[dict]]],
                     heldout: list[Path]) -> tuple[list[str], int] | None:
    """taide's own check (taide.decontam, what `taide train sft --decontaminate` runs) of every conversation against
    the evaluation data in ``heldout``: (one error per conversation that holds an evaluation item, items checked),
    or None when taide cannot be imported. The similarity check above finds close paraphrases; this one finds copies in any
    form (re-punctuated, Simplified, reordered), the way the product finds them in users' data."""
    try:
        from taide.decontam.index import EvalIndex
        from taide.decontam.items import read_eval_items
    except ImportError:
        return None
    index = EvalIndex(read_eval_items([p for p in heldout if p.exists()]).items)
    errors = []
    for where, messages in conversations:
        text = "\n".join(m["content"] for m in messages if m.get("role") != "system")
        for hit in index.search(text):
            label = index.items[index.entry_items[hit.entry][0]].label
            errors.append(f"{where}: holds evaluation item {label} ({hit.share:.0%} of its n-grams)")
    return errors, int(index.checkable.sum())


def _fidelity():
    """taide.eval.fidelity.fidelity when the taide package can be imported (run with the venv), else None. It is
    a second opinion on the short_translate answers (detected language, OpenCC Simplified-only characters,
    mainland terms) on top of this script's own checks, which need only the standard library."""
    try:
        from taide.eval.fidelity import fidelity
    except ImportError:
        return None
    return fidelity


def _split_ask(text: str) -> tuple[str, str, bool, str] | None:
    """(direction, ask, sentence on the next line, source sentence) of a short_translate user turn, or None."""
    for direction, asks in (("zh-en", ZH_EN_ASKS), ("en-zh", EN_ZH_ASKS)):
        for ask in asks:
            if text.startswith(ask):
                rest = text[len(ask):]
                return direction, ask, rest.startswith("\n"), rest[1:] if rest.startswith("\n") else rest
    return None


def _check_translation(body: list[dict], sys_text: str | None, fidelity) -> tuple[list[str], tuple | None]:
    """Problems of one short_translate conversation, and (direction, ask, next line, source, answer)."""
    problems = []
    if sys_text not in (None, TAIDE_SYSTEM):
        problems.append("short_translate takes the TAIDE system prompt or none")
    if len(body) != 2:
        return problems + ["short_translate is one user turn and one answer"], None
    user, answer = body[0]["content"], body[1]["content"]
    parsed = _split_ask(user)
    if parsed is None:
        return problems + [f"short_translate prompt does not start with a known instruction: {user[:20]!r}"], None
    direction, ask, next_line, source = parsed
    lo, hi = TRANSLATE_SOURCE[direction]
    n_cjk = len(re.findall(CJK, answer))
    n_latin = sum(c.isascii() and c.isalpha() for c in answer)
    if direction == "zh-en":
        size = len(source)
        if re.search("[A-Za-z]", source):
            problems.append("zh->en source has Latin letters")
        if n_cjk or FULL_WIDTH_PUNCT.search(answer) or not _mostly_latin(answer):
            problems.append("zh->en answer must be English only (no CJK, no full-width punctuation)")
    else:
        size = len(source.split())
        if re.search(CJK, source) or not _mostly_latin(source):
            problems.append("en->zh source must be an English sentence")
        if n_cjk < 6 or n_latin > n_cjk / 4:
            problems.append(f"en->zh answer must be Chinese ({n_cjk} CJK characters, {n_latin} Latin letters)")
    if not lo <= size <= hi:
        problems.append(f"{direction} source of {size} {'characters' if direction == 'zh-en' else 'words'} "
                        f"(allowed {lo}-{hi})")
    if "\n" in source or "\n" in answer:
        problems.append("short_translate source and answer are one line each")
    if not source.endswith(tuple(TRANSLATE_END[direction][0])) or not answer.endswith(
            tuple(TRANSLATE_END[direction][1])):
        problems.append(f"{direction} source or answer does not end like a sentence of its language")
    if answer[0] in QUOTES or answer[-1] in QUOTES or PREFACE.match(answer) or answer == source:
        problems.append(f"short_translate answer must be the bare translation: {answer[:20]!r}")
    if fidelity is not None:
        want, src_lang = ("en", "zh-TW") if direction == "zh-en" else ("zh-TW", "en")
        got = fidelity(answer, want)
        if not got["language_ok"] or got["simplified_chars"] or got["mainland_count"]:
            problems.append(f"fidelity: answer is {got['language']} (want {want}), {got['simplified_chars']} "
                            f"Simplified-only characters, {got['mainland_count']} mainland terms")
        if not fidelity(source, src_lang)["language_ok"]:
            problems.append(f"fidelity: source is not {src_lang}")
    return problems, (direction, ask, next_line, source, answer)


def _sentences(text: str) -> list[str]:
    """Sentences of at least 6 characters, for the no-repeated-sentence rule of short_qa."""
    return [s.strip() for s in SENTENCE.findall(text) if len(s.strip()) >= 6]


def validate(path: Path, heldout: list[Path] = HELDOUT) -> int:
    errors, warnings = missing_heldout(heldout), []
    per_task, system_kind, user_turns = Counter(), Counter(), Counter()
    per_rid_system: dict[str, str] = {}
    lengths: dict[str, list[int]] = {}
    short_len: dict[str, list[int]] = {"user": [], "assistant": []}
    short_openings: Counter = Counter()
    sentence_owner: dict[str, set[str]] = {}  # assistant sentence -> ids of the conversations that say it
    short_prompts: dict[str, str] = {}
    fidelity = _fidelity()
    translations: dict[str, tuple] = {}  # short_translate id -> (direction, ask, next line, source, answer)
    turns: list[tuple[str, str]] = []  # (id, text) of every user/assistant turn outside short_translate
    held = [(where, features(text)) for where, text in heldout_texts(heldout)]
    closest = (0.0, "-", "-")
    seen_ids = set()
    conversations: list[tuple[str, list[dict]]] = []
    # Split on "\n" only: str.splitlines() also splits at U+2028 and the like, which JSON text may hold unescaped.
    lines = path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
    for n, line in enumerate(lines, 1):
        where = f"{path.name}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: not JSON ({e})")
            continue
        if line != json.dumps(rec, ensure_ascii=False):
            errors.append(f"{where}: not written as json.dumps(record, ensure_ascii=False) (one space after : and ,, "
                          "characters as themselves): rewrite the line so diffs stay small")
        if not isinstance(rec, dict) or set(rec) != {"id", "task", "messages"}:
            errors.append(f"{where}: expected exactly the keys id, task, messages")
            continue
        rid, task, msgs = rec["id"], rec["task"], rec["messages"]
        conversations.append((where, msgs if isinstance(msgs, list) else []))
        if rid in seen_ids:
            errors.append(f"{where}: duplicate id {rid}")
        seen_ids.add(rid)
        per_task[task] += 1
        if task not in TASKS:
            errors.append(f"{where}: unknown task {task!r}")
        if not isinstance(msgs, list) or not msgs:
            errors.append(f"{where}: messages must be a non-empty list")
            continue
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or set(m) != {"role", "content"}:
                errors.append(f"{where}: messages[{i}] must have exactly role and content")
            elif m["role"] not in ROLES:
                errors.append(f"{where}: messages[{i}].role {m['role']!r} invalid")
            elif not isinstance(m["content"], str) or not m["content"].strip():
                errors.append(f"{where}: messages[{i}].content empty")
        if any(not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str)
               for m in msgs):
            continue
        body = msgs[1:] if msgs[0]["role"] == "system" else msgs
        sys_text = msgs[0]["content"] if msgs[0]["role"] == "system" else None
        kind = "TAIDE" if sys_text == TAIDE_SYSTEM else "other" if sys_text else "none"
        system_kind[kind] += 1
        per_rid_system[rid] = kind
        expected = ["user", "assistant"] * (len(body) // 2 + 1)
        if [m["role"] for m in body] != expected[:len(body)]:
            errors.append(f"{where}: after the optional system message, roles must alternate user/assistant")
        if body[-1]["role"] != "assistant":
            errors.append(f"{where}: does not end with an assistant turn")
        n_user = sum(m["role"] == "user" for m in body)
        user_turns[n_user] += 1
        if task == "multi_turn" and not 2 <= n_user <= 4:
            errors.append(f"{where}: multi_turn needs 2-4 user turns, has {n_user}")
        if task == "short_qa" and not 1 <= n_user <= 2:
            errors.append(f"{where}: short_qa needs 1-2 user turns, has {n_user}")
        if task not in ("multi_turn", "short_qa") and n_user != 1:
            errors.append(f"{where}: {task} should be single-turn, has {n_user} user turns")
        if task == "short_translate":
            problems, item = _check_translation(body, sys_text, fidelity)
            errors += [f"{where}: {p}" for p in problems]
            if item:
                translations[rid] = item
                source = item[3]  # the bare sentence, against the evaluation data too
                score, other = max((similarity(features(source), f), w) for w, f in held) if held else (0, "")
                closest = max(closest, (score, f"{rid} source", other))
                if score > MAX_SIMILARITY:
                    errors.append(f"{where}: source sentence is close to evaluation data {other} ({score:.2f})")
        else:
            turns += [(rid, m["content"]) for m in body]
        for i, m in enumerate(msgs):
            text = m["content"]
            if m["role"] != "system" and held:
                mine = features(text)
                score, other = max((similarity(mine, f), w) for w, f in held)
                closest = max(closest, (score, f"{rid} messages[{i}]", other))
                if score > MAX_SIMILARITY:
                    errors.append(f"{where}: messages[{i}] is close to evaluation data {other} ({score:.2f})")
            bad = sorted({c for c in text if c in SIMPLIFIED})
            if bad:
                errors.append(f"{where}: messages[{i}] has Simplified-only characters {''.join(bad)}")
            bad = sorted({c for c in text if c in VARIANTS})
            if bad:
                errors.append(f"{where}: messages[{i}] has non-Taiwan variant characters {''.join(bad)}")
            words = [w for w in MAINLAND_WORDS if w in text]
            if words:
                errors.append(f"{where}: messages[{i}] has mainland wording {words}")
            hit = ASCII_PUNCT_NEAR_CJK.search(text)
            if hit:
                errors.append(f"{where}: messages[{i}] half-width punctuation next to Chinese: {hit.group()!r}")
            if m["role"] == "assistant":
                for sentence in _sentences(text):
                    sentence_owner.setdefault(sentence, set()).add(rid)
            if task == "short_qa" and m["role"] in SHORT:
                short_len[m["role"]].append(len(text))
                lo, hi = (x * (2.5 if _mostly_latin(text) else 1) for x in SHORT[m["role"]])
                if not lo <= len(text) <= hi:
                    errors.append(f"{where}: short_qa {m['role']} turn of {len(text)} characters "
                                  f"(allowed {lo:.0f}-{hi:.0f})")
                if m["role"] == "user":
                    if text in short_prompts:
                        errors.append(f"{where}: short_qa prompt repeats {short_prompts[text]}")
                    short_prompts.setdefault(text, rid)
                elif m is body[1]:
                    short_openings[text[:2]] += 1
            if m["role"] == "assistant":
                lengths.setdefault(task, []).append(len(text))
                limit = LIMITS.get(task, 400) * (2.5 if _mostly_latin(text) else 1)  # ~2.5 Latin chars a hanzi
                if len(text) > limit:
                    warnings.append(f"{where} ({rid}): assistant turn of {len(text)} characters")
        if task == "summary":
            n_sent = len(re.findall(r"[。！？]", body[-1]["content"]))
            if not 2 <= n_sent <= 4:
                warnings.append(f"{where} ({rid}): summary has {n_sent} sentences")

    for sentence, owners in sentence_owner.items():
        if len(owners) > 1 and any(o.startswith(("short_qa-", "short_translate-")) for o in owners):
            errors.append(f"sentence repeated across conversations {sorted(owners)}: {sentence}")
    common = [(o, k) for o, k in short_openings.most_common() if k > len(short_prompts) // 10]
    if common:
        warnings.append("short_qa answers often open the same way: " + ", ".join(f"{o!r} x{k}" for o, k in common))

    # short_translate: no source or answer close to another one of the group, nor to any other turn of the set
    mine = [(rid, kind, features(item[k])) for rid, item in translations.items() for k, kind in ((3, "source"),
                                                                                                 (4, "answer"))]
    pool = mine + [(rid, "turn", features(text)) for rid, text in turns]
    near = (0.0, "-", "-")
    for rid, kind, f in mine:
        score, other = max(((similarity(f, g), f"{o} {k}") for o, k, g in pool if o != rid), default=(0.0, "-"))
        near = max(near, (score, f"{rid} {kind}", other))
        if score > MAX_SIMILARITY:
            errors.append(f"{rid} {kind} is a near-duplicate of {other} ({score:.2f})")
    asks = Counter((item[0], item[1]) for item in translations.values())
    directions = Counter(item[0] for item in translations.values())
    if translations:
        for direction, ask_list in (("zh-en", ZH_EN_ASKS), ("en-zh", EN_ZH_ASKS)):
            missing = [a for a in ask_list if not asks[(direction, a)]]
            if missing:
                errors.append(f"short_translate {direction}: instructions never used: {missing}")
        if abs(directions["zh-en"] - directions["en-zh"]) > len(translations) // 10:
            errors.append(f"short_translate directions unbalanced: {dict(directions)}")

    total = sum(per_task.values())
    print(f"{path}: {total} conversations, {len(lines)} lines, {path.stat().st_size:,} bytes")
    print("per task:        " + ", ".join(f"{t} {per_task[t]}" for t in TASKS))
    print("system message:  " + ", ".join(f"{k} {system_kind[k]}" for k in ("TAIDE", "other", "none")))
    print("user turns:      " + ", ".join(f"{k}: {user_turns[k]}" for k in sorted(user_turns)))
    print("assistant chars: " + "; ".join(
        f"{t} median {statistics.median(v):.0f} max {max(v)}" for t, v in lengths.items()))
    if short_len["user"]:
        print("short_qa chars:  " + "; ".join(
            f"{r} mean {statistics.mean(v):.1f} min {min(v)} max {max(v)}" for r, v in short_len.items()))
        print("short_qa opens:  " + ", ".join(f"{o} {k}" for o, k in short_openings.most_common(6)))
    if translations:
        systems = sum(per_rid_system.get(rid) == "TAIDE" for rid in translations)
        sizes = {d: [len(t[3]) if d == "zh-en" else len(t[3].split()) for t in translations.values() if t[0] == d]
                 for d in ("zh-en", "en-zh")}
        print(f"short_translate: zh->en {directions['zh-en']}, en->zh {directions['en-zh']}; TAIDE system {systems}; "
              f"sentence on the next line {sum(t[2] for t in translations.values())}; zh sources "
              f"{min(sizes['zh-en'], default=0)}-{max(sizes['zh-en'], default=0)} characters, en sources "
              f"{min(sizes['en-zh'], default=0)}-{max(sizes['en-zh'], default=0)} words; fidelity "
              f"{'checked' if fidelity else 'not available (taide not importable)'}")
        for direction in ("zh-en", "en-zh"):
            print(f"  {direction} asks:    " + ", ".join(f"{a.rstrip('：')} {k}" for (d, a), k in asks.items()
                                                           if d == direction))
        print(f"  closest:        {near[1]} ~ {near[2]} {near[0]:.2f}")
    print(f"held-out:        {len(held)} evaluation texts; closest {closest[1]} ~ {closest[2]} {closest[0]:.2f}")
    leaks = _decontamination(conversations, heldout)
    if leaks is None:
        print("decontamination: not checked (taide not importable)")
    else:
        errors += leaks[0]
        print(f"decontamination: {leaks[1]} evaluation items checked (taide.decontam), {len(leaks[0])} found")
    for w in warnings:
        print("warning:", w)
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path, default=SFT)
    return validate(ap.parse_args(argv).file)


if __name__ == "__main__":
    sys.exit(main())
