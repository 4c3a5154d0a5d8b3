"""WaveFake (Frank & Schönherr, NeurIPS 2021 Datasets and Benchmarks): vocoded copies of LJSpeech and JSUT.

Layout of the release (``generated_audio.zip``): ``generated_audio/<folder>/*.wav``, one folder per generator:

- copy-synthesis of LJSpeech by a vocoder, ``ljspeech_<vocoder>/LJ001-0001_gen.wav`` (``melgan``, ``melgan_large``,
  ``multi_band_melgan``, ``full_band_melgan``, ``parallel_wavegan``, ``waveglow``, ``hifiGAN``; ``hifiGAN`` names
  its files ``LJ001-0001_generated.wav``, ``waveglow`` ``LJ001-0001.wav``);
- copy-synthesis of JSUT's ``basic5000`` subset, ``jsut_<vocoder>/BASIC5000_0001_gen.wav`` (``multi_band_melgan``,
  ``parallel_wavegan``);
- full text-to-speech, ``common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech/``: Conformer-FastSpeech2 and
  a Parallel WaveGAN trained on LJSpeech, reading Common Voice prompts. This folder ships with a ``generated/``
  subfolder repeating its files; a file there whose name the folder itself holds is read once.

``root`` is the ``generated_audio`` folder or the folder holding it (``LJSpeech-1.1/`` and ``jsut_ver1.1/`` unpacked
beside the generator folders are no generators). WaveFake holds only spoofs: its bona fide counterparts are LJSpeech
(``ljspeech_root``: the ``LJSpeech-1.1`` folder with ``metadata.csv`` and ``wavs/``) and JSUT (``jsut_root``: the
``jsut_ver1.1`` folder with ``<subset>/wav/*.wav``; ``jsut_subsets`` keeps ``basic5000``, the texts the JSUT vocoders
re-synthesised, unless told otherwise).

Columns: ``attack`` is the generator folder's name (``ljspeech_melgan``), stable across the corpus' papers;
``vocoder`` the vocoder alone (``melgan``: LJSpeech and JSUT folders of one vocoder share it); ``attack_type``
``vocoder`` for copy-synthesis, ``tts`` for the Conformer-FastSpeech2 folder; ``source`` ``wavefake`` (the corpus
option) for every spoof and ``ljspeech``/``jsut`` for the bona fide speech, with the recorded corpus of a spoof's
voice in ``reference``; ``pair_id`` the LJSpeech/JSUT utterance a copy-synthesis re-synthesises
(``LJ001-0001``: the bona fide file and its seven vocoded copies share it, so group folds keep a text's versions
together), and a text-to-speech prompt's own ``utt_id`` (the only version of its text: each prompt is a group of its
own, where the folder as one speaker ``LJ`` was one group, the whole attack in one fold).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    build_table,
    check_selected,
    list_audio_files,
    relative_id,
    require_dir,
    table_columns,
)
from sddkit.data.protocols.bonafide import LJSpeechConfig, is_ljspeech_layout, read_ljspeech
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

# the text-to-speech folder of the release: (vocoder, the corpus its voice was trained on)
WAVEFAKE_TTS_FOLDER = "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"
# prefix of a copy-synthesis folder -> (corpus re-synthesised, language, speaker)
_REFERENCES = {"ljspeech_": ("ljspeech", "en", "LJ"), "jsut_": ("jsut", "ja", "JSUT")}


@dataclass
class WaveFakeConfig:
    root: str  # generated_audio/ or the folder holding it
    ljspeech_root: str | None = None  # LJSpeech-1.1 (metadata.csv + wavs/): the bona fide English speech
    jsut_root: str | None = None  # jsut_ver1.1 (<subset>/wav/*.wav): the bona fide Japanese speech
    jsut_subsets: list[str] | None = field(default_factory=lambda: ["basic5000"])  # None: every subset
    generators: list[str] | None = None  # keep only these generator folders (e.g. [ljspeech_melgan])
    corpus: str = "wavefake"


def is_wavefake_folder(name: str) -> bool:
    """Whether a folder name is one of WaveFake's generator folders (or of a later one named alike)."""
    return name == WAVEFAKE_TTS_FOLDER or any(name.startswith(p) for p in _REFERENCES)


