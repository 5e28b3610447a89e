"""End to end on an awkward folder: generated photos, their copies, and files that hurt.

The folder holds exact copies, edited copies (resized, mirrored and re-saved as PNG, EXIF-
rotated, CMYK, with an alpha channel), unrelated photos, names with spaces and unicode, a
text file named .jpg, a truncated JPEG and an empty file. The test asserts the exact groups
and problems the library reports.
"""
import shutil

import pytest
from PIL import Image, ImageOps

from engine.library import Library
from imagegen import photo, resize, save_jpeg


def _build(root):
    beach = save_jpeg(photo(1), root / "holiday photos" / "beach ☀ 1.jpg")
    shutil.copy(beach, root / "holiday photos" / "beach ☀ 1 (copy).jpg")
    save_jpeg(resize(photo(1), 0.75), root / "edited" / "beach-small.jpg", quality=85)
    # mirrored from the file, as a person's editor does it (a first JPEG encoding moves these
    # noise-textured synthetic scenes further than camera photos, which are JPEGs already: a
    # re-encode of a real JPEG scores ≥ 0.99, docs/model-card.md)
    cafe = save_jpeg(photo(2), root / "été" / "café.jpg")
    ImageOps.mirror(Image.open(cafe).convert("RGB")).save(root / "été" / "café mirrored.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned left; viewers turn it right to show it upright
    save_jpeg(photo(3).transpose(Image.Transpose.ROTATE_90), root / "phone" / "IMG_0003.jpg", exif=exif)
    save_jpeg(photo(3), root / "upright.jpg", quality=80)
    save_jpeg(resize(photo(4), 0.8), root / "print" / "poster-web.jpg")
    photo(4).convert("CMYK").save(root / "print" / "poster cmyk.jpg", "JPEG", quality=92)
    rgba = photo(5).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 8, 8))
    rgba.save(root / "logo.png")
    # flattened as an editor exports it, the transparent corner over white (how the scan reads
    # the PNG), and saved lossless
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    flat.convert("RGB").save(root / "logo-flat.png")
    for seed in (6, 7):
        save_jpeg(photo(seed), root / f"other {seed}.jpg")
    (root / "notes.jpg").write_text("not a photo at all")
    data = save_jpeg(photo(8), root / "whole.jpg").read_bytes()
    (root / "whole.jpg").unlink()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "README.txt").write_text("ignored quietly")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("awkward")
    _build(root)
    lib = Library(tmp_path_factory.mktemp("lib"), embedder=embedder)
    report = lib.scan([root])
    yield root, lib, report
    lib.close()


def _names(groups, root):
    return sorted(sorted(str(m.file.path)[len(str(root)) + 1:] for m in g.members) for g in groups)


def test_scan_counts_and_problems(scanned):
    root, lib, report = scanned
    # 14 files look like images (the text file and the empty file do not); the truncated
    # one fails to decode and the exact copy reuses its original's vectors.
    assert (report.found, report.embedded, report.reused) == (14, 12, 1)
    problems = {p.path[len(str(root)) + 1:]: p.kind for p in report.problems}
    assert problems == {"notes.jpg": "not-image", "truncated.jpg": "decode", "empty.jpg": "empty"}
    assert all(p.message for p in report.problems)


def test_exact_groups(scanned):
    root, lib, _ = scanned
    groups = lib.duplicates("exact")
    assert _names(groups, root) == [["holiday photos/beach ☀ 1 (copy).jpg", "holiday photos/beach ☀ 1.jpg"]]
    assert groups[0].level == "exact" and all(m.similarity == 1.0 for m in groups[0].members)


def test_near_duplicate_groups(scanned):
    root, lib, _ = scanned
    groups = lib.duplicates("near")
    assert _names(groups, root) == [
        ["edited/beach-small.jpg", "holiday photos/beach ☀ 1 (copy).jpg", "holiday photos/beach ☀ 1.jpg"],
        ["logo-flat.png", "logo.png"],
        ["phone/IMG_0003.jpg", "upright.jpg"],
        ["print/poster cmyk.jpg", "print/poster-web.jpg"],
        ["été/café mirrored.png", "été/café.jpg"],
    ]
    for g in groups:
        assert g.level == "near" and g.reason
        assert g.keep in [m.file for m in g.members] and g.members[0].file == g.keep


def test_keeper_prefers_the_full_size_original(scanned):
    root, lib, _ = scanned
    beach = next(g for g in lib.duplicates("near") if "beach" in g.keep.path)
    assert beach.keep.width == 256 and "beach-small" not in beach.keep.path


def test_exif_rotation_was_applied(scanned):
    root, lib, _ = scanned
    rec = lib.catalog.file_by_path(str(root / "phone" / "IMG_0003.jpg"))
    assert (rec.width, rec.height) == (256, 192)


def test_similar_level_contains_every_near_group(scanned):
    root, lib, _ = scanned
    similar = [set(m.file.path for m in g.members) for g in lib.duplicates("similar")]
    for g in lib.duplicates("near"):
        assert any({m.file.path for m in g.members} <= s for s in similar)


def test_find_similar_ranks_the_copies_first(scanned):
    root, lib, _ = scanned
    matches = lib.similar(root / "été" / "café.jpg", k=3)
    assert matches[0].file.path == str(root / "été" / "café mirrored.png")
