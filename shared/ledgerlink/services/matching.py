"""Merge Lists matching: which entry of the newly imported lists each old entry most likely is.

A pure, deterministic function (no I/O, no clock, no randomness): the preview can be recomputed and
the property tests can pin its promises down:

* exact code beats normalised name, which beats a similar name (and, for tax rates, the only rate
  of the same percentage comes last);
* two old entries are never given the same new entry without each saying so (``shared_with``);
* the result depends only on the two sets, never on their order.

It has to stay fast for 20,000 x 20,000 entries. Codes and normalised names are dictionary look-ups;
only what is left goes through fuzzy matching, and that compares an old name with a handful of
candidates found by *trigram blocking* (an inverted index from character trigrams to the new
entries that contain them, where trigrams shared by too many names carry no signal and are skipped)
rather than with every new entry.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from ledgerlink.models.lists import normalise_name
from ledgerlink.models.merge import MatchReason

__all__ = [
    "Match",
    "MatchEntry",
    "MatchOptions",
    "MatchReason",
    "comparable_name",
    "match_entries",
    "name_similarity",
]


@dataclass(frozen=True, slots=True)
class MatchEntry:
    """One entry of a list, reduced to what matching looks at."""

    id: str
    name: str
    code: str | None = None
    # A hard compatibility key: entries only match within the same group (a tax rate's percentage,
    # a project's tracking dimension).
    group: str = ""
    # A soft preference between otherwise equal candidates (a supplier rule prefers a supplier).
    tag: str = ""


@dataclass(frozen=True, slots=True)
class Match:
    old_id: str
    new_id: str | None
    reason: MatchReason
    # same_code: how alike the two names are (a low score flags a reused code); same_name: 1.0;
    # similar_name / same_rate: the name similarity; unmatched: None.
    score: float | None
    # The other old entries proposed for the same new entry, so a many-to-one proposal is explicit.
    shared_with: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MatchOptions:
    # Codes only mean the same thing within one ledger (QuickBooks' are its internal ids).
    compare_codes: bool = True
    # A same-code match counts only if the names are at least this alike (0: a code always counts).
    code_name_floor: float = 0.0
    # Lowest difflib ratio of two comparable names (``comparable_name``) that counts as "similar".
    threshold: float = 0.85
    # When set, an old entry still unmatched goes to the only new entry of its group, with this reason.
    sole_candidate_reason: MatchReason | None = None
    # How many blocked candidates are scored per old entry (those sharing the most trigrams).
    candidates_per_entry: int = 24
    # Blocking reads at most this many postings per old entry (rarest trigrams first), but always
    # the ``min_trigrams`` rarest: the work per entry stays bounded whatever the list size.
    posting_budget: int = 6000
    min_trigrams: int = 3


def match_entries(
    old: Sequence[MatchEntry], new: Sequence[MatchEntry], options: MatchOptions | None = None
) -> list[Match]:
    """One ``Match`` per old entry, in the order of ``old``."""
    return _Matcher(old, new, options or MatchOptions()).run()


# Words that say what kind of company it is, not which one. normalise_name drops them at the end of a
# name; for similarity they are dropped anywhere ("Acme Ltd UK"), and so are misspellings of them
# at the end ("Acme Limted"), which would otherwise cost a typo'd supplier its match.
_LEGAL_WORDS = frozenset({"limited", "ltd", "plc", "llp", "inc", "llc", "co", "company"})
_LONG_LEGAL_WORDS = tuple(word for word in _LEGAL_WORDS if len(word) >= 3)


def comparable_name(name: str) -> str:
    """The part of a name that identifies the party: normalised, without legal-form words."""
    words = [word for word in normalise_name(name).split() if word not in _LEGAL_WORDS]
    while words and len(words[-1]) >= 3 and any(_one_edit_apart(words[-1], w) for w in _LONG_LEGAL_WORDS):
        words.pop()
    return " ".join(words)


def name_similarity(a: str, b: str) -> float:
    """How alike two names are, 0..1 (the score the proposal shows)."""
    return _ratio(comparable_name(a), comparable_name(b))


def _one_edit_apart(a: str, b: str) -> bool:
    """One insertion, deletion, substitution or swap of neighbours turns ``a`` into ``b``."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        return len(differ) == 1 or (
            len(differ) == 2
            and differ[1] == differ[0] + 1
            and a[differ[0]] == b[differ[1]]
            and a[differ[1]] == b[differ[0]]
        )
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def trigrams(text: str) -> set[str]:
    """Character trigrams of a name, padded so that word starts and ends count."""
    padded = f"  {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def _ratio(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    return round(SequenceMatcher(None, a, b, autojunk=False).ratio(), 4)


