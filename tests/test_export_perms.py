"""Published files and folders get the permissions of a plain open/mkdir
(0644 / 0755 under umask 022), not tempfile's private 0600 / 0700."""

import os
import stat

import numpy
import pytest
import torch
from conftest import publish_tiny_ecapa

from speechbrain_kd.data import write_csv
from speechbrain_kd.fileio import atomic_write_text, default_mode

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def umask():
    """Sets the process umask for one test (restored afterwards)."""
    old = os.umask(0o022)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def publish_tiny(dest):
    """A random tiny ECAPA-TDNN published with export_pretrained."""
    publish_tiny_ecapa(
        dest, embeddings=torch.randn(6, 8), card={"title": "perms test"}
    )
    return dest


def test_published_folder_is_readable_by_all(tmp_path, umask):
    dest = publish_tiny(tmp_path / "pretrained")
    assert mode(dest) == 0o755
    names = sorted(os.listdir(dest))
    assert "README.md" in names and "hyperparams.yaml" in names
    for name in names:
        assert mode(dest / name) == 0o644, name
    # Replacing an existing export: the same modes
    publish_tiny(dest)
    assert mode(dest) == 0o755
    assert {mode(dest / n) for n in os.listdir(dest)} == {0o644}
    assert sorted(os.listdir(tmp_path)) == ["pretrained", "run"]


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    atomic_write_text(tmp_path / "a.txt", "x\n")
    write_csv([], tmp_path / "m.csv")
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "m.csv") == 0o644
    umask(0o027)
    atomic_write_text(tmp_path / "a.txt", "y\n")  # replaces: new mode
    assert mode(tmp_path / "a.txt") == 0o640
    umask(0o077)
    atomic_write_text(tmp_path / "b.txt", "z\n")
    assert mode(tmp_path / "b.txt") == 0o600


def test_synthetic_audio_is_readable_by_all(tmp_path, umask):
    from speechbrain_kd.synthetic.prepare import _write_flac

    path = tmp_path / "spk" / "u.flac"
    assert _write_flac(str(path), numpy.zeros(160)) == 160
    assert mode(path) == 0o644


def test_default_mode_follows_the_umask(umask):
    umask(0o022)
    assert (default_mode(), default_mode(folder=True)) == (0o644, 0o755)
