"""MLP-Mixer student (speechbrain_kd.lobes.mixer) and hidden-state
distillation (speechbrain_kd.objectives.hidden): MFM, shapes, padding,
locality of token mixing, complexity vs a Transformer, loss hand values,
alignment of frame rates, gradients, and the wavlm_mixer.yaml terms."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import RECIPE
from torch.utils.flop_counter import FlopCounterMode

from speechbrain_kd.lobes.front_end import (
    ConvFeatureEncoder,
    FrontEndFeatures,
    FrontEndNormalization,
)
from speechbrain_kd.lobes.mixer import (
    MaxFeatureMap,
    MixerBlock,
    MixerSpeaker,
    TokenMixing,
)
from speechbrain_kd.lobes.transformer import TransformerSpeaker
from speechbrain_kd.lobes.waveform import RawWaveform, WaveformNormalization
from speechbrain_kd.model_size import count_macs
from speechbrain_kd.objectives.hidden import (
    HiddenStateDistillation,
    align_frames,
    hidden_state_loss,
    hidden_state_terms,
)
from speechbrain_kd.objectives.kd import kd_loss
from speechbrain_kd.taps import LayerTaps
from speechbrain_kd.terms import build_terms, provided_inputs

SMALL = dict(input_size=20, dim=16, num_blocks=3, conv_channels=8, emb_dim=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_norms(model, seed=1):
    """Non-trivial BatchNorm statistics (eval mode uses them)."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen))
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model


# --------------------------------------------------------------------- MFM


def test_max_feature_map_values_gradient_and_errors():
    x = torch.tensor(
        [[1.0, -5.0, 3.0, 2.0], [0.0, 7.0, -1.0, 8.0]], requires_grad=True
    )
    out = MaxFeatureMap()(x)
    torch.testing.assert_close(out, torch.tensor([[3.0, 2.0], [0.0, 8.0]]))
    out.sum().backward()
    # The gradient goes to the winner of each pair only
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(x.grad, expected)
    # Any dimension; channels-first layouts too
    y = torch.randn(2, 6, 5)
    torch.testing.assert_close(
        MaxFeatureMap(dim=1)(y), torch.maximum(y[:, :3], y[:, 3:])
    )
    with pytest.raises(ValueError, match="even size"):
        MaxFeatureMap()(torch.randn(2, 5))


# ------------------------------------------------------- shapes and padding


@pytest.mark.parametrize("cls", [MixerSpeaker, TransformerSpeaker])
@pytest.mark.parametrize("front_end", ["fbank", "conv"])
def test_speaker_lobes_shapes(cls, front_end):
    torch.manual_seed(0)
    kwargs = {"num_heads": 2} if cls is TransformerSpeaker else {}
    model = cls(front_end, **SMALL, **kwargs)
    x = torch.randn(3, 90, 20) if front_end == "fbank" else torch.randn(3, 8000)
    out = model(x, torch.tensor([1.0, 0.8, 0.5]))
    assert out.shape == (3, 1, 8)
    assert model(x).shape == (3, 1, 8)  # lengths optional
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def padded_batch(items, garbage):
    """Items padded to the longest with ``garbage`` and relative lengths."""
    longest = max(x.shape[0] for x in items)
    batch = torch.stack(
        [
            torch.cat(
                [x, torch.full((longest - x.shape[0],) + x.shape[1:], garbage)]
            )
            for x in items
        ]
    )
    return batch, torch.tensor([x.shape[0] / longest for x in items])


@pytest.mark.parametrize(
    "cls, front_end",
    [
        (MixerSpeaker, "fbank"),
        (MixerSpeaker, "conv"),
        (TransformerSpeaker, "fbank"),
    ],
)
@pytest.mark.parametrize("garbage", [1e4, float("nan")])
def test_padding_never_changes_valid_outputs(cls, front_end, garbage):
    """Each utterance of a padded batch gets the embedding it gets alone."""
    torch.manual_seed(0)
    kwargs = {"num_heads": 2} if cls is TransformerSpeaker else {}
    model = randomise_norms(cls(front_end, **SMALL, **kwargs)).eval()
    if front_end == "fbank":  # odd lengths: patches of 2 frames
        items = [torch.randn(n, 20) for n in (100, 63, 37)]
    else:  # not multiples of the 320-sample hop
        items = [torch.randn(n) for n in (16000, 9001, 5123)]
    batch, lengths = padded_batch(items, garbage)
    with torch.no_grad():
        out = model(batch, lengths)
        assert torch.isfinite(out).all()
        for i, x in enumerate(items):
            alone = model(x.unsqueeze(0))
            torch.testing.assert_close(out[i : i + 1], alone, rtol=0, atol=1e-5)


