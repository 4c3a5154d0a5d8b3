"""Review docparse22: one finder and one checker of the documents' ``sdd`` command lines (tests/docs_support.py).

tests/test_docs_commands.py, tests/test_readme9_review9.py and tests/test_examples21_review21.py each found the
``sdd`` lines of a document and checked them in their own way; they now share ``sdd_command_lines`` (the calls of a
Markdown text's code) and ``check_sdd_call`` (the real CLI parser's word on one call, abbreviations and unknown
options included). Pinned here: what the finder reads as the shell would, and that the checker flags an error put
into a copy of a real document.
"""

from __future__ import annotations

import re

import pytest
from docs_support import CLI_MD, PLACEHOLDERS, REPO, check_sdd_call, sdd_command_lines, shell_commands

README = (REPO / "README.md").read_text()
BENCHMARKS = (REPO / "docs" / "benchmarks.md").read_text()


def _problems(text: str, fragments: bool = False) -> list[str]:
    calls = sdd_command_lines(text, fragments=fragments, placeholders=PLACEHOLDERS)
    return [problem for argv in calls for problem in check_sdd_call(argv, fragment=fragments)[1]]


def _fenced(*lines: str) -> str:
    return "```bash\n" + "\n".join(lines) + "\n```\n"


def test_the_finder_reads_a_block_as_the_shell_would():
    text = _fenced(
        "$ sdd eval --scores s.csv \\",  # a prompt, a continuation
        "    --protocol p.csv --out r/   # report.md, report.json",
        "OMP_NUM_THREADS=1 PYTHONPATH=src sdd list protocol | head -3 && sdd list frontend; sdd demo --out d/ &",
        "time sdd export-onnx --out m.onnx",
        'F="--hold-out tortoise --hold-out vits_demo"',
        "sdd cv recipes/sddbench/default_model.yaml $F --out runs/cv#1",  # `#` inside a word is no comment
        "for s in 0 1; do sdd train r.yaml seed=$s; done",
        "sdd score $(cat files.txt) --out x.csv",
        "N=$(sdd list protocol)",
        "python -c \"print('a')",  # a quoted newline: one command over two lines
        "print('sdd score --out x')\"",
        "# sdd score --bogus: a comment",
    )
    assert sdd_command_lines(text) == [
        ["sdd", "eval", "--scores", "s.csv", "--protocol", "p.csv", "--out", "r/"],
        ["sdd", "list", "protocol"],
        ["sdd", "list", "frontend"],
        ["sdd", "demo", "--out", "d/"],
        ["sdd", "export-onnx", "--out", "m.onnx"],
        ["sdd", "cv", "recipes/sddbench/default_model.yaml", "--hold-out", "tortoise", "--hold-out", "vits_demo"]
        + ["--out", "runs/cv#1"],
        ["sdd", "train", "r.yaml", "seed=0"],
        ["sdd", "score", "$(cat files.txt)", "--out", "x.csv"],
        ["sdd", "list", "protocol"],  # inside `$(...)`
    ]
    assert ["python", "-c", "print('a')\nprint('sdd score --out x')"] in shell_commands(text)
    # an indented code block; inline spans are not whole command lines
    indented = "Import it:\n\n    sdd import-aasist A.pth --out m/   # --variant auto\n\nor `sdd score --fast`.\n"
    assert sdd_command_lines(indented) == [["sdd", "import-aasist", "A.pth", "--out", "m/"]]


def test_fragments_are_the_inline_spans_and_every_line_and_comment_of_the_code():
    text = "Run `sdd score [--workers N]` or `sdd eval --scores S && sdd compare --bootstrap 9`.\n" + _fenced(
        "sdd list protocol   # the names --protocol-format takes", "# then sdd serve --port 8000"
    )
    assert sdd_command_lines(text, fragments=True) == [
        ["sdd", "score", "[--workers", "N]"],
        ["sdd", "eval", "--scores", "S"],
        ["sdd", "compare", "--bootstrap", "9"],
        ["sdd", "list", "protocol"],  # the comment's --protocol-format is not list's
        ["sdd", "serve", "--port", "8000"],
    ]
    assert not _problems(text, fragments=True)


