"""Gambling and pornography spam, in Taiwan usage and in English.

Each category has a weighted lexicon. Promotional terms that almost only occur in advertising for
gambling sites or sex services (首儲, 秒出金, 外送茶, 約砲, deposit bonus) weigh 3; words that name the
activity and also appear in news (娛樂城, 百家樂, 援交, baccarat) weigh 2; generic words common in clean
reporting, law and education (賭場, 下注, 色情, 性交易, casino) weigh 1. Reporting and legal context
words (警方, 查獲, 判決, 條例, 衛教, police, illegal) count against a category: a crime story or a
statute uses the topic words, advertising does not use these. English terms match whole words in any
case, with a plural ending (casinos, deposit bonuses); words may be joined by spaces or a hyphen.

Advertising also asks to be contacted: a LINE id (``LINE：honey7111``, ``加LINE @lucky9762``,
``加賴love3365``, ``Add our LINE: @win8888``) or a referral link (``https://…/?ref=90173``). Such a
contact is counted as one more promotional term (weight 3, as many times as it occurs) of every
category that already matched ``min_terms - 1`` distinct terms of its own: a shop's LINE id next to
one word of the topic is nothing, next to 娛樂城 and 老虎機 it is an advertisement. A news story quoting
the come-on ("要求男子先加入LINE好友") names no id.

Advertising also uses reporting words of its own: it warns the police, reporters and time-wasters off
(警察勿擾, 員警、便衣請繞道, 不怕臨檢, 非誠勿擾, no cops). Such a warn-off line is counted like a contact (one
more promotional term of a category already matched by ``min_terms - 1`` terms), and the context words
inside it (警察, 記者) do not count as reporting: they are the ad talking. A news story that quotes the line
still has its own reporting words around the quote.

A document is removed when a category's net weight per 1,000 non-space characters reaches the
category's threshold, at least ``min_terms`` distinct terms of that category matched (one news mention,
or one word repeated, is never enough) and at least ``min_strong`` of them are promotional: a short
crime report names the game, the den and the stakes densely, but not the sign-up bonus. When the
document holds a contact, the density is also taken over the ad itself — the stretch from the first to
the last match — so a one-line ad under a long forum reply is not diluted by the reply; that stretch
counts as at least ``min_span`` characters (or the whole document, if shorter).

The lexicons name activities and services only. Political, religious, ethnic, gender and
sexual-orientation identity terms are never part of them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from taide.data.base import DataError, Rejected, Stage

_LATIN = re.compile(r"[A-Za-z0-9][ -~]*")  # a term written in ASCII, starting with a letter or digit


@dataclass(frozen=True)
class Term:
    text: str
    weight: float
    # Regex character-class bodies: characters that, right before or right after the term, make it
    # part of another word (以下注意 is not 下注).
    not_before: str = ""
    not_after: str = ""

    @property
    def latin(self) -> bool:
        """An English term: matched as whole words, in any case, with an optional plural ending."""
        return bool(_LATIN.fullmatch(self.text))

    @property
    def key(self) -> str:
        return latin_key(self.text) if self.latin else self.text

    def pattern(self) -> str:
        """The term's regex; Chinese terms only (English ones are compiled together by :func:`_latin_regexes`)."""
        # The look-behind goes after the first character, so every alternative still starts with a
        # literal: the regex engine then skips positions whose character starts no term, which is most
        # of them (a leading look-behind makes it try every alternative at every position: 10x slower).
        first, rest = re.escape(self.text[0]), re.escape(self.text[1:])
        behind = f"(?<![{self.not_before}]{first})" if self.not_before else ""
        ahead = f"(?![{self.not_after}])" if self.not_after else ""
        return first + behind + rest + ahead


def latin_key(text: str) -> str:
    return " ".join(re.split(r"[\s-]+", text.lower()))


STRONG = 3  # the weight of promotional terms


def _terms(weight: float, words: str, sep: str | None = None) -> list[Term]:
    return [Term(w.strip(), weight) for w in words.split(sep)]


