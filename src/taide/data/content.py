"""Gambling and pornography spam, in Taiwan usage.

Each category has a weighted lexicon. Promotional terms that almost only occur in advertising for
gambling sites or sex services (首儲, 秒出金, 外送茶, 約砲) weigh 3; words that name the activity and also
appear in news (娛樂城, 百家樂, 援交) weigh 2; generic words common in clean reporting, law and education
(賭場, 下注, 色情, 性交易) weigh 1. Reporting and legal context words (警方, 查獲, 判決, 條例, 衛教) count
against a category: a crime story or a statute uses the topic words, advertising does not use these.

A document is removed when a category's net weight per 1,000 non-space characters reaches the
category's threshold, at least ``min_terms`` distinct terms of that category matched (one news mention,
or one word repeated, is never enough) and at least ``min_strong`` of them are promotional: a short
crime report names the game, the den and the stakes densely, but not the sign-up bonus.

The lexicons name activities and services only. Political, religious, ethnic, gender and
sexual-orientation identity terms are never part of them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from taide.data.base import DataError, Rejected, Stage


@dataclass(frozen=True)
class Term:
    text: str
    weight: float
    # Regex character-class bodies: characters that, right before or right after the term, make it
    # part of another word (以下注意 is not 下注).
    not_before: str = ""
    not_after: str = ""

    def pattern(self) -> str:
        # The look-behind goes after the first character, so every alternative still starts with a
        # literal: the regex engine then skips positions whose character starts no term, which is most
        # of them (a leading look-behind makes it try every alternative at every position: 10x slower).
        first, rest = re.escape(self.text[0]), re.escape(self.text[1:])
        behind = f"(?<![{self.not_before}]{first})" if self.not_before else ""
        ahead = f"(?![{self.not_after}])" if self.not_after else ""
        return first + behind + rest + ahead


STRONG = 3  # the weight of promotional terms


def _terms(weight: float, words: str) -> list[Term]:
    return [Term(w, weight) for w in words.split()]


GAMBLING: list[Term] = [
    # Advertising for betting sites: sign-up bonuses, deposits, payouts, rebates, agents.
    *_terms(STRONG, "首儲 首存 儲值送 註冊送 體驗金 秒出金 出金快 快速出金 保證出金 出金穩 "
                    "代理招募 招募代理 線上娛樂城 娛樂城推薦 娛樂城註冊 真人荷官 真人百家 百家樂技巧 "
                    "百家樂預測 老虎機技巧 代客下注 運彩代購 代購運彩 下注網站 線上賭場 網路賭場 "
                    "博弈網站 捕魚機 體育投注 六合彩明牌 高賠率"),
    # The games and platforms themselves: common in spam, but also in news about them.
    *_terms(2, "娛樂城 百家樂 老虎機 線上博弈 真人視訊 電子捕魚 骰寶 牌九 賭盤"),
    # Generic words of the topic, everyday in reporting and law.
    *_terms(1, "賭場 賭客 賭資 賭博 簽賭 六合彩 賠率 莊家 贏錢 彩金 輪盤 免費試玩"),
    Term("博弈", 1, not_after="論"),  # game theory
    Term("現金版", STRONG, not_after="本面圖"),  # 現金版本
    Term("信用版", STRONG, not_after="本面圖"),
    Term("明牌", 1, not_before="說"),  # 豎立說明牌
    Term("返水", STRONG, not_before="往來"),  # 往返水路
    Term("報牌", STRONG, not_after="照價"),  # 申報牌照稅
    Term("包牌", STRONG, not_after="照"),
    Term("下注", 1, not_before="以如", not_after="意射解明記音腳"),  # 以下注意, 如下注明, 皮下注射
    Term("投注", 1, not_after="入意資"),  # 投注入, 投注意力, 投注資金 (investment)
]

PORN: list[Term] = [
    # Advertising for sex services and porn sites.
    *_terms(STRONG, "外送茶 定點茶 茶訊 約砲 約炮 援交妹 找援交 兼職妹 個工妹 叫小姐 "
                    "激情視訊 裸聊 成人直播 色情直播 免費A片 A片下載 自拍外流 偷拍外流 爆乳 騷貨 淫蕩 做愛影片 "
                    "性愛影片"),
    Term("無套", STRONG, not_after="利裝房用件"),  # 無套利 (no arbitrage)
    Term("無碼", STRONG, not_after="頭錶數"),  # 無碼頭
    Term("有碼", STRONG, not_before="只沒", not_after="頭錶數"),  # 沒有碼頭
    Term("A片", 1, not_before="A-Za-z0-9"),
    Term("半套", STRONG, not_before="一大上下", not_after="用房裝餐"),  # 一半套用
    # 每個工作, 一個工程, 五個工務段, 兩個工讀生: a measure word before, or a longer word after.
    Term("個工", STRONG, not_before="一二三四五六七八九十兩幾每這那各整某半", not_after="作程廠具業人會資務讀時地序法夫種位匠站項"),
    Term("援交", 2, not_before="支"),  # 支援交流
    Term("內射", STRONG, not_before="室體國區境", not_after="擊箭線程入出"),  # 室內射擊, 體內射出, 國內射箭
    # The activity and its market: in spam, and in news and law about it.
    *_terms(2, "應召站 應召女 成人影片 AV女優 一夜情 伴遊 巨乳"),
    # Generic words, everyday in reporting, law and sex education.
    *_terms(1, "性交易 賣淫 嫖妓 嫖客"),
    Term("色情", 1, not_after="形況緒境節調"),  # 偏紅色情形, 出色情節
    Term("情色", 1, not_before="表心熱神感", not_after="彩調澤素系"),  # 表情色彩
    Term("熟女", 1, not_before="成早圓"),  # 成熟女性
    Term("人妻", 1, not_after="子兒"),  # 本人妻子
]

# Words of reporting, law and education: a story about a police raid, a statute or a health lesson
# uses them; an advertisement does not. They count against every category.
CONTEXT: list[Term] = _terms(1, "警方 警察 警局 員警 檢方 檢察 查獲 破獲 逮捕 移送 起訴 判決 法院 法官 涉嫌 違反 "
                                 "罰金 罰鍰 處罰 依法 條例 主管機關 記者 報導 衛教 防治 防制 宣導 教育 "
                                 "研究 學者 醫師 輔導")

CATEGORIES = {"gambling": GAMBLING, "porn": PORN}


class _Matcher:
    """One compiled alternation over every term; a match's text names its term (cores are unique)."""

    def __init__(self, lexicons: dict[str, list[Term]]):
        self.owner: dict[str, tuple[str, float]] = {}
        terms = []
        for category, lexicon in lexicons.items():
            for term in lexicon:
                if term.text in self.owner:
                    raise DataError(f"inappropriate: term {term.text!r} is listed twice")
                self.owner[term.text] = (category, term.weight)
                terms.append(term)
        # Longest first, so 線上娛樂城 wins over 娛樂城 at the same position.
        terms.sort(key=lambda t: -len(t.text))
        self.regex = re.compile("|".join(t.pattern() for t in terms))

    def count(self, text: str) -> dict[str, Counter]:
        found: dict[str, Counter] = {}
        for m in self.regex.finditer(text):
            category, _ = self.owner[m.group()]
            found.setdefault(category, Counter())[m.group()] += 1
        return found

    def weight(self, terms: Counter) -> float:
        return sum(self.owner[t][1] * n for t, n in terms.items())


