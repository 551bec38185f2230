"""Words a Taiwan writer would not use: mainland and Hong Kong vocabulary (軟件→軟體, 視頻→影片, 的士→計程車),
found in Traditional or Simplified spelling. One list serves two places: the ``vocabulary`` stage of the corpus
pipeline (a per-document signal, as FineWeb-zhtw filters by such words) and the evaluation's fidelity check of
answers (:mod:`taide.eval.fidelity`).

Words that are also ordinary Taiwan usage in another sense count only inside collocations that are clearly
mainland, never bare: 程序 is "procedure" in Taiwan (法律程序) and counts only as a computer program (應用程序,
程序員); 質量 is physics "mass" (質量守恆) and counts only as "quality" (產品質量); 默認 is "tacitly admit" and
counts only as a software default (默認設置); 土豆 is "peanut" (only 土豆絲/泥/片 count); 水平 is "horizontal"
(only 生活水平, 技術水平 ... count). 信息 inside 誠信息息相關, 網絡 in 人際網絡/社會網絡/關係網絡 and 在線 in 在線上
are not counted. The list favours precision: a term it reports is not Taiwan usage; it does not find them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from taide.data.base import DataError, Rejected, Stage


@dataclass(frozen=True)
class MainlandTerm:
    term: str  # the mainland word in Traditional spelling
    taiwan: str  # what a Taiwan writer says
    only_in: tuple[str, ...] = ()  # if given, the term counts only inside these collocations
    not_in: tuple[str, ...] = ()  # Taiwan phrases containing the term, where it is not counted
    region: str = "mainland"  # or "hongkong"


def _t(term, taiwan, only_in="", not_in=""):
    return MainlandTerm(term, taiwan, tuple(only_in.split()), tuple(not_in.split()))


def _hk(term, taiwan):
    return MainlandTerm(term, taiwan, region="hongkong")


# Written for this project. Each word is listed once, in Traditional spelling; the Simplified spelling is derived
# with OpenCC. Left out on purpose, because Taiwan's own laws use them (tests/test_vocabulary.py checks the law
# corpus): 複印, 音頻, 光標 (a navigation light), 文檔, 反饋, 操作系統, 移動設備; bare 網絡, 內存 and 打印 (a stamped
# mark) count only in their computing collocations, 信息 not in the legal 之信息.
MAINLAND_TERMS: tuple[MainlandTerm, ...] = (
    # computing and electronics
    _t("軟件", "軟體"), _t("硬件", "硬體"), _t("互聯網", "網際網路"), _t("數據庫", "資料庫"),
    _t("網絡", "網路", only_in="網絡遊戲 網絡安全 網絡攻擊 網絡購物 網絡直播 網絡用語 網絡連接 無線網絡 網絡信號 "
                            "網絡流行 網絡小說 網絡暴力 網絡詐騙 網絡速度"),
    _t("信息", "資訊", not_in="信息息 之信息 信息識別 射頻信息 載波信息"),  # 之信息: the legal style Taiwan keeps
    _t("視頻", "影片", not_in="電視頻 視頻率"), _t("屏幕", "螢幕"), _t("顯示屏", "螢幕"), _t("觸摸屏", "觸控螢幕"),
    _t("鼠標", "滑鼠"), _t("文件夾", "資料夾"),
    _t("打印", "列印", only_in="打印機 打印出來 打印文件 打印一份 打印紙 打印店"),
    _t("內存", "記憶體", only_in="內存條 內存卡 內存不足 運行內存 內存空間 內存佔用 手機內存 電腦內存 內存容量 "
                              "內存洩漏 大內存"),
    _t("硬盤", "硬碟"), _t("光盤", "光碟"), _t("U盤", "隨身碟"), _t("服務器", "伺服器"), _t("芯片", "晶片"),
    _t("筆記本電腦", "筆記型電腦"), _t("數碼", "數位"), _t("寬帶", "寬頻"), _t("攝像頭", "鏡頭"), _t("鏈接", "連結"),
    _t("激活", "啟用"), _t("源代碼", "原始碼"), _t("編程", "寫程式"), _t("雲計算", "雲端運算"), _t("郵箱", "信箱"),
    _t("賬號", "帳號"), _t("賬戶", "帳戶"), _t("短信", "簡訊"), _t("博客", "部落格"), _t("帖子", "貼文"),
    _t("高清", "高畫質"), _t("充電寶", "行動電源"), _t("在線", "線上", not_in="在線上 在線路 在線段 在線內 在線外"),
    _t("人工智能", "人工智慧"), _t("智能手機", "智慧型手機"), _t("移動電話", "行動電話"), _t("移動支付", "行動支付"),
    _t("程序", "程式", only_in="應用程序 小程序 程序員 計算機程序 電腦程序 源程序 主程序 安裝程序 "
                            "編寫程序 寫程序 程序設計 程序代碼 程序語言 運行程序 程序運行 程序崩潰"),
    _t("默認", "預設", only_in="默認設置 默認值 默認為 默認選項 默認情況下 系統默認 默認的設置 默認瀏覽器"),
    # everyday life
    _t("質量", "品質", only_in="高質量 低質量 產品質量 服務質量 教學質量 教育質量 生活質量 空氣質量 睡眠質量 "
                            "工程質量 質量管理 質量問題 質量保證 質量監督 質量控制 質量好 質量很好 質量很高 質量差 質量不錯 "
                            "提高質量 提升質量 保證質量"),
    _t("水平", "水準", only_in="生活水平 技術水平 專業水平 英語水平 語言水平 收入水平 教育水平 醫療水平 "
                            "水平很高 提高水平"),
    _t("土豆", "馬鈴薯", only_in="土豆絲 土豆泥 土豆片"),
    _t("出租車", "計程車"), _t("打車", "叫車"), _t("公交車", "公車"), _t("激光", "雷射"),
    _t("方便麵", "泡麵"), _t("西紅柿", "番茄"), _t("酸奶", "優格"), _t("奶酪", "起司"), _t("盒飯", "便當"),
    _t("衛生間", "洗手間"), _t("性價比", "CP值"), _t("靠譜", "可靠"), _t("早上好", "早安"),
    # Hong Kong: words and Cantonese particles a Taiwan writer would not use
    _hk("的士", "計程車"), _hk("雪櫃", "冰箱"), _hk("埋單", "結帳"), _hk("菲林", "底片"), _hk("士多啤梨", "草莓"),
    _hk("芝士", "起司"), _hk("電單車", "機車"), _hk("私家車", "自用車"), _hk("銀包", "皮夾"), _hk("貼士", "小費"),
    _hk("嘅", "的"), _hk("咗", "了"), _hk("佢哋", "他們"), _hk("冇", "沒有"), _hk("唔該", "謝謝"),
)


@dataclass(frozen=True)
class _Index:
    """Every spelling that counts, keyed by its first code point (one-character forms) or its first two (as one
    number): positions where a key occurs are found for the whole text at once, and only those are checked."""

    first: np.ndarray  # per code point: 1 when some form starts with it
    singles: np.ndarray
    pairs: np.ndarray
    forms: dict  # key -> [(form, term)], longest form first
    blocks: dict  # term -> its not_in spellings


def _key(form: str) -> int:
    return ord(form[0]) if len(form) == 1 else ord(form[0]) << 21 | ord(form[1])


@lru_cache(maxsize=1)
def _index() -> _Index:
    import opencc

    t2s, s2t = opencc.OpenCC("t2s"), opencc.OpenCC("s2t")

    def spellings(phrases) -> set[str]:
        found = set()
        for phrase in phrases:
            simp = t2s.convert(phrase)
            for form in (phrase, simp, s2t.convert(simp)):
                found |= {form, form.lower(), form.upper()}  # U盤, u盤
        return found

    forms: dict[int, list] = {}
    for term in MAINLAND_TERMS:
        for form in spellings(term.only_in or [term.term]):
            forms.setdefault(_key(form), []).append((form, term))
    for entries in forms.values():
        entries.sort(key=lambda entry: -len(entry[0]))
    keys = sorted(forms)
    first = np.zeros(0x110000, dtype=np.bool_)
    first[[k >> 21 if k >= 1 << 21 else k for k in keys]] = True
    return _Index(first, np.array([k for k in keys if k < 1 << 21], dtype=np.int64),
                  np.array([k for k in keys if k >= 1 << 21], dtype=np.int64), forms,
                  {t: sorted(spellings(t.not_in)) for t in MAINLAND_TERMS if t.not_in})


def _blocked(text: str, start: int, end: int, phrases: list[str]) -> bool:
    """Whether one of the Taiwan ``phrases`` covers text[start:end]."""
    for phrase in phrases:
        at = text.find(phrase, max(0, end - len(phrase)), start + len(phrase))
        if at != -1 and at <= start and at + len(phrase) >= end:
            return True
    return False


def _member(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which ``values`` are in ``keys`` (sorted): a binary search each, several times np.isin's speed at these
    sizes (np.isin sorts both arrays)."""
    if not keys.size:
        return np.zeros(values.shape, dtype=bool)
    return keys[np.minimum(np.searchsorted(keys, values), keys.size - 1)] == values


