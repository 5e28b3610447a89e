"""Nothing leaves the machine: a full scan, grouping and find-similar make no network call.

Python's socket entry points are replaced by ones that record the attempt and refuse it, and
an audit hook also records any internet socket created or connected by other means. The
default model is loaded inside the guard too, since a model library fetching weights from a
hub would be the likeliest leak.
"""
from __future__ import annotations

import socket
import sys

import pytest

from engine.library import Library
from imagegen import photo, recompress, save_jpeg

_INET = (socket.AF_INET, socket.AF_INET6)
_audit = {"on": False, "seen": []}


def _audit_hook(event: str, args: tuple) -> None:
    if not _audit["on"]:
        return
    if event == "socket.__new__" and len(args) > 1 and args[1] in _INET:
        _audit["seen"].append((event, args[1:]))
    elif event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
                   "socket.sendto", "urllib.Request"):
        _audit["seen"].append((event, args[1:] if event.startswith("socket.") else args))


sys.addaudithook(_audit_hook)  # hooks cannot be removed; this one is idle outside the test


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[tuple[str, tuple]] = []

    def refusing(name: str, real):
        def refuse(*args, **kwargs):
            attempts.append((name, args))
            raise OSError(f"network access refused by test_no_network: {name}{args!r}")
        refuse.__wrapped__ = real
        return refuse

    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"),
                        (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refusing(name, getattr(owner, name)))
    _audit.update(on=True, seen=[])
    try:
        yield attempts
    finally:
        _audit["on"] = False


def test_scan_group_and_search_make_no_network_call(tmp_path, no_network):
    photos = tmp_path / "photos"
    for seed in range(6):
        save_jpeg(photo(seed), photos / f"p{seed}.jpg")
    (photos / "copy of p0.jpg").write_bytes((photos / "p0.jpg").read_bytes())
    save_jpeg(recompress(photo(1), 30), photos / "p1 small.jpg")
    outside = save_jpeg(photo(2), tmp_path / "outside.jpg")
    with Library(tmp_path / "lib", device="cpu") as lib:  # default model, loaded in the guard
        report = lib.scan([photos])
        groups = {level: lib.duplicates(level) for level in ("exact", "near", "similar")}
        found = lib.similar(photos / "p3.jpg", k=3)
        from_outside = lib.similar(outside, k=3)
    assert report.found == 8 and not report.problems
    assert groups["exact"] and found and from_outside
    assert no_network == [] and _audit["seen"] == []


def test_the_guard_itself_catches_a_connection(no_network):
    with pytest.raises(OSError, match="refused by test_no_network"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    assert [name for name, _ in no_network] == ["create_connection"]
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()  # what the audit hook sees
    assert [event for event, _ in _audit["seen"]] == ["socket.__new__"]
