import gc

import lightning_app.__main__ as entry


def test_the_entry_point_freezes_the_imported_objects_before_the_run_and_after_it(monkeypatch):
    seen, made = [], []

    def main() -> None:
        seen.append(gc.get_freeze_count())
        made.extend([] for _ in range(1000))  # what a run leaves until exit

    monkeypatch.setattr(entry, "main", main)
    monkeypatch.setattr(entry, "fix_malloc_thresholds", lambda: True)  # this test process's allocator stays as it is
    gc.unfreeze()
    try:
        entry.run()
        after = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # this test process collects as usual again
    assert seen[0] > 100_000  # torch's and Lightning's objects, frozen when the run starts
    assert after >= seen[0] + len(made)  # and what the run made, frozen at its end


def test_the_entry_point_fixes_the_malloc_thresholds_before_the_run(monkeypatch):
    calls = []
    monkeypatch.setattr(entry, "fix_malloc_thresholds", lambda: calls.append("malloc"))
    monkeypatch.setattr(entry, "main", lambda: calls.append("main"))
    monkeypatch.setattr(entry.gc, "freeze", lambda: None)
    entry.run()
    assert calls == ["malloc", "main"]