def test_block_taps_are_zero_on_padding():
    torch.manual_seed(0)
    model = MixerSpeaker(**SMALL).eval()
    taps = LayerTaps(model, {"b0": "blocks.0", "b2": "blocks.2"})
    x = torch.randn(2, 100, 20)
    model(x, torch.tensor([1.0, 0.5]))
    outputs = taps.pop()
    taps.remove()
    for alias in ("b0", "b2"):
        out = outputs[alias]
        assert out.shape == (2, 50, 16)  # patches of 2 frames: 50 Hz tokens
        assert (out[1, 25:] == 0).all() and (out[1, :25] != 0).any()


def test_conv_front_end_counts_follow_the_strides():
    enc = ConvFeatureEncoder(4)
    assert enc.receptive_field == 400
    samples = torch.tensor([400, 719, 720, 16000, 48000])
    # One frame per 320-sample hop once the 400-sample field is covered
    expected = (samples - 400) // 320 + 1
    assert enc.output_counts(samples).tolist() == expected.tolist()
    for n in samples.tolist():
        assert enc(torch.randn(1, n)).shape[1] == (n - 400) // 320 + 1
    with pytest.raises(ValueError, match="receptive field"):
        enc(torch.randn(1, 399))


def test_token_mixing_is_local():
    """A frame influences the outputs of a window of 2k - 1 frames around
    it (k - 1 on each side): a two-layer MLP over a sliding window."""
    torch.manual_seed(0)
    k = 3
    mixing = TokenMixing(4, kernel_size=k, token_expansion=2)
    x = torch.randn(1, 30, 4)
    x2 = x.clone()
    x2[0, 15] += torch.randn(4)  # not a constant: LayerNorm removes those
    changed = (mixing(x2) - mixing(x)).abs().sum(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == list(
        range(15 - (k - 1), 15 + (k - 1) + 1)
    )
    with pytest.raises(ValueError, match="odd"):
        TokenMixing(4, kernel_size=4)


def test_mixer_block_residual_and_mask():
    torch.manual_seed(0)
    block = MixerBlock(8, kernel_size=3)
    x = torch.randn(2, 10, 8)
    mask = torch.ones(2, 10, 1)
    mask[1, 4:] = 0
    out = block(x, mask)
    assert (out[1, 4:] == 0).all()
    # Without a mask: x + token(x), then + channel(.)
    y = x + block.token_mixing(x)
    torch.testing.assert_close(block(x), y + block.channel_mixing(y))


def test_front_end_inputs_are_checked():
    model = MixerSpeaker(**SMALL)
    with pytest.raises(ValueError, match="front_end: conv"):
        model(torch.randn(2, 16000))
    with pytest.raises(ValueError, match=r"\[batch, frames, 20\]"):
        model(torch.randn(2, 50, 40))
    with pytest.raises(ValueError, match="front_end must be one of"):
        MixerSpeaker("mfcc")
    conv = MixerSpeaker("conv", **SMALL)
    with pytest.raises(ValueError, match="FrontEndFeatures"):
        conv(torch.randn(2, 100, 20))
    with pytest.raises(ValueError, match="lengths has 3 entries"):
        model(torch.randn(2, 50, 20), torch.ones(3))


def test_front_end_features_and_normalization():
    from speechbrain.lobes.features import Fbank

    wavs = torch.randn(2, 8000)
    lengths = torch.tensor([1.0, 0.5])
    torch.testing.assert_close(
        FrontEndFeatures("fbank", n_mels=24)(wavs), Fbank(n_mels=24)(wavs)
    )
    assert isinstance(FrontEndFeatures("conv").features, RawWaveform)
    feats = torch.randn(2, 30, 5)
    norm = FrontEndNormalization("fbank")(feats, lengths)
    torch.testing.assert_close(norm[1, :15].mean(0), torch.zeros(5))
    out = FrontEndNormalization("conv")(wavs, lengths)
    torch.testing.assert_close(
        out, WaveformNormalization(normalize=True)(wavs, lengths)
    )
    assert (out[1, 4000:] == 0).all()
    torch.testing.assert_close(out[1, :4000].mean(), torch.tensor(0.0))
    torch.testing.assert_close(
        out[1, :4000].std(unbiased=False), torch.tensor(1.0), atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="front_end must be one of"):
        FrontEndFeatures("mfcc")
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        RawWaveform()(torch.randn(2, 3, 4))


# -------------------------------------------------------------- complexity


def macs(model, x):
    return count_macs(model, x)


def test_count_macs_counts_attention():
    """Analytic MACs of a Transformer layer, fused kernels or not."""
    d, t = 16, 30
    layer = torch.nn.TransformerEncoderLayer(d, 4, 64, batch_first=True)
    x = torch.randn(1, t, d)
    linears = t * (4 * d * d + 2 * d * 64)
    assert count_macs(layer, x) == linears + 2 * t * t * d
    # The plain counter misses the fused inference path entirely
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer.eval()(x)
    assert counter.get_total_flops() == 0


def test_mixer_is_linear_in_time_and_smaller_than_a_transformer():
    torch.manual_seed(0)
    kwargs = dict(input_size=20, dim=32, num_blocks=4, emb_dim=8)
    mixer = MixerSpeaker(**kwargs)
    transformer = TransformerSpeaker(num_heads=4, **kwargs)
    n_mixer = sum(p.numel() for p in mixer.blocks.parameters())
    n_trans = sum(p.numel() for p in transformer.blocks.parameters())
    assert n_mixer < 0.6 * n_trans
    # Doubling the frames doubles the Mixer's MACs (token mixing is
    # convolutional); attention makes the Transformer's grow faster.
    short, long = torch.randn(1, 400, 20), torch.randn(1, 800, 20)
    assert macs(mixer, long) / macs(mixer, short) == pytest.approx(2, 0.01)
    assert macs(transformer, long) / macs(transformer, short) > 2.1


# ------------------------------------------------------------ hidden loss


def test_hidden_state_loss_hand_values():
    # utterance 0: frames (s, t) = ([3, 4], [3, 4]) and ([1, 0], [0, 1]);
    # utterance 1: one valid frame ([2, 0], [-2, 0]), one padded (garbage)
    s = torch.tensor(
        [[[3.0, 4.0], [1.0, 0.0]], [[2.0, 0.0], [5.0, 5.0]]],
    )
    t = torch.tensor(
        [[[3.0, 4.0], [0.0, 1.0]], [[-2.0, 0.0], [-9.0, 1.0]]],
    )
    lengths = torch.tensor([1.0, 0.5])

    def nls(c):  # -log sigmoid(cos)
        return math.log(1 + math.exp(-c))

    l1_expected = ((0 + 1) / 2 + 2) / 2
    cos_expected = ((nls(1) + nls(0)) / 2 + nls(-1)) / 2
    l1, cos = hidden_state_terms(s, t, lengths)
    torch.testing.assert_close(l1, torch.tensor(l1_expected))
    torch.testing.assert_close(cos, torch.tensor(cos_expected))
    torch.testing.assert_close(
        hidden_state_loss(s, t, lengths, cos_weight=0.5),
        torch.tensor(l1_expected + 0.5 * cos_expected),
    )
    # Padded frames never count, even when not finite
    s2 = s.clone()
    s2[1, 1] = float("nan")
    torch.testing.assert_close(
        hidden_state_loss(s2, t, lengths), hidden_state_loss(s, t, lengths)
    )
    with pytest.raises(ValueError, match="equal shape"):
        hidden_state_loss(s, t[:, :1])


def test_align_frames_equals_interpolation_of_the_valid_frames():
    torch.manual_seed(0)
    x = torch.randn(3, 101, 4)
    lengths = torch.tensor([1.0, 0.63, 0.3])
    out = align_frames(x, 49, lengths)
    assert out.shape == (3, 49, 4)
    for b in range(3):
        n = round(float(lengths[b]) * 101)
        m = round(float(lengths[b]) * 49)
        ref = F.interpolate(
            x[b : b + 1, :n].transpose(1, 2),
            size=m,
            mode="linear",
            align_corners=False,
        ).transpose(1, 2)[0]
        torch.testing.assert_close(out[b, :m], ref)
        assert (out[b, m:] == 0).all()
    # Padded input frames are never read
    x2 = x.clone()
    x2[2, 40:] = float("nan")
    torch.testing.assert_close(align_frames(x2, 49, lengths)[2], out[2])
    # Upsampling too; same count: unchanged
    assert align_frames(x, 150, lengths).shape == (3, 150, 4)
    assert align_frames(x, 101, lengths) is x


def hidden_term(**kwargs):
    return HiddenStateDistillation(
        pairs=[
            {"student": "low", "teacher": "low"},
            {"student": "high", "teacher": "high"},
        ],
        student_dim=6,
        teacher_dim=10,
        **kwargs,
    )


def test_hidden_distillation_value_gradients_and_stats():
    torch.manual_seed(0)
    loss = hidden_term(cos_weight=0.5)
    lengths = torch.tensor([1.0, 0.6])
    taps = {
        "student_low": torch.randn(2, 100, 6, requires_grad=True),
        "student_high": torch.randn(2, 100, 6, requires_grad=True),
        "teacher_low": torch.randn(2, 49, 10, requires_grad=True),
        "teacher_high": torch.randn(2, 49, 10, requires_grad=True),
    }
    value = loss(lengths, **taps)
    expected = 0
    for head, name in zip(loss.heads, ("low", "high")):
        pred = align_frames(head(taps[f"student_{name}"]), 49, lengths)
        expected += hidden_state_loss(
            pred, taps[f"teacher_{name}"], lengths, 0.5
        )
    torch.testing.assert_close(value, expected / 2)
    value.backward()
    # The heads and the student train; the teacher is a fixed target
    for head in loss.heads:
        assert head.weight.grad.abs().sum() > 0
    assert taps["student_low"].grad.abs().sum() > 0
    assert taps["teacher_low"].grad is None
    # Padded student frames (beyond 60 of 100) get no gradient
    grad = taps["student_high"].grad
    assert grad[1, 60:].abs().sum() == 0 and grad[1, :60].abs().sum() > 0
    stats = loss.epoch_stats()
    assert set(stats) == {"low_l1", "low_cos", "high_l1", "high_cos"}
    assert loss.epoch_stats() == {}


def test_hidden_epoch_stats_exact_without_host_sync():
    """The epoch means are those of the Python-float sums (bit for bit),
    and the training forward reads no tensor on the host."""
    from test_dynamic import NoHostSync

    from speechbrain_kd.objectives.hidden import hidden_state_terms

    torch.manual_seed(0)
    loss = hidden_term(cos_weight=0.5)
    lengths = torch.tensor([1.0, 0.6])
    sums = {}
    for step in range(5):
        taps = {
            f"{side}_{name}": torch.randn(2, frames, dim)
            for name, frames in (("low", 49), ("high", 100))
            for side, dim in (("student", 6), ("teacher", 10))
        }
        with NoHostSync():
            loss(lengths, **taps)
        for head, name in zip(loss.heads, ("low", "high")):
            pred = head(taps[f"student_{name}"])
            pred = align_frames(pred, taps[f"teacher_{name}"].shape[1], lengths)
            l1, cos = hidden_state_terms(pred, taps[f"teacher_{name}"], lengths)
            for key, value in ((f"{name}_l1", l1), (f"{name}_cos", cos)):
                sums[key] = sums.get(key, 0.0) + float(value.detach())
    assert loss.epoch_stats() == {k: v / 5 for k, v in sums.items()}
    assert loss.epoch_stats() == {}


def test_hidden_distillation_errors():
    loss = hidden_term()
    good = {
        "student_low": torch.randn(2, 50, 6),
        "student_high": torch.randn(2, 50, 6),
        "teacher_low": torch.randn(2, 49, 10),
        "teacher_high": torch.randn(2, 49, 10),
    }
    with pytest.raises(KeyError, match="student_taps"):
        loss(None, **{k: v for k, v in good.items() if k != "student_high"})
    with pytest.raises(ValueError, match="teacher_dim is 10"):
        loss(None, **dict(good, teacher_low=torch.randn(2, 49, 12)))
    with pytest.raises(ValueError, match="align: interpolate"):
        hidden_term(align="none")(None, **good)
    with pytest.raises(ValueError, match="align must be one of"):
        hidden_term(align="dtw")
    with pytest.raises(ValueError, match=r"pairs\[0\]"):
        HiddenStateDistillation([{"student": "a"}], 4, 4)
    with pytest.raises(ValueError, match="non-empty list"):
        HiddenStateDistillation([], 4, 4)
    # Channels-first student layers ([batch, channels, time]) give the same
    cf = hidden_term(student_channels_first=True)
    cf.load_state_dict(loss.state_dict())
    transposed = {
        k: v.transpose(1, 2) if k.startswith("student") else v
        for k, v in good.items()
    }
    torch.testing.assert_close(cf(None, **transposed), loss(None, **good))


# ------------------------------------------------------------------- YAML


def load_yaml(name, **overrides):
    from hyperpyyaml import load_hyperpyyaml

    with open(RECIPE / "hparams" / f"{name}.yaml") as f:
        return load_hyperpyyaml(f, {"data_folder": "unused", **overrides})


def test_wavlm_mixer_yaml_terms_and_taps():
    hp = load_yaml("wavlm_mixer")
    model = hp["embedding_model"]
    assert isinstance(model, MixerSpeaker) and len(model.blocks) == 6
    assert hp["teacher_taps"] == {
        "low": "wavlm.encoder.layers.3",
        "mid": "wavlm.encoder.layers.7",
        "high": "wavlm.encoder.layers.11",
    }
    assert hp["student_taps"]["high"] == "blocks.5"
    terms = build_terms(hp["distill_terms"], provided_inputs(hp))
    assert [t.name for t in terms] == ["hidden", "trkd"]
    assert {"student_low", "teacher_high", "lengths"} <= set(terms[0].inputs)
    # Student taps of the YAML, teacher frames at WavLM's 50 Hz (49 per s):
    # a finite loss whose gradient reaches the student and the heads.
    taps = LayerTaps(model, hp["student_taps"])
    wavs = torch.randn(2, 16000)
    lengths = torch.tensor([1.0, 0.7])
    feats = hp["mean_var_norm"](hp["compute_features"](wavs), lengths)
    emb = model(feats, lengths)
    available = {f"student_{k}": v for k, v in taps.pop().items()}
    assert available["student_low"].shape == (2, 50, 192)
    for alias in ("low", "mid", "high"):
        available[f"teacher_{alias}"] = torch.randn(2, 49, 768)
    available.update(
        lengths=lengths,
        student_logits=torch.randn(2, 269, requires_grad=True),
        teacher_logits=torch.randn(2, 269),
        targets=torch.tensor([0, 5]),
        tau=0.5,
    )
    total = sum(t.weight * t(available) for t in terms)
    assert torch.isfinite(total)
    (total + emb.sum() * 0).backward()
    assert model.blocks[0].channel_mixing.fc1.weight.grad.abs().sum() > 0
    assert terms[0].fn.heads[0].weight.grad.abs().sum() > 0
    # The conv front end is one override away
    conv = load_yaml("wavlm_mixer", front_end="conv", conv_channels=16)
    wav_feats = conv["mean_var_norm"](conv["compute_features"](wavs), lengths)
    assert wav_feats.shape == wavs.shape
    assert conv["embedding_model"](wav_feats, lengths).shape == (2, 1, 128)


def test_hidden_term_combines_with_logit_kd():
    hp = {"student_taps": {"low": "x"}, "teacher_taps": {"low": "y"}}
    loss = HiddenStateDistillation([("low", "low")], 4, 8)
    terms = build_terms(
        {
            "hidden": {"fn": loss, "weight": 2.0},
            "kd": {"fn": functools.partial(kd_loss, T=2.0), "weight": 0.5},
        },
        provided_inputs(hp),
    )
    assert terms[0].inputs == ["lengths", "student_low", "teacher_low"]
    assert terms[1].inputs == ["student_logits", "teacher_logits"]