def _is_bonafide_corpus(d: Path) -> bool:
    """Whether a folder is one of WaveFake's bona fide corpora, kept beside the generator folders: LJSpeech
    (``metadata.csv`` + ``wavs/``) or JSUT (``jsut_ver1.1``: ``<subset>/wav/``; its name starts with ``jsut_`` as
    the JSUT generator folders' do). A generator folder holds its audio itself."""
    return is_ljspeech_layout(d) or bool(_jsut_subsets(d))


def _jsut_subsets(d: Path) -> list[str]:
    """The subfolders of ``d`` holding a ``wav/`` folder (JSUT's ``basic5000/wav``, ...), sorted."""
    with os.scandir(d) as entries:  # a generator folder's 13,100 files: no stat of each (is_dir reads the entry)
        return sorted(e.name for e in entries if e.is_dir() and os.path.isdir(os.path.join(e.path, "wav")))


def _generator_dirs(d: Path) -> list[Path]:
    """The folders of ``d`` that hold a generator's audio: not hidden, not LJSpeech or JSUT unpacked beside them."""
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".") and not _is_bonafide_corpus(p))


def wavefake_generated_dir(root: Path) -> Path | None:
    """The folder holding WaveFake's generator folders: ``root/generated_audio`` or ``root`` itself; None if
    neither holds one (LJSpeech's or JSUT's own folder, ``jsut_ver1.1``, is none)."""
    for d in (root / "generated_audio", root):
        if d.is_dir() and any(is_wavefake_folder(p.name) for p in _generator_dirs(d)):
            return d
    return None


def _describe(folder: str) -> dict[str, str]:
    """attack_type, vocoder, reference corpus, language and speaker of a generator folder."""
    if folder == WAVEFAKE_TTS_FOLDER:
        return {"attack_type": "tts", "vocoder": "parallel_wavegan", "reference": "ljspeech", "language": "en",
                "speaker": "LJ"}  # fmt: skip
    for prefix, (reference, language, speaker) in _REFERENCES.items():
        if folder.startswith(prefix):
            return {"attack_type": "vocoder", "vocoder": folder[len(prefix) :], "reference": reference,
                    "language": language, "speaker": speaker}  # fmt: skip
    return {"attack_type": "", "vocoder": "", "reference": "", "language": "", "speaker": ""}


def _generator_files(gen_dir: Path) -> list[Path]:
    """A generator folder's audio, without the copies a ``generated/`` subfolder repeats by name."""
    files = list_audio_files(gen_dir)
    direct = {f.name for f in files if f.parent == gen_dir}
    return [f for f in files if f.parent == gen_dir or f.name not in direct]


# what the release appends to the re-synthesised utterance's name: LJ001-0001_gen.wav (most folders),
# LJ001-0001_generated.wav (ljspeech_hifiGAN); ljspeech_waveglow keeps the name itself (LJ001-0001.wav)
_COPY_SUFFIXES = ("_generated", "_gen")


def _utterance_of(stem: str) -> str:
    """The LJSpeech/JSUT utterance a copy-synthesis file re-synthesises, from its name (``LJ001-0001_gen``,
    ``LJ001-0001_generated``, ``LJ001-0001`` -> ``LJ001-0001``)."""
    for suffix in _COPY_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _spoof_records(generated: Path, folders: list[Path], corpus: str) -> list[dict]:
    records = []
    for gen_dir in folders:
        info = _describe(gen_dir.name)
        for f in _generator_files(gen_dir):
            utt = relative_id(f, generated)
            if info["attack_type"] == "vocoder":
                pair = _utterance_of(f.stem)
            else:  # a prompt read once: its own group (as one speaker LJ, the whole folder was one group of the folds)
                pair = utt if info["attack_type"] == "tts" else ""
            records.append(
                {
                    "utt_id": utt,
                    "path": str(f),
                    "label": "spoof",
                    "attack": gen_dir.name,
                    "source": corpus,
                    "corpus": corpus,
                    "pair_id": pair,
                    **info,
                }
            )
    return records


