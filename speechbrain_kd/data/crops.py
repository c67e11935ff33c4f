"""Random training crops, reproducible and read from the file alone.

Crops are drawn from a generator seeded by ``(seed, epoch, example ID)``
(``crop_generator``), so they do not depend on the process, the
data-loading workers or an interruption. Only the crop is read from the
file (``load_random_crop``: a 3-s crop of a 60-s VoxCeleb file decodes
3 s, not 60), and it is the same tensor as cropping the whole segment
(``random_crop``) with the same generator.
"""

import hashlib

import torch

from speechbrain_kd.data.audio import audio_info, load_audio, segment_bounds


def crop_generator(seed, epoch, key):
    """A ``torch.Generator`` seeded from ``(seed, epoch, key)``.

    The same in every process and every run: the random crops of an
    example depend only on the seed, the epoch and the example's ID.

    Example
    -------
    >>> import torch
    >>> a = torch.rand(3, generator=crop_generator(1986, 2, "utt1"))
    >>> b = torch.rand(3, generator=crop_generator(1986, 2, "utt1"))
    >>> bool((a == b).all())
    True
    """
    text = f"{seed}:{epoch}:{key}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def random_crop(sig, num_samples, generator=None):
    """Random crop of ``num_samples`` (the whole signal if shorter).

    Example
    -------
    >>> random_crop(torch.arange(10.0), 4).shape
    torch.Size([4])
    >>> random_crop(torch.arange(3.0), 4).shape
    torch.Size([3])
    """
    if sig.shape[0] <= num_samples:
        return sig
    offset = torch.randint(
        0, sig.shape[0] - num_samples + 1, (1,), generator=generator
    ).item()
    return sig[offset : offset + num_samples]


def crop_segment(start, stop, num_samples, generator=None):
    """Bounds of a random crop of ``num_samples`` of ``[start, stop)``.

    The offset is drawn exactly as ``random_crop`` draws it (one
    ``torch.randint`` call, and none for a segment no longer than the
    crop, which is kept whole), so that reading only ``[crop_start,
    crop_stop)`` of a file gives the samples that ``random_crop`` of the
    whole loaded segment gives with the same generator state.

    Arguments
    ---------
    start, stop : int
        The segment, ``stop`` exclusive (``stop > start``).
    num_samples : int
        Length of the crop.
    generator : torch.Generator, optional
        Source of the offset (``crop_generator``).

    Returns
    -------
    tuple of int
        ``(crop_start, crop_stop)``, inside ``[start, stop)``.

    Example
    -------
    >>> sig = torch.arange(100.0)
    >>> a, b = crop_segment(10, 90, 30, torch.Generator().manual_seed(0))
    >>> b - a
    30
    >>> old = random_crop(sig[10:90], 30, torch.Generator().manual_seed(0))
    >>> bool((sig[a:b] == old).all())
    True
    >>> crop_segment(10, 30, 30)
    (10, 30)
    """
    start, stop = int(start), int(stop)
    length = stop - start
    if length <= num_samples:
        return start, stop
    offset = torch.randint(
        0, length - num_samples + 1, (1,), generator=generator
    ).item()
    return start + offset, start + offset + num_samples


def load_random_crop(
    path,
    start,
    stop,
    num_samples,
    generator=None,
    sample_rate=16000,
    resample=False,
    downmix=True,
):
    """``random_crop(load_audio(path, start, stop), num_samples)``, reading
    only the crop.

    At the file's own rate only ``crop_segment``'s bounds are read and
    decoded (a 3-s crop of a 60-s file reads 3 s), and the result is the
    same tensor, bit for bit, as loading the whole segment and cropping
    it with the same generator. A file at another rate (``resample``) is
    loaded whole, resampled and cropped at ``sample_rate``, as before.

    Arguments
    ---------
    path : str
        Audio file.
    start, stop : int
        Segment in samples of the file's rate, ``stop`` exclusive; ``stop``
        None (or ``<= start``) is the end of the file.
    num_samples : int
        Length of the crop at ``sample_rate`` (a shorter segment is whole).
    generator : torch.Generator, optional
        Source of the offset (``crop_generator``).
    sample_rate, resample, downmix
        As ``load_audio``.

    Returns
    -------
    torch.Tensor
        ``[min(num_samples, segment length)]`` float32.

    Example
    -------
    >>> import os, numpy, soundfile
    >>> path = os.path.join(getfixture("tmpdir"), "c.wav")
    >>> soundfile.write(path, numpy.linspace(-1, 1, 16000), 16000)
    >>> g = crop_generator(0, 1, "c")
    >>> crop = load_random_crop(path, 0, 16000, 4000, g)
    >>> old = random_crop(load_audio(path), 4000, crop_generator(0, 1, "c"))
    >>> crop.shape, bool((crop == old).all())
    (torch.Size([4000]), True)
    """
    path = str(path)
    opts = dict(sample_rate=sample_rate, resample=resample, downmix=downmix)
    info = audio_info(path)
    if info.samplerate != sample_rate:  # load_audio refuses it or resamples
        sig = load_audio(path, start, stop, info=info, **opts)
        return random_crop(sig, num_samples, generator=generator)
    start, stop = segment_bounds(path, info, start, stop)
    start, stop = crop_segment(start, stop, num_samples, generator)
    return load_audio(path, start, stop, info=info, **opts)
