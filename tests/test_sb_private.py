"""The private SpeechBrain API this package uses is still the same."""

import inspect
import pathlib
import re

import speechbrain_kd
from speechbrain_kd.sb_private import PRIVATE_API, check_private_api

PACKAGE = pathlib.Path(speechbrain_kd.__file__).parent


def test_installed_speechbrain_matches_the_private_api_used():
    """Fails, naming the function, when a SpeechBrain release renames or
    changes the signature of a private function this package overrides."""
    assert check_private_api() == []


def test_a_changed_signature_is_reported(monkeypatch):
    """The check can fail: a different signature is named."""
    import speechbrain.core

    def changed(self, dataset, loader_kwargs, extra):
        del self, dataset, loader_kwargs, extra

    monkeypatch.setattr(
        speechbrain.core.Brain, "_train_loader_specifics", changed
    )
    problems = check_private_api()
    assert len(problems) == 1
    assert "Brain._train_loader_specifics" in problems[0]
    assert "extra" in problems[0]


def test_private_names_are_used_only_in_sb_private():
    """Outside ``speechbrain_kd/sb_private`` no module overrides or calls
    one of the private names of ``PRIVATE_API`` (``_save`` / ``_recover``
    are also the names of this package's own checkpoint hooks, so they
    are checked through the signatures below only)."""
    private = {path.rsplit(".", 1)[-1] for _, path, _ in PRIVATE_API}
    private = {n for n in private if n.startswith("_")} - {"_save", "_recover"}
    pattern = re.compile(
        r"(def |\.)(" + "|".join(map(re.escape, sorted(private))) + r")\b"
    )
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "sb_private" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{n}: {line}")
    assert offenders == []
    # and the overrides in sb_private have the recorded signatures
    from speechbrain_kd.sb_private.brain import (
        DistributedPlumbing,
        EpochStatisticsCheckpoint,
    )
    from speechbrain_kd.sb_private.checkpoints import PendingMetafile

    expected = {path: sig for _, path, sig in PRIVATE_API}
    for cls, name, base in (
        (DistributedPlumbing, "_train_loader_specifics", "Brain"),
        (DistributedPlumbing, "_wrap_distributed", "Brain"),
        (EpochStatisticsCheckpoint, "_save", "Brain"),
        (EpochStatisticsCheckpoint, "_recover", "Brain"),
        (PendingMetafile, "_save_checkpoint_metafile", "Checkpointer"),
    ):
        found = str(inspect.signature(getattr(cls, name)))
        assert found == expected[f"{base}.{name}"], (cls, name)


def test_save_embedding_norm_writes_a_checkpoint(tmp_path):
    import torch

    from speechbrain_kd.sb_private.normalization import (
        fit_embedding_norm,
        save_embedding_norm,
    )

    path = tmp_path / "norm.ckpt"
    save_embedding_norm(fit_embedding_norm(torch.ones(3, 2)), str(path))
    assert path.is_file()