def _ljspeech_records(root: str) -> list[dict]:
    table = read_ljspeech(LJSpeechConfig(root=root))
    rows = table.df[["utt_id", "path"]].to_dict("records")
    return [
        {
            **row,
            "label": "bonafide",
            "attack": "bonafide",
            "source": "ljspeech",
            "corpus": "ljspeech",
            "speaker": "LJ",
            "language": "en",
            "reference": "ljspeech",
            "pair_id": row["utt_id"],
        }  # fmt: skip
        for row in rows
    ]


def _jsut_records(root: str, subsets: list[str] | None) -> list[dict]:
    jsut = require_dir(root, "JSUT")
    present = _jsut_subsets(jsut)
    if not present:
        raise ProtocolError(f"{jsut}: no JSUT subset folders (<subset>/wav/*.wav, e.g. basic5000/wav) found")
    if subsets is not None and not subsets:  # read as "none": the JSUT bona fide speech was left out without a word
        raise ProtocolError(
            f"{jsut}: jsut_subsets [] keeps no JSUT subset; list the subsets to read ({', '.join(present)}), or give "
            "null for every one (or leave jsut_root out for no JSUT speech)"
        )
    check_selected(jsut, "jsut_subsets", subsets, present)
    records = []
    for subset in present if subsets is None else [s for s in present if s in subsets]:
        for f in list_audio_files(jsut / subset / "wav"):
            records.append(
                {
                    "utt_id": f"jsut/{subset}/{f.stem}",
                    "path": str(f),
                    "label": "bonafide",
                    "attack": "bonafide",
                    "source": "jsut",
                    "corpus": "jsut",
                    "speaker": "JSUT",
                    "language": "ja",
                    "reference": "jsut",
                    "pair_id": f.stem,
                }
            )
    return records


@PROTOCOLS.register("wavefake", config=WaveFakeConfig)
@table_columns("pair_id", "attack_type", "vocoder", "reference", "language")
def read_wavefake(cfg: WaveFakeConfig, **_: object) -> UtteranceTable:
    """WaveFake generated_audio/<generator>/*.wav, optionally with LJSpeech and JSUT bona fide speech."""
    root = require_dir(cfg.root, "WaveFake")
    generated = wavefake_generated_dir(root)
    if generated is None:
        raise ProtocolError(
            f"{root}: no WaveFake generator folders (generated_audio/ljspeech_<vocoder>/, jsut_<vocoder>/, "
            f"{WAVEFAKE_TTS_FOLDER}/) found"
        )
    # LJSpeech-1.1/ and jsut_ver1.1/ unpacked beside the generator folders are bona fide, not generators
    folders = _generator_dirs(generated)
    if cfg.generators is not None and not cfg.generators:  # was "the generator folders hold no audio files"
        raise ProtocolError(
            f"{generated}: generators [] keeps no generator folder; list those to read "
            f"({', '.join(p.name for p in folders)}), or give null for every one"
        )
    check_selected(generated, "generators", cfg.generators, (p.name for p in folders))
    if cfg.generators is not None:
        folders = [p for p in folders if p.name in cfg.generators]
    records = _spoof_records(generated, folders, cfg.corpus)
    if not records:
        raise ProtocolError(f"{generated}: the generator folders hold no audio files")
    if cfg.ljspeech_root is not None:
        # LJSpeech ids (LJ001-0001) and the spoofs' (ljspeech_melgan/LJ001-0001_gen) never meet
        records.extend(_ljspeech_records(cfg.ljspeech_root))
    if cfg.jsut_root is not None:
        records.extend(_jsut_records(cfg.jsut_root, cfg.jsut_subsets))
    return build_table(records, os.fspath(generated))
