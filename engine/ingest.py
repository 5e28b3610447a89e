"""The scan pipeline: found files → catalog rows and embeddings, one transaction per batch.

Unchanged files (same size and mtime) are not opened. Changed and new files are read once in
worker threads (hash, metadata, pixels); pixels are decoded only for content whose embeddings
the catalog lacks, so a renamed, moved or copied photo reuses its vectors. Each batch of
results is written in one transaction, so a crash loses at most one batch (64 files; on CUDA
the embedder's batch, 256 by default, so the GPU gets large batches). When the embedder
decodes JPEGs on its device, the threads only read, hash and parse the headers of plain
JPEGs, and their pixels are decoded in batches on the GPU; a file that fails there is
recorded as a problem like any other undecodable file.

Files may change between the walk and the read. One that disappeared is recorded as a
"vanished" problem. One that changed is catalogued from the bytes actually read (their hash,
pixels and size) with the walk's mtime, so a later scan sees a different mtime and reads it
again rather than trusting a half-written state.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine.catalog import Catalog
from engine.decode import DecodedPhoto, read_photo
from engine.embedding import Embedder
from engine.errors import DecodeError
from engine.parallel import ordered_map
from engine.progress import ProgressCallback, wants_stop
from engine.scan import FileEntry

log = logging.getLogger(__name__)
BATCH = 64


@dataclass
class IngestStats:
    embedded: int = 0          # photos decoded and run through the model
    reused: int = 0            # new or changed paths whose content was already embedded
    failed: int = 0            # files that could not be decoded (recorded as problems)
    changed_ids: set[int] = field(default_factory=set)
    cancelled: bool = False


class Ingester:
    def __init__(self, catalog: Catalog, embedder: Embedder, scan_id: int):
        self.catalog = catalog
        self.embedder = embedder
        self.scan_id = scan_id
        self.known = catalog.hashes_with_embedding(embedder.model_id, embedder.stored_heads)
        self.stats = IngestStats()

    def run(self, entries: list[FileEntry], progress: ProgressCallback) -> IngestStats:
        size, gpu_jpeg = self.embedder.input_size, self.embedder.gpu_jpeg
        known = frozenset(self.known)
        flush_at = max(BATCH, self.embedder.batch_size) if gpu_jpeg else BATCH

        def work(entry: FileEntry) -> DecodedPhoto:
            return read_photo(entry.path, size, skip_pixels_for=known, keep_jpeg=gpu_jpeg)

        batch: list[tuple[FileEntry, DecodedPhoto]] = []
        # Decoding runs up to three batches ahead, so the decode threads keep working while
        # the model embeds a batch (with one batch of lookahead they sat idle meanwhile).
        results = ordered_map(work, entries, self.embedder.workers, lookahead=3 * flush_at)
        try:
            for done, (entry, photo, error) in enumerate(results, 1):
                if error is not None:
                    self._record_failure(entry, error)
                else:
                    batch.append((entry, photo))
                if len(batch) >= flush_at:
                    self._flush(batch)
                    batch = []
                if wants_stop(progress, done, len(entries), entry.path):
                    self.stats.cancelled = True
                    break
        finally:
            results.close()
            self._flush(batch)
        return self.stats

    def _record_failure(self, entry: FileEntry, error: BaseException) -> None:
        kind = "decode"
        if not isinstance(error, DecodeError):
            reason = f"unexpected error ({error!r})"
            log.warning("cannot decode %s: %s", entry.path, reason, exc_info=error)
        elif isinstance(error.__cause__, FileNotFoundError):
            kind, reason = "vanished", "file disappeared during the scan (moved or deleted)"
            log.info("%s: %s", entry.path, reason)
        else:
            reason = error.reason
            log.info("cannot decode %s: %s", entry.path, reason)
        self.catalog.add_problem(entry.path, kind, reason, self.scan_id)
        self.stats.failed += 1

    def _flush(self, batch: list[tuple[FileEntry, DecodedPhoto]]) -> None:
        if not batch:
            return
        fresh: dict[str, DecodedPhoto] = {}
        for _, photo in batch:
            if photo.content_hash not in self.known and (photo.image is not None or photo.jpeg is not None):
                fresh.setdefault(photo.content_hash, photo)
        vectors, errors = (self.embedder.embed_photos(list(fresh.values()), self.embedder.stored_heads)
                           if fresh else ({}, {}))
        if errors:  # pixels the device's decoder and Pillow both refused: problems, not rows
            bad = {list(fresh)[i] for i in errors}
            for error in errors.values():
                self.catalog.add_problem(error.path, "decode", error.reason, self.scan_id)
            self.stats.failed += sum(1 for _, p in batch if p.content_hash in bad)
            batch = [(e, p) for e, p in batch if p.content_hash not in bad]
            fresh = {h: p for h, p in fresh.items() if h not in bad}
        with self.catalog.transaction():
            for head, matrix in vectors.items():
                for digest, row in zip(fresh, matrix):
                    self.catalog.put_embedding(digest, self.embedder.model_id, head, row)
            for entry, photo in batch:
                # photo.size: the bytes hashed, which differ from the walk's if the file changed
                file_id = self.catalog.upsert_file(
                    entry.path, photo.size, entry.mtime_ns, photo.content_hash, photo.width,
                    photo.height, photo.format, photo.capture_time, photo.camera, self.scan_id)
                self.stats.changed_ids.add(file_id)
        self.known.update(fresh)
        self.stats.embedded += len(fresh)
        self.stats.reused += len(batch) - len(fresh)
        for _, photo in batch:
            photo.image = photo.jpeg = None  # free pixels and bytes early
