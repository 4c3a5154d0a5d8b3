"""The public Python API as a typed code base sees it (sddkit ships py.typed): what a type checker reads of the entry
points README presents must match what they take and return at run time.

- ``sddkit.load_detector`` was a name of the module's lazy ``__getattr__`` alone, unannotated: to mypy and pyright it
  (and the detector and every ScoreResult it gave) was ``Any``.
- ``score``/``score_many`` were annotated ``np.ndarray | Tensor`` and ``sample_rate: int`` while their docstrings
  (and their code) take a list of samples, a whole float rate, a numpy number and a dataset's ``tensor(16000)``;
  ``score_many`` any iterable of waveforms; ``load_detector`` a ``torch.device``: each a type error under --strict.
- ``score_file`` and ``load_detector`` read an ``os.DirEntry`` (``os.scandir``), annotated ``str | Path``; a builder
  registered with ``Registry.register`` came back typed ``Callable[..., Any]``.
- ``score_many(names=...)`` took the files the waveforms were read from as ``str(name)``: an ``os.DirEntry`` (from
  ``os.scandir``) labelled its errors ``<DirEntry 'b.wav'>``.
- ``Calibration.apply`` was unannotated (``no-untyped-call`` under --strict); ``evaluate`` took torch scores, as
  its docstring says, but its annotation did not; calling a ``Detector``/``DetectorMixture`` returned ``Any``
  (``nn.Module.__call__``) where it returns a ``DetectorOutput``.
"""

from __future__ import annotations

import ast
import inspect
import os
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import ArrayLike
from scoring_support import save_tiny_lcnn

import sddkit
from sddkit.errors import SilentAudioError
from sddkit.scoring import api
from sddkit.scoring.calibration import Calibration


def _type_checking_block_names(source: str, class_name: str | None = None) -> set[str]:
    """Names bound (imported or defined) under ``if TYPE_CHECKING:`` (or ``if <alias>.TYPE_CHECKING:``) at the top
    level of ``source``, or of its class ``class_name``: what a type checker sees and the interpreter skips."""
    body = ast.parse(source).body
    if class_name is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == class_name).body
    names: set[str] = set()
    for node in body:
        test = getattr(node, "test", None)
        checking = isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
        checking |= isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        if not (isinstance(node, ast.If) and checking):
            continue
        for inner in node.body:
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                names.update(alias.asname or alias.name for alias in inner.names)
            elif isinstance(inner, ast.FunctionDef):
                names.add(inner.name)
    return names


