#!/usr/bin/env python3
"""Parameters and MACs: WavLM teachers vs the MLP-Mixer student vs a
Transformer student of equal depth and width (the comparison of "A Speaker
Verification System Based on a Modified MLP-Mixer Student Model for
Transformer Compression", IEEE Access 2025).

    python bench/mixer_complexity.py [--seconds 3] [--long 10] [--no-large]

Models (random weights: nothing is downloaded):

- WavLM Base+ (``WavLMModel(WavLMConfig())``: the default config is the
  base size of ``microsoft/wavlm-base-plus``) and WavLM Large (the config
  of ``microsoft/wavlm-large``), the encoder alone and with the ECAPA-TDNN
  head of ``recipes/MiniSpeakers/hparams/teacher_wavlm.yaml`` (the teacher
  as trained there);
- the MLP-Mixer student of ``hparams/wavlm_mixer.yaml`` (its
  ``embedding_model``, Fbank front end) and its ``conv`` front-end variant;
- ``TransformerSpeaker`` with the student's front end, depth, width and
  head: pre-norm Transformer layers, 4 heads, feed-forward 4 x width.

MACs are counted by ``speechbrain_kd.model_size.count_macs``
(``torch.utils.flop_counter``, MACs = FLOPs / 2, attention included) for
one utterance of ``--seconds`` of 16-kHz audio; the Fbank computation
(an FFT) is not counted. The last column repeats the count for ``--long``
seconds, divided by the ratio of durations: constant for a model linear in
time, growing with attention.
"""

import argparse
import os
import sys

import torch
from hyperpyyaml import load_hyperpyyaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HPARAMS = os.path.join(REPO, "recipes", "MiniSpeakers", "hparams")
sys.path.insert(0, REPO)

from speechbrain_kd.lobes.mixer import MixerSpeaker  # noqa: E402
from speechbrain_kd.lobes.transformer import TransformerSpeaker  # noqa: E402
from speechbrain_kd.model_size import count_macs  # noqa: E402

SAMPLE_RATE = 16000

LARGE = dict(  # microsoft/wavlm-large
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    conv_bias=True,
)


def load_yaml(name, **overrides):
    with open(os.path.join(HPARAMS, f"{name}.yaml")) as f:
        return load_hyperpyyaml(f, {"data_folder": "unused", **overrides})


def teacher_head(hidden_size):
    """The ECAPA-TDNN head of teacher_wavlm.yaml on ``hidden_size``."""
    import ruamel.yaml
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    with open(os.path.join(HPARAMS, "teacher_wavlm.yaml")) as f:
        tree = ruamel.yaml.YAML().load(f)
    c, emb = int(tree["channels"]), int(tree["emb_dim"])
    return ECAPA_TDNN(
        hidden_size,
        channels=[c, c, c, c, 3 * c],
        kernel_sizes=[5, 3, 3, 3, 1],
        dilations=[1, 2, 3, 4, 1],
        attention_channels=128,
        lin_neurons=emb,
    )


class WavLMTeacher(torch.nn.Module):
    """WavLM + weighted sum of its hidden states + head (as WavLMEncoder,
    without loading a saved model)."""

    def __init__(self, wavlm, head):
        super().__init__()
        self.wavlm, self.head = wavlm, head
        n = wavlm.config.num_hidden_layers + 1
        self.layer_weights = torch.nn.Parameter(torch.zeros(n))

    def forward(self, wavs):
        hidden = self.wavlm(wavs, output_hidden_states=True).hidden_states
        w = torch.softmax(self.layer_weights, 0).view(-1, 1, 1, 1)
        x = (torch.stack(hidden) * w).sum(0)
        return self.head(x)


def params(model):
    return sum(p.numel() for p in model.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--long", type=float, default=10.0)
    parser.add_argument("--no-large", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    from transformers import WavLMConfig, WavLMModel

    student_hp = load_yaml("wavlm_mixer")
    mixer = student_hp["embedding_model"]
    assert isinstance(mixer, MixerSpeaker)
    conv_mixer = load_yaml("wavlm_mixer", front_end="conv")["embedding_model"]
    shape = dict(
        input_size=student_hp["n_mels"],
        dim=student_hp["dim"],
        num_blocks=student_hp["num_blocks"],
        patch_size=student_hp["patch_size"],
        emb_dim=student_hp["emb_dim"],
    )
    transformer = TransformerSpeaker(num_heads=4, ff_expansion=4, **shape)
    conv_transformer = TransformerSpeaker(
        "conv",
        num_heads=4,
        ff_expansion=4,
        conv_channels=student_hp["conv_channels"],
        **shape,
    )

    def wav(seconds):
        return torch.randn(1, int(seconds * SAMPLE_RATE))

    def fbank(seconds):
        return student_hp["compute_features"](wav(seconds))

    rows = []  # (name, model, input function)
    base = WavLMModel(WavLMConfig()).eval()
    rows.append(("WavLM Base+ (encoder only)", base, wav))
    rows.append(
        (
            "WavLM Base+ teacher (+ weighted sum + ECAPA head)",
            WavLMTeacher(base, teacher_head(768)),
            wav,
        )
    )
    if not args.no_large:
        large = WavLMModel(WavLMConfig(**LARGE)).eval()
        rows.append(("WavLM Large (encoder only)", large, wav))
    rows += [
        ("MLP-Mixer student (wavlm_mixer.yaml, fbank)", mixer, fbank),
        ("Transformer student, equal depth/width (fbank)", transformer, fbank),
        ("MLP-Mixer student, conv front end", conv_mixer, wav),
        ("Transformer student, conv front end", conv_transformer, wav),
    ]
    s, long = args.seconds, args.long
    print(
        f"Student: dim {shape['dim']}, {shape['num_blocks']} blocks, "
        f"{shape['emb_dim']}-d embedding; MACs for one {s:g} s utterance "
        f"(16 kHz), torch {torch.__version__}\n"
    )
    print(
        f"| model | parameters | MACs ({s:g} s) | MACs per {s:g} s at "
        f"{long:g} s |"
    )
    print("|---|---:|---:|---:|")
    figures = {}
    for name, model, make_input in rows:
        n = params(model)
        macs = count_macs(model, make_input(s))
        macs_long = count_macs(model, make_input(long)) * s / long
        figures[name] = (n, macs)
        print(
            f"| {name} | {n / 1e6:,.2f} M | {macs / 1e9:,.3f} G | "
            f"{macs_long / 1e9:,.3f} G |",
            flush=True,
        )
    teacher = figures["WavLM Base+ teacher (+ weighted sum + ECAPA head)"]
    print()
    for name in rows[-4:]:
        n, macs = figures[name[0]]
        print(
            f"{name[0]}: {100 * n / teacher[0]:.2f} % of the WavLM Base+ "
            f"teacher's parameters, {100 * macs / teacher[1]:.2f} % of its "
            "MACs"
        )


if __name__ == "__main__":
    main()