class Inappropriate(Stage):
    """Remove gambling and pornography spam (reasons ``gambling`` and ``porn``).

    Options: ``gambling_threshold`` and ``porn_threshold`` — net weight per 1,000 non-space characters;
    ``min_terms`` — distinct terms of the category needed; ``min_strong`` — distinct promotional
    (weight 3) terms among them; ``context_weight`` — what each reporting or
    legal context word subtracts (0 turns the discount off); ``categories`` — which to check.
    """

    name = "inappropriate"

    def __init__(self, gambling_threshold: float = 30.0, porn_threshold: float = 30.0, min_terms: int = 3,
                 min_strong: int = 1, context_weight: float = 2.0, categories: list[str] | None = None):
        super().__init__()
        unknown = set(categories or []) - set(CATEGORIES)
        if unknown:
            raise DataError(f"inappropriate.categories: unknown {sorted(unknown)}; choose from {', '.join(CATEGORIES)}")
        self.thresholds = {"gambling": gambling_threshold, "porn": porn_threshold}
        self.categories = list(categories or CATEGORIES)
        self.min_terms, self.min_strong, self.context_weight = min_terms, min_strong, context_weight
        self.matcher = _Matcher({**{c: CATEGORIES[c] for c in self.categories}, "context": CONTEXT})

    def scores(self, text: str) -> dict[str, tuple[float, Counter]]:
        """Per category: net weight per 1,000 non-space characters, and the matched terms with counts."""
        found = self.matcher.count(text)
        if not any(c in found for c in self.categories):
            return {}
        chars = len(text) - sum(text.count(ws) for ws in (" ", "\n", "\t", "\u3000"))
        discount = self.context_weight * sum(found.get("context", Counter()).values())
        return {c: (max(0.0, self.matcher.weight(found[c]) - discount) * 1000 / max(chars, 1), found[c])
                for c in self.categories if c in found}

    def process(self, doc):
        scored = self.scores(doc.text)
        worst = None
        for category, (density, terms) in scored.items():
            self.counters[f"matched_{category}"] += 1
            strong = sum(self.matcher.owner[t][1] >= STRONG for t in terms)
            if density >= self.thresholds[category] and len(terms) >= self.min_terms and strong >= self.min_strong:
                if worst is None or density / self.thresholds[category] > worst[1] / self.thresholds[worst[0]]:
                    worst = (category, density, terms)
        if worst is None:
            return doc
        category, density, terms = worst
        listed = "、".join(f"{t}×{n}" for t, n in terms.most_common())
        return Rejected(category, f"{density:.1f} per 1,000 chars >= {self.thresholds[category]:g}; {listed}")
