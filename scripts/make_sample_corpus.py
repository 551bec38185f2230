#!/usr/bin/env python3
"""Write taide's raw sample corpus (src/taide/data/sample/): a few hundred documents, written for this
project, that a Taiwan Traditional-Chinese cleaning pipeline must handle, plus MANIFEST.json saying
what each document is and what the pipeline should do with it.

    .venv/bin/python scripts/make_sample_corpus.py            # (re)write the sample
    .venv/bin/python scripts/make_sample_corpus.py --check    # rebuild in memory, compare bytes, load back

The base documents are data, not code: scripts/sample_corpus_base.jsonl holds them, one JSON object a
line with a "table" field: "base" (key, kind, topic, lang, title, text: the hand-written articles, posts,
letters and English texts), "review" (key, rating, title, text: the rows of reviews.csv) and "spam" (key,
kind, lang, text: fixed spam texts). Texts hold PII placeholders ({email}, {mobile}, {id}, ...) and
⟦…⟧ must-keep marks. This script generates the rest: PII values with valid checksums, near and exact
duplicates, layout-broken and normalization variants, mojibake, gambling / porn / low-quality spam,
HTML pages around the articles, text files in their encodings, the file formats and MANIFEST.json.
A missing or malformed data file stops it (exit status 1) with the file and line named.

Deterministic: a fixed seed, per-document random streams seeded from strings, gzip with mtime 0, fixed
zstandard level, fixed pyarrow settings. Stdlib + pyarrow (+ zstandard for letters.jsonl.zst).

All text (here and in the data file) was written for this project. Names, companies, addresses, phone
numbers, e-mail addresses (example.* domains) and ID numbers are invented; ID and business numbers are
generated with valid checksums so that PII redaction can be tested.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import html as htmllib
import io
import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = "taide-sample-v1"
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "taide" / "data" / "sample"
# Input order the MANIFEST's expectations assume (the first of a duplicate group is kept).
FILE_ORDER = ["news.jsonl", "forum.jsonl.gz", "letters.jsonl.zst", "reviews.csv", "english.parquet", "html/", "txt/"]


def rng_for(*key) -> random.Random:
    """A random stream of its own for each document: adding a document never changes the others."""
    return random.Random(SEED + ":" + ":".join(map(str, key)))


# ----------------------------------------------------------------------------------------------------
# PII: valid checksums, generated per document
# ----------------------------------------------------------------------------------------------------

ID_LETTER = {"A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34, "J": 18,
             "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25, "S": 26, "T": 27,
             "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33}


def tw_id_ok(value: str) -> bool:
    if not re.fullmatch(r"[A-Z][0-9]{9}", value):
        return False
    code = ID_LETTER[value[0]]
    total = code // 10 + (code % 10) * 9 + sum(int(d) * w for d, w in zip(value[1:], (8, 7, 6, 5, 4, 3, 2, 1, 1)))
    return total % 10 == 0


def make_tw_id(r: random.Random, second: str | None = None) -> str:
    """National ID (second digit 1/2) or new-style resident certificate (second digit 8/9)."""
    letter = r.choice("ABCDEFGHJKLMNPQRSTUVXYWZ")
    body = (second or r.choice("12")) + "".join(r.choice("0123456789") for _ in range(7))
    for last in "0123456789":
        if tw_id_ok(letter + body + last):
            return letter + body + last
    raise AssertionError("no check digit")


def ubn_ok(value: str) -> bool:
    """統一編號 (older rule, divisible by 10, which the 2023 rule also accepts)."""
    if not re.fullmatch(r"[0-9]{8}", value):
        return False
    total = sum(sum(divmod(int(d) * w, 10)) for d, w in zip(value, (1, 2, 1, 2, 1, 2, 4, 1)))
    if value[6] == "7":
        return total % 10 == 0 or (total + 1) % 10 == 0
    return total % 10 == 0


def make_ubn(r: random.Random) -> str:
    while True:
        head = "".join(r.choice("0123456789") for _ in range(6)) + r.choice("01234568")
        for last in "0123456789":
            if ubn_ok(head + last):
                return head + last


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def make_card(r: random.Random) -> str:
    head = "4" + "".join(r.choice("0123456789") for _ in range(14))
    last = next(d for d in "0123456789" if luhn_ok(head + d))
    digits = head + last
    return " ".join(digits[i:i + 4] for i in range(0, 16, 4))


_EMAIL_USERS = ["chen.yiting", "linjr", "wang0815", "service", "hr", "a.lee", "huang.mh", "tsai_pei", "kevin.wu",
                "amy.chang", "contact", "yjlin", "hsu.wenjie", "mandy1988", "jack_tw", "shihhan", "account",
                "su.chingyi", "peggy.ho", "liao.cy"]
_EMAIL_HOSTS = ["example.com.tw", "example.org.tw", "example.com", "mail.example.net", "gov.example.tw",
                "edu.example.tw", "example.tw"]


def make_pii(kind: str, r: random.Random) -> str:
    d = lambda n: "".join(r.choice("0123456789") for _ in range(n))  # noqa: E731
    if kind == "email":
        return f"{r.choice(_EMAIL_USERS)}@{r.choice(_EMAIL_HOSTS)}"
    if kind == "mobile":  # 0912-345-678
        return f"09{d(2)}-{d(3)}-{d(3)}"
    if kind == "mobile_plain":  # 0912345678
        return f"09{d(8)}"
    if kind == "mobile_intl":  # +886 912 345 678
        return f"+886 9{d(2)} {d(3)} {d(3)}"
    if kind == "tel":  # (02)2345-6789, (07)345-6789
        area = r.choice(["02", "04", "07", "06", "03"])
        return f"({area}){r.choice('2345678')}{d(3)}-{d(4)}" if area in ("02", "04") else f"({area}){r.choice('2345678')}{d(2)}-{d(4)}"
    if kind == "tel_dash":  # 02-2345-6789
        area = r.choice(["02", "04", "07", "06"])
        return f"{area}-{r.choice('2345678')}{d(3)}-{d(4)}" if area in ("02", "04") else f"{area}-{r.choice('2345678')}{d(2)}-{d(4)}"
    if kind == "intl":  # +886-2-2345-6789
        return f"+886-2-{r.choice('2345678')}{d(3)}-{d(4)}"
    if kind == "id":
        return make_tw_id(r)
    if kind == "rid":
        return make_tw_id(r, second=r.choice("89"))
    if kind == "badid":  # ID-shaped, wrong checksum: must NOT be redacted
        good = make_tw_id(r)
        return good[:-1] + str((int(good[-1]) + 3) % 10)
    if kind == "ubn":
        return make_ubn(r)
    if kind == "card":
        return make_card(r)
    if kind == "ip":
        return f"{r.choice([1, 36, 49, 59, 61, 101, 111, 114, 118, 123, 220])}.{r.randint(1, 254)}.{r.randint(1, 254)}.{r.randint(1, 254)}"
    raise KeyError(kind)


PII_CATEGORY = {"email": "email", "mobile": "phone", "mobile_plain": "phone", "mobile_intl": "phone", "tel": "phone",
                "tel_dash": "phone", "intl": "phone", "id": "id", "rid": "id", "ubn": "business_id", "card": "card",
                "ip": "ip"}
_PLACEHOLDER = re.compile(r"\{(email|mobile_plain|mobile_intl|mobile|tel_dash|tel|intl|id|rid|badid|ubn|card|ip)(\d?)\}")
_KEEP_MARK = re.compile(r"⟦(.+?)⟧")


def fill(text: str, key: str) -> tuple[str, dict]:
    """Fill PII placeholders with generated values and strip ⟦…⟧ must-keep markers; returns the text and
    the MANIFEST facts: pii (categories), pii_values, must_keep (strings a redactor must leave alone)."""
    r = rng_for("pii", key)
    values: dict[str, str] = {}
    facts: dict = {}
    pii_values: dict[str, list[str]] = {}
    must_keep: list[str] = []

    def repl(m):
        token = m.group(0)
        if token not in values:
            values[token] = make_pii(m.group(1), r)
            if m.group(1) == "badid":
                must_keep.append(values[token])
            else:
                pii_values.setdefault(PII_CATEGORY[m.group(1)], []).append(values[token])
        return values[token]

    text = _PLACEHOLDER.sub(repl, text)

    def keep(m):
        must_keep.append(m.group(1))
        return m.group(1)

    text = _KEEP_MARK.sub(keep, text)
    if pii_values:
        facts["pii"] = sorted(pii_values)
        facts["pii_values"] = {k: v for k, v in sorted(pii_values.items())}
    if must_keep:
        facts["must_keep"] = must_keep
    return text, facts


# ----------------------------------------------------------------------------------------------------
# Transforms that make variants
# ----------------------------------------------------------------------------------------------------

def shingles(text: str, n: int = 5) -> set[str]:
    t = re.sub(r"\s+", "", text)
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(1, len(sa | sb))


def hard_wrap(text: str, width: int) -> str:
    """PDF/gazette layout: every paragraph cut into lines of about ``width`` characters (breaks inside
    sentences), paragraphs separated by blank lines; a block of short lines (a letter's header) stays a
    block. Runs of ASCII (e-mail addresses, phone numbers, amounts) are not split, and closing
    punctuation never starts a line (it hangs at the end of the line before), as typesetters do."""
    pieces: list[tuple[str, bool]] = []
    for para in text.split("\n"):
        para = para.strip()
        if not para:
            continue
        lines, cur = [], ""
        for tok in re.findall(r"[A-Za-z0-9@._%+\-()/:#,]+|.", para):
            if cur and len(cur) + len(tok) > width and tok not in "。，、；：？！」』）":
                lines.append(cur)
                cur = ""
            cur += tok
        lines.append(cur)
        pieces.append(("\n".join(lines), len(lines) == 1))
    out = pieces[0][0]
    for (_, prev_short), (piece, short) in zip(pieces, pieces[1:]):
        out += ("\n" if prev_short and short else "\n\n") + piece
    return out


def sloppy_cp1252(data: bytes) -> str:
    """Bytes read as Windows-1252, undefined bytes kept as U+0080-U+009F (what ftfy calls
    sloppy-windows-1252): the usual way UTF-8 Chinese turns into 'å°ç£'."""
    out = []
    for b in data:
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(b))
    return "".join(out)


def to_pua(text: str, r: random.Random, share: float = 0.8) -> str:
    """Most CJK characters replaced by Private Use Area code points (legacy user-defined characters)."""
    return "".join(chr(0xE000 + (ord(c) * 7 + r.randint(0, 50)) % 0x1800) if "\u4e00" <= c <= "\u9fff" and r.random() < share
                   else c for c in text)


def fullwidth_digits(text: str, limit: int = 100) -> str:
    count = 0

    def f(m):
        nonlocal count
        count += 1
        return "".join(chr(ord(c) + 0xFEE0) for c in m.group(0)) if count <= limit else m.group(0)

    return re.sub(r"[0-9]+", f, text)


def insert_zero_width(text: str, r: random.Random, n: int = 6) -> str:
    chars = list(text)
    spots = sorted(r.sample(range(5, len(chars) - 5), n))
    for i, spot in enumerate(spots):
        chars.insert(spot + i, r.choice(["\u200b", "\u200b", "\u200d", "\ufeff"]))
    return "".join(chars)


COMPAT = {"金": "\uf90a", "樂": "\uf914", "來": "\uf92d", "年": "\uf98e", "料": "\uf9be", "利": "\uf9dd", "理": "\uf9e4",
          "立": "\uf9f7", "行": "\ufa08", "見": "\ufa0a", "類": "\uf9d0", "不": "\uf967"}


def compat_ideographs(text: str, n: int = 4) -> str:
    """A few characters swapped for their CJK compatibility ideographs (as old Big5/HKSCS converters do)."""
    done = 0
    out = []
    for c in text:
        if done < n and c in COMPAT:
            out.append(COMPAT[c])
            done += 1
        else:
            out.append(c)
    return "".join(out)


def bump_first_number(text: str, pattern: str, delta: int = 1) -> str:
    """Change the first match of ``pattern`` (one group of digits) by ``delta``: a reposted article
    with a corrected date or figure."""
    def f(m):
        s, e = m.span(1)
        digits = m.group(1)
        value = int(digits.replace(",", "")) + delta
        new_digits = f"{value:,}" if "," in digits else str(value)
        return m.group(0)[: s - m.start()] + new_digits + m.group(0)[e - m.start():]

    new = re.sub(pattern, f, text, count=1)
    if new == text:
        raise ValueError(f"pattern {pattern!r} not found")
    return new


def drop_paragraph(text: str, index: int) -> str:
    paras = text.split("\n")
    del paras[index]
    return "\n".join(paras)


def swap_quotes(text: str) -> str:
    return text.replace("「", "“").replace("」", "”")


def halfwidth_some_commas(text: str, every: int = 3) -> str:
    count = 0

    def f(m):
        nonlocal count
        count += 1
        return ", " if count % every == 0 else "，"

    return re.sub("，", f, text)


# ----------------------------------------------------------------------------------------------------
# Base documents: hand-written texts and their metadata, read from DATA (one JSON object a line).
#   {email} {mobile} {tel} ... are PII placeholders filled per document; ⟦…⟧ marks strings that look like
#   numbers worth redacting but must be kept (dates, amounts, law articles, ISBNs, document numbers).
# ----------------------------------------------------------------------------------------------------

DATA = Path(__file__).resolve().with_name("sample_corpus_base.jsonl")


@dataclass
class Base:
    title: str
    text: str
    kind: str
    topic: str
    lang: str


@dataclass
class SpamText:
    kind: str
    lang: str
    text: str


BASES: dict[str, Base] = {}
REVIEWS: list[tuple[str, str, str, int]] = []  # (key, title, text, rating): the rows of reviews.csv
SPAM_TEXTS: dict[str, SpamText] = {}  # fixed spam texts (the English ones are not generated)

# table -> the fields a line of DATA must have, with their types
FIELDS: dict[str, dict[str, type]] = {
    "base": {"key": str, "kind": str, "topic": str, "lang": str, "title": str, "text": str},
    "review": {"key": str, "rating": int, "title": str, "text": str},
    "spam": {"key": str, "kind": str, "lang": str, "text": str},
}


class DataError(Exception):
    """DATA is missing or a line of it is malformed."""


_loaded: list[Path] = []  # the file load_data read last, for error messages


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_data(path: Path = DATA) -> None:
    """Fill BASES, REVIEWS and SPAM_TEXTS from ``path``, in file order."""
    bases: dict[str, Base] = {}
    reviews: dict[str, tuple[str, str, str, int]] = {}
    spam: dict[str, SpamText] = {}
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{_shown(path)}: cannot read the base documents ({e.strerror})") from None
    # split on b"\n" only: str.splitlines would also break at U+2028 and friends inside a text
    for n, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{_shown(path)} line {n}"
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"{where}: not UTF-8") from None
        except ValueError as e:
            raise DataError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object")
        table = rec.pop("table", None)
        fields = FIELDS.get(table) if isinstance(table, str) else None
        if fields is None:
            raise DataError(f"{where}: 'table' must be one of {sorted(FIELDS)}")
        if set(rec) != set(fields):
            raise DataError(f"{where}: a {table} line has the fields {sorted(fields)}; missing "
                            f"{sorted(set(fields) - set(rec))}, unknown {sorted(set(rec) - set(fields))}")
        for name, typ in fields.items():
            if type(rec[name]) is not typ:  # type(), not isinstance(): a bool is no rating
                raise DataError(f"{where}: '{name}' must be {'an integer' if typ is int else 'a string'}")
        key = rec["key"]
        if key in bases or key in reviews or key in spam:
            raise DataError(f"{where}: key {key!r} used twice")
        if table == "base":
            bases[key] = Base(rec["title"], rec["text"], rec["kind"], rec["topic"], rec["lang"])
        elif table == "review":
            if not 1 <= rec["rating"] <= 5:
                raise DataError(f"{where}: 'rating' must be 1-5")
            reviews[key] = (key, rec["title"], rec["text"], rec["rating"])
        else:
            if rec["kind"] not in ("gambling_spam", "porn_spam"):
                raise DataError(f"{where}: a spam text's 'kind' must be gambling_spam or porn_spam")
            spam[key] = SpamText(rec["kind"], rec["lang"], rec["text"])
    BASES.clear()
    BASES.update(bases)
    REVIEWS[:] = reviews.values()
    SPAM_TEXTS.clear()
    SPAM_TEXTS.update(spam)
    _loaded[:] = [path]


def entry(table: dict, key: str):
    """``table[key]`` (BASES or SPAM_TEXTS), or a DataError naming the file the key is missing from."""
    try:
        return table[key]
    except KeyError:
        raise DataError(f"{_shown(_loaded[0]) if _loaded else 'no data loaded'}: no line with key {key!r}") from None


# ----------------------------------------------------------------------------------------------------
# Spam, low-quality and too-short documents (generated from pieces, deterministic per document)
# ----------------------------------------------------------------------------------------------------

def line_id(r: random.Random) -> str:
    return "@" + r.choice(["win", "lucky", "gold", "vip", "fa", "king", "bet"]) + str(r.randint(100, 9999))


def spam_url(r: random.Random, words: list[str]) -> str:
    return f"https://{r.choice(words)}{r.randint(10, 999)}.example.{r.choice(['com', 'net', 'org'])}/?ref={r.randint(1000, 99999)}"


CASINOS = ["金鑽娛樂城", "財神到娛樂城", "發發發線上娛樂", "大贏家娛樂城", "鑫寶娛樂", "至尊娛樂城", "富貴888娛樂城", "旺旺來線上娛樂"]
CASINO_OFFERS = ["首儲1000送1000", "新會員儲值送300%", "每日簽到領888", "返水1.2%無上限", "首存100送100", "儲值送現金最高3萬",
                 "註冊就送體驗金500", "推薦好友送500", "週週加碼紅包雨"]
CASINO_GAMES = ["百家樂", "老虎機", "運彩", "捕魚機", "21點", "輪盤", "真人視訊", "電子遊戲", "賓果賓果", "德州撲克", "麻將", "骰寶"]
CASINO_LINES = ["出金最快3分鐘到帳！", "24小時線上客服，出金零等待", "合法經營　安全保密　大額出金無上限", "穩賺不賠　包你回本",
                "上班族兼職首選　在家月入十萬不是夢", "代理招募中！高額佣金　天天結算", "不用本金也能玩", "運彩賽事全面開盤　讓分大小都有",
                "百家樂必勝公式免費教學", "線上博弈第一品牌　信譽保證", "台灣玩家最推薦的娛樂城", "老虎機爆分率最高　今天就來試試手氣"]


def gambling_spam(r: random.Random, style: str) -> str:
    site = r.choice(CASINOS)
    lid, url = line_id(r), spam_url(r, ["win", "lucky", "casino", "bet", "play"])
    offers = r.sample(CASINO_OFFERS, 3)
    games = "、".join(r.sample(CASINO_GAMES, 5))
    lines = r.sample(CASINO_LINES, 4)
    if style == "post":
        body = [f"【{site}】2024最推薦的線上娛樂城🔥🔥🔥", ""] + [f"★{o}★" for o in offers] + [
            f"熱門遊戲：{games}", *lines, "", f"👉官方LINE：{lid}", f"👉立即註冊：{url}", "",
            f"{site}　{site}　{site}", f"加LINE：{lid}　加LINE：{lid}　加LINE：{lid}"]
    elif style == "comment":
        body = [r.choice(["這家店還不錯啦～", "推推，寫得很好！", "感謝分享", "路過幫推"]),
                f"順便推薦大家一個好康：{site}{offers[0]}，{games}通通有，{lines[0]}", f"有興趣加LINE {lid} 找客服"]
    elif style == "agent":
        body = [f"【代理招募】{site}誠徵線上代理", "", "不需經驗、不用囤貨、手機就能做",
                "佣金抽成最高50%　每週結算　出金快速", f"會員玩{games}你就有分紅", "躺著也能賺　被動收入月入六位數",
                "", f"意者私LINE：{lid}", f"官網：{url}", "名額有限　先搶先贏！！！", "名額有限　先搶先贏！！！"]
    elif style == "sports":
        body = ["🏀⚾⚽ 今日運彩賽事分析 ⚽⚾🏀", "連續十場過關　勝率87%　跟單就賺", "今日推薦：NBA讓分、MLB大小分、日職獨贏",
                f"完整明牌只在LINE群組公布：{lid}", f"下注請到{site}：{url}", offers[0] + "　" + offers[1], "不跟後悔　錯過再等一年"]
    else:  # "repeat"
        unit = f"{site}｜{offers[0]}｜{games}｜LINE：{lid}"
        body = [unit] * r.randint(6, 10) + [url]
    return "\n".join(body)


ADULT_LINES = ["寂寞嗎？今晚有人陪你聊天", "外送茶　全台可約　學生兼職　輕熟女", "約砲不用錢　同城交友馬上約", "一夜情　今晚就約　真人認證",
               "援交妹　台北　新北　桃園　台中　高雄都有", "成人影片　無碼　每日更新　免費看", "激情視訊　真人互動　不用下載",
               "保證本人　照片不符全額退費", "18禁　未滿18歲請立即離開", "私密影片免費下載", "安全隱密　價格實在　歡迎詢問",
               "新妹到　先到先約", "定點服務　車站附近　隱私有保障"]


def porn_spam(r: random.Random, style: str) -> str:
    lid = r.choice(["sweet", "honey", "baby", "love", "kitty", "mimi"]) + str(r.randint(100, 9999))
    url = spam_url(r, ["av", "sexy", "date", "hot", "tea"])
    lines = r.sample(ADULT_LINES, 5)
    if style == "post":
        body = ["❤❤❤ " + lines[0] + " ❤❤❤", *lines[1:], f"line加好友：{lid}", f"line加好友：{lid}", f"網址：{url}"]
    elif style == "comment":
        body = [r.choice(["好文推一個", "原PO好厲害", "謝謝分享"]), f"{lines[0]}，{lines[1]}，加賴{lid}"]
    elif style == "list":
        cities = r.sample(["台北", "新北", "桃園", "新竹", "台中", "台南", "高雄", "屏東"], 4)
        body = [f"【{c}外送茶】{r.choice(ADULT_LINES)}　LINE：{lid}" for c in cities] + [f"更多資訊：{url}"]
    else:  # "repeat"
        unit = f"{lines[0]}　{lines[1]}　加LINE {lid}"
        body = [unit] * r.randint(5, 8)
    return "\n".join(body)


def low_quality(kind: str, r: random.Random) -> str:
    if kind == "repeat_lines":
        return "\n".join(r.choice(["點我領取！", "點我領取！", "點我領取！！", "免費點我領取！"]) for _ in range(50))
    if kind == "stock_table":
        rows = ["代號　　成交　漲跌　漲幅%　成交量", "=" * 36]
        for _ in range(30):
            code = r.randint(1101, 9958)
            price = r.randint(1000, 90000) / 100
            diff = r.randint(-300, 300) / 100
            rows.append(f"{code}　{'▲' if diff > 0 else '▼'}　{price:.2f}　{diff:+.2f}　{diff / price * 100:+.2f}　{r.randint(100, 99999):,}")
        return "\n".join(rows)
    if kind == "keywords":
        words = ["台北搬家", "台北搬家公司", "搬家推薦", "新北搬家", "搬家價格", "搬家費用", "便宜搬家", "搬家公司推薦", "學生搬家",
                 "小搬家", "鋼琴搬運", "搬家估價", "台北市搬家", "新北市搬家公司", "搬家ptt", "搬家dcard", "搬家紙箱", "搬家注意事項"]
        return "，".join(r.choice(words) for _ in range(80))
    if kind == "symbols":
        parts = []
        for _ in range(25):
            parts.append(r.choice(["＝＝＝＝＝＝＝＝＝＝", "----------", "||||||||||", "☆★☆★☆★☆★", "■□■□■□■□", "※※※※※※",
                                   "~~~~~~~~~~", "##########", "◎◎◎◎◎◎"]))
        return "\n".join(parts)
    if kind == "nav_dump":
        return "\n".join(["首頁 | 最新消息 | 關於我們 | 產品介紹 | 服務項目 | 聯絡我們 | 隱私權政策 | 網站地圖"] * 8
                         + ["Copyright © 2024 All Rights Reserved.", "上一頁　下一頁　回頂端"])
    if kind == "haha":
        return "哈" * 180 + "\n" + "笑死" * 20 + "\n" + "XDDDDDDDDDDDDDDDD"
    if kind == "lottery":
        rows = []
        for i in range(30):
            nums = sorted(r.sample(range(1, 50), 6))
            rows.append(f"第113000{120 + i:03d}期　" + "　".join(f"{n:02d}" for n in nums) + f"　特別號　{r.randint(1, 49):02d}")
        return "\n".join(rows)
    if kind == "english_keywords":
        words = ["best vpn taiwan", "vpn taiwan free", "cheap vpn taiwan", "taiwan vpn 2024", "fast vpn asia", "vpn for netflix taiwan",
                 "free vpn download", "vpn app taiwan", "top 10 vpn", "vpn review taiwan"]
        return ", ".join(r.choice(words) for _ in range(70))
    raise KeyError(kind)


# ----------------------------------------------------------------------------------------------------
# HTML pages: one main article inside realistic boilerplate
# ----------------------------------------------------------------------------------------------------

FAKE_HEADLINES = ["市區公車明起調整路線　通勤族留意", "週末天氣晴朗　早晚溫差大", "中油：下週汽油價格不調整", "國道連假收費方案出爐",
                  "老字號鹹酥雞店歇業　老顧客不捨", "百貨週年慶開跑　首日業績創新高", "颱風假怎麼放？人事總處說明", "電影票房冠軍再度易主"]


def entityize(paragraph: str, r: random.Random, numeric: int = 2, nbsp: bool = False) -> str:
    """HTML-escape a paragraph and write a few characters as character references (&#x6211; &#25105;),
    as CMS editors and old converters do; optionally indent it with &nbsp;."""
    out = htmllib.escape(paragraph, quote=False)
    candidates = [c for c in dict.fromkeys(out) if "\u4e00" <= c <= "\u9fff"]
    for c in r.sample(candidates, min(numeric, len(candidates))):
        ref = f"&#x{ord(c):x};" if r.random() < 0.5 else f"&#{ord(c)};"
        out = out.replace(c, ref, 1)
    return ("&nbsp;&nbsp;" if nbsp else "") + out


def html_news(title: str, paras: list[str], r: random.Random, site: str = "台灣日報", date: str = "2024-07-23",
              byline: str = "記者林○○／臺北報導") -> tuple[str, list[str]]:
    body = []
    for i, p in enumerate(paras):
        body.append(f"<p>{entityize(p, r)}</p>")
        if i == 1:
            body.append('<div class="ad-box inline"><!-- in-article ad -->【廣告】信用卡新戶首刷禮，最高回饋3,000元&nbsp;<a href="https://bank.example.com/card">了解更多</a></div>')
    related = "\n".join(f'<li><a href="/news/{r.randint(100000, 999999)}">{h}</a></li>' for h in r.sample(FAKE_HEADLINES, 4))
    page = f"""<!DOCTYPE html>
<html lang="zh-Hant-TW">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{htmllib.escape(title)}｜{site}</title>
<meta name="description" content="{htmllib.escape(paras[0][:60])}…">
<meta property="og:title" content="{htmllib.escape(title)}">
<link rel="stylesheet" href="/static/css/main.css?v=20240801">
<style>
  body {{ font-family: "Noto Sans TC", "微軟正黑體", sans-serif; margin: 0; }}
  .nav a {{ padding: 0 12px; color: #333; }}
  .cookie-bar {{ position: fixed; bottom: 0; width: 100%; background: #222; color: #fff; }}
  .ad-box::before {{ content: "廣告"; font-size: 12px; color: #999; }}
</style>
<script async src="https://ads.example.com/tag.js"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('js', new Date());
  var siteNotice = "本網站內容未經授權，禁止轉載。";
  var breaking = ["即時：國道一號北上車禍回堵五公里", "快訊：台股盤中上漲百點"];
</script>
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"NewsArticle","headline":"{title}","datePublished":"{date}T08:30:00+08:00","publisher":{{"@type":"Organization","name":"{site}"}}}}</script>
</head>
<body>
<!-- ===== header ===== -->
<header class="top">
  <a class="logo" href="/">{site}</a>
  <nav class="nav">
    <a href="/">首頁</a><a href="/politics">政治</a><a href="/society">社會</a><a href="/life">生活</a><a href="/world">國際</a><a href="/finance">財經</a><a href="/sports">體育</a><a href="/travel">旅遊&amp;美食</a>
  </nav>
  <form class="search" action="/search"><input type="text" name="q" placeholder="搜尋新聞關鍵字"><button>搜尋</button></form>
</header>
<div class="ad-box" id="ad-top"><!-- 廣告版位 728x90 --><a href="https://shop.example.com/?utm=top">夏季家電特賣，最低五折起！立即選購&nbsp;&raquo;</a></div>
<div class="breadcrumb"><a href="/">首頁</a> &gt; <a href="/life">生活</a></div>
<main>
<article>
<h1>{htmllib.escape(title)}</h1>
<div class="meta"><span class="author">{byline}</span> <time datetime="{date}">{date.replace('-', '/')} 08:30</time></div>
<div class="share">分享：<a href="#">Facebook</a> <a href="#">LINE</a> <a href="#">複製連結</a></div>
{chr(10).join(body)}
<p class="editor">（責任編輯：王○○）</p>
</article>
<aside class="related">
<h3>相關新聞</h3>
<ul>
{related}
</ul>
</aside>
</main>
<footer>
<nav><a href="/about">關於我們</a> | <a href="/privacy">隱私權政策</a> | <a href="/contact">聯絡我們</a> | <a href="/ads">廣告刊登</a></nav>
<p>{site} 版權所有 &copy; 2024 All Rights Reserved.</p>
<p>地址：臺北市中正區○○路100號　客服信箱：service@news.example.tw</p>
</footer>
<div class="cookie-bar" id="cookie">本網站使用Cookie以提供更好的瀏覽體驗，繼續瀏覽即表示您同意我們的<a href="/privacy">隱私權政策</a>。<button onclick="document.getElementById('cookie').remove()">我知道了</button></div>
<script>
  document.querySelectorAll(".share a").forEach(function (a) {{ a.title = "分享這篇文章"; }});
  if (!navigator.cookieEnabled) {{ alert("請開啟瀏覽器的Cookie功能，以正常瀏覽本網站。"); }}
</script>
</body>
</html>
"""
    return page, ["本網站使用Cookie", "夏季家電特賣", "信用卡新戶首刷禮", "禁止轉載", "相關新聞", "搜尋新聞關鍵字"]


def html_gov(title: str, paras: list[str], r: random.Random, agency: str = "臺中市政府社會局",
             roc_date: str = "113-03-18") -> tuple[str, list[str]]:
    content = "\n".join(f"<p>{entityize(p, r, nbsp=True)}</p>" for p in paras)
    page = f"""<!DOCTYPE html>
<html lang="zh-Hant">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<title>{htmllib.escape(title)}-最新消息-{agency}</title>
<style>
  .skip {{ position: absolute; left: -9999px; }}
  #menu li {{ display: inline-block; padding: 4px 10px; }}
  table.info th {{ background: #e8f0f8; }}
</style>
<script src="/js/jquery.min.js"></script>
<script>
  var fontSizeMsg = "字級設定：小 中 大";
  $(function () {{ $("#gotop").click(function () {{ $("html,body").animate({{scrollTop: 0}}); return false; }}); }});
</script>
</head>
<body>
<a href="#main" class="skip" title="跳到主要內容區塊">跳到主要內容區塊</a>
<div id="header">
<a href="#" accesskey="U" title="上方功能區塊">:::</a>
<h1 class="logo"><a href="/">{agency}</a></h1>
<ul class="topnav"><li><a href="/">回首頁</a></li><li><a href="/sitemap">網站導覽</a></li><li><a href="/en">English</a></li><li><a href="/rss">RSS</a></li></ul>
<ul id="menu"><li>機關介紹</li><li>業務資訊</li><li>最新消息</li><li>便民服務</li><li>政府資訊公開</li><li>常見問答</li></ul>
</div>
<div id="main">
<a href="#" accesskey="C" title="中央內容區塊">:::</a>
<div class="path">現在位置：<a href="/">首頁</a> &gt; <a href="/news">最新消息</a></div>
<h2>{htmllib.escape(title)}</h2>
<table class="info">
<tr><th>發布單位</th><td>{agency}</td></tr>
<tr><th>發布日期</th><td>{roc_date}</td></tr>
<tr><th>點閱次數</th><td>{r.randint(300, 9000)}</td></tr>
</table>
<div class="content">
{content}
</div>
<div class="files">相關檔案：<a href="/files/{r.randint(1000, 9999)}.pdf">申請表.pdf</a>（126KB）<a href="/files/{r.randint(1000, 9999)}.odt">申請表.odt</a>（88KB）</div>
<div class="print"><a href="javascript:window.print()">友善列印</a>｜<a href="javascript:history.back()">回上一頁</a>｜<a href="#" id="gotop">回頁首</a></div>
</div>
<div id="footer">
<a href="#" accesskey="B" title="下方功能區塊">:::</a>
<p>{agency}　地址：臺中市西屯區臺灣大道三段99號　總機：(04)2228-9111</p>
<p>服務時間：週一至週五 上午8:00至下午5:00（中午不休息）</p>
<p>瀏覽人次：{r.randint(1000000, 9999999)}　最後更新日期：{roc_date}</p>
<img src="/images/accessibility.png" alt="通過AA檢測等級無障礙網頁檢測">
</div>
</body>
</html>
"""
    return page, ["跳到主要內容區塊", "網站導覽", "服務時間", "友善列印", "字級設定"]


def html_blog(title: str, paras: list[str], r: random.Random, blog: str = "小資女的生活筆記", date: str = "2024-05-12",
              category: str = "生活", declare_charset: bool = True) -> tuple[str, list[str]]:
    content = "\n".join(f"<p>{entityize(p, r)}</p>" for p in paras)
    charset = '<meta charset="UTF-8">\n' if declare_charset else ""
    page = f"""<!doctype html>
<html lang="zh-TW">
<head>
{charset}<title>{htmllib.escape(title)} | {blog}</title>
<style>.sidebar {{ float: right; width: 30%; }} .tag {{ background: #eee; border-radius: 3px; }}</style>
<script>
  var _popup = {{ text: "訂閱電子報，每週收到最新文章！", btn: "立即訂閱" }};
  setTimeout(function () {{ console.log("popup: " + _popup.text); }}, 5000);
</script>
</head>
<body class="post-template-default single">
<div id="site-header">
<span class="site-title">{blog}</span> <span class="tagline">記錄生活裡的小確幸</span>
<ul class="menu"><li><a href="/">首頁</a></li><li><a href="/c/food">美食&amp;旅遊</a></li><li><a href="/c/life">生活</a></li><li><a href="/c/money">理財</a></li><li><a href="/about">關於我</a></li></ul>
</div>
<div class="container">
<div class="post">
<h1 class="entry-title">{htmllib.escape(title)}</h1>
<div class="entry-meta">發表於 {date}　・　分類：{category}　・　2則留言</div>
<div class="entry-content">
{content}
</div>
<div class="tags">標籤：<a class="tag" href="/tag/1">{category}</a> <a class="tag" href="/tag/2">心得</a></div>
<div class="share-buttons">喜歡這篇文章嗎？分享到 <a href="#">Facebook</a> <a href="#">LINE</a> <a href="#">Threads</a></div>
<div class="author-box">關於作者：熱愛生活的上班族，假日喜歡到處走走，用文字記錄每一個值得紀念的日子。</div>
</div>
<div id="comments">
<h3>2則留言</h3>
<div class="comment"><b>路人甲</b>　{date}<br>謝謝分享，很實用！</div>
<div class="comment"><b>小美</b>　{date}<br>寫得好清楚，收藏起來了～</div>
</div>
<div class="sidebar">
<h4>熱門文章</h4><ul><li><a href="/p/1">十個讓房間變整齊的收納技巧</a></li><li><a href="/p/2">月薪三萬如何存到第一桶金</a></li></ul>
<h4>訂閱</h4><p>輸入Email訂閱最新文章</p><input type="email" placeholder="you@example.com">
<h4>贊助連結</h4><div class="ad">【廣告】線上英文家教，首堂免費體驗</div>
</div>
</div>
<footer>&copy; 2024 {blog}. Powered by WordPress.</footer>
</body>
</html>
"""
    return page, ["訂閱電子報", "熱門文章", "線上英文家教", "關於作者", "Powered by WordPress"]


def html_shop(title: str, paras: list[str], r: random.Random, price: str = "2,680") -> tuple[str, list[str]]:
    content = "\n".join(f"<p>{entityize(p, r, numeric=1)}</p>" for p in paras)
    page = f"""<!DOCTYPE html>
<html lang="zh-Hant-TW">
<head>
<meta charset="utf-8">
<title>{htmllib.escape(title)} - 好物市集</title>
<style>.price {{ color: #d00; font-size: 24px; }} .btn {{ background: #f60; color: #fff; }}</style>
<script>
  var cartMsg = {{ added: "已加入購物車", soldOut: "商品已售完，請選擇其他款式" }};
  function addToCart(id) {{ alert(cartMsg.added); }}
</script>
</head>
<body>
<div class="topbar">全館滿799免運｜新會員首購折100｜<a href="/login">登入</a>｜<a href="/register">註冊</a>｜<a href="/cart">購物車(0)</a></div>
<nav class="cat"><a href="/c/home">居家生活</a> <a href="/c/kitchen">廚房家電</a> <a href="/c/3c">3C家電</a> <a href="/c/beauty">美妝保養</a> <a href="/c/food">美食&amp;伴手禮</a></nav>
<div class="product">
<h1>{htmllib.escape(title)}</h1>
<div class="price">NT$ {price}</div>
<div class="promo">限時特價！今日下單，明天到貨</div>
<button class="btn" onclick="addToCart(10293)">加入購物車</button> <button class="btn">直接購買</button>
<div class="desc">
{content}
</div>
</div>
<div class="recommend"><h3>看了這個商品的人也看了</h3><ul><li>多功能電烤盤　NT$1,990</li><li>不鏽鋼蒸籠　NT$590</li><li>304不鏽鋼內鍋（替換用）NT$890</li></ul></div>
<footer><p>客服時間：週一至週五 09:00-18:00　客服信箱：cs@shop.example.tw</p><p>&copy; 2024 好物市集股份有限公司</p></footer>
<div class="cookie">我們使用Cookie來改善您的購物體驗。<a href="/privacy">了解更多</a> <button>接受</button></div>
</body>
</html>
"""
    return page, ["加入購物車", "全館滿799免運", "看了這個商品的人也看了", "客服時間", "已加入購物車"]


def html_big5(title: str, paras: list[str], r: random.Random, site: str, date: str, meta: str) -> tuple[str, list[str]]:
    content = "\r\n".join(f"{entityize(p, r, numeric=1)}<br><br>" for p in paras)
    page = f"""<html>
<head>
{meta}
<title>{htmllib.escape(title)} - {site}</title>
<style type="text/css">
<!--
td {{ font-size: 10pt; line-height: 150%; }}
-->
</style>
<script language="JavaScript">
<!--
function MM_openBrWindow(theURL, winName, features) {{ window.open(theURL, winName, features); }}
var msg = "歡迎光臨{site}！";
window.status = msg;
//-->
</script>
</head>
<body bgcolor="#FFFFFF" leftmargin="0" topmargin="0">
<table width="760" border="0" align="center" cellpadding="4" cellspacing="0">
<tr><td colspan="2"><img src="images/banner.gif" width="760" height="90" alt="{site}"><br>
<marquee scrollamount="3">最新消息：本站將於週六凌晨進行系統維護，造成不便敬請見諒。</marquee></td></tr>
<tr>
<td width="150" valign="top" bgcolor="#EEEEEE">
<a href="index.htm">回首頁</a><br><a href="news.htm">最新消息</a><br><a href="guestbook.htm">留言板</a><br><a href="link.htm">好站連結</a><br><a href="javascript:MM_openBrWindow('mail.htm','mail','width=400,height=300')">聯絡站長</a>
</td>
<td valign="top">
<font size="4" color="#003399"><b>{htmllib.escape(title)}</b></font><br>
<font size="2" color="#666666">{date}</font>
<hr size="1" noshade>
{content}
</td>
</tr>
<tr><td colspan="2" align="center"><font size="2">版權所有 &copy; {site}　建議使用IE 6.0以上瀏覽器，解析度1024x768<br>您是第 <font color="red">{r.randint(10000, 99999):06d}</font> 位訪客</font></td></tr>
</table>
</body>
</html>
"""
    return page.replace("\r\n", "\n").replace("\n", "\r\n"), ["最新消息：本站將於週六凌晨", "建議使用IE", "位訪客", "聯絡站長"]


def html_simplified_shop(title: str, paras: list[str], r: random.Random) -> tuple[str, list[str]]:
    content = "\n".join(f"<p>{entityize(p, r, numeric=1)}</p>" for p in paras)
    page = f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{htmllib.escape(title)} - 优选商城</title>
<script>var tip = "新用户注册即送优惠券"; console.log(tip);</script>
</head>
<body>
<div class="header"><a href="/">首页</a> | <a href="/list">全部商品</a> | <a href="/cart">购物车</a> | <a href="/login">登录</a> | <a href="/app">下载APP</a></div>
<div class="main">
<h1>{htmllib.escape(title)}</h1>
{content}
<button>立即购买</button> <button>加入购物车</button>
</div>
<div class="footer">客服热线：400-000-0000（工作日9:00-18:00）　&copy; 2024 优选商城 版权所有</div>
</body>
</html>
"""
    return page, ["新用户注册即送优惠券", "下载APP", "客服热线"]


def html_boilerplate_only(r: random.Random, which: str) -> str:
    if which == "404":
        page, _ = html_news("找不到網頁", ["很抱歉，您要找的網頁不存在或已被移除。"], r)
        # the "article" is one line: replace the article block by the error box
        page = re.sub(r"<article>.*?</article>", '<div class="error"><h1>404</h1><p>很抱歉，您要找的網頁不存在或已被移除。</p><a href="/">回首頁</a></div>',
                      page, flags=re.S)
        return page
    # a members-only page: login box, nav, footer
    return """<!DOCTYPE html>
<html lang="zh-Hant">
<head>
<meta charset="utf-8">
<title>會員登入 - 生活情報網</title>
<style>.login { width: 320px; margin: 40px auto; }</style>
<script>var loginErr = "帳號或密碼錯誤，請重新輸入"; var captchaTip = "請輸入驗證碼";</script>
</head>
<body>
<header><a href="/">生活情報網</a>
<nav><a href="/">首頁</a> | <a href="/food">美食</a> | <a href="/travel">旅遊</a> | <a href="/life">生活</a> | <a href="/member">會員中心</a></nav></header>
<div class="login">
<h2>會員登入</h2>
<p>本文僅限會員閱讀，請先登入。</p>
<form><label>帳號</label><input name="u"><label>密碼</label><input type="password" name="p"><button>登入</button></form>
<p><a href="/forgot">忘記密碼？</a>｜<a href="/register">免費註冊</a>｜<a href="/login/line">使用LINE登入</a></p>
</div>
<footer><a href="/terms">服務條款</a> | <a href="/privacy">隱私權政策</a> | <a href="/contact">聯絡我們</a><br>&copy; 2024 生活情報網</footer>
<div class="cookie">本網站使用Cookie，繼續瀏覽即表示同意。<button>同意</button></div>
</body>
</html>
"""


def html_spam_page(body_text: str, title: str) -> str:
    lines = "\n".join(f"<p>{htmllib.escape(line)}</p>" if line else "<br>" for line in body_text.split("\n"))
    return f"""<!DOCTYPE html>
<html lang="zh-Hant">
<head>
<meta charset="utf-8">
<title>{htmllib.escape(title)}</title>
<meta name="keywords" content="{htmllib.escape(title.replace('｜', ','))}">
<style>body {{ background: #000; color: gold; text-align: center; }} .btn {{ font-size: 28px; }}</style>
<script>setTimeout(function () {{ document.getElementById("pop").style.display = "block"; }}, 3000);</script>
</head>
<body>
<h1>{htmllib.escape(title)}</h1>
{lines}
<div id="pop" style="display:none"><a class="btn" href="#">立即加入</a></div>
</body>
</html>
"""


# ----------------------------------------------------------------------------------------------------
# Documents and their placement
# ----------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Doc:
    file: str
    text: str  # the stored text; for HTML the main text an extractor should find; for .txt the decoded text
    kind: str
    expect: str = "keep"
    facts: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)  # extra fields of the JSONL / CSV record
    title: str = ""
    dup_of: "Doc | None" = None
    id: str = ""
    raw: str | None = None  # HTML source
    encoding: str = "utf-8"


def base_doc(key: str, file: str, **extra) -> Doc:
    b = entry(BASES, key)
    text, facts = fill(b.text, f"{file}:{key}")
    kind = b.kind if b.kind != "clean" else ("pii" if "pii" in facts else "clean")
    facts = {"lang": b.lang, "base": key, "topic": b.topic, **facts, **extra}
    if b.kind == "simplified":
        facts.update(simplified=True, drop_ok=True)
    return Doc(file, text, kind, "keep", facts, title=b.title)


def carry_pii(orig: Doc, text: str) -> dict:
    """The PII facts of ``orig`` that still apply to ``text``."""
    out = {}
    values = {k: [v for v in vs if v in text] for k, vs in orig.facts.get("pii_values", {}).items()}
    values = {k: v for k, v in values.items() if v}
    if values:
        out["pii"], out["pii_values"] = sorted(values), values
    keep = [s for s in orig.facts.get("must_keep", []) if s in text]
    if keep:
        out["must_keep"] = keep
    return out


def near_dup(orig: Doc, file: str, text: str, edit: str, title: str | None = None) -> Doc:
    j = round(jaccard(orig.text, text), 3)
    facts = {"lang": orig.facts.get("lang"), "base": orig.facts.get("base"), "edit": edit, "jaccard_5gram": j,
             **({"hard": True} if j < 0.8 else {}), **carry_pii(orig, text)}
    return Doc(file, text, "near_duplicate", "near_duplicate", facts, title=title or orig.title, dup_of=orig)


def exact_dup(orig: Doc, file: str, text: str | None = None, note: str | None = None) -> Doc:
    facts = {"lang": orig.facts.get("lang"), "base": orig.facts.get("base"), **carry_pii(orig, text or orig.text)}
    if note:
        facts["after_normalization"] = True
        facts["note"] = note
    return Doc(file, orig.text if text is None else text, "exact_duplicate", "duplicate", facts, title=orig.title, dup_of=orig)


def layout_doc(key: str, file: str, width: int, running_header: str | None = None) -> Doc:
    d = base_doc(key, file)
    wrapped = hard_wrap(d.text, width)
    if running_header:  # a gazette's running header and page number every 12 lines, as PDF extraction leaves it
        lines, out, page = wrapped.split("\n"), [], 1
        for i, line in enumerate(lines):
            if i and i % 12 == 0:
                page += 1
                out += ["", f"{running_header}　第{page}頁", ""]
            out.append(line)
        wrapped = "\n".join(out)
        d.facts["running_headers"] = True
    d.facts.update(layout_breaks=True, wrap_width=width, unwrapped_text_sha1=hashlib.sha1(d.text.encode()).hexdigest())
    d.text = wrapped
    d.kind = "layout_broken"
    return d


def spam_doc(file: str, kind: str, text: str, title: str, lang: str = "zh-Hant") -> Doc:
    expect = {"gambling_spam": "gambling", "porn_spam": "porn"}[kind]
    return Doc(file, text, kind, expect, {"lang": lang}, title=title)


def lowq_doc(file: str, which: str, r: random.Random, lang: str = "zh-Hant") -> Doc:
    return Doc(file, low_quality(which, r), "low_quality", "quality", {"lang": lang, "pattern": which}, title="")


def short_doc(file: str, text: str) -> Doc:
    return Doc(file, text, "too_short", "too_short", {"lang": "en" if text.isascii() and any(c.isalpha() for c in text) else "zh-Hant"})


def mojibake_recoverable(key: str, file: str, codec: str) -> Doc:
    d = base_doc(key, file)
    mangle = (lambda s: sloppy_cp1252(s.encode("utf-8"))) if codec == "cp1252" else (lambda s: s.encode("utf-8").decode("latin-1"))
    broken = mangle(d.text)
    facts = {"lang": d.facts["lang"], "base": key, "mojibake": f"utf-8 read as {codec}", "repairable": True,
             "repaired_sha1": hashlib.sha1(d.text.encode()).hexdigest(), "repaired_prefix": d.text[:24],
             "repair_note": "ftfy.fix_encoding restores the text exactly; ftfy.fix_text with its defaults also folds ，to , and curly quotes"}
    if codec == "latin-1":
        facts["note"] = "contains C1 control characters (U+0080-U+009F) that are part of the mojibake: repair before stripping controls"
    return Doc(file, broken, "mojibake_recoverable", "keep", facts, title=mangle(d.title))


def mojibake_fffd(key: str, file: str) -> Doc:
    """Big5 bytes decoded as UTF-8 with errors='replace': mostly U+FFFD, nothing left to repair."""
    text = entry(BASES, key).text
    broken = text.encode("big5").decode("utf-8", errors="replace")
    share = broken.count("\ufffd") / max(1, len(broken.replace("\n", "")))
    return Doc(file, broken, "mojibake_unrepairable", "mojibake_unrepairable",
               {"lang": "zh-Hant", "mojibake": "big5 bytes decoded as utf-8 with replacement", "fffd_share": round(share, 3)})


def mojibake_pua(key: str, file: str) -> Doc:
    text = to_pua(entry(BASES, key).text, rng_for("pua", key))
    share = sum("\ue000" <= c <= "\uf8ff" for c in text) / max(1, len(text.replace("\n", "")))
    return Doc(file, text, "mojibake_unrepairable", "mojibake_unrepairable",
               {"lang": "zh-Hant", "mojibake": "private use area characters", "pua_share": round(share, 3)})


def with_normalize(d: Doc, how: str) -> Doc:
    """A clean document that normalization must change (and keep)."""
    r = rng_for("normalize", d.facts.get("base"))
    if how == "fullwidth_digits":
        d.text = fullwidth_digits(d.text)
    elif how == "zero_width":
        d.text = insert_zero_width(d.text, r)
    elif how == "compat_ideographs":
        d.text = compat_ideographs(d.text)
    d.facts.setdefault("normalize", []).append(how)
    return d


def news_record(d: Doc, r: random.Random, spam: bool = False) -> dict:
    sites = {"台灣日報": "taiwandaily", "南方新聞網": "southnews", "民生晚報": "minsheng", "即時新聞網": "rtnews"}
    date = f"{r.choice([2023, 2024])}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
    if spam:
        return {"title": d.title, "url": spam_url(r, ["news", "daily", "hot"]), "date": date, "source": "crawl"}
    site = r.choice(list(sites))
    return {"title": d.title, "url": f"https://www.{sites[site]}.example/news/{date.replace('-', '')}/{r.randint(100000, 999999)}",
            "date": date, "source": site}


def forum_record(d: Doc, r: random.Random) -> dict:
    date = f"{r.choice([2023, 2024])}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
    orig = d.dup_of.record.get("forum") if d.dup_of is not None else None
    if orig:  # a repost lives on the same site (and board) as the post it copies
        d.record.setdefault("board", orig["board"])
        if orig["source"] == "PTT" and "看板" not in d.text and "轉錄" not in d.text:
            rec = {"board": orig["board"], "title": d.title, "url": f"https://pttmirror.example.net/{orig['board']}/{r.randint(10**7, 10**8)}",
                   "date": orig["date"], "source": "PTT mirror"}
            d.record["forum"] = rec
            return rec
        if orig["source"] == "Dcard":
            rec = {"board": orig["board"], "title": d.title, "url": f"https://www.dcard.tw/f/{orig['board']}/p/{r.randint(250000000, 259999999)}",
                   "date": date, "source": "Dcard"}
            d.record["forum"] = rec
            return rec
    rec = _forum_record(d, r, date)
    d.record["forum"] = rec
    return rec


def _forum_record(d: Doc, r: random.Random, date: str) -> dict:
    base_topic = BASES[d.facts["base"]].topic if d.facts.get("base") in BASES else ""
    if d.text.startswith("作者 ") or "看板 " in d.text or base_topic == "ptt" or (base_topic != "dcard" and r.random() < 0.5):
        board = d.record.get("board") or (re.search(r"看板 (\S+)", d.text).group(1) if "看板 " in d.text else
                                          r.choice(["Gossiping", "Lifeismoney", "Food", "Tainan", "WomenTalk", "joke"]))
        ts = 1672531200 + r.randint(0, 63_000_000)
        return {"board": board, "title": d.title, "url": f"https://www.ptt.cc/bbs/{board}/M.{ts}.A.{r.randint(0, 4095):03X}.html",
                "date": date, "source": "PTT"}
    board = d.record.get("board") or r.choice(["mood", "food", "travel", "relationship", "pet", "exam", "talk"])
    return {"board": board, "title": d.title, "url": f"https://www.dcard.tw/f/{board}/p/{r.randint(250000000, 259999999)}",
            "date": date, "source": "Dcard"}


def build() -> dict[str, list[Doc]]:
    files: dict[str, list[Doc]] = {}
    by: dict[str, Doc] = {}

    def add(d: Doc) -> Doc:
        files.setdefault(d.file, []).append(d)
        if d.facts.get("base") and d.kind not in ("near_duplicate", "exact_duplicate"):
            by.setdefault(d.facts["base"], d)
        return d

    # ---- news.jsonl -------------------------------------------------------------------------------
    F = "news.jsonl"
    for key in [f"n{i:02d}" for i in range(1, 25) if i not in (12, 16)] + ["p01", "p02", "p03", "p05", "p06", "p07", "p08",
                                                                           "p09", "p10", "p11", "x01", "x02", "x03", "x04", "t05"]:
        add(base_doc(key, F))
    add(layout_doc("n12", F, 24))
    add(layout_doc("n16", F, 28))
    t = by["n01"].text
    add(near_dup(by["n01"], F, bump_first_number(t, r"新臺幣(3,200)萬元", 300), "updated figure (農損金額)"))
    add(near_dup(by["n01"], F, drop_paragraph(t, 3), "last paragraph removed"))
    add(near_dup(by["n07"], F, by["n07"].text + "\n晶宏半導體股價今天收盤上漲2.5%，成交量明顯放大。", "sentence added"))
    add(near_dup(by["n08"], F, halfwidth_some_commas(swap_quotes(by["n08"].text)), "punctuation changed (quotes, some commas)"))
    add(near_dup(by["n09"], F, "【即時】" + bump_first_number(by["n09"].text, r"3時(14)分"), "prefix added, time changed"))
    add(near_dup(by["n11"], F, bump_first_number(by["n11"].text, r"加開(68)班次", 2), "number changed"))
    add(near_dup(by["n17"], F, by["n17"].text + "\n警方也提醒，切勿將帳戶或提款卡交給他人使用，以免淪為詐騙集團的人頭帳戶。", "sentence added"))
    add(near_dup(by["n19"], F, by["n19"].text.replace("語言模型", "語言模形", 1).replace("資料", "資科", 1).replace("不過", "不過，", 1), "typos"))
    add(near_dup(by["p06"], F, bump_first_number(by["p06"].text, r"全程約(340)公里", -10), "number changed"))
    add(near_dup(by["x01"], F, "轉載自警政新聞：\n" + by["x01"].text, "repost prefix"))
    add(near_dup(by["n10"], F, bump_first_number(bump_first_number(by["n10"].text, r"累計已達(137)例", 5), r"臺南市(112)例", 5), "updated figures"))
    add(near_dup(by["n05"], F, by["n05"].text.replace("今（26）日", "26日", 1) + "\n（中央社）", "date style changed, credit added"))
    add(near_dup(by["n14"], F, drop_paragraph(by["n14"].text, 1), "middle paragraph removed"))
    add(near_dup(by["p03"], F, by["p03"].text.replace("約占兩成", "約占三成"), "figure changed"))
    add(exact_dup(by["n04"], F))
    add(exact_dup(by["n20"], F))
    n15 = by["n15"]
    add(exact_dup(n15, F, "\r\n".join(line + "  " for line in fullwidth_digits(n15.text).split("\n")),
                  note="full-width digits, CRLF and trailing spaces: equal after normalization"))
    for key in ["z02", "z03", "z04"]:
        add(base_doc(key, F))
    for i, style in enumerate(["post", "sports", "repeat"]):
        add(spam_doc(F, "gambling_spam", gambling_spam(rng_for("gamb", F, i), style), "娛樂城推薦｜首儲送好禮"))
    for i, style in enumerate(["list", "post"]):
        add(spam_doc(F, "porn_spam", porn_spam(rng_for("porn", F, i), style), "同城交友｜今晚有約"))
    add(mojibake_recoverable("mj1", F, "cp1252"))
    add(mojibake_fffd("b03", F))
    add(lowq_doc(F, "stock_table", rng_for("lq", F, 1)))
    add(lowq_doc(F, "nav_dump", rng_for("lq", F, 2)))

    # ---- forum.jsonl.gz ----------------------------------------------------------------------------
    F = "forum.jsonl.gz"
    for key in [f"f{i:02d}" for i in range(1, 19)] + ["p04", "m01", "m02", "m03", "m04", "m05", "c01", "c02", "c05",
                                                      "t01", "t02", "t06"]:
        add(base_doc(key, F))
    with_normalize(by["f08"], "zero_width")
    with_normalize(by["f11"], "fullwidth_digits")
    with_normalize(by["t06"], "compat_ideographs")
    f01 = by["f01"]
    add(near_dup(f01, F, "※ [本文轉錄自 Gossiping 看板 #1bCx9Q2k]\n\n" + f01.text, "PTT cross-post header"))
    add(near_dup(f01, F, "\n".join(f01.text.split("\n")[4:]).replace("--\n※ 發信站", "--\n發信站"),
                 "PTT mirror site: header lines dropped"))
    f04 = by["f04"]
    add(near_dup(f04, F, "🐮🍲 " + drop_paragraph(f04.text, 4), "emoji added, last line removed"))
    add(near_dup(by["f07"], F, by["f07"].text.replace("希望對學弟妹有幫助，大家加油！", "希望對學弟妹有幫助，祝大家金榜題名！"), "closing changed"))
    add(near_dup(by["f12"], F, by["f12"].text + "\n（本文同步發表於Dcard健身板）", "line added"))
    n13 = by["n13"]
    add(near_dup(n13, F, f"[新聞] {n13.title}\n新聞來源：民生晚報\n\n{n13.text}\n\n心得：年輕人真的買不起房。", "news reposted with header and comment",
                 title=f"[新聞] {n13.title}"))
    add(near_dup(by["c01"], F, by["c01"].text.replace("豬五花肉600公克", "豬五花肉500公克").replace("燉煮一個半小時", "燉煮一小時"), "quantities changed"))
    add(near_dup(by["t02"], F, halfwidth_some_commas(swap_quotes(by["t02"].text), every=2), "punctuation changed"))
    add(near_dup(by["m03"], F, by["m03"].text + "\n原文刊載於我的部落格，歡迎來逛逛。", "line added"))
    add(near_dup(by["f02"], F, by["f02"].text.replace("今年都29歲了", "今年都30歲了"), "number changed"))
    add(near_dup(by["f05"], F, by["f05"].text.replace("票價400元", "票價450元").replace("推薦給大家！", "推薦給大家！！"), "price changed"))
    add(near_dup(by["f10"], F, by["f10"].text + "\n附上牠的照片，歡迎大家來看看我家的三腳貓。", "sentence added"))
    add(exact_dup(by["n17"], F))
    add(exact_dup(by["f09"], F))
    add(exact_dup(by["m02"], F))
    for key in ["z01", "z05", "z08", "z09", "z10", "z12", "z15"]:
        add(base_doc(key, F))
    for i, style in enumerate(["post", "comment", "agent", "sports", "repeat", "post", "comment"]):
        add(spam_doc(F, "gambling_spam", gambling_spam(rng_for("gamb", F, i), style), "[廣告] 娛樂城儲值送"))
    for i, style in enumerate(["post", "comment", "list", "repeat", "post", "list"]):
        add(spam_doc(F, "porn_spam", porn_spam(rng_for("porn", F, i), style), "[交友] 今晚寂寞嗎"))
    for s in ["推", "+1", "謝謝分享！", "感謝大大分享", "已私訊", "好文推推"]:
        add(short_doc(F, s))
    for i, which in enumerate(["repeat_lines", "keywords", "haha"]):
        add(lowq_doc(F, which, rng_for("lq", F, i)))
    add(mojibake_recoverable("mj2", F, "latin-1"))
    add(mojibake_pua("k02", F))

    # ---- letters.jsonl.zst -----------------------------------------------------------------------
    F = "letters.jsonl.zst"
    for key in ["l01", "l02", "l03", "l04", "l05", "l06", "l07", "l08", "l09", "g01", "g04", "s01", "s02", "s03"]:
        add(base_doc(key, F))
    add(layout_doc("l10", F, 25, running_header="勞動部公報　第030卷　第185期"))
    add(layout_doc("g03", F, 30))
    add(near_dup(by["l01"], F, by["l01"].text.replace("主旨：為因應", "主旨：（更正）為因應").replace("113年7月22日", "113年7月23日"),
                 "re-sent as a correction, date changed"))
    add(near_dup(by["l03"], F, by["l03"].text.replace("下午2時30分", "下午3時"), "meeting time changed"))
    add(near_dup(by["l07"], F, by["l07"].text.replace("中華民國113年2月20日", "中華民國113年3月5日").replace("申請房屋貸款", "申請信用卡"),
                 "date and purpose changed"))
    add(near_dup(by["g01"], F, by["g01"].text.replace("22,000", "23,000").replace("44,000", "46,000"), "rent changed"))
    add(near_dup(by["s03"], F, by["s03"].text.replace("逾期不受理補選。", "逾期不受理補選，敬請見諒。"), "closing changed"))
    add(near_dup(by["l05"], F, by["l05"].text.replace("最低訂購量為每款3,000盒", "最低訂購量為每款2,000盒").replace("45天", "40天"), "terms changed"))
    add(exact_dup(by["l08"], F))
    add(exact_dup(by["s02"], F))
    for key in ["z07", "z11"]:
        add(base_doc(key, F))

    # ---- reviews.csv --------------------------------------------------------------------------------
    F = "reviews.csv"
    reviews = {}
    for key, title, text, rating in REVIEWS:
        filled, facts = fill(text, f"{F}:{key}")
        d = Doc(F, filled, "pii" if "pii" in facts else "clean", "keep", {"lang": "zh-Hant", "base": key, "topic": "review", **facts},
                record={"rating": rating}, title=title)
        reviews[key] = add(d)
    r03 = reviews["r03"]
    add(near_dup(r03, F, r03.text.replace("\n", "") + "推薦！", "posted again with a small edit")).record = {"rating": 5}
    add(near_dup(reviews["r12"], F, reviews["r12"].text + "（已更新）", "edited, rating changed")).record = {"rating": 4}
    add(near_dup(reviews["r28"], F, reviews["r28"].text.replace("一個60元", "一個65元"), "price changed")).record = {"rating": 5}
    add(near_dup(reviews["r09"], F, reviews["r09"].text.replace("給五顆星。", "給五顆星！大推！"), "ending changed")).record = {"rating": 5}
    add(near_dup(reviews["r19"], F, reviews["r19"].text.replace("甜點的檸檬塔偏甜。", ""), "sentence removed")).record = {"rating": 4}
    add(exact_dup(reviews["r33"], F)).record = {"rating": 1}
    z06 = add(base_doc("z06", F))
    z06.record = {"rating": 4}
    for i in range(2):
        d = add(spam_doc(F, "gambling_spam", gambling_spam(rng_for("gamb", F, i), "comment"), "好康分享"))
        d.record = {"rating": 5}
    d = add(spam_doc(F, "porn_spam", porn_spam(rng_for("porn", F, 0), "comment"), "推薦"))
    d.record = {"rating": 5}
    for s, rating in [("推", 5), ("好用", 5)]:
        add(short_doc(F, s)).record = {"rating": rating}

    # ---- english.parquet --------------------------------------------------------------------------
    F = "english.parquet"
    for i in list(range(1, 27)) + list(range(28, 34)):
        add(base_doc(f"e{i:02d}", F))
    add(mojibake_recoverable("e27", F, "cp1252"))
    add(near_dup(by["e03"], F, by["e03"].text.replace("on Saturday afternoon", "on Sunday afternoon"), "day changed"))
    add(near_dup(by["e21"], F, by["e21"].text + " Police also warned people never to lend their bank accounts to others.", "sentence added"))
    e13 = by["e13"].text
    add(near_dup(by["e13"], F, e13[: e13.rindex(" The official list")], "last sentence removed"))
    add(near_dup(by["e01"], F, by["e01"].text.replace("150 kilometers per hour", "162 kilometers per hour"), "figure changed"))
    add(near_dup(by["e16"], F, "UPDATED: " + by["e16"].text, "prefix added"))
    add(exact_dup(by["e08"], F))
    for key in ("en-casino", "en-adult"):
        fixed = entry(SPAM_TEXTS, key)
        add(spam_doc(F, fixed.kind, fixed.text, "", lang=fixed.lang))
    add(short_doc(F, "Thanks for sharing!"))
    add(lowq_doc(F, "english_keywords", rng_for("lq", F, 0), lang="en"))

    # ---- html/ ----------------------------------------------------------------------------------------
    def page(name: str, key: str, template, **kw) -> Doc:
        d = base_doc(key, f"html/{name}")
        paras = d.text.split("\n")
        d.raw, boiler = template(d.title, paras, rng_for("html", name), **kw)
        d.facts.update(html=True, contains=[paras[0][:16], paras[-1][:16]], not_contains=boiler)
        if d.kind in ("clean", "pii"):
            d.kind = "html_article"
        return add(d)

    page("gov-dentures.html", "h01", html_gov)
    page("blog-pour-over-coffee.html", "h02", html_blog, category="美食")
    page("shop-rice-cooker.html", "h03", html_shop)
    page("news-kaohsiung-lrt.html", "h04", html_news, site="南方新聞網", date="2024-01-01", byline="記者蔡○○／高雄報導")
    page("news-kinmen-bridge.html", "h05", html_news, date="2024-10-31", byline="記者翁○○／金門報導")
    page("news-animal-shelters.html", "h06", html_news, site="民生晚報", date="2024-04-04")
    page("news-rooftop-solar.html", "h07", html_news, date="2024-06-17", byline="記者許○○／彰化報導")
    page("blog-hsinchu-food.html", "h08", html_blog, blog="吃貨日記", category="美食")
    page("blog-sun-moon-lake.html", "h09", html_blog, blog="週末去哪兒", category="旅遊")
    page("news-delivery-insurance.html", "h10", html_news, site="即時新聞網", date="2024-09-02")
    page("gov-emergency-kit.html", "h11", html_gov, agency="新北市政府消防局", roc_date="113-08-30")
    page("blog-etf-nocharset.html", "h12", html_blog, blog="小資理財記", category="理財", declare_charset=False)
    by["h12"].facts["declared_charset"] = None
    page("news-health-checkup.html", "h13", html_news, site="民生晚報", date="2024-11-11", byline="記者陳○○／綜合報導")
    page("blog-alishan-sunrise.html", "t03", html_blog, blog="週末去哪兒", category="旅遊")
    page("blog-tainan-walk.html", "t07", html_blog, category="旅遊")
    page("blog-bubble-tea.html", "c04", html_blog, blog="吃貨日記", category="料理")
    for name, key, meta in [("big5-lukang.html", "b01", '<meta charset="big5">'),
                            ("big5-921-memorial.html", "b02", '<meta http-equiv="Content-Type" content="text/html; charset=big5">'),
                            ("big5-community-college.html", "b03", '<meta charset="BIG5">')]:
        d = page(name, key, html_big5, site=r"鄉土資訊網" if key != "b02" else "南投地方新聞", date="2004/09/21" if key == "b02" else "2005/03/01",
                 meta=meta)
        d.encoding = "big5"
        d.facts["declared_charset"] = "big5"
    by["b01"].facts["note"] = "摸乳巷 is a street name in Lukang: a word filter must not remove this page"
    page("cn-smart-band.html", "z14", html_simplified_shop)
    n02 = by["n02"]
    paras = ["【記者林○○／臺北報導】" + n02.text.split("\n")[0]] + n02.text.split("\n")[1:3]
    raw, boiler = html_news(n02.title, paras, rng_for("html", "nd-mrt"), site="南方新聞網", date="2024-06-28")
    d = near_dup(n02, "html/news-mrt-repost.html", "\n".join(paras), "reposted on another site: byline added, last paragraph removed")
    d.raw = raw
    d.facts.update(html=True, contains=[paras[0][:16]], not_contains=boiler)
    add(d)
    gtext = gambling_spam(rng_for("gamb", "html"), "post")
    d = add(spam_doc("html/casino-landing.html", "gambling_spam", gtext, "2024最新娛樂城推薦｜首儲送1000｜百家樂 老虎機 運彩"))
    d.raw, d.facts["html"] = html_spam_page(gtext, d.title), True
    ptext = porn_spam(rng_for("porn", "html"), "list")
    d = add(spam_doc("html/adult-ads.html", "porn_spam", ptext, "外送茶｜約砲｜成人影片免費看｜18禁"))
    d.raw, d.facts["html"] = html_spam_page(ptext, d.title), True
    for name, which in [("news-404.html", "404"), ("members-only.html", "login")]:
        d = add(Doc(f"html/{name}", "", "html_boilerplate_only", "html_boilerplate_only", {"lang": "zh-Hant", "html": True}))
        d.raw = html_boilerplate_only(rng_for("html", name), which)

    # ---- txt/ ---------------------------------------------------------------------------------------------
    def txt(name: str, d: Doc, encoding: str, newline: str = "\n") -> Doc:
        d.file = f"txt/{name}"
        d.encoding = encoding
        d.facts["encoding"] = encoding
        if newline != "\n":
            d.facts["newline"] = "CRLF"
        d.record["newline"] = newline
        return add(d)

    txt("recipe-turnip-cake.txt", base_doc("c03", "txt"), "utf-8")
    txt("autobiography.txt", base_doc("k05", "txt"), "utf-8")
    txt("press-release-minimum-wage.txt", layout_doc("k06", "txt", 22), "utf-8")
    txt("jiufen-bom.txt", base_doc("t04", "txt"), "utf-8-sig")
    txt("broken-fffd.txt", mojibake_fffd("k02", "txt"), "utf-8")
    txt("casino-spam.txt", spam_doc("txt", "gambling_spam", gambling_spam(rng_for("gamb", "txt"), "agent"), ""), "utf-8")
    txt("adult-spam.txt", spam_doc("txt", "porn_spam", porn_spam(rng_for("porn", "txt"), "repeat"), ""), "utf-8")
    txt("symbols.txt", lowq_doc("txt", "symbols", rng_for("lq", "txt")), "utf-8")
    txt("big5-grandma-kitchen.txt", base_doc("k01", "txt"), "big5", "\r\n")
    txt("big5-park-regulation.txt", base_doc("g02", "txt"), "big5", "\r\n")
    txt("big5-epb-letter-wrapped.txt", layout_doc("k03", "txt", 26), "big5", "\r\n")
    txt("big5-lottery-results.txt", lowq_doc("txt", "lottery", rng_for("lq", "txt", "lottery")), "big5", "\r\n")
    txt("utf16le-scholarship.txt", base_doc("s04", "txt"), "utf-16-le-bom", "\r\n")
    txt("utf16be-library.txt", base_doc("k04", "txt"), "utf-16-be-bom")
    txt("gb18030-meeting-notice.txt", base_doc("z13", "txt"), "gb18030", "\r\n")
    return files


# ----------------------------------------------------------------------------------------------------
# Serialization
# ----------------------------------------------------------------------------------------------------

ID_PREFIX = {"news.jsonl": "news", "forum.jsonl.gz": "forum", "letters.jsonl.zst": "letter", "reviews.csv": "rv",
             "english.parquet": "en"}
LETTER_TYPES = {"official_letter": "函", "meeting_notice": "開會通知單", "business_letter": "商業書信", "certificate": "證明書",
                "minutes": "會議紀錄", "legal_letter": "存證信函", "gazette": "公告", "contract": "契約", "privacy_notice": "告知事項",
                "judgment": "判決", "school_notice": "學校公告", "manufacturing": "新聞稿", "recycling": "新聞稿"}
CODECS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "big5": "big5", "utf-16-le-bom": "utf-16", "utf-16-be-bom": "utf-16",
          "gb18030": "gb18030"}


def order(docs: list[Doc], file: str) -> list[Doc]:
    """Shuffled deterministically, then every duplicate moved to just after its original (the first of a
    group is the one a dedup keeps)."""
    docs = docs[:]
    rng_for("order", file).shuffle(docs)
    changed = True
    while changed:
        changed = False
        for i, d in enumerate(docs):
            if d.dup_of is not None and d.dup_of in docs and docs.index(d.dup_of) > i:
                docs.pop(i)
                docs.insert(docs.index(d.dup_of) + 1, d)
                changed = True
                break
    return docs


def encode_text_file(d: Doc) -> bytes:
    text = d.text.replace("\n", d.record.get("newline", "\n"))
    if d.encoding == "utf-16-le-bom":
        return b"\xff\xfe" + text.encode("utf-16-le")
    if d.encoding == "utf-16-be-bom":
        return b"\xfe\xff" + text.encode("utf-16-be")
    return text.encode(d.encoding)  # utf-8, utf-8-sig (writes the BOM), big5, gb18030: strict


def serialize(files: dict[str, list[Doc]]) -> tuple[dict[str, bytes], list[Doc]]:
    out: dict[str, bytes] = {}
    all_docs: list[Doc] = []
    for file in ["news.jsonl", "forum.jsonl.gz", "letters.jsonl.zst", "reviews.csv", "english.parquet"]:
        docs = order(files[file], file)
        for i, d in enumerate(docs, start=1):
            d.id = f"{ID_PREFIX[file]}-{i:04d}"
        all_docs += docs
        if file == "reviews.csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\r\n")
            w.writerow(["id", "title", "text", "rating"])
            for d in docs:
                w.writerow([d.id, d.title, d.text, d.record["rating"]])
            out[file] = buf.getvalue().encode("utf-8-sig")  # as spreadsheet software exports it: BOM + CRLF
            continue
        if file == "english.parquet":
            table = pa.table({"id": pa.array([d.id for d in docs], pa.string()),
                              "text": pa.array([d.text for d in docs], pa.string()),
                              "lang": pa.array(["en"] * len(docs), pa.string())})
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd", compression_level=9, write_statistics=False)
            out[file] = buf.getvalue()
            continue
        lines = []
        for d in docs:
            r = rng_for("record", file, d.id)
            spam = d.kind in ("gambling_spam", "porn_spam", "low_quality")
            if file == "news.jsonl":
                rec = news_record(d, r, spam)
                rec = {"id": d.id, "title": rec["title"], "text": d.text, "url": rec["url"], "date": rec["date"], "source": rec["source"]}
            elif file == "forum.jsonl.gz":
                rec = forum_record(d, r)
                rec = {"id": d.id, "board": rec["board"], "title": rec["title"], "text": d.text, "url": rec["url"], "date": rec["date"],
                       "source": rec["source"]}
            else:
                date = f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
                doc_type = LETTER_TYPES.get(d.facts.get("topic", ""), "公文")
                source = "中國大陸企業文件" if d.facts.get("lang") == "zh-Hans" else r.choice(["機關公文範本", "企業文件", "公開資料"])
                rec = {"id": d.id, "doc_type": doc_type, "text": d.text, "date": date, "source": source}
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        data = "".join(lines).encode("utf-8")
        if file.endswith(".gz"):
            buf = io.BytesIO()
            with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
                g.write(data)
            data = buf.getvalue()
        elif file.endswith(".zst"):
            try:
                import zstandard
            except ImportError:
                sys.exit("zstandard is needed for letters.jsonl.zst (pip install zstandard)")
            data = zstandard.ZstdCompressor(level=19).compress(data)
        out[file] = data
    for prefix in ("html/", "txt/"):
        names = sorted(f for f in files if f.startswith(prefix))
        for name in names:
            (d,) = files[name]
            d.id = name.split("/", 1)[1]
            all_docs.append(d)
            out[name] = d.raw.encode(d.encoding) if prefix == "html/" else encode_text_file(d)
    return out, all_docs


FORMATS = {"news.jsonl": "jsonl", "forum.jsonl.gz": "jsonl+gzip", "letters.jsonl.zst": "jsonl+zstd",
           "reviews.csv": "csv (utf-8 with BOM, CRLF; columns id,title,text,rating)", "english.parquet": "parquet (id,text,lang)"}


def manifest(out: dict[str, bytes], docs: list[Doc]) -> bytes:
    entries = []
    for d in docs:
        e = {"file": d.file, "id": d.id, "kind": d.kind, "expect": d.expect}
        if d.title:
            e["title"] = d.title
        for k, v in d.facts.items():
            if k in ("base", "topic") and not v:
                continue
            e[k] = v
        if d.dup_of is not None:
            e["duplicate_of"] = {"file": d.dup_of.file, "id": d.dup_of.id}
        if d.file.startswith("html/"):
            e["encoding"] = d.encoding
        entries.append(e)
    file_rows = []
    for f in out:
        n = sum(1 for d in docs if d.file == f)
        row = {"file": f, "format": FORMATS.get(f, "html" if f.startswith("html/") else "text, one document"), "documents": n,
               "bytes": len(out[f])}
        if f.startswith("txt/") or f.startswith("html/"):
            (d,) = [d for d in docs if d.file == f]
            row["encoding"] = d.encoding
            if f.startswith("txt/"):
                row["python_codec"] = CODECS[d.encoding]
        file_rows.append(row)
    kinds: dict[str, int] = {}
    expects: dict[str, int] = {}
    for d in docs:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
        expects[d.expect] = expects.get(d.expect, 0) + 1
    head = {
        "description": "taide raw sample corpus: what each document is and what a cleaning pipeline should do with it",
        "regenerate": ".venv/bin/python scripts/make_sample_corpus.py",
        "input_order": "expectations about duplicates assume the files are read in the order of 'files' (the first of a group is kept)",
        "expect_values": {"keep": "kept (possibly changed: PII redacted, layout breaks joined, mojibake repaired, Simplified converted, HTML extracted)",
                          "too_short": "too short", "duplicate": "exact duplicate (after normalization)",
                          "near_duplicate": "near duplicate of duplicate_of", "gambling": "gambling spam", "porn": "pornographic spam",
                          "quality": "low quality (repetition, symbols, keyword lists, tables)",
                          "mojibake_unrepairable": "replacement or private-use characters, nothing to repair",
                          "html_boilerplate_only": "HTML page with no main text"},
        "documents_total": len(docs), "kinds": dict(sorted(kinds.items())), "expects": dict(sorted(expects.items())),
    }
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]
    text += ',\n "files": [\n  ' + ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in file_rows) + "\n ],"
    text += '\n "documents": [\n  ' + ",\n  ".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n ]\n}\n"
    return text.encode("utf-8")


def generate(data: Path = DATA) -> tuple[dict[str, bytes], list[Doc]]:
    load_data(data)
    out, docs = serialize(build())
    out["MANIFEST.json"] = manifest(out, docs)
    return out, docs


# ----------------------------------------------------------------------------------------------------
# Check: rebuild and compare bytes, then load every file back the way a reader would
# ----------------------------------------------------------------------------------------------------

SIMPLIFIED_ONLY = set("这们说对时为会个国进还样发经来现关门问间头动实见车东长让议语认较区与专业书师题张节热电话软视讯网络")
NON_TAIWAN_VARIANTS = set("内説爲衆啓着裏綫峯眞敎戸歩黒従絵関険検済")
MAINLAND_WORDS = ["軟件", "視頻", "信息", "網絡", "出租車", "短信", "打印", "屏幕", "鼠標", "默認", "互聯網", "數據庫", "博客", "U盤"]


def load_back(root: Path) -> dict[tuple[str, str], str]:
    """(file, id) -> text, read with ordinary libraries."""
    got: dict[tuple[str, str], str] = {}

    def put(file, id_, text):
        assert (file, id_) not in got, f"duplicate id {id_} in {file}"
        got[(file, id_)] = text

    for line in (root / "news.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        put("news.jsonl", rec["id"], rec["text"])
    with gzip.open(root / "forum.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            put("forum.jsonl.gz", rec["id"], rec["text"])
    import zstandard
    data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((root / "letters.jsonl.zst").read_bytes())).read()
    for line in data.decode("utf-8").splitlines():
        rec = json.loads(line)
        put("letters.jsonl.zst", rec["id"], rec["text"])
    with open(root / "reviews.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["id", "title", "text", "rating"], list(rows[0])
        for row in rows:
            assert row["rating"] in "12345"
            put("reviews.csv", row["id"], row["text"])
    table = pq.read_table(root / "english.parquet")
    assert table.column_names == ["id", "text", "lang"]
    for id_, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist()):
        put("english.parquet", id_, text)
    for path in sorted((root / "html").iterdir()):
        raw = path.read_bytes()
        m = re.search(rb"charset=[\"']?([A-Za-z0-9_-]+)", raw[:2048])
        charset = m.group(1).decode().lower() if m else "utf-8"
        put(f"html/{path.name}", path.name, raw.decode(charset))
    man = json.loads((root.parent / "MANIFEST.json").read_text(encoding="utf-8"))
    enc = {row["file"]: row["python_codec"] for row in man["files"] if row["file"].startswith("txt/")}
    for path in sorted((root / "txt").iterdir()):
        raw = path.read_bytes()
        text = raw.decode(enc[f"txt/{path.name}"]).replace("\r\n", "\n")
        if enc[f"txt/{path.name}"] == "big5":
            assert raw.decode("cp950") == raw.decode("big5"), path.name
        put(f"txt/{path.name}", path.name, text)
    return got


def check(root: Path, data_path: Path = DATA) -> int:
    problems: list[str] = []
    out, docs = generate(data_path)
    on_disk = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    on_disk["MANIFEST.json"] = (root.parent / "MANIFEST.json").read_bytes()
    if set(on_disk) != set(out):
        problems.append(f"files differ: only on disk {sorted(set(on_disk) - set(out))}, only generated {sorted(set(out) - set(on_disk))}")
    for name, data in out.items():
        if on_disk.get(name) != data:
            problems.append(f"{name}: bytes differ from a fresh build (not deterministic, or not regenerated)")
    got = load_back(root)
    man = json.loads((root.parent / "MANIFEST.json").read_text(encoding="utf-8"))
    keys = {(e["file"], e["id"]) for e in man["documents"]}
    if keys != set(got):
        problems.append(f"MANIFEST and files disagree: {sorted(keys ^ set(got))[:10]}")
    for d in docs:
        text = got.get((d.file, d.id))
        if d.raw is not None:
            if text != d.raw:
                problems.append(f"{d.file}: page does not read back")
        elif text != d.text:
            problems.append(f"{d.file}:{d.id}: text does not read back")
    # PII values: present, and valid (or deliberately invalid)
    for d in docs:
        body = d.raw if d.raw is not None else d.text
        for cat, values in d.facts.get("pii_values", {}).items():
            for v in values:
                if v not in body:
                    problems.append(f"{d.file}:{d.id}: PII {v} not in text")
                if cat == "id" and not tw_id_ok(v):
                    problems.append(f"{d.id}: bad ID {v}")
                if cat == "business_id" and not ubn_ok(v):
                    problems.append(f"{d.id}: bad UBN {v}")
                if cat == "card" and not luhn_ok(v.replace(" ", "")):
                    problems.append(f"{d.id}: bad card {v}")
        for v in d.facts.get("must_keep", []):
            if v not in body:
                problems.append(f"{d.file}:{d.id}: must_keep {v!r} not in text")
            if re.fullmatch(r"[A-Z][0-9]{9}", v) and tw_id_ok(v):
                problems.append(f"{d.id}: must_keep {v} has a valid checksum")
    # Taiwan usage in the Traditional documents that should be kept
    for d in docs:
        if d.facts.get("lang") != "zh-Hant" or d.kind in ("mojibake_recoverable", "mojibake_unrepairable"):
            continue
        body = d.text
        bad = sorted({c for c in body if c in SIMPLIFIED_ONLY or c in NON_TAIWAN_VARIANTS})
        if bad:
            problems.append(f"{d.file}:{d.id}: non-Taiwan characters {''.join(bad)}")
        words = [w for w in MAINLAND_WORDS if w in body]
        if words:
            problems.append(f"{d.file}:{d.id}: mainland wording {words}")
        if d.kind not in ("near_duplicate",) and re.search(r"[\u4e00-\u9fff][,;?!][\u4e00-\u9fff]", body):
            problems.append(f"{d.file}:{d.id}: half-width punctuation between Chinese characters")
    # Encodings of the text files and Big5 pages really are what they say
    for d in docs:
        if d.encoding == "big5":
            (d.raw or d.text).encode("big5")
    # Near duplicates are near; documents meant to be kept are not accidentally near each other
    keep = [d for d in docs if d.expect == "keep" and d.text]
    sh = {id(d): shingles(d.text) for d in docs if d.text}
    worst = (0.0, None, None)
    for i, a in enumerate(keep):
        for b in keep[i + 1:]:
            sa, sb = sh[id(a)], sh[id(b)]
            j = len(sa & sb) / max(1, len(sa | sb))
            if j > worst[0]:
                worst = (j, a, b)
            if j >= 0.4:
                problems.append(f"kept documents {a.file}:{a.id} and {b.file}:{b.id} are similar (J={j:.2f})")
    near = [d.facts["jaccard_5gram"] for d in docs if d.kind == "near_duplicate"]
    total = sum(len(v) for v in out.values())
    if total > 1_500_000:
        problems.append(f"sample is {total} bytes")
    print(f"{len(docs)} documents in {len(out) - 1} files, {total:,} bytes; near-duplicate Jaccard "
          f"{min(near):.2f}-{max(near):.2f}; most similar kept pair J={worst[0]:.2f} "
          f"({worst[1].file}:{worst[1].id} / {worst[2].file}:{worst[2].id})")
    for p in problems:
        print("PROBLEM:", p)
    if not problems:
        print(f"OK: the sample in {_shown(root.parent)} matches a fresh build from {_shown(data_path)}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="rebuild in memory, compare with the files on disk, load them back")
    ap.add_argument("--out", type=Path, default=OUT, help=f"sample folder (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--data", type=Path, default=DATA, help=f"base documents (default {DATA.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    raw = args.out / "raw"  # the corpus itself: `taide data clean <sample>/raw` reads nothing else
    if args.check:
        return check(raw, args.data)
    out, docs = generate(args.data)
    for sub in ("html", "txt"):  # stale pages from an older version go
        for p in (raw / sub).glob("*") if (raw / sub).is_dir() else []:
            if f"{sub}/{p.name}" not in out:
                p.unlink()
    for name, data in out.items():
        path = args.out / name if name == "MANIFEST.json" else raw / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    kinds: dict[str, int] = {}
    for d in docs:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    print(f"wrote {len(docs)} documents in {len(out)} files to {args.out}")
    for k, n in sorted(kinds.items()):
        print(f"  {k:24s} {n}")
    return check(raw, args.data)


if __name__ == "__main__":
    sys.exit(main())