def mainland_terms(text: str) -> list[dict]:
    """Mainland and Hong Kong words in ``text``: ``{"term", "taiwan", "region", "found", "count"}`` per term, in
    order of first appearance (``found``: the spellings as written). Overlapping finds keep the longest."""
    index = _index()
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    at = np.flatnonzero(index.first[codes])  # a table lookup rules out most positions
    if not at.size:
        return []
    here = codes[at].astype(np.int64)
    single = _member(here, index.singles)
    starts = list(zip(at[single].tolist(), here[single].tolist()))
    at = at[at < codes.size - 1]
    pairs = codes[at].astype(np.int64) << 21 | codes[at + 1]
    hit = _member(pairs, index.pairs)
    starts += list(zip(at[hit].tolist(), pairs[hit].tolist()))
    hits = []  # (start, end, term, as written)
    for start, key in starts:
        for form, term in index.forms[key]:
            end = start + len(form)
            if text.startswith(form, start) and not (term in index.blocks
                                                     and _blocked(text, start, end, index.blocks[term])):
                hits.append((start, end, term, form))
                break
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    kept, end = [], -1
    for hit in hits:
        if hit[0] >= end:
            kept.append(hit)
            end = hit[1]
    found: dict[str, dict] = {}
    for _, _, term, written in kept:
        entry = found.setdefault(term.term, {"term": term.term, "taiwan": term.taiwan, "region": term.region,
                                             "found": [], "count": 0})
        entry["count"] += 1
        if written not in entry["found"]:
            entry["found"].append(written)
    return list(found.values())


