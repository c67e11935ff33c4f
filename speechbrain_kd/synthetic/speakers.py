"""Synthetic speakers and utterances: sampling their settings, rendering.

A *speaker* is a fixed combination of an espeak voice variant, an English
accent, a base pitch, a pitch range, a speaking rate, a word gap and a
channel colouring (a short linear-phase FIR equaliser and a gain); no two
speakers share the discrete parameters (``sample_speakers``). Each
*utterance* jitters pitch, range, rate, equaliser tilt and level around its
speaker, reads its own English sentence and gets additive coloured noise at
a random SNR (``plan_utterances``, ``render_utterance``).
"""

import numpy as np

from speechbrain_kd.synthetic.dsp import (
    coloured_noise,
    make_eq,
    resample,
    tilt_fir,
)
from speechbrain_kd.synthetic.espeak import ACCENTS, VOICE_VARIANTS
from speechbrain_kd.synthetic.grammar import make_sentence

SAMPLE_RATE = 16000

# Grids of the discrete speaker parameters (espeak units: pitch and range
# 0-100, rate in words per minute, word gap in units of 10 ms).
PITCH_GRID = tuple(range(15, 90, 5))
RANGE_GRID = tuple(range(20, 100, 10))
RATE_GRID = tuple(range(130, 240, 10))
WORD_GAP_GRID = (0, 1, 2)


def speaker_key(spk):
    """The discrete parameters that must differ between two speakers."""
    return (
        spk["variant"],
        spk["accent"],
        spk["pitch"],
        spk["range"],
        spk["rate"],
        spk["word_gap"],
    )


def sample_speakers(num_speakers, seed):
    """Draws ``num_speakers`` speakers with pairwise distinct parameters.

    Speaker ``i`` depends only on ``seed`` and ``i``'s predecessors, so a
    larger corpus extends a smaller one. The discrete parameters (variant,
    accent, pitch, range, rate, word gap) allow about 3 million distinct
    speakers; a draw that repeats an earlier speaker is drawn again.

    Arguments
    ---------
    num_speakers : int
        Number of speakers.
    seed : int
        Seed of the draw.

    Returns
    -------
    list of dict
        One dict per speaker with ``spk_id``, ``variant``, ``accent``,
        ``voice``, ``pitch``, ``range``, ``rate``, ``word_gap``, ``eq``
        (FIR taps) and ``gain_db``.

    Example
    -------
    >>> spks = sample_speakers(1000, seed=1)
    >>> len({speaker_key(s) for s in spks})
    1000
    >>> spks[0]["spk_id"], spks[0] == sample_speakers(5, seed=1)[0]
    ('spk0000', True)
    """
    rng = np.random.default_rng([seed, 0x5BEA4E85])
    accents = list(ACCENTS)
    capacity = (
        len(VOICE_VARIANTS) * len(accents) * len(PITCH_GRID)
        * len(RANGE_GRID) * len(RATE_GRID) * len(WORD_GAP_GRID)
    )  # fmt: skip
    if num_speakers > capacity // 2:
        raise ValueError(
            f"At most {capacity // 2} synthetic speakers, asked {num_speakers}"
        )
    width = max(4, len(str(num_speakers - 1)))

    def pick(options):
        return options[int(rng.integers(len(options)))]

    speakers, seen = [], set()
    while len(speakers) < num_speakers:
        spk = dict(
            variant=pick(VOICE_VARIANTS),
            accent=pick(accents),
            pitch=pick(PITCH_GRID),
            range=pick(RANGE_GRID),
            rate=pick(RATE_GRID),
            word_gap=pick(WORD_GAP_GRID),
        )
        eq = make_eq(rng)
        gain_db = float(rng.uniform(-8.0, 0.0))
        if speaker_key(spk) in seen:
            continue
        seen.add(speaker_key(spk))
        spk["spk_id"] = f"spk{len(speakers):0{width}d}"
        spk["voice"] = f"{spk['accent']}+{spk['variant']}"
        spk["eq"] = [float(v) for v in eq]
        spk["gain_db"] = gain_db
        speakers.append(spk)
    return speakers


