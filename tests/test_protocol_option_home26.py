"""`--protocol-option root=~/...` expands `~` as a recipe's root option does (quoted, it named a folder called ~ under
the working directory); other options keep their text."""

from __future__ import annotations

from sddkit.cli.options import parse_protocol_options


def test_folder_options_expand_home_and_others_keep_their_text(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    options = parse_protocol_options(["root=~/corpora/x", "ljspeech_root=~/LJSpeech-1.1", "speaker=~me", "codecs=[~a]"])
    assert options == {
        "root": str(tmp_path / "corpora" / "x"),
        "ljspeech_root": str(tmp_path / "LJSpeech-1.1"),
        "speaker": "~me",
        "codecs": ["~a"],
    }