GAMBLING: list[Term] = [
    # Advertising for betting sites: sign-up bonuses, deposits, payouts, rebates, agents.
    *_terms(STRONG, "首儲 首存 儲值送 註冊送 註冊就送 體驗金 秒出金 出金快 快速出金 保證出金 出金穩 "
                    "代理招募 招募代理 線上娛樂城 娛樂城推薦 娛樂城註冊 真人荷官 真人百家 百家樂技巧 百家樂必勝 "
                    "百家樂預測 老虎機技巧 代客下注 運彩代購 代購運彩 下注網站 線上賭場 網路賭場 "
                    "博弈網站 捕魚機 體育投注 六合彩明牌 高賠率 爆分"),
    # The games and platforms themselves: common in spam, but also in news about them.
    *_terms(2, "娛樂城 百家樂 老虎機 線上博弈 真人視訊 電子捕魚 骰寶 牌九 賭盤"),
    # Generic words of the topic, everyday in reporting and law.
    *_terms(1, "賭場 賭客 賭資 賭博 簽賭 六合彩 賠率 莊家 贏錢 彩金 輪盤 免費試玩 運彩 德州撲克 獨贏"),
    Term("博弈", 1, not_after="論"),  # game theory
    Term("現金版", STRONG, not_after="本面圖"),  # 現金版本
    Term("信用版", STRONG, not_after="本面圖"),
    Term("明牌", 1, not_before="說"),  # 豎立說明牌
    Term("返水", STRONG, not_before="往來"),  # 往返水路
    Term("報牌", STRONG, not_after="照價"),  # 申報牌照稅
    Term("包牌", STRONG, not_after="照"),
    Term("下注", 1, not_before="以如", not_after="意射解明記音腳"),  # 以下注意, 如下注明, 皮下注射
    Term("投注", 1, not_after="入意資"),  # 投注入, 投注意力, 投注資金 (investment)
    # Sign-in rewards: every shopping app has them (每日簽到領點數), so not promotional on their own.
    Term("簽到領", 2, not_after="取據"),  # 每日簽到領888, not 簽到領取資料
    Term("簽到送", 2),
    Term("讓分", 1, not_before="轉受", not_after="割配為"),  # 受讓分割, 轉讓分為
    Term("大小分", 1, not_after="為別"),  # 依大小分為
    # English. Promotions; the games and betting; generic words any news story about casinos uses.
    *_terms(STRONG, "deposit bonus, no deposit bonus, welcome bonus, sign-up bonus, signup bonus, casino bonus, "
                    "free spins, instant withdrawal, fast withdrawal, live dealer, live casino, betting site, "
                    "betting tips", sep=","),
    *_terms(2, "online casino, baccarat, slots, sports betting, sportsbook, sic bo, fishing games", sep=","),
    *_terms(1, "casino, gambling, roulette, blackjack, poker, jackpot, betting, slot machine", sep=","),
]

PORN: list[Term] = [
    # Advertising for sex services and porn sites.
    *_terms(STRONG, "外送茶 定點茶 茶訊 約砲 約炮 援交妹 找援交 兼職妹 個工妹 叫小姐 "
                    "激情視訊 裸聊 成人直播 色情直播 免費A片 A片下載 自拍外流 偷拍外流 爆乳 騷貨 淫蕩 做愛影片 "
                    "性愛影片 新妹到 先到先約 今晚就約 約妹 包養網"),
    Term("無套", STRONG, not_after="利裝房用件"),  # 無套利 (no arbitrage)
    Term("無碼", STRONG, not_after="頭錶數"),  # 無碼頭
    Term("有碼", STRONG, not_before="只沒", not_after="頭錶數"),  # 沒有碼頭
    Term("A片", 1, not_before="A-Za-z0-9"),
    Term("半套", STRONG, not_before="一大上下", not_after="用房裝餐"),  # 一半套用
    # 每個工作, 一個工程, 五個工務段, 兩個工讀生: a measure word before, or a longer word after.
    Term("個工", STRONG, not_before="一二三四五六七八九十兩幾每這那各整某半", not_after="作程廠具業人會資務讀時地序法夫種位匠站項"),
    Term("援交", 2, not_before="支"),  # 支援交流
    Term("內射", STRONG, not_before="室體國區境", not_after="擊箭線程入出"),  # 室內射擊, 體內射出, 國內射箭
    # The activity and its market, and the come-ons of the ads (保證本人, 照片不符 全額退費): in spam,
    # and in news and law about it (a passport photo can 照片不符 too; one term is never enough).
    *_terms(2, "應召站 應召女 成人影片 AV女優 一夜情 伴遊 巨乳 學生妹 輕熟女 保證本人 照片不符 真人認證 "
               "有人陪你 私密影片 同城交友"),  # (dating apps advertise 同城交友 too)
    # Generic words, everyday in reporting, law and sex education.
    *_terms(1, "性交易 賣淫 嫖妓 嫖客 包養 買春 裸照 成人網站 色情網站 未滿18歲請"),
    Term("18禁", 1, not_before="0-9"),
    Term("色情", 1, not_after="形況緒境節調"),  # 偏紅色情形, 出色情節
    Term("情色", 1, not_before="表心熱神感", not_after="彩調澤素系"),  # 表情色彩
    Term("熟女", 1, not_before="成早圓"),  # 成熟女性
    Term("人妻", 1, not_after="子兒"),  # 本人妻子
    # English: "adult", "sex" or "girls" alone are everyday words; these phrases are not.
    *_terms(STRONG, "local girls, hot girls, sexy girls, call girls, cam girls, lonely tonight, 18+ only, "
                    "escort service, sex chat, free porn, xxx videos", sep=","),
    *_terms(2, "uncensored, adult videos, adult movies, porn, porno, sex videos, one-night stand", sep=","),
    *_terms(1, "nude, naked, erotic, escort, hookup", sep=","),
]

