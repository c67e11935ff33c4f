"""WavLM speaker encoder: a (frozen) WavLM, a learned weighted sum of its
hidden layers and a speaker head.

The self-supervised teacher of the WavLM -> MLP-Mixer distillation
(``recipes/MiniSpeakers/hparams/teacher_wavlm.yaml``,
``wavlm_mixer.yaml``). WavLM comes from Hugging Face ``transformers``
(``WavLMModel.from_pretrained``): a local folder written by
``save_pretrained`` or a hub id, ``microsoft/wavlm-base-plus`` (768-d, 12
layers, 95 M parameters) or ``microsoft/wavlm-large`` (1024-d, 24 layers,
316 M). ``transformers`` is an optional dependency::

    pip install speechbrain_kd[hf]

As in SUPERB's speaker verification set-up, the speaker head reads a
softmax-weighted sum of all the hidden states (the CNN/positional output
and every Transformer layer), whose weights are trained with the head
while WavLM stays frozen.

``WavLMEncoder`` takes ``(wavs, lengths=None)`` and returns
``[batch, 1, emb_dim]``: it is the ``embedding_model`` of a SpeechBrain
speaker folder whose ``compute_features`` / ``mean_var_norm`` are
``speechbrain_kd.lobes.waveform.RawWaveform`` / ``WaveformNormalization``,
so ``train_teacher.py`` trains and publishes it and ``FrozenTeacher``
loads it like any teacher. Its Transformer layers are tapped for
hidden-state distillation by their module paths,
``wavlm.encoder.layers.<i>`` (``teacher_taps``; ``speechbrain_kd.taps``
keeps the first element of the ``(hidden_states, position_bias)`` tuple
those layers return: ``[batch, frames, hidden]`` at 50 Hz, the output of
layer ``i``, i.e. Hugging Face's ``hidden_states[i + 1]``).

Padding: the attention mask follows ``lengths``. WavLM Large (LayerNorm
feature encoder) then gives each utterance of a padded batch its own
output; WavLM Base / Base+ normalise their first convolution over the whole
padded waveform (GroupNorm), so padding changes their outputs slightly, as
in ``transformers`` itself.
"""

import os
import warnings

import torch

from speechbrain_kd.frames import valid_counts
from speechbrain_kd.lobes.heads import SpeakerHead

INSTALL_HINT = (
    "WavLM needs Hugging Face transformers: pip install speechbrain_kd[hf] "
    "(or pip install 'transformers>=4.40')"
)


def import_transformers():
    """The ``transformers`` module, or an ImportError naming the extra."""
    try:
        import transformers
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return transformers


def load_wavlm(source, **kwargs):
    """``transformers.WavLMModel.from_pretrained(source)``, with an error
    naming ``source`` when it cannot be loaded.

    Arguments
    ---------
    source : str
        A local folder written by ``save_pretrained`` (``config.json`` and
        the weights) or a hub id such as ``microsoft/wavlm-base-plus``.
    **kwargs
        Passed to ``from_pretrained`` (``revision``, ``cache_dir``...).
    """
    transformers = import_transformers()
    source = str(source)
    looks_local = source.startswith((".", "/", "~")) or os.path.isdir(source)
    if looks_local and not os.path.isfile(
        os.path.join(os.path.expanduser(source), "config.json")
    ):
        raise FileNotFoundError(
            f"WavLMEncoder: source {source!r} is not a folder with a WavLM "
            "config.json (write one with WavLMModel.save_pretrained, or give "
            "a hub id such as microsoft/wavlm-base-plus)"
        )
    try:
        return transformers.WavLMModel.from_pretrained(
            os.path.expanduser(source) if looks_local else source, **kwargs
        )
    except (OSError, ValueError) as e:
        raise OSError(
            f"WavLMEncoder: cannot load WavLM from source={source!r} (a "
            "local save_pretrained folder, or a hub id such as "
            "microsoft/wavlm-base-plus / microsoft/wavlm-large, which needs "
            f"network access the first time): {e}"
        ) from e


