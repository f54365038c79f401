"""Merge Lists matching: what it promises, pinned with examples and with hypothesis."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlink.models.lists import normalise_name
from ledgerlink.services.matching import (
    MatchEntry,
    MatchOptions,
    MatchReason,
    comparable_name,
    match_entries,
    name_similarity,
)


def _by_old(matches):
    return {m.old_id: m for m in matches}


# --- examples -------------------------------------------------------------------------------------


def test_code_beats_name_and_name_beats_similar():
    old = [
        MatchEntry("o1", "General Expenses", "429"),
        MatchEntry("o2", "Printing & Stationery", "461"),
        MatchEntry("o3", "Motor Vehicle Expenses", "449"),
    ]
    new = [
        MatchEntry("n1", "Sundry costs", "429"),  # renamed, same code
        MatchEntry("n2", "printing & stationery", "9461"),  # same name, new code
        MatchEntry("n3", "Motor Vehicle Expences", "8449"),  # a typo, new code
        MatchEntry("n4", "General Expenses", "999"),  # same name as o1, but o1's code wins
    ]
    got = _by_old(match_entries(old, new))
    assert (got["o1"].new_id, got["o1"].reason) == ("n1", MatchReason.SAME_CODE)
    assert got["o1"].score is not None and got["o1"].score < 0.5  # a renamed code shows as unlike names
    assert (got["o2"].new_id, got["o2"].reason, got["o2"].score) == ("n2", MatchReason.SAME_NAME, 1.0)
    assert (got["o3"].new_id, got["o3"].reason) == ("n3", MatchReason.SIMILAR_NAME)
    assert 0.85 <= got["o3"].score < 1


def test_legal_form_and_punctuation_do_not_make_a_supplier_different():
    old = [MatchEntry("o1", "Brightside Office Supplies Ltd"), MatchEntry("o2", "Avon Security & Sons")]
    new = [MatchEntry("n1", "BRIGHTSIDE OFFICE SUPPLIES LIMITED"), MatchEntry("n2", "Avon Security and Sons")]
    got = _by_old(match_entries(old, new))
    assert got["o1"].reason == MatchReason.SAME_NAME
    assert (got["o2"].new_id, got["o2"].reason) == ("n2", MatchReason.SIMILAR_NAME)


def test_a_misspelt_legal_suffix_does_not_cost_the_match():
    assert comparable_name("Kennet Stationers Limted") == comparable_name("Kennet Stationers Ltd")
    assert comparable_name("Usk Paving Ltd UK") == "usk paving uk"
    assert name_similarity("Kennet Stationers Limited", "Kenet Stationers Limted") > 0.95


def test_nothing_close_stays_unmatched():
    got = match_entries([MatchEntry("o1", "Zephyr Aviation")], [MatchEntry("n1", "Brecon Bakery")])
    assert (got[0].new_id, got[0].reason, got[0].score) == (None, MatchReason.UNMATCHED, None)


def test_codes_are_ignored_when_they_mean_nothing_across_ledgers():
    old = [MatchEntry("o1", "General Expenses", "20")]
    new = [MatchEntry("n1", "Rent", "20"), MatchEntry("n2", "General Expenses", "7")]
    got = match_entries(old, new, MatchOptions(compare_codes=False))
    assert (got[0].new_id, got[0].reason) == ("n2", MatchReason.SAME_NAME)


def test_groups_are_hard_boundaries():
    """A tracking option of dimension 1 never becomes one of dimension 2."""
    old = [MatchEntry("o1", "North", group="1")]
    new = [MatchEntry("n1", "North", group="2"), MatchEntry("n2", "Nort", group="1")]
    got = match_entries(old, new)
    assert (got[0].new_id, got[0].reason) == ("n2", MatchReason.SIMILAR_NAME)


def test_tax_rates_fall_back_to_the_only_rate_of_the_same_percentage_and_say_it_is_shared():
    """Xero has one 20% rate per direction, QuickBooks one for both: both Xero rates map to it,
    and each says it shares it."""
    old = [
        MatchEntry("input2", "20% (VAT on Expenses)", group="20"),
        MatchEntry("output2", "20% (VAT on Income)", group="20"),
        MatchEntry("exempt", "Exempt Expenses", group="0"),
    ]
    new = [
        MatchEntry("qb1", "20.0% S", group="20"),
        MatchEntry("qb4", "Exempt", group="0"),
        MatchEntry("qb5", "No VAT", group="0"),
    ]
    options = MatchOptions(compare_codes=False, threshold=0.5, sole_candidate_reason=MatchReason.SAME_RATE)
    got = _by_old(match_entries(old, new, options))
    assert (got["input2"].new_id, got["input2"].reason) == ("qb1", MatchReason.SAME_RATE)
    assert got["input2"].shared_with == ("output2",) and got["output2"].shared_with == ("input2",)
    assert (got["exempt"].new_id, got["exempt"].reason) == ("qb4", MatchReason.SIMILAR_NAME)


def test_a_supplier_rule_prefers_a_supplier_of_the_same_name():
    old = [MatchEntry("rule", "Acme Ltd", tag="supplier")]
    new = [
        MatchEntry("a-customer", "Acme Ltd", tag="customer"),
        MatchEntry("b-vendor", "ACME LIMITED", tag="supplier"),
    ]
    assert match_entries(old, new)[0].new_id == "b-vendor"


def test_similar_names_are_assigned_one_to_one_best_first():
    old = [MatchEntry("o1", "Avon Print Works"), MatchEntry("o2", "Avon Prnt Works")]
    new = [MatchEntry("n1", "Avon Print Works UK")]
    got = _by_old(match_entries(old, new))
    assert got["o1"].new_id == "n1" and got["o1"].shared_with == ()
    assert got["o2"].reason == MatchReason.UNMATCHED  # n1 is o1's: o2 is left for a person


def test_repeated_ids_are_refused():
    with pytest.raises(ValueError, match="repeat"):
        match_entries([MatchEntry("o1", "A"), MatchEntry("o1", "B")], [])


# --- properties -----------------------------------------------------------------------------------

WORDS = [
    "acme",
    "avon",
    "brecon",
    "print",
    "works",
    "timber",
    "office",
    "supplies",
    "north",
    "ltd",
    "&",
    "co",
]
names = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
codes = st.one_of(st.none(), st.sampled_from(["100", "200", "429", "461", "SUP-1", "SUP-2"]))
groups = st.sampled_from(["", "", "1", "2"])


@st.composite
def entry_lists(draw):
    def entries(prefix: str):
        raw = draw(st.lists(st.tuples(names, codes, groups, st.sampled_from(["", "s", "c"])), max_size=25))
        return [MatchEntry(f"{prefix}{i}", n, c, g, t) for i, (n, c, g, t) in enumerate(raw)]

    return entries("o"), entries("n")


@given(entry_lists(), st.booleans(), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_result_depends_only_on_the_sets_never_on_their_order(lists, compare_codes, rng: random.Random):
    old, new = lists
    options = MatchOptions(compare_codes=compare_codes, sole_candidate_reason=MatchReason.SAME_RATE)
    first = match_entries(old, new, options)
    assert first == match_entries(old, new, options)  # deterministic
    shuffled_old, shuffled_new = old[:], new[:]
    rng.shuffle(shuffled_old)
    rng.shuffle(shuffled_new)
    assert _by_old(match_entries(shuffled_old, shuffled_new, options)) == _by_old(first)
    assert [m.old_id for m in first] == [e.id for e in old]  # one answer per old entry, in order


@given(entry_lists(), st.booleans())
@settings(max_examples=300, deadline=None)
def test_two_old_entries_never_share_a_new_one_without_saying_so(lists, compare_codes):
    old, new = lists
    matches = match_entries(old, new, MatchOptions(compare_codes=compare_codes))
    by_new: dict[str, set[str]] = {}
    for match in matches:
        if match.new_id is not None:
            by_new.setdefault(match.new_id, set()).add(match.old_id)
    for match in matches:
        if match.new_id is None:
            assert match.shared_with == () and match.reason == MatchReason.UNMATCHED
            continue
        assert set(match.shared_with) == by_new[match.new_id] - {match.old_id}
        # Only exact evidence (a code or a normalised name) may share; a similar name never does.
        if match.shared_with:
            assert match.reason in (MatchReason.SAME_CODE, MatchReason.SAME_NAME)


@given(entry_lists(), st.booleans())
@settings(max_examples=300, deadline=None)
def test_exact_code_beats_normalised_name_beats_similar_name(lists, compare_codes):
    old, new = lists
    options = MatchOptions(compare_codes=compare_codes)
    new_by_id = {e.id: e for e in new}
    for entry, match in zip(old, match_entries(old, new, options), strict=True):
        code = (entry.code or "").strip().casefold()
        same_code = [
            n
            for n in new
            if compare_codes and code and (n.code or "").strip().casefold() == code and n.group == entry.group
        ]
        norm = normalise_name(entry.name)
        same_name = [n for n in new if norm and normalise_name(n.name) == norm and n.group == entry.group]
        if same_code:
            assert match.reason == MatchReason.SAME_CODE and match.new_id in {n.id for n in same_code}
        elif same_name:
            assert match.reason == MatchReason.SAME_NAME and match.new_id in {n.id for n in same_name}
        else:
            assert match.reason in (MatchReason.SIMILAR_NAME, MatchReason.UNMATCHED)
        if match.new_id is not None:
            assert new_by_id[match.new_id].group == entry.group  # groups are never crossed
        if match.reason == MatchReason.SIMILAR_NAME:
            assert match.score is not None and match.score >= options.threshold


@given(st.lists(st.tuples(names, codes), max_size=30, unique_by=lambda pair: normalise_name(pair[0])))
@settings(max_examples=100, deadline=None)
def test_a_list_matched_against_itself_maps_every_entry_to_itself(rows):
    entries = [
        MatchEntry(f"e{i}", name, None) for i, (name, _code) in enumerate(rows) if normalise_name(name)
    ]
    mirror = [MatchEntry(e.id, e.name.upper()) for e in entries]
    assert all(m.old_id == m.new_id for m in match_entries(entries, mirror))


def test_a_contact_number_names_someone_else_unless_the_names_agree():
    """Each organisation numbers its contacts from SUP-00001: a floor on name similarity stops the
    number from mapping Avon Security to an unrelated timber merchant."""
    old = [
        MatchEntry("o1", "Avon Security & Sons", "SUP-00001"),
        MatchEntry("o2", "Acme Trading Ltd", "SUP-00002"),
    ]
    new = [
        MatchEntry("n1", "Fenland Timber Merchants Ltd", "SUP-00001"),
        MatchEntry("n2", "Avon Security & Sons", "SUP-00077"),
        MatchEntry("n3", "Acme Trading (UK) Ltd", "SUP-00002"),
    ]
    got = _by_old(match_entries(old, new, MatchOptions(code_name_floor=0.5)))
    assert (got["o1"].new_id, got["o1"].reason) == ("n2", MatchReason.SAME_NAME)
    assert (got["o2"].new_id, got["o2"].reason) == ("n3", MatchReason.SAME_CODE)
    # Without the floor, the code wins whatever the names say (categories: codes are the chart's own).
    assert _by_old(match_entries(old, new))["o1"].new_id == "n1"
