"""Review 7 of the training loop (trainer4): a rank that fails under DDP, validation gathered from every rank."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from test_ddp import FreePorts, port_taken, run_ranks
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

TESTS = str(Path(__file__).resolve().parent)
SCENARIOS = ("nan", "bad_audio")


def _failing_rank_worker(rank: int, world: int, ports: list[int], out: str) -> None:
    """Rank 1 alone meets a NaN waveform (scenario "nan") or an audio file it cannot read ("bad_audio"); each rank
    records what it raised."""
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    sys.path.insert(0, TESTS)
    from test_train_support import SyntheticDataset, register_tiny_for_good

    from sddkit.config import from_dict
    from sddkit.errors import EmptyAudioError, SddkitError
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    register_tiny_for_good()

    class OneBadRank(SyntheticDataset):
        scenario = ""

        def __getitem__(self, index: int):
            item = super().__getitem__(index)
            if rank == 1 and self.scenario == "nan":
                item["waveform"][:] = float("nan")
            if rank == 1 and self.scenario == "bad_audio":
                raise EmptyAudioError(f"/corpus/{index}.wav: decodes to zero samples")
            return item

    results = {}
    for scenario, port in zip(SCENARIOS, ports):
        os.environ["MASTER_PORT"] = str(port)  # one process group per run, each on a fresh port
        recipe = from_dict(
            TrainRecipe,
            {
                "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}},
                "data": {"batch_size": 6},
                "trainer": {
                    "max_steps": 4,
                    "val_every": 2,
                    "device": "cpu",
                    "out_dir": f"{out}/{scenario}",
                    "progress": False,
                },
            },
        )
        data = OneBadRank(48)
        data.scenario = scenario
        try:
            Trainer(recipe, train_data=data, val_data=SyntheticDataset(18, seed=9)).fit()
            results[scenario] = ["trained", ""]
        except Exception as exc:  # noqa: BLE001  (what each rank raised is the result)
            if port_taken(exc):  # not the test's subject: run_ranks starts again on other ports
                raise
            results[scenario] = [type(exc).__name__ if isinstance(exc, SddkitError) else "not sddkit", str(exc)]
    Path(f"{out}/rank{rank}.json").write_text(json.dumps(results))


def test_a_rank_that_fails_stops_the_others_with_a_clear_error_not_a_traceback(tmp_path):
    # rank 1 met an unreadable audio file and stopped with its one-line error; rank 0, waiting for it in the step's
    # gradient all-reduce, raised gloo's RuntimeError ("Connection closed by peer ... GLHF!"): a traceback from
    # every other rank, around the one line that says what went wrong. A NaN on one rank only is caught alike
    # on both (the gradient is all-reduced before the check).
    run_ranks(_failing_rank_worker, (2, FreePorts(2), str(tmp_path)), 90, out=tmp_path)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["nan"][0] == r1["nan"][0] == "TrainingDivergedError" and "non-finite" in r0["nan"][1]
    assert r1["bad_audio"][0] == "EmptyAudioError" and r1["bad_audio"][1].endswith(".wav: decodes to zero samples")
    assert r0["bad_audio"][0] == "PeerProcessError", r0["bad_audio"]
    assert r0["bad_audio"][1].startswith("rank 0: another of the 2 processes stopped"), r0["bad_audio"]
    assert not (tmp_path / "bad_audio" / "checkpoints" / "latest").exists()


def test_per_utterance_statistics_survive_a_rank_with_no_share_of_a_small_set(monkeypatch):
    # 2 items on 3 processes: rank 2 scores none, so produced no statistic, and the intersection of the ranks'
    # statistics was empty: MoLEx's per-utterance router probabilities vanished from the result (and the report)
    import numpy as np
    from test_train_support import SyntheticDataset, tiny_detector

    import sddkit.training.evaluate as ev
    from sddkit.training.distributed import DistInfo
    from sddkit.training.losses import DetectionLoss
    from sddkit.training.recipe import LossConfig

    torch.manual_seed(0)
    model, data = tiny_detector(), SyntheticDataset(2)
    common = {"batch_size": 4, "device": torch.device("cpu"), "loss_fn": DetectionLoss(LossConfig())}
    parts: list[dict] = []
    monkeypatch.setattr(ev, "all_gather_objects", lambda obj: parts.append(obj) or [obj])
    for rank in range(3):  # each rank's own share, as it would send it
        ev.evaluate(model, data, info=DistInfo(rank=rank, world_size=3), collect_stats=True, **common)
    assert [p["indices"].tolist() for p in parts] == [[0], [1], []]
    monkeypatch.setattr(ev, "all_gather_objects", lambda obj: list(parts))
    result = ev.evaluate(model, data, info=DistInfo(rank=0, world_size=3), collect_stats=True, **common)
    assert result.indices.tolist() == [0, 1] and set(result.stats) == {"mean_feature"}
    expected = np.concatenate([parts[0]["stats"]["mean_feature"], parts[1]["stats"]["mean_feature"]])
    assert result.stats["mean_feature"].shape == (2, 8) and np.array_equal(result.stats["mean_feature"], expected)
