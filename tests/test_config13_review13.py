"""Config and training-start checks, thirteenth review: a recipe path that is a device or an endless pipe, the
SpecAugment mask against the training crop at build time, a Whisper encoder saved as a whole-model ``.bin``, and DDP
test ports that another process took first."""

from __future__ import annotations

import os
import threading

import pytest

from sddkit.config import load_yaml
from sddkit.errors import ConfigError

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


def _write_to_fifo(fifo, chunks) -> threading.Thread:
    """A daemon thread that writes `chunks` into `fifo` (opening blocks until the reader opens it); a reader that
    stops early ends it with BrokenPipeError, which is what an endless writer meets."""

    def run():
        try:
            with open(fifo, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- 1. a recipe path that is no file --------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_given_as_the_recipe_is_refused_not_read_without_end(tmp_path):
    with pytest.raises(ConfigError, match=r"^/dev/zero: a device, not a recipe file") as info:
        load_yaml("/dev/zero")
    assert "\n" not in str(info.value)
    link = tmp_path / "r.yaml"  # through a link too: the device is what is read
    link.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="a device, not a recipe file"):
        load_yaml(link)


@needs_fifo
def test_a_recipe_from_a_pipe_is_still_read(tmp_path):
    # `sdd train <(envsubst < r.yaml)` gives /dev/fd/63, a pipe
    fifo = tmp_path / "r.yaml"
    os.mkfifo(fifo)
    writer = _write_to_fifo(fifo, [b"trainer:\n", b"  epochs: 3\n"])
    assert load_yaml(fifo) == {"trainer": {"epochs": 3}}
    writer.join(10)
    assert not writer.is_alive()


@needs_fifo
def test_a_pipe_that_never_ends_is_refused_at_the_cap(tmp_path):
    import itertools

    fifo = tmp_path / "r.yaml"
    os.mkfifo(fifo)
    writer = _write_to_fifo(fifo, itertools.repeat(b"# comment\n" * 6554))  # about 64 kB a write, for ever
    with pytest.raises(ConfigError, match=r"r\.yaml: over 16 MiB, too large for a recipe"):
        load_yaml(fifo)
    writer.join(10)  # the reader closed its end: the writer stops
    assert not writer.is_alive()


# --- 2. the SpecAugment span against the training crop, at build time ----------------------------


def _ssl_recipe(tmp_path, *, crop: int, val_crop: int | None = None, spec_augment: bool = True, mask_prob=None):
    from test_train_support import write_corpus

    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe

    csv = str(write_corpus(tmp_path / "corpus", n=6, samples=crop))
    spec = {"protocol": csv, "format": "utterance_table"}
    encoder = {"name": "wav2vec2_tiny", "spec_augment": spec_augment}
    if mask_prob is not None:
        encoder["overrides"] = {"mask_time_prob": mask_prob}
    data = {"batch_size": 2, "train": [spec], "val": [spec], "crop_samples": crop}
    if val_crop is not None:
        data["val_crop_samples"] = val_crop
    return from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "model": {"frontend": {"name": "ssl", "encoder": encoder}, "backend": {"name": "linear"}},
            "data": data,
            "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )


def test_a_training_crop_shorter_than_a_spec_augment_span_is_refused_before_training(tmp_path):
    # wav2vec2_tiny: 10 frames (mask_time_length) need 220 samples; 219 leave 9 frames, enough without masking
    from sddkit.training.trainer import Trainer

    trainer = Trainer(_ssl_recipe(tmp_path, crop=219, val_crop=4000))
    with pytest.raises(
        ConfigError,
        match=r"^data\.crop_samples=219 is too short for model\.frontend\.encoder\.spec_augment: true: SpecAugment "
        r"masks spans of 10 frames in training, which need at least 220 samples; raise data\.crop_samples to 220 or "
        r"more, or set model\.frontend\.encoder\.spec_augment: false$",
    ):
        trainer.fit()
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything was trained or saved


@pytest.mark.parametrize("encoder", [{"spec_augment": False}, {"mask_prob": 0.0}])
def test_a_crop_long_enough_without_masking_passes_the_check(tmp_path, monkeypatch, encoder):
    # no masking in training (spec_augment off, or a zero mask probability): 219 samples (9 frames) are enough
    from sddkit.training.trainer import Trainer

    class Checked(Exception):
        pass

    def past_the_check(self):
        raise Checked

    monkeypatch.setattr(Trainer, "_build_data", past_the_check)  # the next step of the setup: no corpus decoded
    with pytest.raises(Checked):
        Trainer(_ssl_recipe(tmp_path, crop=219, **encoder)).fit()
    # and with masking, a crop of exactly one span passes too
    with pytest.raises(Checked):
        Trainer(_ssl_recipe(tmp_path / "masked", crop=220)).fit()


# --- 3. a whole Whisper model saved as pytorch_model.bin, config.json without architectures ------------------


