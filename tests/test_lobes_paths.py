"""Class paths of published folders: the ``hyperparams.yaml`` of Mixer
students name ``speechbrain_kd.lobes.mixer.FrontEndFeatures`` and
``FrontEndNormalization``, which live in ``speechbrain_kd.lobes.front_end``;
those paths still build the same classes."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_kd.lobes.front_end import (
    FrontEndFeatures,
    FrontEndNormalization,
)
from speechbrain_kd.lobes.mixer import MixerSpeaker

pytestmark = pytest.mark.usefixtures("one_thread")

PUBLISHED = """
compute_features: !new:speechbrain_kd.lobes.mixer.FrontEndFeatures
    front_end: conv
mean_var_norm: !new:speechbrain_kd.lobes.mixer.FrontEndNormalization
    front_end: conv
embedding_model: !new:speechbrain_kd.lobes.mixer.MixerSpeaker
    front_end: conv
    dim: 16
    num_blocks: 1
    conv_channels: 8
    emb_dim: 8
"""


def test_published_mixer_paths_build_the_front_end_classes():
    hp = load_hyperpyyaml(PUBLISHED)
    assert type(hp["compute_features"]) is FrontEndFeatures
    assert type(hp["mean_var_norm"]) is FrontEndNormalization
    assert type(hp["embedding_model"]) is MixerSpeaker
    wavs = torch.randn(2, 4000)
    lengths = torch.tensor([1.0, 0.5])
    x = hp["mean_var_norm"](hp["compute_features"](wavs), lengths)
    assert hp["embedding_model"](x, lengths).shape == (2, 1, 8)