def _code_key(code: str | None) -> str | None:
    if code is None:
        return None
    stripped = code.strip().casefold()
    return stripped or None


def _unique_ids(entries: Iterable[MatchEntry], side: str) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ValueError(f"{side} entries repeat the id {entry.id!r}")
        seen.add(entry.id)


class _Matcher:
    def __init__(self, old: Sequence[MatchEntry], new: Sequence[MatchEntry], options: MatchOptions):
        _unique_ids(old, "old")
        _unique_ids(new, "new")
        self.old = list(old)
        self.options = options
        # Sorted by id: every tie below is broken by position, so input order never matters.
        self.new = sorted(new, key=lambda entry: entry.id)
        self.new_norm = [normalise_name(entry.name) for entry in self.new]
        self._new_core: list[str] | None = None
        self.by_code: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.by_name: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.by_group: dict[str, list[int]] = defaultdict(list)
        for index, entry in enumerate(self.new):
            code = _code_key(entry.code)
            if options.compare_codes and code:
                self.by_code[(entry.group, code)].append(index)
            if self.new_norm[index]:
                self.by_name[(entry.group, self.new_norm[index])].append(index)
            self.by_group[entry.group].append(index)
        self._postings: dict[tuple[str, str], list[int]] | None = None

    # --- stages ------------------------------------------------------------------------------------

    def run(self) -> list[Match]:
        decided: dict[str, tuple[int | None, MatchReason, float | None]] = {}
        pending: list[MatchEntry] = []
        for entry in self.old:
            norm = normalise_name(entry.name)
            code = _code_key(entry.code)
            by_code = self._code_match(entry, norm, code)
            if by_code is not None:
                decided[entry.id] = (by_code[0], MatchReason.SAME_CODE, by_code[1])
            elif norm and (entry.group, norm) in self.by_name:
                index = self._preferred(entry, norm, self.by_name[(entry.group, norm)])
                decided[entry.id] = (index, MatchReason.SAME_NAME, 1.0)
            else:
                pending.append(entry)
        taken = {index for index, _reason, _score in decided.values() if index is not None}
        decided |= self._similar(pending, taken)
        if self.options.sole_candidate_reason is not None:
            for entry in pending:
                if entry.id in decided:
                    continue
                group = self.by_group.get(entry.group, [])
                if len(group) == 1:
                    index = group[0]
                    decided[entry.id] = (
                        index,
                        self.options.sole_candidate_reason,
                        self._similarity(entry, index),
                    )
        return self._with_sharing(decided)

    def _code_match(self, entry: MatchEntry, norm: str, code: str | None) -> tuple[int, float] | None:
        if not (self.options.compare_codes and code and (entry.group, code) in self.by_code):
            return None
        index = self._preferred(entry, norm, self.by_code[(entry.group, code)])
        similarity = self._similarity(entry, index)
        # Contact numbers are handed out in sequence by each organisation: the same number names
        # someone else unless the names agree too.
        return (index, similarity) if similarity >= self.options.code_name_floor else None

    def _preferred(self, entry: MatchEntry, norm: str, indexes: list[int]) -> int:
        """Among new entries equally good by code or name: the same normalised name, the same tag,
        the same spelling, then the lowest id."""

        def rank(index: int) -> tuple[bool, bool, bool, int]:
            candidate = self.new[index]
            return (
                self.new_norm[index] != norm,
                candidate.tag != entry.tag,
                candidate.name != entry.name,
                index,
            )

        return min(indexes, key=rank)

    def _similar(
        self, pending: list[MatchEntry], taken: set[int]
    ) -> dict[str, tuple[int | None, MatchReason, float | None]]:
        """Fuzzy stage: score a few blocked candidates per entry, then assign greedily, best score first."""
        # (-score, other role?, old id, new id, index): best score first; a supplier rule may match
        # a customer contact, but a same-role candidate wins a tie; ids make the order total.
        ranked: list[tuple[float, bool, str, str, int]] = []
        for entry in pending:
            core = comparable_name(entry.name)
            if not core:
                continue
            # difflib caches its analysis of seq2: the old name is seq2, the candidates take turns as seq1.
            matcher = SequenceMatcher(None, "", core, autojunk=False)
            for index in self._blocked_candidates(entry, core):
                score = self._score_if_close(matcher, index)
                if score is not None:
                    other_role = self.new[index].tag != entry.tag
                    ranked.append((-score, other_role, entry.id, self.new[index].id, index))
        ranked.sort()
        result: dict[str, tuple[int | None, MatchReason, float | None]] = {}
        used = set(taken)
        # One to one: a similar name never takes a new entry that a code, a name or a better similar
        # name already took. Measured on the labelled set, proposing it anyway (flagged as shared)
        # was wrong far more often than right; the entry stays unmatched for a person to decide.
        for negative_score, _other_role, old_id, _new_id, index in ranked:
            if old_id in result or index in used:
                continue
            result[old_id] = (index, MatchReason.SIMILAR_NAME, -negative_score)
            used.add(index)
        return result

    def _similarity(self, entry: MatchEntry, index: int) -> float:
        return _ratio(comparable_name(entry.name), self._cores()[index])

    def _cores(self) -> list[str]:
        if self._new_core is None:
            self._new_core = [comparable_name(entry.name) for entry in self.new]
        return self._new_core

    def _score_if_close(self, matcher: SequenceMatcher[str], index: int) -> float | None:
        matcher.set_seq1(self._cores()[index])
        threshold = self.options.threshold
        # difflib's cheap upper bounds first: most blocked candidates fail them.
        if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
            return None
        score = round(matcher.ratio(), 4)
        return score if score >= threshold else None

    def _blocked_candidates(self, entry: MatchEntry, core: str) -> list[int]:
        """The new entries sharing the most trigrams with ``core``, counting the rarest trigrams
        first and stopping at a budget of postings: a rare trigram says much about a name and costs
        little, a common one ("ing", " th") says little and would pull in thousands."""
        postings = self._trigram_postings()
        lists = sorted(
            (indexes for gram in trigrams(core) if (indexes := postings.get((entry.group, gram)))),
            key=len,
        )
        counts: Counter[int] = Counter()
        spent = 0
        for used, indexes in enumerate(lists):
            if used >= self.options.min_trigrams and spent + len(indexes) > self.options.posting_budget:
                break
            counts.update(indexes)
            spent += len(indexes)
        best = heapq.nsmallest(
            self.options.candidates_per_entry, counts.items(), key=lambda pair: (-pair[1], pair[0])
        )
        return [index for index, _shared in best]

    def _trigram_postings(self) -> dict[tuple[str, str], list[int]]:
        # Built on first need: lists that match entirely by code or name never pay for it.
        if self._postings is None:
            postings: dict[tuple[str, str], list[int]] = defaultdict(list)
            for index, core in enumerate(self._cores()):
                group = self.new[index].group
                for gram in trigrams(core):
                    postings[(group, gram)].append(index)
            self._postings = dict(postings)
        return self._postings

    def _with_sharing(self, decided: dict[str, tuple[int | None, MatchReason, float | None]]) -> list[Match]:
        olds_by_new: dict[int, list[str]] = defaultdict(list)
        for old_id, (index, _reason, _score) in decided.items():
            if index is not None:
                olds_by_new[index].append(old_id)
        matches = []
        for entry in self.old:
            if entry.id not in decided:
                matches.append(Match(entry.id, None, MatchReason.UNMATCHED, None))
                continue
            index, reason, score = decided[entry.id]
            assert index is not None
            shared = tuple(sorted(other for other in olds_by_new[index] if other != entry.id))
            matches.append(Match(entry.id, self.new[index].id, reason, score, shared))
        return matches