def _whisper_bin_folder(folder, cls_name: str, *, shards: int = 1, zip_format: bool = True):
    """A tiny random Whisper ``cls_name`` saved as transformers saved models before safetensors (``pytorch_model.bin``,
    or shards with ``pytorch_model.bin.index.json``), with a config.json that lists no ``architectures``."""
    import json

    import torch
    import transformers

    from sddkit.frontends.encoders import PRESETS

    arch = {**PRESETS["whisper_tiny"].arch, "decoder_attention_heads": 2, "decoder_ffn_dim": 64}
    if cls_name == "WhisperEncoder":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder as cls
    else:
        cls = getattr(transformers, cls_name)
    torch.manual_seed(0)
    source = cls(transformers.WhisperConfig(**arch)).eval()
    folder.mkdir(parents=True, exist_ok=True)
    source.config.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(config))
    state = source.state_dict()
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=zip_format)
    else:
        keys = sorted(state)
        weight_map = {}
        for i in range(shards):
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            part = {k: state[k] for k in keys[i::shards]}
            torch.save(part, folder / name, _use_new_zipfile_serialization=zip_format)
            weight_map.update(dict.fromkeys(part, name))
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if cls_name == "WhisperEncoder":
        return source
    # transformers 4's WhisperForAudioClassification has no get_encoder()
    return source.encoder if cls_name == "WhisperForAudioClassification" else source.get_encoder()


@pytest.mark.parametrize(
    ("whole", "shards", "zip_format"),
    [
        ("WhisperModel", 1, True),
        ("WhisperForConditionalGeneration", 1, True),
        ("WhisperForAudioClassification", 1, True),
        ("WhisperModel", 2, True),
        ("WhisperModel", 1, False),  # the format of torch < 1.6: read without a memory map
        ("WhisperEncoder", 1, True),  # an encoder's own weights (no prefix) still load as before
    ],
)
def test_a_whisper_bin_folder_without_architectures_loads_by_its_weights_prefixes(tmp_path, whole, shards, zip_format):
    # the safetensors case was read by its weights' prefixes; a pytorch_model.bin of a whole model was loaded as an
    # encoder's and refused: "lacks 37 weight(s) of the model"
    import torch

    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    reference = _whisper_bin_folder(tmp_path, whole, shards=shards, zip_format=zip_format)
    loaded = build_encoder(EncoderConfig(pretrained=str(tmp_path)), preset="whisper_tiny")
    state = loaded.model.state_dict()
    assert set(state) == set(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, msg=name)
    assert not any(p.is_meta for p in loaded.model.parameters())


def test_a_truncated_whisper_bin_is_one_line_naming_the_folder(tmp_path):
    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    _whisper_bin_folder(tmp_path, "WhisperModel")
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(ConfigError, match=rf"^encoder\.pretrained: cannot load weights from {tmp_path}: ") as info:
        build_encoder(EncoderConfig(pretrained=str(tmp_path)), preset="whisper_tiny")
    assert "\n" not in str(info.value)


# --- 4. DDP test ranks whose port another process took -------------------------------------------------------


def _gloo_worker(rank: int, world: int, port: int, out: str) -> None:
    """Joins a gloo group of ``world`` on ``port`` and all-reduces once; leaves a file per rank and start."""
    import datetime
    from pathlib import Path

    import torch
    import torch.distributed as dist

    Path(f"{out}/started-{port}-rank{rank}").touch()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        total = torch.tensor([rank + 1.0])
        dist.all_reduce(total)
        Path(f"{out}/done-{port}-rank{rank}").write_text(str(int(total.item())))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_start_again_on_other_ports_when_theirs_was_taken(tmp_path, monkeypatch):
    # the port chosen free is closed before rank 0 listens on it: another xdist worker's rank, or an outgoing
    # connection, could take it in between, and the DDP test failed with EADDRINUSE
    import socket

    import test_ddp

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    choose = test_ddp._free_ports
    chosen: list[int] = []

    def first_one_taken(n: int) -> list[int]:
        ports = [port] if not chosen else choose(n)
        chosen.extend(ports)
        return ports

    monkeypatch.setattr(test_ddp, "_free_ports", first_one_taken)
    (tmp_path / "input.txt").write_text("kept")  # there before: not removed with the failed start's files
    try:
        test_ddp.run_ranks(_gloo_worker, (2, test_ddp.FreePorts(), str(tmp_path)), 120, out=tmp_path)
    finally:
        taken.close()
    assert chosen[0] == port and len(chosen) == 2 and chosen[1] != port
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["input.txt", *(f"{what}-{chosen[1]}-rank{r}" for what in ("started", "done") for r in (0, 1))]
    )
    assert (tmp_path / f"done-{chosen[1]}-rank0").read_text() == "3"


def test_ddp_ranks_are_not_started_again_for_other_failures(tmp_path):
    import test_ddp
    import torch.multiprocessing as mp

    with pytest.raises(mp.ProcessRaisedException, match="not a port problem"):
        test_ddp.run_ranks(_failing_worker, (2, test_ddp.FreePorts(), str(tmp_path)), 60, out=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1  # started once, and what it wrote is left to look at


def _failing_worker(rank: int, world: int, port: int, out: str) -> None:
    from pathlib import Path

    if rank == 0:
        Path(f"{out}/started-{port}").touch()
        raise RuntimeError("not a port problem")
