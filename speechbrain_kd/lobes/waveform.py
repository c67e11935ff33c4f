"""Raw-waveform stand-ins for the ``compute_features`` / ``mean_var_norm``
modules of a SpeechBrain speaker model.

SpeechBrain's ``EncoderClassifier`` (and ``KDBrain``) run every model as
``compute_features(wavs)`` -> ``mean_var_norm(feats, lengths)`` ->
``embedding_model(feats, lengths)``. A model that reads the waveform itself
(a WavLM teacher, a student with a convolutional feature encoder) uses
``RawWaveform`` and ``WaveformNormalization`` for the first two steps, so
that its pretrained folder loads with ``EncoderClassifier.from_hparams``
like any Fbank model and the recipe scripts need no raw-waveform path.
"""

import torch

from speechbrain_kd.frames import frame_mask


class RawWaveform(torch.nn.Module):
    """``compute_features`` of a raw-waveform model: the waveform itself.

    Example
    -------
    >>> import torch
    >>> wavs = torch.randn(2, 16000)
    >>> bool((RawWaveform()(wavs) == wavs).all())
    True
    """

    def forward(self, wavs):
        """``[batch, samples]`` float waveforms, unchanged."""
        if wavs.dim() != 2:
            raise ValueError(
                "RawWaveform expects [batch, samples] waveforms, got shape "
                f"{tuple(wavs.shape)}"
            )
        return wavs.float()


class WaveformNormalization(torch.nn.Module):
    """``mean_var_norm`` of a raw-waveform model.

    Zeroes the padding of each waveform (``lengths``, SpeechBrain's
    relative lengths; ``round(length * samples)`` valid samples) and, with
    ``normalize=True``, scales the valid samples to zero mean and unit
    variance, as Hugging Face's ``Wav2Vec2FeatureExtractor(do_normalize=
    True)`` does for ``microsoft/wavlm-large`` (``wavlm-base-plus`` is
    trained on unnormalised audio: ``normalize=False``).

    Arguments
    ---------
    normalize : bool
        Per-utterance mean and variance normalisation of the valid samples.
    eps : float
        Added to the variance.

    Example
    -------
    >>> import torch
    >>> wavs = torch.tensor([[1.0, 3.0, 5.0, 7.0], [2.0, 4.0, 9.0, 9.0]])
    >>> WaveformNormalization()(wavs, torch.tensor([1.0, 0.5]))
    tensor([[-1.3416, -0.4472,  0.4472,  1.3416],
            [-1.0000,  1.0000,  0.0000,  0.0000]])
    >>> WaveformNormalization(normalize=False)(wavs, torch.tensor([1.0, 0.5]))
    tensor([[1., 3., 5., 7.],
            [2., 4., 0., 0.]])
    """

    def __init__(self, normalize=True, eps=1e-7):
        super().__init__()
        self.normalize = bool(normalize)
        self.eps = eps

    def forward(self, wavs, lengths=None):
        """``[batch, samples]`` waveforms, padding zeroed (and normalised)."""
        if wavs.dim() != 2:
            raise ValueError(
                "WaveformNormalization expects [batch, samples] waveforms, "
                f"got shape {tuple(wavs.shape)}"
            )
        mask = frame_mask(lengths, wavs.shape[1]).to(wavs.device)
        mask = mask.expand_as(wavs)
        wavs = torch.where(mask, wavs, torch.zeros_like(wavs))
        if self.normalize:
            count = mask.sum(1, keepdim=True).to(wavs.dtype)
            mean = wavs.sum(1, keepdim=True) / count
            var = (((wavs - mean) * mask) ** 2).sum(1, keepdim=True) / count
            wavs = (wavs - mean) / torch.sqrt(var + self.eps)
            wavs = torch.where(mask, wavs, torch.zeros_like(wavs))
        return wavs