# Words of reporting, law and education: a story about a police raid, a statute or a health lesson
# uses them; an advertisement does not. They count against every category. ("legal" is not one:
# casino ads call themselves "100% safe and legal", as 合法經營 is not either.)
CONTEXT: list[Term] = [
    *_terms(1, "警方 警察 警局 員警 檢方 檢察 查獲 破獲 逮捕 移送 起訴 判決 法院 法官 涉嫌 違反 "
               "罰金 罰鍰 處罰 依法 條例 主管機關 記者 報導 衛教 防治 防制 宣導 教育 "
               "研究 學者 醫師 輔導 報案 偵辦 偵破 刑法 立法 詐騙 被害 受害 呼籲"),
    *_terms(1, "police, arrested, prosecutors, court, judge, illegal, illegally, law, lawmakers, legislature, "
               "ministry, regulators, said, says, according to, reported, researchers, counselors, counseling, "
               "addiction, treatment", sep=","),
]

CATEGORIES = {"gambling": GAMBLING, "porn": PORN}

# A LINE id after "LINE：", "LINE @", "加LINE", "加賴" (賴 is LINE in Taiwan slang, and also a surname:
# only right after 加 or before a colon) or "Add (our) LINE:"; an id holds a digit or follows an @,
# so "the Wanda Line opened" and "LINE Pay" are not contacts. A referral link carries ?ref= or the like.
_ID = r"(?:@[A-Za-z0-9][A-Za-z0-9_.-]{2,}|[A-Za-z][A-Za-z0-9_.-]*[0-9][A-Za-z0-9_.-]*)"
CONTACTS = {
    "LINE帳號": re.compile(
        r"(?<![A-Za-z])(?:LINE|Line|line)(?![A-Za-z])(?:[^\n:：@]{0,8}?[:：]\s*|\s*(?=@))" + _ID
        + r"|加\s*(?:LINE|Line|line|賴)\s*(?:ID|id)?\s*[:：]?\s*" + _ID
        + r"|賴\s*(?:ID|id)?\s*[:：]\s*" + _ID),
    "推薦連結": re.compile(r"https?://[^\s?#]+\?(?:[^\s#]*&)?(?:ref|aff|affiliate|referral|invite|invite_?code|"
                       r"promo|agent)=", re.IGNORECASE),
    # Whom the ad does not want: the police (and reporters, stings) or anyone not serious. One or more
    # of them, then a few characters at most before the "keep off" (警察、記者、釣魚勿擾; 員警請繞道).
    "勿擾字句": re.compile(
        r"(?:(?:警察|員警|警員|警方|警|條子|便衣|臨檢|記者|媒體|釣魚|同業|非誠)[、,，/及和與或跟\s]*)+"
        r"[^\n。！？!?，,]{0,3}?(?:勿擾|勿入|勿近|勿來|勿約|勿試|免問|免談|免來|退散|止步|繞道|不接)"
        r"|(?:謝絕|不怕)(?:警察|員警|警方|條子|臨檢|查緝|記者)"
        r"|(?i:\bno (?:cops|police|law enforcement|LE)\b|\bcops? (?:stay away|keep out|not welcome)\b)"),
}


_NEVER = "(?!)"  # the regex of an empty lexicon


