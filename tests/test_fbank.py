"""MatmulFbank == SpeechBrain's Fbank: features and ECAPA embeddings."""

import pytest
import torch
from speechbrain.lobes.features import Fbank

from speechbrain_kd.lobes.fbank import MatmulFbank, mel_matrix, split_size

pytestmark = pytest.mark.usefixtures("one_thread")


def real_audio(data_folder, num=4):
    """A few real utterances of the mini corpus (LibriSpeech, Arabic)."""
    from speechbrain_kd.data import load_audio

    files = sorted((data_folder / "librispeech-samples").rglob("*.flac"))
    files = (
        files[:2]
        + sorted((data_folder / "arabic-speech-commands").rglob("*.flac"))[
            : num - 2
        ]
    )
    return [load_audio(str(f)) for f in files]


def test_mel_matrix_equals_filterbank():
    sb = Fbank(n_mels=80).compute_fbanks
    f_c = sb.f_central.repeat(sb.all_freqs_mat.shape[1], 1).T
    band = sb.band.repeat(sb.all_freqs_mat.shape[1], 1).T
    ref = sb._create_fbank_matrix(f_c, band)
    assert torch.equal(mel_matrix(80, 400, 16000, 0, 8000), ref)


@pytest.mark.parametrize(
    "options",
    [{}, {"n_fft": 512}, {"win_length": 20}, {"hop_length": 12.5}],
    ids=["default", "n_fft512", "win20", "hop12.5"],
)
@pytest.mark.parametrize("n", [1, 159, 400, 16037, 48000])
def test_features_random(options, n):
    """Random input, odd lengths, several Fbank options: same shape, same
    values up to float32 rounding (dB)."""
    sb = Fbank(n_mels=80, **options)
    ours = MatmulFbank.from_fbank(sb)
    wav = 0.1 * torch.randn(3, n, generator=torch.Generator().manual_seed(n))
    ref, got = sb(wav), ours(wav)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-3


def test_features_real_audio_and_padding(data_folder):
    """Real speech, alone and zero-padded in a batch: each row equals
    SpeechBrain's features of the same padded row."""
    sb = Fbank(n_mels=80)
    ours = MatmulFbank.from_fbank(sb)
    wavs = real_audio(data_folder)
    for wav in wavs:
        diff = (ours(wav[None]) - sb(wav[None])).abs().max()
        assert diff < 1e-2, diff
    n = max(len(w) for w in wavs)
    batch = torch.zeros(len(wavs), n)
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    got, ref = ours(batch), sb(batch)
    assert got.shape == ref.shape
    # the loud part of the spectrum (within 60 dB of the maximum): where
    # float32 DFTs agree to ~1e-3 dB
    loud = ref > ref.amax(dim=(1, 2), keepdim=True) - 60
    assert (got - ref)[loud].abs().max() < 2e-3
    assert (got - ref).abs().max() < 1e-2


def test_embedding_parity(data_folder):
    """An ECAPA-TDNN on MatmulFbank features gives SpeechBrain's embedding
    within 1e-4 of its scale, real audio and a padded batch."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    torch.manual_seed(0)
    model = ECAPA_TDNN(80, channels=[32, 32, 32, 32, 96], lin_neurons=16)
    norm = InputNormalization(norm_type="sentence", std_norm=False)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model.eval()
    sb = Fbank(n_mels=80)
    ours = MatmulFbank.from_fbank(sb)
    wavs = real_audio(data_folder)
    n = max(len(w) for w in wavs)
    batch = torch.zeros(len(wavs), n)
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    lens = torch.tensor([len(w) / n for w in wavs])
    with torch.no_grad():
        ref = model(norm(sb(batch), lens), lens)
        got = model(norm(ours(batch), lens), lens)
    scale = max(1.0, ref.abs().max().item())
    assert (got - ref).abs().max() / scale < 1e-4


@pytest.mark.parametrize(
    "options, key",
    [
        ({"deltas": True}, "deltas"),
        ({"context": True}, "context"),
        ({"requires_grad": True}, "requires_grad"),
        ({"filter_shape": "gaussian"}, "filter_shape"),
        ({"param_rand_factor": 0.1}, "param_rand_factor"),
    ],
)
def test_unsupported_options(options, key):
    with pytest.raises(ValueError, match=key):
        MatmulFbank.from_fbank(Fbank(**options))
    with pytest.raises(ValueError, match=key):
        MatmulFbank(**options)


def test_other_errors():
    with pytest.raises(ValueError, match="unknown Fbank option 'dither'"):
        MatmulFbank(dither=1.0)
    with pytest.raises(ValueError, match="win_length <= n_fft"):
        MatmulFbank(win_length=30)
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        MatmulFbank()(torch.zeros(2, 1, 400))
    sb = Fbank()
    sb.compute_STFT.window = torch.hann_window(400)
    with pytest.raises(ValueError, match="Hamming"):
        MatmulFbank.from_fbank(sb)


def test_split_size():
    assert split_size(400) == (20, 20)
    assert split_size(512) == (16, 32)
    assert split_size(13) == (1, 13)