# Quotation marks: what is quoted (a name, a slogan, someone's words) is reported, not the writer's own wording.
_QUOTED = re.compile(r"「[^「」]*」|『[^『』]*』|“[^“”]*”")


class Vocabulary(Stage):
    """Count mainland and Hong Kong words per document, outside quotation marks (``action: count``, the
    default: stats only); ``action: tag`` also writes ``vocabulary_terms`` (count) into the record;
    ``action: drop`` removes documents with at least ``min_terms`` such words and at least ``per_1000`` per
    1,000 characters. Documents still in Simplified characters are the ``simplified`` stage's (run it first)."""

    name = "vocabulary"

    def __init__(self, action: str = "count", min_terms: int = 3, per_1000: float = 2.0):
        super().__init__()
        if action not in ("count", "tag", "drop"):
            raise DataError(f"vocabulary.action: {action!r} is not count, tag or drop")
        self.action, self.min_terms, self.per_1000 = action, min_terms, per_1000
        _index()

    def process(self, doc):
        terms = mainland_terms(_QUOTED.sub("", doc.text))
        count = sum(t["count"] for t in terms)
        if not count:
            return doc
        self.counters["documents_with_terms"] += 1
        for term in terms:
            self.counters[f"{term['region']}_terms"] += term["count"]
        if self.action == "tag":
            doc.record["vocabulary_terms"] = count
        elif self.action == "drop" and count >= self.min_terms and count * 1000 / max(1, len(doc.text)) >= self.per_1000:
            return Rejected("vocabulary", f"{count} mainland or Hong Kong words ("
                            + "、".join(f"{t['found'][0]}→{t['taiwan']}" for t in terms[:5]) + ")")
        return doc