def _union_members(hint: object) -> set[object]:
    """The members of a (nested) union type hint, as a set; any other hint alone."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return {hint}
    return set().union(*(_union_members(arg) for arg in typing.get_args(hint)))


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> api.ScoringDetector:
    return api.load_detector(save_tiny_lcnn(tmp_path_factory.mktemp("typedapi") / "lcnn"), torch.device("cpu"))


def test_top_level_load_detector_is_visible_to_type_checkers():
    source = Path(sddkit.__file__).read_text(encoding="utf-8")
    lazy = set(sddkit.__all__) - {"__version__"}
    assert lazy == {"load_detector"}
    # every lazy name of __all__ is imported for type checkers, so that they see its signature instead of Any
    assert lazy <= _type_checking_block_names(source)
    assert inspect.signature(sddkit.__getattr__).return_annotation != inspect.Signature.empty
    assert sddkit.load_detector is api.load_detector


def test_score_annotations_admit_the_documented_inputs(detector):
    hints = typing.get_type_hints(api.ScoringDetector.score)
    waveform, rate = _union_members(hints["waveform"]), _union_members(hints["sample_rate"])
    assert torch.Tensor in waveform and _union_members(ArrayLike) <= waveform  # lists of samples, numpy arrays
    assert {int, float, np.integer, np.floating, np.ndarray, torch.Tensor} <= rate
    many = typing.get_type_hints(api.ScoringDetector.score_many)
    assert typing.get_origin(many["waveforms"]) is typing.get_origin(typing.Iterable[int])  # any iterable
    assert _union_members(many["sample_rate"]) == rate | {type(None)}
    load_hints = typing.get_type_hints(api.load_detector)
    assert torch.device in _union_members(load_hints["device"])
    # paths as os.scandir gives them (os.DirEntry), which both read
    assert os.PathLike[str] in _union_members(load_hints["path"])
    assert os.PathLike[str] in _union_members(typing.get_type_hints(api.ScoringDetector.score_file)["path"])

    # ... and each of those inputs scores, to a ScoreResult of plain floats
    x = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    for waveform_in, rate_in in [
        (x.tolist(), 16000),
        (x, np.int64(16000)),
        (x, 16000.0),
        (torch.from_numpy(x), torch.tensor(16000)),
        (x, np.array(16000)),
    ]:
        result = detector.score(waveform_in, rate_in)
        assert isinstance(result, api.ScoreResult)
        for name in ("score", "probability", "threshold", "duration_s", "raw_score"):
            assert type(getattr(result, name)) is float, name
        assert all(type(v) is float for v in result.window_scores)
        assert isinstance(result.decision, str) and isinstance(result.n_windows, int)
    results = detector.score_many((w for w in [x, x[:4000]]), sample_rate=torch.tensor(16000))
    assert [type(r) for r in results] == [api.ScoreResult] * 2
    assert results[1].duration_s == pytest.approx(0.25)


def test_score_many_names_path_like_inputs_by_their_path(detector, tmp_path):
    for name in ("a.wav", "b.wav"):
        (tmp_path / name).touch()
    entries = sorted(os.scandir(tmp_path), key=lambda e: e.name)
    x = (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32)
    with pytest.raises(SilentAudioError) as caught:
        detector.score_many([x, np.zeros(8000, np.float32)], names=entries)
    assert caught.value.path == os.path.join(tmp_path, "b.wav")
    assert "DirEntry" not in str(caught.value)
    # pathlib paths and strings as before
    results = detector.score_many([x, x], names=[tmp_path / "a.wav", "b"])
    assert len(results) == 2


def test_registering_a_builder_keeps_its_signature_for_type_checkers():
    from sddkit.registry import Registry

    # register() returns the builder itself; annotated Callable[..., Any] -> Callable[..., Any], a builder of one's
    # own (docs/cli.md, components of your own) lost its signature and return type to the decorator
    parameter, returned = typing.get_args(typing.get_type_hints(Registry.register)["return"])
    assert isinstance(returned, typing.TypeVar) and parameter == [returned]


def test_calibration_apply_is_annotated_and_keeps_the_kind_of_its_input():
    hints = typing.get_type_hints(Calibration.apply)
    assert {"raw", "return"} <= set(hints)
    calibration = Calibration(a=2.0, b=-1.0)
    assert type(calibration.apply(3)) is float and calibration.apply(3) == 5.0
    assert isinstance(calibration.apply(np.array([0.0, 1.0])), np.ndarray)
    assert torch.equal(calibration.apply(torch.tensor([0.0, 1.0])), torch.tensor([-1.0, 1.0]))


def test_evaluate_annotation_takes_the_torch_scores_it_evaluates():
    from sddkit.data.table import UtteranceTable
    from sddkit.evaluation import EvalConfig, Report, evaluate

    hints = typing.get_type_hints(evaluate, localns={"torch": torch})
    assert torch.Tensor in _union_members(hints["scores"])
    n = 20
    table = UtteranceTable.from_records(
        {"utt_id": f"u{i}", "path": f"u{i}.wav", "label": "bonafide" if i % 2 else "spoof", "attack": "A1"}
        for i in range(n)
    )
    scores = torch.arange(n, dtype=torch.float32).requires_grad_()  # a model's output.score as it comes
    report = evaluate(table, scores, EvalConfig(bootstrap=0))
    assert isinstance(report, Report) and isinstance(report.pooled["eer"], float)


@pytest.mark.parametrize(("module", "class_name"), [("detector", "Detector"), ("mixture", "DetectorMixture")])
def test_calling_a_detector_is_typed_as_returning_its_output(module, class_name):
    from sddkit.detectors import detector as detector_module
    from sddkit.detectors import mixture as mixture_module

    source_module = {"detector": detector_module, "mixture": mixture_module}[module]
    source = inspect.getsource(source_module)
    assert "__call__" in _type_checking_block_names(source, class_name)
    # for type checkers only: the interpreter calls nn.Module.__call__ (hooks and all), as before
    cls = getattr(source_module, class_name)
    assert "__call__" not in cls.__dict__
    tree = ast.parse(source)
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    declared = next(
        f for n in klass.body if isinstance(n, ast.If) for f in n.body if getattr(f, "name", "") == "__call__"
    )
    assert ast.unparse(declared.returns) == "DetectorOutput"
