"""Review 4 of ``match_scores`` speed: the same joins as the straightforward one it replaced.

At ASVspoof 5 size (1M trials) the join built every path and stem key of both sides even when the utt_ids matched
(about 30 s per score file, see docs/benchmarks.md). It now matches by utt_id with hash tables, normalises only
the paths that need it and skips a key kind that cannot match more rows. The reference below is the join as it
was (dicts and one key per row); every case here must give the same result, warnings and errors with both.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation import scores as scores_module
from sddkit.evaluation.compare import _common_trials
from sddkit.evaluation.scores import ScoreFile, match_scores

# --- the reference: match_scores as it was before the speed-up --------------------------------------


def _ref_stem(value: str) -> str:
    return PurePosixPath(value.replace("\\", "/")).stem


def _ref_norm_path(value: str, base: str | None = None) -> str:
    if not value:
        return ""
    value = value.replace("\\", "/")
    return os.path.normpath(os.path.join(base, value)) if base else os.path.abspath(value)


def _ref_protocol_keys(table: UtteranceTable, how: str) -> np.ndarray:
    utt = table.column("utt_id").astype(str)
    paths = table.column("path").astype(str)
    if how == "utt_id":
        return utt
    if how == "path":
        return np.array([_ref_norm_path(p) for p in paths], dtype=object)
    return np.array([_ref_stem(p) if p else u for p, u in zip(paths, utt)], dtype=object)


def _ref_score_keys(ids: np.ndarray, how: str, base: str | None = None) -> np.ndarray:
    if how == "utt_id":
        return ids.astype(str)
    if how == "path":
        return np.array([_ref_norm_path(i, base) for i in ids], dtype=object)
    return np.array([_ref_stem(i) for i in ids], dtype=object)


def _ref_try_match(table: UtteranceTable, scores: ScoreFile, how: str) -> tuple[dict[int, int] | None, str]:
    proto = _ref_protocol_keys(table, how)
    sk = _ref_score_keys(scores.ids, how, scores.base_dir)
    proto_index = {k: i for i, k in enumerate(proto) if k}
    score_index: dict[str, int] = {}
    shared: dict[str, list[int]] = {}
    for j, k in enumerate(sk):
        if k in score_index:
            shared.setdefault(k, [score_index[k]]).append(j)
        elif k:
            score_index[k] = j
    if how == "path":
        twice = [rows for k, rows in shared.items() if k in proto_index]
        if twice:
            spelled = [" and ".join(repr(str(scores.ids[j])) for j in rows) for rows in twice[:3]]
            raise ProtocolError(
                f"{scores.path}: {len(twice)} protocol file(s) appear more than once under different spellings of "
                f"their path, e.g. {'; '.join(spelled)}; keep one score per file"
            )
    if len(proto_index) != int((proto != "").sum()):
        return None, f"two protocol rows share a {how}"
    if shared:
        example = next(iter(shared.values()))
        return None, f"score ids {[str(scores.ids[j]) for j in example[:2]]} share a {how}"
    return {proto_index[k]: j for k, j in score_index.items() if k in proto_index}, ""


def _reference(table: UtteranceTable, scores: ScoreFile) -> dict:
    """What the old match_scores returned (the ScoreMatch's fields) and warned."""
    best: tuple[str, dict[int, int]] | None = None
    ambiguous: list[str] = []
    for how in ("utt_id", "path", "stem"):
        pairs, why = _ref_try_match(table, scores, how)
        if why:
            ambiguous.append(why)
        if pairs and (best is None or len(pairs) > len(best[1])):
            best = (how, pairs)
    if best is None:
        unusable = f" (not matched by a key that is not unique: {'; '.join(ambiguous)})" if ambiguous else ""
        raise ProtocolError(
            f"{scores.path}: none of its {len(scores)} score ids matches the protocol's {len(table)} utterances "
            f"by utt_id, path or file stem{unusable}; score ids look like {list(scores.ids[:3])}, protocol utt_ids "
            f"like {list(table.column('utt_id')[:3])} and paths like {list(table.column('path')[:3])}"
        )
    how, pairs = best
    rows = np.array(sorted(pairs), dtype=np.int64)
    score_rows = np.array([pairs[r] for r in rows], dtype=np.int64)
    matched_scores = set(score_rows.tolist())
    unmatched_score = [str(scores.ids[j]) for j in range(len(scores)) if j not in matched_scores]
    proto_mask = np.ones(len(table), dtype=bool)
    proto_mask[rows] = False
    proto_keys = _ref_protocol_keys(table, how)
    failed_keys = (
        set(_ref_score_keys(np.array(scores.failed, dtype=object), how, scores.base_dir)) if scores.failed else set()
    )
    failed_rows = proto_mask & np.array([k in failed_keys for k in proto_keys], dtype=bool)
    failed = table.column("utt_id")[failed_rows].astype(str).tolist()
    unmatched_proto = table.column("utt_id")[proto_mask & ~failed_rows].astype(str).tolist()
    matched = table.subset(rows)
    notes = []
    if unmatched_score:
        notes.append(f"{len(unmatched_score)} of {len(scores)} scores have no protocol entry (ignored)")
    if failed:
        notes.append(f"{len(failed)} file(s) could not be scored (error rows, not evaluated), e.g. {failed[:3]}")
    if unmatched_proto:
        notes.append(f"{len(unmatched_proto)} of {len(table)} protocol utterances have no score (not evaluated)")
    n_disagree = 0
    if scores.keys is not None:
        file_keys = scores.keys[score_rows].astype(str)
        n_disagree = int((file_keys != matched.column("label").astype(str)).sum())
        if n_disagree:
            notes.append(f"{n_disagree} score-file keys disagree with the protocol labels (protocol labels used)")
    return {
        "utt_ids": matched.column("utt_id").tolist(),
        "scores": scores.scores[score_rows].tolist(),
        "matched_by": how,
        "n_scores": len(scores),
        "n_protocol": len(table),
        "n_unmatched_scores": len(unmatched_score),
        "n_unmatched_protocol": len(unmatched_proto),
        "unmatched_score_examples": unmatched_score[:5],
        "unmatched_protocol_examples": unmatched_proto[:5],
        "n_key_disagreements": n_disagree,
        "n_failed_scores": len(failed),
        "warnings": notes,
        "gate_weights": None if scores.gate_weights is None else scores.gate_weights[score_rows].tolist(),
        "warned": [f"{scores.path}: {note}" for note in notes],
    }


# --- comparing the two ------------------------------------------------------------------------------


def _current(table: UtteranceTable, scores: ScoreFile) -> dict:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        m = match_scores(table, scores)
    assert m.to_dict()["n_matched"] == len(m.table) == len(m.scores) == len(m.protocol_rows)
    assert (np.diff(m.protocol_rows) > 0).all()  # in protocol order, each once
    assert table.df.iloc[m.protocol_rows].reset_index(drop=True).equals(m.table.df)
    return {
        "utt_ids": m.table.column("utt_id").tolist(),
        "scores": m.scores.tolist(),
        "matched_by": m.matched_by,
        "n_scores": m.n_scores,
        "n_protocol": m.n_protocol,
        "n_unmatched_scores": m.n_unmatched_scores,
        "n_unmatched_protocol": m.n_unmatched_protocol,
        "unmatched_score_examples": m.unmatched_score_examples,
        "unmatched_protocol_examples": m.unmatched_protocol_examples,
        "n_key_disagreements": m.n_key_disagreements,
        "n_failed_scores": m.n_failed_scores,
        "warnings": m.warnings,
        "gate_weights": None if m.gate_weights is None else m.gate_weights.tolist(),
        "warned": [str(w.message) for w in record if issubclass(w.category, UserWarning)],
    }


def _outcome(fn, table: UtteranceTable, scores: ScoreFile) -> tuple[str, object]:
    try:
        return "ok", fn(table, scores)
    except ProtocolError as exc:
        return "error", str(exc)


def _assert_same(table: UtteranceTable, scores: ScoreFile) -> tuple[str, object]:
    expected = _outcome(_reference, table, scores)
    assert _outcome(_current, table, scores) == expected
    return expected


def _protocol(rows: list[tuple[str, str]], labels: list[str] | None = None, validate: bool = True) -> UtteranceTable:
    """A protocol of (utt_id, path) rows; labels alternate bona fide / spoof unless given."""
    labels = labels or [("bonafide", "spoof")[i % 2] for i in range(len(rows))]
    df = pd.DataFrame({"utt_id": [u for u, _ in rows], "path": [p for _, p in rows], "label": labels})
    return UtteranceTable(df, validate=validate)


def _scores(ids: list[str], **kwargs) -> ScoreFile:
    values = np.arange(len(ids), dtype=np.float64) / 4 - 1
    return ScoreFile(path="s.csv", format="csv", ids=np.array(ids, dtype=object), scores=values, **kwargs)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return str(tmp_path)


def _ten(folder: str = "/data/flac", ext: str = ".flac") -> list[tuple[str, str]]:
    return [(f"LA_E_{i}", f"{folder}/LA_E_{i}{ext}" if folder else "") for i in range(10)]


# --- the tricky cases -------------------------------------------------------------------------------


def test_mixed_keys_the_best_covering_kind_wins(in_tmp):
    table = _protocol(_ten())
    # 4 rows by utt_id, 3 by path (one spelled with '..' and one with backslashes), 2 by stem, 1 unknown
    ids = ["LA_E_0", "LA_E_1", "LA_E_2", "LA_E_3", "/data/flac/LA_E_4.flac", "/data/x/../flac/LA_E_5.flac"]
    ids += ["\\data\\flac\\LA_E_6.flac", "wav/LA_E_7.wav", "LA_E_8.wav", "unknown_1"]
    assert _assert_same(table, _scores(ids))[1]["matched_by"] == "stem"  # every known row has its stem
    # a utt_id is its own stem: by stem 7 rows; with a stem shared by two folders, path (3 rows) wins
    assert _assert_same(table, _scores(ids[:4] + ids[4:7]))[1]["matched_by"] == "stem"
    assert _assert_same(table, _scores(ids[4:7] + ["/other/LA_E_4.flac"]))[1]["matched_by"] == "path"
    assert _assert_same(table, _scores(ids[:4] + ["unknown_2"]))[1]["matched_by"] == "utt_id"  # a tie: utt_id
    keyed = _scores(ids, keys=np.array(["bonafide", "bonafide"] * 5, dtype=object), gate_weights=np.eye(10))
    assert _assert_same(table, keyed)[1]["n_key_disagreements"] == 4


def test_relative_and_recorded_folder_paths(in_tmp):
    table = _protocol([(f"u{i}", f"set/{i}.wav") for i in range(6)] + [("abs", "/elsewhere/abs.wav")])
    ids = ["set/0.wav", "./set/1.wav", f"{in_tmp}/set/2.wav", "set//3.wav", "set/4.wav/", "set/./5.wav"]
    ids += ["/elsewhere/abs.wav", "other/0.wav"]
    assert _assert_same(table, _scores(ids))[1]["matched_by"] == "path"
    # relative ids from the folder sdd score recorded; from the wrong folder only their stems meet
    assert _assert_same(table, _scores([f"set/{i}.wav" for i in range(6)], base_dir=in_tmp))[1]["matched_by"] == "path"
    assert _assert_same(table, _scores([f"set/{i}.wav" for i in range(6)], base_dir="/nowhere"))[0] == "ok"
    assert _assert_same(table, _scores([f"../{os.path.basename(in_tmp)}/set/{i}.wav" for i in range(3)]))[0] == "ok"


def test_the_same_file_under_two_spellings_is_named_even_when_utt_ids_match(in_tmp):
    # every score id is a protocol utt_id, so utt_id matches all; by path two of them are one protocol file
    table = _protocol([("data/a.wav", "data/a.wav"), ("./data/a.wav", "data/b.wav"), ("c", "data/c.wav")])
    outcome = _assert_same(table, _scores(["data/a.wav", "./data/a.wav", "c"]))
    assert outcome[0] == "error" and "'data/a.wav' and './data/a.wav'" in outcome[1]
    # a relative and an absolute spelling, both plain
    table = _protocol([("data/a.wav", "data/a.wav"), (f"{in_tmp}/data/a.wav", "data/b.wav")])
    outcome = _assert_same(table, _scores(["data/a.wav", f"{in_tmp}/data/a.wav"]))
    assert outcome[0] == "error" and "1 protocol file(s) appear more than once" in outcome[1]
    # two spellings of a file the protocol does not list: by path ambiguous, by utt_id fine
    table = _protocol([("x/n.wav", "data/a.wav"), ("./x/n.wav", "data/b.wav")])
    assert _assert_same(table, _scores(["x/n.wav", "./x/n.wav"]))[1]["matched_by"] == "utt_id"


def test_duplicates_and_ambiguous_keys(in_tmp):
    table = _protocol(_ten())
    # equal stems in two folders: stem ambiguous, path still matches the listed one
    same_stem = ["/data/flac/LA_E_1.flac", "/other/LA_E_1.flac", "/data/flac/LA_E_2.flac"]
    assert _assert_same(table, _scores(same_stem))[1]["matched_by"] == "path"
    outcome = _assert_same(table, _scores(["/a/LA_E_1.wav", "/b/LA_E_1.wav"]))
    assert outcome[0] == "error" and "share a stem" in outcome[1]
    # the same id twice (a ScoreFile built in code): utt_id ambiguous
    outcome = _assert_same(table, _scores(["LA_E_1", "LA_E_1"]))
    assert outcome[0] == "error" and "share a utt_id" in outcome[1]
    # ids without a key of some kind ('' has none, '/' no stem): not a key two rows share
    outcome = _assert_same(table, _scores(["", "/", "Z"]))
    assert outcome[0] == "error" and "share" not in outcome[1]
    assert _assert_same(table, _scores(["", "/", "LA_E_1", "/data/flac/LA_E_2.flac"]))[0] == "ok"
    # many files twice under two spellings: the count and the first three named
    twice = [f"/data/flac/LA_E_{i}.flac" for i in range(5)] + [f"/data/./flac/LA_E_{i}.flac" for i in range(5)]
    outcome = _assert_same(table, _scores(twice))
    assert outcome[0] == "error" and outcome[1].count(" and ") == 3 and ": 5 protocol file(s)" in outcome[1]
    # two protocol rows with one stem (another folder) or one path (a table built without validation)
    two_folders = _protocol([("a", "/x/s.wav"), ("b", "/y/s.wav"), ("c", "/x/t.wav")])
    assert _assert_same(two_folders, _scores(["s", "t"]))[0] == "error"
    assert _assert_same(two_folders, _scores(["/x/s.wav", "/x/t.wav"]))[1]["matched_by"] == "path"
    one_path = _protocol([("a", "/x/s.wav"), ("b", "/x/./s.wav")], validate=False)
    assert "two protocol rows share a path" in _assert_same(one_path, _scores(["/z/q.wav"]))[1]
    dup_utt = _protocol([("a", "/x/1.wav"), ("a", "/x/2.wav")], validate=False)
    assert _assert_same(dup_utt, _scores(["a", "/x/2.wav"]))[1]["matched_by"] == "path"


def test_unknown_trials_error_rows_and_path_less_protocols(in_tmp):
    table = _protocol(_ten())
    outcome = _assert_same(table, _scores(["Z_1", "Z_2", "Z_3"]))
    assert outcome[0] == "error" and "none of its 3 score ids" in outcome[1]
    partial = [f"LA_E_{i}" for i in range(6)] + [f"X_{i}" for i in range(7)]
    assert _assert_same(table, _scores(partial))[1]["n_unmatched_scores"] == 7
    # error rows by each key kind, and one for a file the protocol does not list
    failed = ("LA_E_7", "/data/flac/LA_E_8.flac", "wav/LA_E_9.wav", "not_listed.wav")
    for ids in (partial[:6], [p for _, p in _ten()[:6]], [f"w/LA_E_{i}.wav" for i in range(6)]):
        result = _assert_same(table, _scores(ids, failed=failed))[1]
        assert result["n_failed_scores"] >= 1
    # a protocol without paths: stems fall back to the utt_ids
    bare = _protocol(_ten(folder=""))
    assert _assert_same(bare, _scores([f"wav/LA_E_{i}.wav" for i in range(4)]))[1]["matched_by"] == "stem"
    assert _assert_same(bare, _scores([f"LA_E_{i}" for i in range(10)]))[1]["matched_by"] == "utt_id"
    some = _protocol([(u, p if i % 2 else "") for i, (u, p) in enumerate(_ten())])
    assert _assert_same(some, _scores([p for _, p in _ten()] + ["LA_E_0"]))[0] == "ok"


def test_random_protocols_and_score_files_match_as_before(in_tmp):
    """Random tables and score files from awkward path pieces: '.', '..', empty and doubled components,
    backslashes, trailing slashes, hidden files, names ending in a dot, absolute and relative, NUL ends."""
    rng = np.random.default_rng(4)
    folders = ["", "d", "d/e", "/abs", "/abs/d", ".", "..", "d/..", "./d", "d//e", "d\\e", "/", "//net", "d/"]
    names = ["a.wav", "a", "b.flac", ".h", "c.", "x.tar.gz", "..", "a.wav/", "a.wav\x00", "é.wav", "a b.wav"]

    def path() -> str:
        folder, name = folders[rng.integers(len(folders))], names[rng.integers(len(names))]
        return f"{folder}/{name}" if folder and rng.random() < 0.9 else name

    outcomes = []
    for case in range(300):
        n = int(rng.integers(1, 7))
        paths = [path() if rng.random() < 0.85 else "" for _ in range(n)]
        utts = [f"u{i}" if rng.random() < 0.7 else (paths[i] or f"v{i}") for i in range(n)]
        if len(set(utts)) < n:
            continue
        table = _protocol(list(zip(utts, paths)))
        pool = utts + [p for p in paths if p] + [path() for _ in range(4)] + [f"{in_tmp}/{p}" for p in paths if p]
        ids = list(dict.fromkeys(pool[int(i)] for i in rng.integers(len(pool), size=int(rng.integers(1, 8)))))
        failed = tuple(pool[int(i)] for i in rng.integers(len(pool), size=int(rng.integers(0, 3))))
        base = [None, in_tmp, "/abs", "rel/x"][case % 4]
        outcomes.append(_assert_same(table, _scores(ids, failed=failed, base_dir=base))[0])
    assert outcomes.count("ok") > 50 and outcomes.count("error") > 10  # both kinds of outcome were compared


def test_key_helpers_equal_the_one_by_one_ones(in_tmp):
    awkward = ["a.wav", "/x/a.wav", "d/./a", "d/../a", "./a", "../a", "a/", "a//b", "//a/b", "/", "", ".", "..", "a\\b"]
    awkward += [".h", "d/.h", "c.", "...", "a..b", "x.tar.gz", "d/a.wav\n", "a\nb/c.wav", "/x/.."]
    plain = ["a.wav", "/x/a.wav", "d/e/f.g", "/abs/é.flac", "x"]
    for values in (awkward, plain, plain[:1] + plain[2:], [p for p in plain if p.startswith("/")]):
        array = np.array(values, dtype=object)
        for base in (None, in_tmp, "/", "rel/x", "../up"):
            want = [_ref_norm_path(v, base) if v else "" for v in values]
            assert scores_module._norm_paths(array, base).tolist() == want
        assert scores_module._stems(array).tolist() == [_ref_stem(v) for v in values]
    for values in itertools.combinations(["a", "b/c", "/d/e", "./b/c", f"{in_tmp}/a", "b//c"], 2):
        normalised = {_ref_norm_path(v) for v in values}
        if scores_module._distinct_paths(np.array(values, dtype=object)):
            assert len(normalised) == 2, values


def test_utt_ids_that_match_everything_build_no_path_or_stem_keys(in_tmp, monkeypatch):
    """What made 1M trials take 30 s: every path normalised and every stem parsed, though the utt_ids matched."""

    def refused(*args, **kwargs):
        raise AssertionError("path or stem keys built")

    table = _protocol(_ten())
    monkeypatch.setattr(scores_module, "_norm_path", refused)
    monkeypatch.setattr(scores_module, "_stem", refused)
    monkeypatch.setattr(scores_module, "_norm_paths", refused)
    monkeypatch.setattr(scores_module, "_stems", refused)
    shuffled = [f"LA_E_{i}" for i in (3, 1, 4, 0, 5, 9, 2, 6, 8, 7)]
    m = match_scores(table, _scores(shuffled))
    assert m.matched_by == "utt_id" and m.table.column("utt_id").tolist() == [f"LA_E_{i}" for i in range(10)]
    assert m.scores.tolist() == [shuffled.index(f"LA_E_{i}") / 4 - 1 for i in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(match_scores(table, _scores(shuffled[:7])).table) == 7  # a subset of the trials
        assert len(match_scores(_protocol(_ten()[:5]), _scores(shuffled)).table) == 5  # of the protocol


def _ref_common_trials(table: UtteranceTable, files: list[ScoreFile]) -> tuple[list[int], list[list[float]], list[str]]:
    """sdd compare's alignment of several score files as it was (dicts per file)."""
    utt = table.column("utt_id").astype(str)
    row_of = {u: i for i, u in enumerate(utt)}
    per_file: list[dict[int, float]] = []
    notes: list[str] = []
    for score_file in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            match = match_scores(table, score_file)
        notes += [f"{score_file.path}: {n}" for n in match.warnings]
        rows = [row_of[u] for u in match.table.column("utt_id").astype(str)]
        per_file.append(dict(zip(rows, match.scores.astype(np.float64))))
    common = set(per_file[0]).intersection(*per_file[1:])
    covered = set().union(*per_file)
    if len(common) < len(covered):
        notes.append(
            f"{len(covered) - len(common)} scored trial(s) are missing from at least one score file and are left out, "
            f"so that every run is measured on the same {len(common)} trials"
        )
    rows = np.array(sorted(common), dtype=np.int64)
    scores = np.array([[f[r] for r in rows] for f in per_file], dtype=np.float64).reshape(len(files), rows.size)
    return rows.tolist(), scores.tolist(), notes


def test_compare_aligns_score_files_as_before(in_tmp):
    """sdd compare keeps the trials every file scores; it mapped each file's matched utt_ids back to protocol
    rows through dicts (seconds and ~100 MB per 1M-trial file), now through the rows match_scores found."""
    table = _protocol(_ten())
    rng = np.random.default_rng(2)
    files = [
        _scores([f"LA_E_{i}" for i in (9, 1, 2, 3, 4, 5, 6, 7)]),  # by utt_id, two trials missing
        _scores([f"/data/flac/LA_E_{i}.flac" for i in range(10)] + ["X"]),  # by path, one unknown
        _scores([f"w/LA_E_{i}.wav" for i in (5, 4, 3, 2, 1, 9, 8)], failed=("w/LA_E_0.wav",)),  # by stem
    ]
    files = [dataclasses.replace(f, path=f"f{k}.csv", scores=rng.normal(size=len(f))) for k, f in enumerate(files)]
    for chosen in (files, files[:1] * 2, files[1:], [files[1], files[1]]):
        aligned, notes = _common_trials(table, chosen)
        assert aligned.rows.dtype == np.int64 and aligned.scores.dtype == np.float64
        assert (aligned.rows.tolist(), aligned.scores.tolist(), notes) == _ref_common_trials(table, chosen)
    assert _common_trials(table, files)[0].rows.tolist() == [1, 2, 3, 4, 5, 9]
