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

    Returns ``(crop_start, crop_stop)``. The offset is one ``torch.randint``
    draw from ``generator``, as in ``random_crop`` (none when the segment is
    no longer than the crop: it is kept whole), so these bounds select the
    samples ``random_crop`` of ``[start, stop)`` gives at the same state.

    Example
    -------
    >>> sig = torch.arange(100.0)
    >>> a, b = crop_segment(10, 90, 30, torch.Generator().manual_seed(0))
    >>> ref = random_crop(sig[10:90], 30, torch.Generator().manual_seed(0))
    >>> b - a, bool((sig[a:b] == ref).all())
    (30, True)
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

    At the file's own rate only ``crop_segment``'s bounds are decoded, and
    the result is bit for bit the cropped whole segment (same generator). A
    file at another rate (``resample``) is loaded whole, resampled and
    cropped at ``sample_rate``. ``start``/``stop`` are in samples of the
    file's rate, ``num_samples`` at ``sample_rate``; ``sample_rate``,
    ``resample`` and ``downmix`` are as in ``load_audio``. Returns
    ``[min(num_samples, segment length)]`` float32.

    Example
    -------
    >>> import os, numpy, soundfile
    >>> path = os.path.join(getfixture("tmpdir"), "c.wav")
    >>> soundfile.write(path, numpy.linspace(-1, 1, 16000), 16000)
    >>> crop = load_random_crop(path, 0, 16000, 4000, crop_generator(0, 1, "c"))
    >>> ref = random_crop(load_audio(path), 4000, crop_generator(0, 1, "c"))
    >>> crop.shape, bool((crop == ref).all())
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