def test_placeholders_are_substituted_before_the_line_is_split():
    text = _fenced("sdd train r.yaml seed=S 'data.augment=[...the recipe's list..., {name: gain}]' x=1")
    with pytest.raises(ValueError):  # the apostrophe opens a quote nobody closes
        sdd_command_lines(text)
    placeholders = [(re.compile(r"\bseed=S\b"), "seed=1"), (re.compile(r"\.\.\.the recipe's list\.\.\., "), "")]
    assert sdd_command_lines(text, placeholders=placeholders) == [
        ["sdd", "train", "r.yaml", "seed=1", "data.augment=[{name: gain}]", "x=1"]
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sdd", "eval", "--scores", "s", "--protocol", "p", "--out", "r", "--partition", "val"], "an abbreviation"),
        (["sdd", "eval", "--scores", "s", "--protocol", "p", "--out", "r", "--bogus"], "not one of its options"),
        (["sdd", "evaluate", "--scores", "s"], "no command `sdd evaluate`"),
        (["sdd", "eval", "--scores", "s", "--protocol", "p"], "required: --out"),
        (
            ["sdd", "compare", "--protocol", "p", "--baseline", "a", "--system", "b", "--metric", "auc"],
            "invalid choice",
        ),
        (["sdd", "compare", "--protocol", "p", "--baseline", "a", "--system", "b", "[--cluster-by", "x]"], "synopsis"),
    ],
)
def test_the_checker_flags_each_kind_of_error(argv, expected):
    args, problems = check_sdd_call(argv)
    assert any(expected in p for p in problems), problems


def test_the_checker_passes_good_calls_and_reads_fragments_without_parsing():
    args, problems = check_sdd_call(["sdd", "eval", "--scores", "s", "--protocol", "p", "--out", "r"])
    assert not problems and (args.scores, args.out) == ("s", "r")
    assert check_sdd_call(["sdd", "--version"]) == (None, [])
    # a fragment misses required options: not an error; a shortened option in it is
    assert check_sdd_call(["sdd", "eval", "--bootstrap"], fragment=True) == (None, [])
    problems = check_sdd_call(["sdd", "eval", "[--partition", "P]"], fragment=True)[1]
    assert problems and "--partition is an abbreviation of --partitions" in problems[0]


def test_an_error_put_into_a_copy_of_a_document_is_found():
    cli = CLI_MD.read_text()
    assert not _problems(cli) and not _problems(README) and not _problems(README, fragments=True)
    # docs/cli.md's eval example, its option shortened (argparse itself would take it)
    example = "sdd eval --scores unseen.csv --protocol ../shared/data/sddbench/manifest.csv --partitions test_unseen"
    assert example in cli
    problems = _problems(cli.replace(example, example.replace("--partitions", "--partition")))
    assert len(problems) == 1 and "--partition is an abbreviation of --partitions" in problems[0]
    # README's quick start, an option misspelt
    assert "--out scores.csv" in README
    assert any("--outt" in p for p in _problems(README.replace("--out scores.csv", "--outt scores.csv", 1)))
    # docs/benchmarks.md, a wrong option on the continued line of a command
    continued = "--partitions test_unseen --bootstrap 1000 --by source \\\n"
    assert continued in BENCHMARKS
    wrong = BENCHMARKS.replace(continued, continued.replace("--by source", "--by-source source"), 1)
    assert any("--by-source is not one of its options" in p for p in _problems(wrong))
    # README's inline spans, read as fragments
    assert "`sdd score`" in README
    assert _problems(README.replace("`sdd score`", "`sdd score --windws`", 1), fragments=True)


def test_the_benchmarks_cluster_bootstrap_command_is_a_command_not_a_synopsis():
    # it read `--system mp3_64k.csv [--cluster-by speaker|pair_id|source]`: the shell pipes into `pair_id`, and
    # `--system` took `[--cluster-by` as a file, so the old check never saw the option
    assert not [p for p in _problems(BENCHMARKS) if "cluster-by" in p]
    calls = sdd_command_lines(BENCHMARKS, placeholders=PLACEHOLDERS)
    calls = [argv for argv in calls if argv[1] == "compare" and "mp3_64k.csv" in argv]
    assert calls and all(argv[argv.index("--cluster-by") + 1] == "speaker" for argv in calls)
