"""Shared fixtures: the real mini corpus and a tiny subset of it."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "MiniSpeakers"

# Options of the tiny end-to-end recipe runs on ``tiny_data`` (9 classes)
TINY_RUN = [
    "--batch_size=8",
    "--num_workers=0",
    "--noprogressbar",
    "--out_n_neurons=9",
    "--prep_opts={arabic_valid_utts: 2, arabic_trials: 40, libri_trials: 20}",
]


def run_recipe(script, yaml, *args, check=True):
    """Runs ``python script hparams/yaml args`` in the MiniSpeakers recipe;
    with ``check``, a failure raises with the end of its stderr."""
    proc = subprocess.run(
        [sys.executable, script, f"hparams/{yaml}", *args],
        cwd=RECIPE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed:\n{proc.stderr[-4000:]}")
    return proc


def publish_tiny_ecapa(dest, init_seed=None, **export_kwargs):
    """A random tiny ECAPA-TDNN (teacher_ecapa.yaml, C=16, 8-d, 3 classes)
    published with ``export_pretrained`` at ``dest``; ``init_seed``: its
    weights drawn N(0, 0.2) from that seed (default: the modules' own
    initialisation); ``export_kwargs`` go to ``export_pretrained``."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.export import export_pretrained

    overrides = {
        "data_folder": "unused",
        "output_folder": str(dest.parent / "run"),
        "out_n_neurons": 3,
        "channels": 16,
        "emb_dim": 8,
    }
    yaml_file = str(RECIPE / "hparams" / "teacher_ecapa.yaml")
    with open(yaml_file) as f:
        hp = load_hyperpyyaml(f, overrides)
    if init_seed is not None:
        torch.manual_seed(init_seed)
        for module in hp["modules"].values():
            for p in module.parameters():
                torch.nn.init.normal_(p, std=0.2)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(list("abc"))
    return export_pretrained(
        str(dest),
        yaml_file,
        overrides,
        hp["modules"],
        encoder,
        **export_kwargs,
    )


@pytest.fixture(scope="module")
def one_thread():
    """One thread per process for tiny models: on a loaded machine (shared
    CPU) OpenMP's spinning threads make them ~10 times slower. Modules opt
    in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shared_data():
    """The mini corpus: $SPEECHBRAIN_KD_DATA or ../shared/data."""
    env = os.environ.get("SPEECHBRAIN_KD_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_folder():
    folder = shared_data()
    if not (folder / "arabic-speech-commands").is_dir():
        pytest.skip(f"mini corpus not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def tiny_data(data_folder, tmp_path_factory):
    """A tiny mini-corpus layout of symlinks into the real data.

    6 LibriSpeech train speakers + 3 Arabic train speakers (12 utterances
    each); held out: 3 Arabic test speakers (6 utterances each) and 3
    LibriSpeech test-other speakers (all 10 utterances).
    """
    root = tmp_path_factory.mktemp("tiny_data")
    ar_src = data_folder / "arabic-speech-commands"
    ls_src = data_folder / "librispeech-samples"
    ar, ls = root / "arabic-speech-commands", root / "librispeech-samples"

    def link(src, dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)

    for split, n_spk, n_utt in (("train", 3, 12), ("test", 3, 6)):
        with open(ar_src / f"{split}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        by_spk = {}
        for row in rows:
            by_spk.setdefault(Path(row["file"]).name[:8], []).append(row)
        kept = [r for s in sorted(by_spk)[:n_spk] for r in by_spk[s][:n_utt]]
        ar.mkdir(parents=True, exist_ok=True)
        with open(ar / f"{split}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "class"])
            writer.writeheader()
            writer.writerows(kept)
        for row in kept:
            link(ar_src / row["file"], ar / row["file"])
    for flac in sorted((ls_src / "train-clean-100").glob("*.flac"))[:6]:
        link(flac, ls / "train-clean-100" / flac.name)
    for spk in sorted((ls_src / "test-other").iterdir())[:3]:
        for flac in sorted(spk.glob("*.flac")):
            link(flac, ls / "test-other" / spk.name / flac.name)
    return root
