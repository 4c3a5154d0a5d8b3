"""Review 26 of the shared infrastructure: staged publishing, locks."""

from __future__ import annotations

import json

import pytest

from sddkit import outputs


def _report(staging, run, names):
    for name in names:
        (staging / name).write_text(f"{run}\n")
    (staging / "report.json").write_text(json.dumps({"run": run, "files": names}) + "\n")
    return [*names, "report.json"]


def test_a_crash_between_the_renames_leaves_no_earlier_index_over_the_new_files(tmp_path, monkeypatch):
    # the renames are one file at a time: killed after the first, the folder held run 2's a.csv under run 1's
    # report.json, an index that described other files than those beside it
    out = tmp_path / "out"
    outputs.publish_staged(out, "report", lambda s: _report(s, 1, ["a.csv", "b.csv"]))
    real_replace = outputs.os.replace
    calls = []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process stops between two renames
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        outputs.publish_staged(out, "report", lambda s: _report(s, 2, ["a.csv", "b.csv"]))
    monkeypatch.undo()
    assert (out / "a.csv").read_text() == "2\n"
    assert not (out / "report.json").exists()  # no index over the mix: the report is plainly incomplete
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind
    # and the rerun publishes a whole report
    outputs.publish_staged(out, "report", lambda s: _report(s, 3, ["a.csv", "b.csv"]))
    assert json.loads((out / "report.json").read_text())["run"] == 3
    assert {(out / n).read_text() for n in ("a.csv", "b.csv")} == {"3\n"}


def test_malloc_settings_given_as_glibc_tunables_are_left_alone(monkeypatch):
    # GLIBC_TUNABLES is the form glibc documents for these settings; tune_malloc's mallopt overrode a user's
    # glibc.malloc.trim_threshold without a word, while the MALLOC_TRIM_THRESHOLD_ spelling was honoured
    from sddkit.scoring.allocator import USER_SETTINGS, tune_malloc

    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0:glibc.malloc.trim_threshold=1048576")
    assert tune_malloc("tuned") is False
