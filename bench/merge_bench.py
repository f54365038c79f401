"""Merge Lists matching at scale: 20,000 old entries against 20,000 new ones.

Run: ``.venv/bin/python -m bench.merge_bench`` (or ``make bench-merge``).

It measures, in one run, the proposal exactly as ``POST /v1/connection/merge-lists/preview``
computes it for suppliers (``ledgerlink.services.merge.propose_list`` for the contacts list, with the
matching options the service uses for a change within one ledger, every old supplier referred to by
a rule):
1. 20,000 old x 20,000 new suppliers with realistic names, typos and renamed codes: wall time, CPU
   time and peak memory (tracemalloc, in a second run so tracing never slows the timed one);
2. a 2,000 x 2,000 sample of those same lists (the first 2,000 old suppliers, what became of them,
   and the same share of newcomers): the proposal, and the naive all-pairs comparison (every old
   name scored against every new name under the same rules: code, then normalised name, then the
   best similar name, with difflib's cheap upper bounds first as ``get_close_matches`` does), the
   naive time extrapolated to the full lists (quadratic) as a ratio to the measured proposal;
3. match quality (precision, recall) on the labelled synthetic set shipped in
   ``bench/data/merge_labelled.jsonl`` (``--write-labelled`` regenerates it, deterministically).

Everything is generated from fixed seeds: the same command gives the same lists on every machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from difflib import SequenceMatcher
from pathlib import Path
from typing import TypeVar

from ledgerlink.models.common import ListType
from ledgerlink.models.lists import ListRecord, normalise_name, record_id
from ledgerlink.models.merge import ListProposal
from ledgerlink.services.matching import MatchEntry, MatchOptions, comparable_name, name_similarity
from ledgerlink.services.merge import References, match_options, propose_list

T = TypeVar("T")
DATA_DIR = Path(__file__).parent / "data"
LABELLED = DATA_DIR / "merge_labelled.jsonl"
SCALE = 20_000
SAMPLE = 2_000
LABELLED_SIZE = 1_500

# fmt: off
PLACES = (
    "Abbey", "Albion", "Alder", "Ashdown", "Avon", "Beacon", "Birch", "Bramley", "Brecon", "Bridge",
    "Bristol", "Caldew", "Cambrian", "Castle", "Cedar", "Chiltern", "Clifton", "Coastal", "Cotswold", "Crown",
    "Dale", "Derwent", "Dover", "Eden", "Elm", "Exmoor", "Fen", "Forth", "Glen", "Granite",
    "Harbour", "Hazel", "Heath", "Highland", "Hill", "Kennet", "Kestrel", "Lakeland", "Lark", "Linden",
    "Lomond", "Malvern", "Medway", "Mendip", "Mersey", "Moor", "Nene", "Oak", "Orchard", "Ouse",
    "Peak", "Pennine", "Quantock", "Raven", "Ribble", "Ridge", "Riverside", "Rowan", "Severn", "Solent",
    "Stour", "Summit", "Tamar", "Tay", "Teme", "Thames", "Trent", "Tweed", "Tyne", "Usk",
    "Vale", "Wear", "Weald", "Wessex", "Wey", "Willow", "Windsor", "Wye", "Yarrow", "York",
)
TRADES = (
    "Print Works", "Timber Merchants", "Office Supplies", "Catering", "Plumbing & Heating", "Electrical Services",
    "Security", "Stationers", "Accountancy", "Legal Services", "Cleaning Services", "Couriers",
    "Joinery Supplies", "Builders Merchants", "IT Solutions", "Software", "Telecoms", "Signs & Graphics",
    "Vehicle Hire", "Fuel Supplies", "Packaging", "Engineering", "Scaffolding", "Roofing",
    "Glazing", "Landscaping", "Waste Management", "Recruitment", "Training", "Marketing",
    "Design Studio", "Photography", "Furniture", "Flooring", "Paints & Coatings", "Hardware",
    "Tool Hire", "Uniforms", "Laundry", "Pest Control", "Fire Protection", "Lifts & Escalators",
    "Air Conditioning", "Water Treatment", "Print & Copy", "Music School", "Bookshop", "Tea Rooms",
    "Cycles", "Bakery", "Butchers", "Dairy", "Greengrocers", "Florists",
    "Opticians", "Pharmacy", "Vets", "Dental Care", "Physiotherapy", "Fitness",
    "Travel", "Insurance Brokers", "Surveyors", "Architects", "Estate Agents", "Lettings",
    "Storage", "Removals", "Locksmiths", "Carpets", "Kitchens", "Bathrooms",
    "Windows", "Doors", "Fencing", "Paving", "Drainage", "Tiling",
    "Plastering", "Decorators", "Audio Visual", "Events", "Marquees", "Brewery",
    "Wines", "Distillery", "Coffee", "Vending", "Water Coolers", "Janitorial",
)
# fmt: on
MODIFIERS = ("", "", "", "North", "South", "East", "West", "Royal", "New", "Central", "Premier", "United")
SUFFIXES = ("Ltd", "Ltd", "Limited", "LLP", "& Sons", "Group Ltd", "Plc", "", "& Co", "Services Ltd")
# Suffixes normalise_name ignores: swapping one for another is a cosmetic change only.
COSMETIC = {"Ltd": "Limited", "Limited": "Ltd", "LLP": "Ltd", "Plc": "PLC", "": "Ltd", "& Co": "& Co."}
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Labelled:
    old: list[MatchEntry]
    new: list[MatchEntry]
    truth: dict[str, str | None]  # old id -> the new id of the same supplier (None: gone)


def _typo(name: str, rng: random.Random, edits: int) -> str:
    chars = list(name)
    for _ in range(edits):
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        at = rng.choice(letters)
        kind = rng.randrange(4)
        if kind == 0:  # dropped letter
            del chars[at]
        elif kind == 1:  # doubled letter
            chars.insert(at, chars[at])
        elif kind == 2 and at + 1 < len(chars) and chars[at + 1].isalpha():  # swapped neighbours
            chars[at], chars[at + 1] = chars[at + 1], chars[at]
        else:  # wrong letter
            chars[at] = rng.choice(ALPHABET)
    return "".join(chars)


def _names(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        parts = [rng.choice(MODIFIERS), rng.choice(PLACES), rng.choice(TRADES), rng.choice(SUFFIXES)]
        name = " ".join(p for p in parts if p)
        key = normalise_name(name)
        if key not in seen:  # one ledger does not hold two suppliers of the same normalised name
            seen.add(key)
            names.append(name)
    return names


def _cosmetic(name: str) -> str:
    """The same name as normalise_name sees it: another legal suffix, or shouted."""
    suffix = next((s for s in COSMETIC if s and name.endswith(" " + s)), "")
    base = name[: -len(suffix) - 1] if suffix else name
    changed = f"{base} {COSMETIC[suffix]}".strip()
    return changed.upper() if len(name.split(" ")) % 2 else changed


def _counterpart(entry: MatchEntry, number: int, rng: random.Random) -> MatchEntry | None:
    """What became of an old supplier in the new list (None: it is gone)."""
    draw = rng.random()
    new_id, renamed_code = f"new-{number:06d}", f"V{number:06d}"
    choices: list[tuple[float, tuple[str, str | None] | None]] = [
        (0.50, (entry.name, entry.code)),
        (0.60, (entry.name, renamed_code)),
        (0.67, (_cosmetic(entry.name), renamed_code)),
        (0.80, (_typo(entry.name, rng, 1), renamed_code)),
        (0.85, (_typo(entry.name, rng, 2), renamed_code)),
        (0.88, (f"{entry.name} UK", renamed_code)),
        (0.92, (_typo(entry.name, rng, 1), entry.code)),
        (1.00, None),
    ]
    outcome = next(result for bound, result in choices if draw < bound)
    return MatchEntry(new_id, outcome[0], outcome[1]) if outcome else None


def generate(size: int, seed: int) -> Labelled:
    """``size`` old suppliers and about as many new ones, with the truth of which is which.

    Of the old suppliers: half come back unchanged; 10 % with a renamed code; 7 % with a renamed
    code and a cosmetic change (suffix, case); 13 % renamed code + one typo, 5 % + two typos,
    3 % + an extra word; 4 % a typo but the same code; 8 % are gone. The new list adds 8 % new
    suppliers, some named like a gone one ("North Avon Print Works" for "Avon Print Works") and a
    few reusing a gone supplier's code: the traps that cost precision in real lists.
    """
    rng = random.Random(seed)
    names = _names(rng, int(size * 1.2))
    old: list[MatchEntry] = []
    new: list[MatchEntry] = []
    truth: dict[str, str | None] = {}
    gone: list[MatchEntry] = []
    for number in range(size):
        entry = MatchEntry(id=f"old-{number:06d}", name=names[number], code=f"SUP-{number:05d}")
        old.append(entry)
        counterpart = _counterpart(entry, number, rng)
        truth[entry.id] = counterpart.id if counterpart else None
        if counterpart is None:
            gone.append(entry)
        else:
            new.append(counterpart)
    for number in range(int(size * 0.08)):
        new_id, draw = f"new-x{number:06d}", rng.random()
        if draw < 0.25 and gone:  # a different supplier named like one that is gone
            twin = rng.choice(gone)
            new.append(
                MatchEntry(
                    new_id, f"{rng.choice([m for m in MODIFIERS if m])} {twin.name}", f"V9{number:05d}"
                )
            )
        elif draw < 0.30 and gone:  # a gone supplier's code, reused for someone else
            new.append(MatchEntry(new_id, names[size + number], rng.choice(gone).code))
        else:
            new.append(MatchEntry(new_id, names[size + number], f"V9{number:05d}"))
    rng.shuffle(new)
    return Labelled(old=old, new=new, truth=truth)


def sample_of(full: Labelled, size: int) -> Labelled:
    """A sample of the same lists: the first ``size`` old suppliers, what became of them, and the
    newcomers in the same proportion (``generate`` adds 8 %)."""
    old = full.old[:size]
    truth = {entry.id: full.truth[entry.id] for entry in old}
    kept = {new_id for new_id in truth.values() if new_id is not None}
    newcomers = {f"new-x{number:06d}" for number in range(int(size * 0.08))}
    new = [entry for entry in full.new if entry.id in kept or entry.id in newcomers]
    return Labelled(old=old, new=new, truth=truth)


# --- the naive baseline ---------------------------------------------------------------------------------


def naive_match(
    old: Sequence[MatchEntry], new: Sequence[MatchEntry], options: MatchOptions
) -> dict[str, str | None]:
    """Every old entry against every new one under the proposal's rules: the same code (when the
    names agree enough), then the same normalised name, then the best similar name over all new
    names (difflib's cheap upper bounds first, as get_close_matches does)."""
    new_rows = [(entry, normalise_name(entry.name), comparable_name(entry.name)) for entry in new]
    threshold = options.threshold
    result: dict[str, str | None] = {}
    matcher = SequenceMatcher(autojunk=False)
    for entry in old:
        norm, core = normalise_name(entry.name), comparable_name(entry.name)
        best: tuple[int, float, str] | None = None
        matcher.set_seq2(core)  # difflib caches the analysis of seq2: the old name, fixed per row
        for candidate, candidate_norm, candidate_core in new_rows:
            if (
                options.compare_codes
                and entry.code
                and candidate.code == entry.code
                and name_similarity(entry.name, candidate.name) >= options.code_name_floor
            ):
                rank, score = 3, 1.0
            elif candidate_norm == norm:
                rank, score = 2, 1.0
            else:
                matcher.set_seq1(candidate_core)
                if (
                    matcher.real_quick_ratio() < threshold
                    or matcher.quick_ratio() < threshold
                    or (score := matcher.ratio()) < threshold
                ):
                    continue
                rank = 1
            if best is None or (rank, score, candidate.id) > best:
                best = (rank, score, candidate.id)
        result[entry.id] = best[2] if best else None
    return result


# --- the proposal as the service computes it ---------------------------------------------------------------

OLD_CONNECTION, NEW_CONNECTION = "conn-old", "conn-new"


@dataclass(frozen=True)
class ProposalInput:
    """Suppliers as imported contacts (the bench's ids become their remote ids), and the references
    of a business whose rules name every old supplier."""

    old: dict[str, ListRecord]
    new: list[ListRecord]
    references: References
    remote_of: dict[str, str]  # our record id -> the bench's id


def proposal_input(data: Labelled) -> ProposalInput:
    def contact(connection_id: str, entry: MatchEntry) -> ListRecord:
        return ListRecord(
            id=record_id(connection_id, ListType.CONTACTS, entry.id),
            list_type=ListType.CONTACTS,
            remote_id=entry.id,
            code=entry.code,
            name=entry.name,
            is_supplier=True,
        )

    old = [contact(OLD_CONNECTION, entry) for entry in data.old]
    new = [contact(NEW_CONNECTION, entry) for entry in data.new]
    return ProposalInput(
        old={record.id: record for record in old},
        new=new,
        references=References(rules={record.id: 1 for record in old}, rules_referring=len(old)),
        remote_of={record.id: record.remote_id for record in [*old, *new]},
    )


def propose(given: ProposalInput) -> ListProposal:
    return propose_list(ListType.CONTACTS, given.old, given.new, given.references, same_ledger=True)


def as_proposal(given: ProposalInput, proposal: ListProposal) -> tuple[dict[str, str | None], dict[str, str]]:
    """The proposal in the bench's ids: old -> new (None: unmatched), and old -> reason."""
    matched = {
        given.remote_of[e.old_id]: given.remote_of[e.new_id] if e.new_id else None for e in proposal.entries
    }
    return matched, {given.remote_of[e.old_id]: e.reason.value for e in proposal.entries}


# --- measuring ------------------------------------------------------------------------------------------


@dataclass
class Quality:
    precision: float
    recall: float
    proposed: int
    correct: int
    should_match: int
    by_reason: dict[str, int]


def quality(
    proposal: dict[str, str | None], truth: dict[str, str | None], reasons: dict[str, str]
) -> Quality:
    proposed = {old: new for old, new in proposal.items() if new is not None}
    correct = sum(1 for old, new in proposed.items() if truth.get(old) == new)
    should = sum(1 for new in truth.values() if new is not None)
    counts: dict[str, int] = {}
    for reason in reasons.values():
        counts[reason] = counts.get(reason, 0) + 1
    return Quality(
        precision=correct / len(proposed) if proposed else 1.0,
        recall=correct / should if should else 1.0,
        proposed=len(proposed),
        correct=correct,
        should_match=should,
        by_reason=dict(sorted(counts.items())),
    )


def write_labelled(path: Path = LABELLED) -> None:
    data = generate(LABELLED_SIZE, seed=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for entry in data.old:
            out.write(json.dumps({"side": "old", "id": entry.id, "code": entry.code, "name": entry.name,
                                  "truth": data.truth[entry.id]}) + "\n")  # fmt: skip
        for entry in data.new:
            out.write(
                json.dumps({"side": "new", "id": entry.id, "code": entry.code, "name": entry.name}) + "\n"
            )


def read_labelled(path: Path = LABELLED) -> Labelled:
    old: list[MatchEntry] = []
    new: list[MatchEntry] = []
    truth: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        entry = MatchEntry(id=row["id"], name=row["name"], code=row["code"])
        if row["side"] == "old":
            old.append(entry)
            truth[entry.id] = row["truth"]
        else:
            new.append(entry)
    return Labelled(old=old, new=new, truth=truth)


def _timed(action: Callable[[], T]) -> tuple[T, float, float]:
    """The result, the wall time and the CPU time (the CPU time shows a busy machine for what it is)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=SCALE)
    parser.add_argument("--sample", type=int, default=SAMPLE)
    parser.add_argument("--write-labelled", action="store_true", help="regenerate bench/data and exit")
    args = parser.parse_args(argv)
    if args.write_labelled:
        write_labelled()
        print(f"wrote {LABELLED}")
        return
    options = match_options(ListType.CONTACTS, same_ledger=True)
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.machine()} (uname -m), {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(f"load average at start (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"supplier matching options: threshold {options.threshold}, same code counts from name "
        f"similarity {options.code_name_floor}, {options.candidates_per_entry} candidates per entry, "
        f"posting budget {options.posting_budget}"
    )

    full = generate(args.scale, seed=2026)
    given = proposal_input(full)
    proposal, seconds, cpu = _timed(lambda: propose(given))
    tracemalloc.start()  # a second run: tracing slows every allocation, so it never shares the timed one
    propose(given)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    matched, reasons = as_proposal(given, proposal)
    full_quality = quality(matched, full.truth, reasons)
    print(f"\nproposal (propose_list, contacts): {len(full.old):,} old x {len(full.new):,} new")
    print(f"  wall time   {seconds:.2f} s (CPU {cpu:.2f} s)")
    print(f"  peak memory {peak / 2**20:.1f} MiB (tracemalloc, the proposal's own allocations)")
    print(f"  precision {full_quality.precision:.4f}  recall {full_quality.recall:.4f}")
    print(f"  by reason {full_quality.by_reason}")

    sample = sample_of(full, args.sample)
    sample_given = proposal_input(sample)
    sample_proposal, sample_seconds, sample_cpu = _timed(lambda: propose(sample_given))
    naive, naive_seconds, naive_cpu = _timed(lambda: naive_match(sample.old, sample.new, options))
    factor = (len(full.old) * len(full.new)) / (len(sample.old) * len(sample.new))
    sample_matched, sample_reasons = as_proposal(sample_given, sample_proposal)
    sample_quality = quality(sample_matched, sample.truth, sample_reasons)
    naive_quality = quality(naive, sample.truth, {})
    print(f"\nsample of the same lists: {len(sample.old):,} old x {len(sample.new):,} new")
    print(
        f"  proposal {sample_seconds:7.2f} s (CPU {sample_cpu:.2f} s)  "
        f"precision {sample_quality.precision:.4f}  recall {sample_quality.recall:.4f}"
    )
    print(
        f"  naive    {naive_seconds:7.2f} s (CPU {naive_cpu:.2f} s)  "
        f"precision {naive_quality.precision:.4f}  recall {naive_quality.recall:.4f}"
    )
    print(
        f"  naive extrapolated to {len(full.old):,} x {len(full.new):,} (x{factor:.1f}): "
        f"{naive_seconds * factor:,.0f} s wall, {naive_cpu * factor:,.0f} s CPU"
    )
    print(
        f"  ratio, naive extrapolated / proposal measured at full size: {naive_seconds * factor / seconds:,.0f}x "
        f"wall, {naive_cpu * factor / cpu:,.0f}x CPU"
    )

    labelled = read_labelled()
    labelled_given = proposal_input(labelled)
    labelled_matched, labelled_reasons = as_proposal(labelled_given, propose(labelled_given))
    labelled_quality = quality(labelled_matched, labelled.truth, labelled_reasons)
    print(f"\nlabelled set bench/data/{LABELLED.name}: {len(labelled.old):,} old x {len(labelled.new):,} new")
    print(
        f"  precision {labelled_quality.precision:.4f} "
        f"({labelled_quality.correct}/{labelled_quality.proposed} proposed matches are right)"
    )
    print(
        f"  recall    {labelled_quality.recall:.4f} "
        f"({labelled_quality.correct}/{labelled_quality.should_match} entries with a counterpart found)"
    )
    print(f"  by reason {labelled_quality.by_reason}")
    print(f"\nload average at end (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