def _utterance_rng(seed, spk_index, utt_index, stream):
    return np.random.default_rng([seed, spk_index, utt_index, stream])


def plan_utterances(speaker, spk_index, num_utts, seed):
    """Draws the per-utterance settings of one speaker.

    Every utterance gets its own sentence (distinct within the speaker),
    jitters of pitch (+-2), range (+-4), rate (+-4 %), spectral tilt
    (+-1.5 dB) and level (+-2 dB), silence padding, a noise colour and an
    SNR in 25-40 dB. Everything is keyed by ``(seed, spk_index, utt)``.

    Returns
    -------
    list of dict
        One dict per utterance (``utt_id``, ``text``, ``pitch``, ``range``,
        ``rate``, ``tilt_db``, ``level_db``, ``pad``, ``noise_exponent``,
        ``snr_db``, ``noise_seed``).
    """
    utts, texts = [], set()
    for u in range(num_utts):
        rng = _utterance_rng(seed, spk_index, u, 0)
        text = make_sentence(rng)
        while text in texts:
            text = make_sentence(rng)
        texts.add(text)
        utts.append(
            dict(
                utt_id=f"utt{u:03d}",
                text=text,
                pitch=int(
                    np.clip(speaker["pitch"] + rng.integers(-2, 3), 0, 100)
                ),
                range=int(
                    np.clip(speaker["range"] + rng.integers(-4, 5), 0, 100)
                ),
                rate=int(round(speaker["rate"] * rng.uniform(0.96, 1.04))),
                tilt_db=float(rng.uniform(-1.5, 1.5)),
                level_db=float(rng.uniform(-2.0, 2.0)),
                pad=[float(rng.uniform(0.05, 0.4)) for _ in range(2)],
                noise_exponent=float(rng.uniform(0.0, 1.5)),
                snr_db=float(rng.uniform(25.0, 40.0)),
                noise_seed=[int(seed), int(spk_index), u, 1],
            )
        )
    return utts


def render_utterance(engine, speaker, utt):
    """Synthesises one utterance and returns it as 16 kHz float64 audio.

    espeak's 22.05 kHz output is resampled to 16 kHz, coloured by the
    speaker's equaliser and the utterance's tilt, padded with silence,
    scaled to the speaker's level (about -26 dBFS RMS plus the speaker gain
    and the utterance jitter) and mixed with coloured noise at the
    utterance's SNR.
    """
    pcm = engine.synthesize(
        speaker["voice"],
        utt["text"],
        rate=utt["rate"],
        pitch=utt["pitch"],
        pitch_range=utt["range"],
        word_gap=speaker["word_gap"],
    )
    speech = resample(pcm / 32768.0, engine.sample_rate, SAMPLE_RATE)
    speech = np.convolve(speech, np.asarray(speaker["eq"]), mode="same")
    speech = np.convolve(speech, tilt_fir(utt["tilt_db"]), mode="same")
    lead, trail = (int(p * SAMPLE_RATE) for p in utt["pad"])
    speech = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    rms = np.sqrt(np.mean(speech**2))
    if rms <= 0:
        raise RuntimeError(f"espeak-ng produced silence for {utt['text']!r}")
    level_db = -26.0 + speaker["gain_db"] + utt["level_db"]
    speech *= 10.0 ** (level_db / 20.0) / rms
    rng = np.random.default_rng(utt["noise_seed"])
    noise = coloured_noise(rng, len(speech), utt["noise_exponent"])
    noise *= 10.0 ** ((level_db - utt["snr_db"]) / 20.0)
    audio = speech + noise
    peak = np.abs(audio).max()
    if peak > 0.99:
        audio *= 0.99 / peak
    return audio
