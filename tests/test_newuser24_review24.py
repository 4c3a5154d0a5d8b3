"""A new user's first hour with the README (review newuser24).

- `sdd eval --scores` given a JSON list of score rows (what `json.dump(rows)` and pandas'
  `to_json(orient="records")` write) failed with a "header" error quoting the whole file on one line, or "cannot
  tell the score format from '['" when pretty-printed; it is read as JSON lines are. Another whole-file JSON
  document (`sdd eval`'s own pretty-printed `report.json`) said "line 1: not a JSON object", of a file that is one:
  it is refused as a JSON document, naming what to give instead.
- The README's Quick start started `sdd serve` but never said how to score with it (the form field `file`): its
  curl line is checked against the service.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn

from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import detect_score_format, read_jsonl_scores, read_scores

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
ROWS = [{"path": "a/x1.wav", "score": 1.5}, {"path": "a/x2.wav", "score": -0.25, "error": ""}]


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_list_of_score_rows_reads_as_json_lines_do(tmp_path, indent):
    listed = tmp_path / "scores.json"
    listed.write_text(json.dumps(ROWS, indent=indent), encoding="utf-8")
    lines = tmp_path / "scores.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    assert detect_score_format(listed) == "jsonl"
    got, want = read_scores(listed), read_jsonl_scores(lines)
    assert list(got.ids) == list(want.ids) == ["a/x1.wav", "a/x2.wav"]
    np.testing.assert_array_equal(got.scores, want.scores)


def test_a_json_list_row_without_a_score_names_its_item(tmp_path):
    listed = tmp_path / "scores.json"
    listed.write_text(json.dumps([ROWS[0], {"path": "a/x3.wav"}]), encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"scores\.json: item 2: needs an id .* and a score"):
        read_scores(listed)


@pytest.mark.parametrize(
    ("document", "kind"),
    [({"pooled": {"eer": 0.1}, "n_trials": 18}, "a JSON dict"), ([1.5, -0.25], "a list holding non-objects")],
)
def test_another_json_document_is_refused_as_one(tmp_path, document, kind):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(document, indent=2), encoding="utf-8")
    with pytest.raises(ProtocolError) as err:
        read_scores(report)
    message = str(err.value)
    assert f"one JSON document ({kind}), not score rows" in message and "sdd score --out scores.jsonl" in message
    assert "line 1" not in message and "report.json:1" not in message


def test_json_lines_errors_still_name_their_line(tmp_path):
    lines = tmp_path / "scores.jsonl"
    lines.write_text(json.dumps(ROWS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"scores\.jsonl:2: not a JSON object"):
        read_scores(lines)


def test_readme_quick_start_curl_line_scores_with_the_service(tmp_path):
    from sddkit.service.app import create_app

    line = next(x for x in README.splitlines() if x.startswith("curl ") and "/v1/score" in x)
    field = re.search(r"-F (\w+)=@", line).group(1)
    assert field == "file"
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    sf.write(buf, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000, format="WAV")
    with TestClient(create_app(save_tiny_lcnn(tmp_path / "m"))) as client:
        answer = client.post("/v1/score", files={field: ("recording.wav", buf.getvalue(), "audio/wav")})
    assert answer.status_code == 200, answer.text
    named = re.search(r"# JSON: (.*)$", line).group(1)
    assert {k.strip() for k in named.split(",")} <= set(answer.json())


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    # it used `waveform` without saying where it came from: pasted as is, it stopped with a NameError
    import sddkit
    from sddkit.scoring.api import load_detector

    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    model = save_tiny_lcnn(tmp_path / "m")
    monkeypatch.setattr(sddkit, "load_detector", lambda path=None: load_detector(model if path is None else path))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    sf.write("recording.wav", (0.1 * rng.standard_normal((44100, 2))).astype(np.float32), 44100)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["rate"] == 44100 and namespace["result"].duration_s == pytest.approx(1.0)
