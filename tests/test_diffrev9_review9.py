"""Review 9 of the day's changes (diffrev9): the early output lock of sdd score into a folder not yet there, the
order of a refused --resume and the old-domain scoring, the per-forward simplex check of the built-in gates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.errors import ConfigError, ProtocolError
from sddkit.scoring.batch import OutputLock, ScoreWriter, output_columns
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


# --- sdd score: the lock taken before the model loads, into a folder not there yet --------------------------------
def test_an_output_lock_taken_before_its_folder_existed_is_taken_once_the_writer_made_it(tmp_path):
    # ScoreWriter(lock=...) (sdd score takes the lock before its model loads, once check_writable has made the
    # folder): a lock taken before out's folder existed locked nothing (no file to lock) and the writer went on with
    # it, unlocked: a second run into the same output was not refused and the two interleaved their rows
    out = tmp_path / "new" / "scores.csv"
    early = OutputLock(out)
    assert not early.held
    with ScoreWriter(out, output_columns([]), lock=early):
        with pytest.raises(ProtocolError, match="being written by another sdd score run"):
            OutputLock(out)
    again = OutputLock(out)  # released when the writer closed
    assert again.held
    again.release()


# --- sdd train --resume into an out_dir whose checkpoints were deleted -------------------------------------------
def test_a_resume_refused_for_its_deleted_checkpoints_scores_no_old_domain_data_first(tmp_path, monkeypatch):
    # the refusal came after the model's old-domain results were measured (molex.old_eval: a whole corpus scored
    # by the model, before any expert is added), which a refused run then threw away
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "tiny_test", "dim": 8}, "backend": {"name": "tiny_test_head"}},
            "data": {"batch_size": 8},
            "trainer": {"max_steps": 2, "val_every": 2, "out_dir": str(out), "progress": False},
        },
    )
    Trainer(recipe, train_data=SyntheticDataset(40), val_data=SyntheticDataset(18, seed=9)).fit()
    shutil.rmtree(out / "checkpoints")
    measured: list[str] = []
    monkeypatch.setattr(Trainer, "_molex_before", lambda self: measured.append("old_eval scored"))
    with pytest.raises(ConfigError, match=r"holds the exported model\(s\) best/ and final/ .* but no checkpoint"):
        Trainer(recipe, train_data=SyntheticDataset(40), val_data=SyntheticDataset(18, seed=9), resume=True).fit()
    assert measured == []


# --- DetectorMixture: the simplex check of every forward ---------------------------------------------------------
def test_the_built_in_gates_skip_the_per_forward_simplex_check_custom_gates_keep_it(monkeypatch):
    # the check reads its verdict back from the device (bool of a tensor): on a GPU it waited, in the middle of every
    # forward of training and scoring, for the experts to finish, also for sddkit's own gates, whose weights are a
    # softmax (or uniform) by construction; a custom gate (a subclass of a built-in one too) is still checked
    import copy

    import torch
    from test_gates_review3 import _detector
    from test_molex9_review9 import _ScaledGate

    import sddkit.detectors.mixture as mixture
    from sddkit.detectors import DetectorMixture
    from sddkit.detectors.gates import ClassicGate, ClassicGateConfig
    from sddkit.registry import get_registry

    checked: list[str] = []
    real = mixture._check_simplex

    def check(gate, weights):
        checked.append(type(gate).__name__)
        real(gate, weights)

    monkeypatch.setattr(mixture, "_check_simplex", check)
    torch.manual_seed(0)
    experts = [_detector(4), _detector(4)]
    for name in ("average", "classic", "enhanced_mlp", "attention"):
        gate = get_registry("gate").build(name, num_experts=2, embedding_dims=[4, 4])
        DetectorMixture(experts=copy.deepcopy(experts), gate=gate).eval()(torch.randn(3, 1600))
    assert checked == []

    class _OwnClassic(ClassicGate):
        def forward(self, waveform, embeddings):
            return super().forward(waveform, embeddings) * 2  # off the simplex

    own = _OwnClassic(2, ClassicGateConfig())
    with pytest.raises(ValueError, match="_OwnClassic returned weights off the simplex"):
        DetectorMixture(experts=copy.deepcopy(experts), gate=own).eval()(torch.randn(3, 1600))
    DetectorMixture(experts=copy.deepcopy(experts), gate=_ScaledGate(2)).eval()(torch.randn(3, 1600))
    assert checked == ["_OwnClassic", "_ScaledGate"]


# --- sdd score under torchrun: a rank clears its marker while another checks them ---------------------------------
def test_a_shard_marker_cleared_while_another_rank_checks_the_markers_is_not_a_crash(tmp_path, monkeypatch):
    # a rank now clears its earlier run's done-marker as it starts, before the process group is joined (whose
    # rendezvous used to keep every rank's check of the markers before any rank's clearing): a marker listed by
    # another rank's check and removed before that rank read it was a FileNotFoundError traceback there
    from pathlib import Path

    from sddkit.cli.score_cmd import _check_earlier_shards
    from sddkit.scoring import batch

    out = tmp_path / "scores.csv"
    for rank in (0, 1):
        batch.mark_shard_done(out, rank, 2, 1)
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "scores.csv.rank1.done":
            batch.clear_shard_done(out, 1)  # rank 1, starting again, between the listing and the reading
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    _check_earlier_shards(out, 2)  # rank 0 of the rerun goes on
    assert batch.complete_shards(out) == (2, [1])
    batch.clear_shard_done(out, 0)
    assert batch.complete_shards(out) == (0, [])


# --- sdd score: an M-AILABS book's metadata.csv as a manifest --------------------------------------------------------
def test_sdd_score_lists_the_files_of_an_m_ailabs_book_from_its_metadata_csv(tmp_path):
    # format detection now refuses an M-AILABS book as LJSpeech (its labels would be wrong); sdd score, which reads a
    # protocol given as input only for its files, then took the metadata.csv for a list of paths and refused it as
    # "not a manifest sddkit understands (... not a known protocol ...)", where it listed the book's wavs before
    from sddkit.data.protocols import read_protocol
    from sddkit.scoring.batch import expand_inputs

    book = tmp_path / "de_DE" / "by_book" / "female" / "eva_k" / "kleine_lord"
    (book / "wavs").mkdir(parents=True)
    (book / "metadata.csv").write_text(
        "kleine_lord_01_f000001|Ein Satz, mit Komma.|Ein Satz, mit Komma.\n"
        "kleine_lord_01_f000002|Noch einer.|Noch einer.\n"
    )
    with pytest.raises(ProtocolError, match="an M-AILABS book folder"):  # detection still refuses it for its labels
        read_protocol(book / "metadata.csv")
    listed = expand_inputs([str(book / "metadata.csv")])
    assert [Path(p).name for p in listed] == ["kleine_lord_01_f000001.wav", "kleine_lord_01_f000002.wav"]
