"""Waveform augmentation of training batches, as SpeechBrain's speaker recipes.

``build_augmenter`` makes the recipe's ``wav_augment`` (an ``Augmenter``
of noise, reverberation and, with them, ``DropFreq`` / ``DropChunk``) from
the YAML, ``data_free_augmenter`` one of augmentations that need no
recordings (speed, dropped bands and chunks, white noise:
``hparams/augment/data_free.yaml``); ``augment_batch`` applies it to a
training batch before teacher and student see it
(``speechbrain_kd.brain.SpeakerBrain``).
"""

import os

from speechbrain.dataio.batch import PaddedData


def build_augmenter(
    noise_csv=None,
    rir_csv=None,
    add_noise=None,
    add_reverb=None,
    extra=(),
    augmenter=None,
):
    """SpeechBrain's speaker-recipe waveform augmentation, or None.

    Arguments
    ---------
    noise_csv, rir_csv : str, optional
        CSVs of noise recordings / room impulse responses, as
        ``speechbrain.augment.preparation.prepare_csv`` writes them. With
        neither, augmentation is off (None).
    add_noise, add_reverb : callable
        ``AddNoise`` / ``AddReverb`` partials (``!name:``); the CSV is
        passed as ``csv_file``.
    extra : sequence
        Augmentations that need no data (``DropFreq``, ``DropChunk``),
        used only when a CSV is given.
    augmenter : callable
        An ``Augmenter`` partial; all augmentations are applied (in
        parallel, with ``parallel_augment``).

    Returns
    -------
    speechbrain.augment.augmenter.Augmenter or None
    """
    if not noise_csv and not rir_csv:
        return None
    augmentations = []
    for csv_path, make, key in (
        (noise_csv, add_noise, "noise_csv"),
        (rir_csv, add_reverb, "rir_csv"),
    ):
        if not csv_path:
            continue
        if not os.path.isfile(csv_path):
            raise FileNotFoundError(
                f"{key} {csv_path!r} does not exist (a CSV of audio files, "
                "see speechbrain.augment.preparation.prepare_csv)"
            )
        augmentations.append(make(csv_file=csv_path))
    augmentations += list(extra or ())
    n = len(augmentations)
    return augmenter(
        augmentations=augmentations, min_augmentations=n, max_augmentations=n
    )


def data_free_augmenter(enabled, augmentations, augmenter):
    """An ``Augmenter`` of augmentations that need no recordings, or None.

    Each training batch goes through a random subset of ``augmentations``
    (at least one, in sequence, with the augmenter's options), so a batch
    costs one forward pass, unlike the parallel, concatenated scheme of
    ``build_augmenter``.

    Arguments
    ---------
    enabled : bool
        False: no augmentation (None).
    augmentations : sequence
        Waveform augmentations (``SpeedPerturb``, ``DropFreq``,
        ``DropChunk``, ``AddNoise`` without a CSV: white noise).
    augmenter : callable
        An ``Augmenter`` partial.

    Returns
    -------
    speechbrain.augment.augmenter.Augmenter or None

    Example
    -------
    >>> import torch
    >>> from functools import partial
    >>> from speechbrain.augment.augmenter import Augmenter
    >>> from speechbrain.augment.time_domain import DropChunk
    >>> aug = data_free_augmenter(
    ...     True, [DropChunk(drop_length_low=10, drop_length_high=20)],
    ...     partial(Augmenter, parallel_augment=False,
    ...             concat_original=False))
    >>> aug(torch.ones(2, 1000), torch.ones(2))[0].shape
    torch.Size([2, 1000])
    >>> data_free_augmenter(False, [], None) is None
    True
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"augment: expected True or False, got {enabled!r}")
    if not enabled:
        return None
    augmentations = list(augmentations)
    if not augmentations:
        raise ValueError("augment: True, but no augmentations are given")
    return augmenter(
        augmentations=augmentations,
        min_augmentations=1,
        max_augmentations=len(augmentations),
    )


def augment_batch(batch, augment):
    """``batch`` with its waveforms augmented and its labels replicated.

    With ``concat_original`` and parallel augmentations the ``Augmenter``
    returns more waveforms than it was given; the speaker labels
    (``spk_id_encoded``) are replicated to match, as in SpeechBrain's
    ECAPA recipe. The batch is changed in place and returned.

    Arguments
    ---------
    batch : speechbrain.dataio.batch.PaddedBatch
        With ``sig`` and ``spk_id_encoded``, on the model's device.
    augment : speechbrain.augment.augmenter.Augmenter
        The augmentation.

    Returns
    -------
    speechbrain.dataio.batch.PaddedBatch
    """
    wavs, lens = batch.sig
    wavs, lens = augment(wavs, lens)
    labels, label_lens = batch.spk_id_encoded
    batch.sig = PaddedData(wavs, lens)
    batch.spk_id_encoded = PaddedData(
        augment.replicate_labels(labels),
        augment.replicate_labels(label_lens),
    )
    return batch
