"""The seen-deliveries file: bounded, atomic rewrite, a torn last line dropped, twins wait."""
from __future__ import annotations

import threading

import pytest

from controller.http.deliveries import FILE_NAME, Deliveries, DeliveryBusy


def test_a_delivery_is_seen_only_once_marked_and_after_a_restart(tmp_path):
    seen = Deliveries(tmp_path)
    with seen.claim("github:a", 1) as claim:
        assert not claim.seen
    assert "github:a" not in seen                   # not marked: a redelivery applies it
    with seen.claim("github:a", 1) as claim:
        claim.mark()
    assert "github:a" in Deliveries(tmp_path)
    with Deliveries(tmp_path).claim("github:a", 1) as claim:
        assert claim.seen


def test_the_file_stays_bounded_and_keeps_the_newest(tmp_path):
    seen = Deliveries(tmp_path, keep=10)
    for i in range(55):
        with seen.claim(f"gitea:id-{i}", 1) as claim:
            claim.mark()
    lines = (tmp_path / FILE_NAME).read_text().splitlines()
    assert len(lines) < 20 and lines[-1] == "gitea:id-54"
    reloaded = Deliveries(tmp_path, keep=10)
    assert "gitea:id-54" in reloaded and "gitea:id-45" in reloaded
    assert "gitea:id-44" not in reloaded
    assert not (tmp_path / (FILE_NAME + ".tmp")).exists()


def test_a_line_cut_by_a_crash_is_dropped_and_the_file_repaired(tmp_path):
    (tmp_path / FILE_NAME).write_text("github:whole\ngithub:cut-sho")
    seen = Deliveries(tmp_path)
    assert "github:whole" in seen and "github:cut-sho" not in seen
    with seen.claim("github:next", 1) as claim:
        claim.mark()
    assert (tmp_path / FILE_NAME).read_text() == "github:whole\ngithub:next\n"


def test_a_twin_waits_for_the_first_and_then_sees_it(tmp_path):
    seen = Deliveries(tmp_path)
    inside, release, results = threading.Event(), threading.Event(), []

    def first():
        with seen.claim("forgejo:t", 5) as claim:
            inside.set()
            release.wait(5)
            claim.mark()

    def twin():
        with seen.claim("forgejo:t", 5) as claim:
            results.append(claim.seen)
    a = threading.Thread(target=first)
    a.start()
    inside.wait(5)
    b = threading.Thread(target=twin)
    b.start()
    release.set()
    a.join(5)
    b.join(5)
    assert results == [True]


def test_a_twin_that_waits_too_long_is_busy(tmp_path):
    seen = Deliveries(tmp_path)
    with seen.claim("forgejo:slow", 1):
        with pytest.raises(DeliveryBusy):
            with seen.claim("forgejo:slow", 0.05):
                pass


def test_keys_are_checked(tmp_path):
    with pytest.raises(ValueError):
        with Deliveries(tmp_path).claim("github:a\nb", 1):
            pass
