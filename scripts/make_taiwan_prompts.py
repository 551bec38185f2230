#!/usr/bin/env python3
"""Write taide's Taiwan-usage evaluation prompts (src/taide/eval/data/taiwan-prompts.jsonl) and check them.

    .venv/bin/python scripts/make_taiwan_prompts.py            # (re)write the file, then validate it
    .venv/bin/python scripts/make_taiwan_prompts.py --check    # rebuild in memory, compare bytes, validate

40 short prompts (10-80 characters) in Taiwan usage for checking what a built model answers: the language and
script it answers in (Traditional Chinese with Taiwan wording, or English for zh->en translation), and whether
it stops after the answer. They are never trained on: validation rejects a prompt that is close to any user
turn of the SFT sample (src/taide/train/data/sft-sample.jsonl), to a taide-bench prompt or reference, or to a
held-out translation pair of the build (src/taide/builder/data/heldout-pairs.jsonl); check_sft_sample.py in turn
rejects SFT text close to these prompts.

One JSON object per line: {"id": "tw-001", "task": "qa"|"office"|"zh2en"|"en2zh"|"explain", "prompt": "...",
"expect": "zh-Hant"|"en"}. "en" only for zh2en, whose prompt asks in Chinese to translate a Chinese sentence
into English; an en2zh prompt is an English sentence with a Chinese instruction, and expects zh-Hant.

All text was written for this project. Deterministic; stdlib only (it reuses the character and wording lists of
scripts/check_sft_sample.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "taide" / "eval" / "data" / "taiwan-prompts.jsonl"
SFT = ROOT / "src" / "taide" / "train" / "data" / "sft-sample.jsonl"

PROMPTS = [
    # qa (12)
    ("qa", "高雄有哪些適合帶小孩去的景點？"),
    ("qa", "在台灣搭公車，要怎麼知道下一班車什麼時候來？"),
    ("qa", "到戶政事務所辦事，需要先上網預約嗎？"),
    ("qa", "冬至的時候，台灣人習慣吃什麼？"),
    ("qa", "從台北寄包裹到屏東，郵局大概幾天會到？"),
    ("qa", "第一次去花蓮玩，有哪些值得去的地方？"),
    ("qa", "健保卡上的照片太舊了，可以換新的嗎？"),
    ("qa", "租屋處的熱水器壞了，應該由房東還是房客負責修理？"),
    ("qa", "七夕是農曆幾月幾日？台灣有什麼相關習俗？"),
    ("qa", "新竹為什麼被叫做風城？"),
    ("qa", "剛畢業要投履歷，自傳應該寫些什麼？"),
    ("qa", "晚上在路邊攔計程車，要注意哪些安全事項？"),
    # office (8)
    ("office", "幫我寫一則公告：下週二下午兩點，辦公室要進行消防演練。"),
    ("office", "同事週末幫我代班，幫我寫兩句謝謝他的訊息。"),
    ("office", "廠商一直打電話來推銷，幫我寫一段客氣的婉拒回覆。"),
    ("office", "幫這段話下標題：市立游泳池整修完成，下個月一日起重新開放。"),
    ("office", "把「你們的東西寄錯了」改成比較客氣的說法。"),
    ("office", "用一句話摘要：明天上午搶修自來水管線，本區水壓可能偏低，預計中午前完成。"),
    ("office", "我是業務，幫我寫兩句給新客戶的自我介紹。"),
    ("office", "幫我寫一張貼在店門口的告示：店內裝修，暫停營業三天。"),
    # zh2en (7)
    ("zh2en", "翻成英文：這班公車假日不行駛，請改搭其他路線。"),
    ("zh2en", "請翻成英文：我們下週會派技術人員到府安裝冷氣。"),
    ("zh2en", "把這句翻成英文：颱風過後，部分山區道路仍然封閉。"),
    ("zh2en", "英文怎麼說：請問這附近有便利商店嗎？"),
    ("zh2en", "翻成英文：本診所週六下午及週日休診。"),
    ("zh2en", "幫我翻成英文：謝謝您耐心等候，您的餐點馬上就好。"),
    ("zh2en", "翻譯成英文：下學期的選課系統將在八月初開放。"),
    # en2zh (6)
    ("en2zh", "請翻成中文：The shuttle bus leaves the hotel every thirty minutes."),
    ("en2zh", "翻成中文：Please turn off the lights when you leave the meeting room."),
    ("en2zh", "幫我翻成中文：Our new branch in Taichung opens next Monday."),
    ("en2zh", "翻譯成中文：Visitors must wear a helmet on the construction site."),
    ("en2zh", "請翻成中文：I will be working from home tomorrow morning."),
    ("en2zh", "翻成繁體中文：The museum is free for children under twelve."),
    # explain (7)
    ("explain", "什麼是匯率？台幣升值對出國旅遊有什麼影響？"),
    ("explain", "請解釋台灣的最低工資是怎麼決定的。"),
    ("explain", "為什麼手機要定期更新作業系統？"),
    ("explain", "緊急預備金是什麼？大概要存多少才夠？"),
    ("explain", "用國中生聽得懂的方式，解釋什麼是溫室效應。"),
    ("explain", "勞保的投保薪資是什麼意思？"),
    ("explain", "為什麼台灣夏天的午後常常下雷陣雨？"),
]

TASKS = ("qa", "office", "zh2en", "en2zh", "explain")
LENGTH = (10, 80)      # characters per prompt
CJK = re.compile(r"[\u3400-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z']+")


def build() -> list[dict]:
    return [{"id": f"tw-{i:03d}", "task": task, "prompt": prompt, "expect": "en" if task == "zh2en" else "zh-Hant"}
            for i, (task, prompt) in enumerate(PROMPTS, 1)]


def render(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _sft_rules():
    """check_sft_sample.py, loaded from the file beside this one: its Simplified/variant/wording lists, its
    near-duplicate measure (features, similarity, MAX_SIMILARITY) and the other evaluation data (heldout_texts)."""
    spec = importlib.util.spec_from_file_location("check_sft_sample", Path(__file__).with_name("check_sft_sample.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _references(rules) -> list[tuple[str, str]]:
    """(where, text) for every SFT user turn, then the bench and held-out pair texts (not this file)."""
    refs = []
    for line in SFT.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        refs += [(rec["id"], m["content"]) for m in rec["messages"] if m["role"] == "user"]
    return refs + [(w, t) for w, t in rules.heldout_texts() if not w.startswith(OUT.name)]


def validate(path: Path) -> int:
    rules = _sft_rules()
    errors = []
    refs = [(where, text, rules.features(text)) for where, text in _references(rules)]
    lines = path.read_text(encoding="utf-8").splitlines()
    per_task, seen, prompts, closest = Counter(), set(), set(), []
    for n, line in enumerate(lines, 1):
        where = f"{path.name}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: not JSON ({e})")
            continue
        if not isinstance(rec, dict) or set(rec) != {"id", "task", "prompt", "expect"}:
            errors.append(f"{where}: expected exactly the keys id, task, prompt, expect")
            continue
        rid, task, prompt, expect = rec["id"], rec["task"], rec["prompt"], rec["expect"]
        if rid != f"tw-{n:03d}" or rid in seen:
            errors.append(f"{where}: id {rid!r} should be tw-{n:03d}")
        seen.add(rid)
        per_task[task] += 1
        if task not in TASKS:
            errors.append(f"{where}: unknown task {task!r}")
        if expect != ("en" if task == "zh2en" else "zh-Hant"):
            errors.append(f"{where}: expect {expect!r} does not fit task {task!r}")
        if not isinstance(prompt, str) or not LENGTH[0] <= len(prompt) <= LENGTH[1]:
            errors.append(f"{where}: prompt must be {LENGTH[0]}-{LENGTH[1]} characters")
            continue
        if prompt in prompts:
            errors.append(f"{where}: duplicate prompt")
        prompts.add(prompt)
        n_latin = len(LATIN_WORD.findall(prompt))
        if task == "en2zh" and (n_latin < 5 or not CJK.search(prompt)):
            errors.append(f"{where}: en2zh needs a Chinese instruction and an English sentence")
        if task != "en2zh" and n_latin > 1:
            errors.append(f"{where}: only en2zh prompts carry English")
        bad = sorted({c for c in prompt if c in rules.SIMPLIFIED or c in rules.VARIANTS})
        if bad:
            errors.append(f"{where}: Simplified or non-Taiwan variant characters {''.join(bad)}")
        words = [w for w in rules.MAINLAND_WORDS if w in prompt]
        if words:
            errors.append(f"{where}: mainland wording {words}")
        hit = rules.ASCII_PUNCT_NEAR_CJK.search(prompt)
        if hit:
            errors.append(f"{where}: half-width punctuation next to Chinese: {hit.group()!r}")
        mine = rules.features(prompt)
        score, ref = max(((rules.similarity(mine, f), w) for w, _, f in refs), default=(0.0, "-"))
        closest.append((score, rid, ref))
        if score > rules.MAX_SIMILARITY:
            errors.append(f"{where}: too close to {ref} (similarity {score:.2f})")

    print(f"{path}: {len(lines)} prompts")
    print("per task:   " + ", ".join(f"{t} {per_task[t]}" for t in TASKS))
    lengths = [len(json.loads(line)["prompt"]) for line in lines] if not errors else []
    if lengths:
        print(f"characters: mean {sum(lengths) / len(lengths):.1f}, min {min(lengths)}, max {max(lengths)}")
    print(f"overlap:    against {len(refs)} SFT user turns, bench and held-out texts; closest: " + ", ".join(
        f"{rid}~{ref} {score:.2f}" for score, rid, ref in sorted(closest, reverse=True)[:3]))
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare a fresh build with the file instead of writing")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data = render(build())
    if args.check:
        if not args.out.exists() or args.out.read_bytes() != data:
            print(f"{args.out} differs from a fresh build; rerun without --check")
            return 1
        print(f"{args.out} matches a fresh build")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(data)
        print(f"wrote {args.out}")
    return validate(args.out)


if __name__ == "__main__":
    sys.exit(main())
