"""Training views: a fixed set of V crops per training segment.

A *view* of a training segment is everything that decides the student's
input: here the crop (offset and length). With ``train_views: V`` in a
recipe YAML, segment ``key`` has V views, view ``v`` being the crop drawn
from ``view_generator(seed, v, key)``, and epoch ``e`` trains on view
``epoch_view(seed, e, key, V)``: deterministic in (seed, epoch, ID), the
same in every process and every run. The teacher cache
(``speechbrain_kd.teacher_cache``) stores the teacher's outputs once per
view, so that a student can train on exactly the inputs the teacher saw.

Batch-level waveform augmentation (SpeechBrain's ``Augmenter``: noise,
reverberation, speed, drops drawn for a whole batch from the global
random state) cannot be replayed per example, so it is not part of a view
and a cached run refuses it.
"""

import torch

from speechbrain_kd.data.crops import crop_generator, load_random_crop


def views_seed(hparams):
    """The seed the views are cropped with: ``views_seed``, else ``seed``.

    Example
    -------
    >>> views_seed({"seed": 1987, "views_seed": None}), views_seed(
    ...     {"seed": 1987, "views_seed": 1986})
    (1987, 1986)
    """
    if hparams.get("views_seed") is not None:
        return int(hparams["views_seed"])
    return int(hparams.get("seed", 0))


def view_generator(seed, view, key):
    """The ``torch.Generator`` of view ``view`` of segment ``key``."""
    return crop_generator(seed, f"view{int(view)}", key)


def load_view_crop(
    path,
    start,
    stop,
    num_samples,
    seed,
    view,
    key,
    sample_rate=16000,
    resample=False,
    downmix=True,
):
    """The crop of view ``view`` of segment ``key``, read from ``path``.

    ``load_random_crop`` with the generator ``view_generator(seed, view,
    key)``: the training set of ``dataio_prep`` (``train_views``) and the
    teacher cache (``speechbrain_kd.teacher_cache``) read a view through
    it, so both see the same samples.

    Arguments
    ---------
    path : str
        Audio file.
    start, stop : int
        Segment in samples of the file's rate, ``stop`` exclusive.
    num_samples : int
        Length of the crop at ``sample_rate`` (a shorter segment is whole).
    seed : int
        The views' seed (``views_seed``).
    view : int
        The view, in ``[0, train_views)``.
    key : str
        The segment ID.
    sample_rate, resample, downmix
        As ``load_audio``.

    Returns
    -------
    torch.Tensor
        ``[min(num_samples, segment length)]`` float32.
    """
    return load_random_crop(
        path,
        start,
        stop,
        num_samples,
        view_generator(seed, view, key),
        sample_rate=sample_rate,
        resample=resample,
        downmix=downmix,
    )


def epoch_view(seed, epoch, key, views):
    """The view, in ``[0, views)``, of segment ``key`` at epoch ``epoch``.

    Drawn from ``crop_generator(seed, f"pick{epoch}", key)``; raises
    ``ValueError`` if ``views < 1``.

    Example
    -------
    >>> v = [epoch_view(1986, e, "utt1", 8) for e in range(1, 6)]
    >>> v == [epoch_view(1986, e, "utt1", 8) for e in range(1, 6)]
    True
    >>> all(0 <= x < 8 for x in v)
    True
    """
    views = int(views)
    if views < 1:
        raise ValueError(f"train_views must be >= 1, got {views}")
    generator = crop_generator(seed, f"pick{int(epoch)}", key)
    return int(torch.randint(0, views, (1,), generator=generator))
