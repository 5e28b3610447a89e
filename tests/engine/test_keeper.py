"""Which copy to keep: each criterion in its turn, with a reason that names its value."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.keeper import Candidate, choose_keeper, format_bytes

DAY_NS = 86_400 * 10**9
BASE = Candidate(id=1, path="/photos/a.jpg", width=4000, height=3000, size=2_000_000,
                 format="JPEG", mtime_ns=1_600_000_000 * 10**9, capture_time=None, camera=None)


def cand(id: int, **changes) -> Candidate:
    path = changes.pop("path", f"/photos/{id:03d}.jpg")
    return dataclasses.replace(BASE, id=id, path=path, **changes)


def keep_all_orders(*candidates: Candidate) -> tuple[int, str]:
    results = {choose_keeper(list(p)) for p in itertools.permutations(candidates)}
    assert len(results) == 1, f"depends on input order: {results}"
    return results.pop()


def test_empty_raises_and_single_is_kept():
    with pytest.raises(ValueError):
        choose_keeper([])
    assert choose_keeper([cand(7)])[0] == 7


def test_resolution_decides_first():
    small = cand(1, width=1024, height=768, format="PNG", size=9_000_000, camera="Canon EOS 5D")
    big = cand(2, mtime_ns=BASE.mtime_ns + DAY_NS)
    kept, reason = keep_all_orders(small, big)
    assert kept == 2
    assert reason == "largest resolution (4000×3000 vs 1024×768)"


def test_resolution_within_two_percent_is_a_tie():
    jpeg = cand(1, width=4040, height=3000)  # 1% more pixels: not "larger"
    png = cand(2, format="PNG", size=1_000_000)
    kept, reason = keep_all_orders(jpeg, png)
    assert kept == 2
    assert reason == "similar resolution; lossless PNG over JPEG"


def test_resolution_more_than_two_percent_wins():
    kept, reason = keep_all_orders(cand(1, width=4120, height=3000), cand(2, format="PNG"))
    assert kept == 1 and "4120×3000 vs 4000×3000" in reason


def test_unknown_dimensions_count_as_zero():
    kept, reason = keep_all_orders(cand(1, width=None, height=None, format="PNG"),
                                   cand(2, width=640, height=480))
    assert kept == 2
    assert reason == "largest resolution (640×480 vs unknown size)"


def test_format_decides_at_same_resolution():
    kept, reason = keep_all_orders(cand(1, size=5_000_000), cand(2, format="PNG"))
    assert kept == 2
    assert reason == "same resolution; lossless PNG over JPEG"


def test_gif_ranks_below_lossy_full_colour_and_aliases_are_understood():
    kept, reason = keep_all_orders(cand(1, format="GIF", size=9_000_000), cand(2, format="jpg"))
    assert kept == 2 and reason == "same resolution; full-colour JPEG over GIF"
    kept, reason = keep_all_orders(cand(3, format="JPEG"), cand(4, format="DNG"))
    assert kept == 4 and "raw DNG over JPEG" in reason


def test_equal_rank_formats_fall_through_to_metadata():
    heif = cand(1, format="HEIF", size=1_000_000, capture_time="2021:03:04 10:00:00")
    jpeg = cand(2, size=3_000_000)
    kept, reason = keep_all_orders(heif, jpeg)
    assert kept == 1
    assert reason == ("same resolution, equally good formats (HEIF, JPEG); "
                      "keeps capture-time metadata (2021:03:04 10:00:00)")


def test_metadata_beats_file_size():
    kept, reason = keep_all_orders(cand(1, size=5_000_000), cand(2, camera="Canon EOS 5D"))
    assert kept == 2
    assert reason == "same resolution and format; keeps camera metadata (Canon EOS 5D)"


def test_larger_file_wins_only_beyond_five_percent():
    kept, reason = keep_all_orders(cand(1, size=1_000_000), cand(2, size=2_300_000))
    assert kept == 2
    assert reason == "same resolution and format; largest file (2.3 MB vs 1.0 MB, least compressed)"
    older = cand(3, size=2_000_000)
    newer_bigger = cand(4, size=2_080_000, mtime_ns=BASE.mtime_ns + DAY_NS)  # 4% larger
    kept, reason = keep_all_orders(older, newer_bigger)
    assert kept == 3
    assert reason.startswith("same resolution and format, similar file size; oldest file")


def test_size_reason_does_not_claim_compression_across_formats():
    kept, reason = keep_all_orders(cand(1, format="WEBP", size=900_000), cand(2))
    assert kept == 2
    assert reason.endswith("largest file (2.0 MB vs 900.0 KB)")
    kept, reason = keep_all_orders(cand(1, width=None, height=None, size=900_000),
                                   cand(2, width=None, height=None))
    assert kept == 2 and reason.endswith("largest file (2.0 MB vs 900.0 KB)")


def test_oldest_wins_when_otherwise_identical():
    kept, reason = keep_all_orders(cand(1, mtime_ns=BASE.mtime_ns + DAY_NS),
                                   cand(2, path="/x/a_much_longer_path.jpg"))
    assert kept == 2
    assert reason == "identical otherwise; oldest file (modified 2020-09-13 12:26 UTC, " \
                     "likely the original)"


def test_metadata_differing_values_is_not_called_identical():
    kept, reason = keep_all_orders(cand(1, camera="A", mtime_ns=BASE.mtime_ns + 1),
                                   cand(2, camera="B"))
    assert kept == 2
    assert not reason.startswith("identical")
    assert reason.startswith("same resolution and format, all with camera metadata, "
                             "same file size; oldest file")


def test_ties_go_to_shortest_path_then_lowest_id():
    kept, reason = keep_all_orders(cand(5, path="/p/long_name.jpg"), cand(9, path="/p/a.jpg"))
    assert kept == 9
    assert reason == "identical otherwise; kept the one with the shortest path (/p/a.jpg)"
    kept, reason = keep_all_orders(cand(5, path="/p/b.jpg"), cand(3, path="/p/c.jpg"))
    assert kept == 3 and reason == "identical otherwise; kept the one with the lowest id (3)"


def test_earlier_losers_make_later_ties_say_tied():
    small = cand(1, width=800, height=600)
    a, b = cand(2, format="PNG"), cand(3, format="PNG", camera="Nikon D850")
    kept, reason = keep_all_orders(small, a, b)
    assert kept == 3
    assert reason == "tied for largest resolution (4000×3000), same format; " \
                     "keeps camera metadata (Nikon D850)"


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"),
                                     (2_300_000, "2.3 MB"), (999_960, "1.0 MB"),
                                     (5 * 10**12, "5.0 TB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


_candidates = st.builds(
    Candidate, id=st.integers(0, 50), path=st.sampled_from(["/a.jpg", "/bb.jpg", "/c/d.png"]),
    width=st.one_of(st.none(), st.integers(1, 50)), height=st.integers(1, 50),
    size=st.integers(1, 10**6), format=st.sampled_from([None, "JPEG", "PNG", "GIF", "HEIF"]),
    mtime_ns=st.integers(0, 3), capture_time=st.sampled_from([None, "2020"]),
    camera=st.sampled_from([None, "X"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_candidates, min_size=1, max_size=5, unique_by=lambda c: c.id), st.randoms())
def test_keeper_is_a_largest_candidate_whatever_the_order(cands, random):
    kept, reason = choose_keeper(cands)
    shuffled = list(cands)
    random.shuffle(shuffled)
    assert choose_keeper(shuffled) == (kept, reason)
    pixels = {c.id: (c.width or 0) * (c.height or 0) for c in cands}
    assert pixels[kept] * 1.02 >= max(pixels.values())
    assert reason and "\n" not in reason