def _trie(words: list[str]) -> str:
    """A regex body matching any of ``words`` (lower case; a space matches spaces or hyphens), as a
    trie: at each position the engine follows one branch instead of trying every word."""
    root: dict = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [(r"[\s-]+" if ch == " " else re.escape(ch)) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


def _latin_regexes(terms: list[Term]) -> tuple[re.Pattern, re.Pattern]:
    """English terms as whole words in any case, with an optional plural ending, compiled twice.
    ``sparse`` is for text with little English (Chinese): each first letter is a literal, in both
    cases, so the engine skips the other characters (7x slower with a character class there).
    ``dense`` is for English text, where nearly every character is a letter: it checks for a word
    start first and then follows a trie, on lower-cased text (4x faster there than ``sparse``)."""
    words = sorted({t.key for t in terms})
    by_first: dict[str, list[str]] = {}
    for w in words:
        by_first.setdefault(w[0], []).append(w[1:])
    sparse = []
    for first, rests in sorted(by_first.items()):
        rest = _trie(rests)
        for case in dict.fromkeys((first, first.upper())):
            sparse.append(f"{re.escape(case)}(?<![A-Za-z0-9].)(?i:{rest}(?:e?s)?)(?![A-Za-z0-9])")
    if not words:
        return re.compile(_NEVER), re.compile(_NEVER)
    dense = rf"(?<![a-z0-9])(?:{_trie(words)})(?:e?s)?(?![a-z0-9])"
    # ASCII: case-insensitive matching must not take the Kelvin sign for a k (the match names the term).
    return re.compile("|".join(sparse), re.ASCII), re.compile(dense, re.ASCII)


class _Matcher:
    """One compiled alternation over every Chinese term and one over every English term; a match's
    text names its term (cores are unique; English matches after :func:`latin_key`)."""

    def __init__(self, lexicons: dict[str, list[Term]]):
        self.owner: dict[str, tuple[str, float, str]] = {}  # key -> (category, weight, term text)
        terms = []
        for category, lexicon in lexicons.items():
            for term in lexicon:
                if term.key in self.owner:
                    raise DataError(f"inappropriate: term {term.text!r} is listed twice")
                self.owner[term.key] = (category, term.weight, term.text)
                terms.append(term)
        # Longest first, so 線上娛樂城 wins over 娛樂城 at the same position. Terms are grouped by their
        # first character (娛(?:樂城推薦|樂城註冊|樂城)): the engine tries each alternative in turn at a
        # position that starts some term, so fewer alternatives is faster (25% on the law corpus).
        groups: dict[str, list[str]] = {}
        for t in sorted((t for t in terms if not t.latin), key=lambda t: -len(t.text)):
            first = re.escape(t.text[0])
            groups.setdefault(first, []).append(t.pattern()[len(first):])
        self.regex = re.compile("|".join(first + (rests[0] if len(rests) == 1 else "(?:" + "|".join(rests) + ")")
                                         for first, rests in groups.items()) or _NEVER)
        self.latin_sparse, self.latin_dense = _latin_regexes([t for t in terms if t.latin])

    def finditer(self, text: str):
        yield from self.regex.finditer(text)
        # Mostly ASCII at the start (spaces and digits count too): English, or close enough.
        head = text[:1000]
        if 2 * len(head.encode("ascii", "ignore")) > len(head):
            lowered = text.lower()
            if len(lowered) == len(text):  # (a few characters, like İ, lower-case to two)
                yield from self.latin_dense.finditer(lowered)
                return
        yield from self.latin_sparse.finditer(text)

    def lookup(self, found: str) -> tuple[str, float, str]:
        """The term a match belongs to. English matches differ from the term in case, spacing and a
        plural ending."""
        owner = self.owner.get(found)
        if owner is None:
            key = latin_key(found)
            owner = self.owner.get(key) or self.owner.get(key[:-1]) or self.owner[key[:-2]]
        return owner

    def count(self, text: str) -> tuple[dict[str, Counter], dict[str, list[tuple[int, int]]]]:
        """Matched terms per category, and where the matches of each category are."""
        found: dict[str, Counter] = {}
        where: dict[str, list[tuple[int, int]]] = {}
        owner = self.owner
        for m in self.finditer(text):
            match = m.group()
            category, _, term = owner.get(match) or self.lookup(match)
            terms = found.get(category)
            if terms is None:
                terms = found[category] = Counter()
            terms[term] += 1
            where.setdefault(category, []).append(m.span())
        return found, where

    def weight(self, terms: Counter) -> float:
        return sum(self.weight_of(t) * n for t, n in terms.items())

    def weight_of(self, term: str) -> float:
        return STRONG if term in CONTACTS else self.lookup(term)[1]


def _nonspace(text: str) -> int:
    return len(text) - sum(text.count(ws) for ws in (" ", "\n", "\t", "\r", "\u3000"))


class Inappropriate(Stage):
    """Remove gambling and pornography spam (reasons ``gambling`` and ``porn``).

    Options: ``gambling_threshold`` and ``porn_threshold`` — net weight per 1,000 non-space characters;
    ``min_terms`` — distinct terms of the category needed (a contact counts as one); ``min_strong`` —
    distinct promotional (weight 3) terms among them (a contact is one); ``context_weight`` — what
    each reporting or legal context word subtracts (0 turns the discount off); ``min_span`` — the
    fewest non-space characters the ad stretch of a document with a contact is measured over (0 turns
    the ad density off); ``contacts`` — whether LINE ids, referral links and warn-off lines count; ``categories`` —
    which to check.
    """

    name = "inappropriate"

    def __init__(self, gambling_threshold: float = 30.0, porn_threshold: float = 30.0, min_terms: int = 3,
                 min_strong: int = 1, context_weight: float = 2.0, min_span: int = 200, contacts: bool = True,
                 categories: list[str] | None = None):
        super().__init__()
        unknown = set(categories or []) - set(CATEGORIES)
        if unknown:
            raise DataError(f"inappropriate.categories: unknown {sorted(unknown)}; choose from {', '.join(CATEGORIES)}")
        self.thresholds = {"gambling": gambling_threshold, "porn": porn_threshold}
        self.categories = list(categories or CATEGORIES)
        self.min_terms, self.min_strong, self.context_weight = min_terms, min_strong, context_weight
        self.min_span, self.contacts = min_span, contacts
        # Context words are looked for only in the few documents that match a category: most documents
        # match none, and context words are everyday words (條例, 依法, said, law) with many matches.
        self.matcher = _Matcher({c: CATEGORIES[c] for c in self.categories})
        self.context = _Matcher({"context": CONTEXT})
        twice = set(self.matcher.owner) & set(self.context.owner)
        if twice:
            raise DataError(f"inappropriate: terms {sorted(twice)} are both topic and context words")

    def scores(self, text: str) -> dict[str, tuple[float, Counter]]:
        """Per category: net weight per 1,000 non-space characters (of the document, or of its ad
        stretch when it holds a contact and that is denser), and the matched terms with counts
        (contacts included, under their names in ``CONTACTS``)."""
        found, where = self.matcher.count(text)
        if not any(c in found for c in self.categories):
            return {}
        contacts: dict[str, list[re.Match]] = {}
        if self.contacts:
            for name, regex in CONTACTS.items():
                hits = list(regex.finditer(text))
                if hits:
                    contacts[name] = hits
        chars = max(_nonspace(text), 1)
        # Context words inside the ad's own warn-off lines (警察勿擾) are the ad talking, not reporting.
        warn_off = [h.span() for h in contacts.get("勿擾字句", [])]
        _, context = self.context.count(text)
        reporting = sum(not any(s <= start and end <= e for s, e in warn_off) for start, end in context.get("context", []))
        discount = self.context_weight * reporting
        scored = {}
        for c in self.categories:
            if c not in found:
                continue
            terms = found[c]
            joined = contacts and len(terms) >= self.min_terms - 1
            if joined:
                terms = terms + Counter({name: len(hits) for name, hits in contacts.items()})
            net = max(0.0, self.matcher.weight(terms) - discount)
            density = net * 1000 / chars
            if joined and self.min_span:
                spans = where[c] + [h.span() for hits in contacts.values() for h in hits]
                start, end = min(s for s, _ in spans), max(e for _, e in spans)
                ad = max(_nonspace(text[start:end]), min(self.min_span, chars), 1)
                density = max(density, net * 1000 / ad)
            scored[c] = (density, terms)
        return scored

    def process(self, doc):
        scored = self.scores(doc.text)
        worst = None
        for category, (density, terms) in scored.items():
            self.counters[f"matched_{category}"] += 1
            strong = sum(self.matcher.weight_of(t) >= STRONG for t in terms)
            if density >= self.thresholds[category] and len(terms) >= self.min_terms and strong >= self.min_strong:
                if worst is None or density / self.thresholds[category] > worst[1] / self.thresholds[worst[0]]:
                    worst = (category, density, terms)
        if worst is None:
            return doc
        category, density, terms = worst
        listed = "、".join(f"{t}×{n}" for t, n in terms.most_common())
        return Rejected(category, f"{density:.1f} per 1,000 chars >= {self.thresholds[category]:g}; {listed}")