class WavLMEncoder(torch.nn.Module):
    """WavLM + learned weighted sum of its hidden states + speaker head.

    Arguments
    ---------
    source : str
        WavLM to load (see ``load_wavlm``): local folder or hub id.
    head : torch.nn.Module, optional
        Speaker head taking ``([batch, frames, hidden], lengths)`` and
        returning ``[batch, 1, emb_dim]``, e.g. SpeechBrain's
        ``ECAPA_TDNN(input_size=hidden)``. Default: ``SpeakerHead``
        (attentive statistics pooling + BatchNorm + linear).
    emb_dim : int
        Embedding dimension of the default head.
    attention_channels : int
        Attention bottleneck of the default head.
    freeze : bool
        WavLM stays in eval mode (no dropout, no SpecAugment masking)
        without gradients; only the layer weights and the head train.
    freeze_feature_encoder : bool
        With ``freeze=False``: keep the convolutional feature encoder
        frozen (the usual fine-tuning set-up).
    weighted_sum : bool
        Learned softmax-weighted sum of all hidden states (True) or the
        last hidden state only.
    **load_kwargs
        Passed to ``WavLMModel.from_pretrained``.

    Example
    -------
    >>> import torch
    >>> from transformers import WavLMConfig, WavLMModel
    >>> path = str(getfixture("tmpdir") / "wavlm")
    >>> WavLMModel(WavLMConfig(
    ...     hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
    ...     intermediate_size=32, conv_dim=(8,) * 7,
    ...     num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
    ... )).save_pretrained(path)
    >>> model = WavLMEncoder(path, emb_dim=8)
    >>> model.layer_weights.shape
    torch.Size([3])
    >>> model(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 1, 8])
    """

    def __init__(
        self,
        source,
        head=None,
        emb_dim=192,
        attention_channels=128,
        freeze=True,
        freeze_feature_encoder=True,
        weighted_sum=True,
        **load_kwargs,
    ):
        super().__init__()
        self.source = str(source)
        self.wavlm = load_wavlm(source, **load_kwargs)
        config = self.wavlm.config
        self.hidden_size = config.hidden_size
        self.num_layers = config.num_hidden_layers
        self.freeze = bool(freeze)
        self.weighted_sum = bool(weighted_sum)
        if self.freeze:
            self.wavlm.eval()
            self.wavlm.requires_grad_(False)
        elif freeze_feature_encoder:
            self.wavlm.freeze_feature_encoder()
        self.layer_weights = torch.nn.Parameter(
            torch.zeros(self.num_layers + 1), requires_grad=self.weighted_sum
        )
        if head is None:
            head = SpeakerHead(self.hidden_size, emb_dim, attention_channels)
        self.head = head

    def train(self, mode=True):
        """``Module.train``; a frozen WavLM stays in eval mode."""
        super().train(mode)
        if self.freeze:
            self.wavlm.eval()
        return self

    def frame_counts(self, lengths, num_samples, batch_size):
        """Valid samples and WavLM frames of a padded batch."""
        samples = valid_counts(lengths, num_samples, batch_size)
        frames = self.wavlm._get_feat_extract_output_lengths(samples)
        return samples, frames.clamp(min=1)

    def hidden_states(self, wavs, lengths=None):
        """WavLM's hidden states and the valid frame counts.

        Returns
        -------
        hidden : tuple of torch.Tensor
            ``num_layers + 1`` tensors ``[batch, frames, hidden]``.
        frames : torch.Tensor
            ``[batch]`` valid frames.
        """
        if wavs.dim() != 2:
            raise ValueError(
                "WavLMEncoder expects [batch, samples] waveforms, got shape "
                f"{tuple(wavs.shape)} (its compute_features must be "
                "speechbrain_kd.lobes.waveform.RawWaveform, not Fbank)"
            )
        samples, frames = self.frame_counts(
            lengths, wavs.shape[1], wavs.shape[0]
        )
        samples = samples.to(wavs.device)
        attention_mask = None
        if lengths is not None:
            steps = torch.arange(wavs.shape[1], device=wavs.device)
            attention_mask = (steps < samples.unsqueeze(1)).long()
        context = torch.no_grad() if self.freeze else torch.enable_grad()
        with context, warnings.catch_warnings():
            # torch's attention warns about WavLM's mixed mask types
            warnings.filterwarnings(
                "ignore", message="Support for mismatched key_padding_mask"
            )
            out = self.wavlm(
                wavs,
                attention_mask=attention_mask,
                output_hidden_states=True,
            )
        return out.hidden_states, frames.to(wavs.device)

    def forward(self, wavs, lengths=None):
        """Embeddings ``[batch, 1, emb_dim]`` of ``[batch, samples]``."""
        hidden, frames = self.hidden_states(wavs, lengths)
        if self.weighted_sum:
            weights = torch.softmax(self.layer_weights, dim=0)
            x = (torch.stack(hidden, dim=0) * weights.view(-1, 1, 1, 1)).sum(0)
        else:
            x = hidden[-1]
        rel = frames.to(x.dtype) / x.shape[1]
        try:
            if isinstance(self.head, SpeakerHead):
                return self.head(x, counts=frames)
            return self.head(x, rel)
        except RuntimeError as e:
            if "size" not in str(e) and "shape" not in str(e):
                raise
            raise RuntimeError(
                f"WavLMEncoder: the speaker head failed on WavLM frames of "
                f"{self.hidden_size} channels ({self.source}); its input size "
                "must be the WavLM hidden size (wavlm_dim in the YAML: 768 "
                f"for wavlm-base-plus, 1024 for wavlm-large): {e}"
            ) from e
