"""A zero-download synthetic multi-speaker corpus made with espeak-ng.

The corpus lets the speaker recipes run end to end (teacher training,
distillation, verification) without downloading VoxCeleb. Speech is
synthesised by libespeak-ng, shipped with its voice data by the PyPI
package ``espeakng-loader`` and driven here through ``ctypes``.

A *speaker* is a fixed combination of an espeak voice variant (``m1``,
``f3``, ``klatt4``, ...), an English accent (``en``, ``en-us``,
``en-gb-scotland``, ...), a base pitch, a pitch range, a speaking rate, a
word gap and a channel colouring (a short linear-phase FIR equaliser and a
gain). No two speakers share the discrete parameters. Each *utterance*
jitters pitch, range, rate, equaliser tilt and level around its speaker,
reads its own English sentence and gets additive coloured noise at a random
SNR (25-40 dB), so that verification is learnable but not trivial.

libespeak-ng keeps state from one synthesis to the next (pitch flutter
phase, filter memories, random generators), which would make the audio
depend on the order of the calls. Every utterance is therefore synthesised
in a short-lived ``fork`` of a process whose espeak instance has been
initialised but never used: the audio depends only on the utterance's own
settings, whatever the number of workers or the order of the work. The
forks come from a small server process per worker (``SynthesisServer``),
because forking a process that imported torch costs far more.

Usage: ``prepare_synthetic(data_folder)`` from a recipe, or
``python -m speechbrain_kd.synthetic DATA_FOLDER`` (see ``--help``).

Modules: ``grammar`` (the sentences), ``espeak`` (the ``ctypes`` binding),
``messages`` and ``server`` (the fork-server protocol), ``dsp`` (numpy
signal processing), ``speakers`` (speaker and utterance settings,
rendering), ``prepare`` (the corpus preparation) and ``__main__`` (the
command line).

Authors
 * speechbrain_kd contributors
"""

from speechbrain_kd.synthetic.dsp import coloured_noise, make_eq, resample
from speechbrain_kd.synthetic.espeak import (
    ACCENTS,
    VOICE_VARIANTS,
    EspeakEngine,
    get_engine,
)
from speechbrain_kd.synthetic.grammar import SENTENCES, make_sentence
from speechbrain_kd.synthetic.prepare import (
    GENERATOR_VERSION,
    OPTS_FILE,
    SPEAKERS_FILE,
    prepare_synthetic,
    skip,
)
from speechbrain_kd.synthetic.server import SynthesisServer, get_server
from speechbrain_kd.synthetic.speakers import (
    PITCH_GRID,
    RANGE_GRID,
    RATE_GRID,
    SAMPLE_RATE,
    WORD_GAP_GRID,
    plan_utterances,
    render_utterance,
    sample_speakers,
    speaker_key,
)

__all__ = [
    "ACCENTS",
    "GENERATOR_VERSION",
    "OPTS_FILE",
    "PITCH_GRID",
    "RANGE_GRID",
    "RATE_GRID",
    "SAMPLE_RATE",
    "SENTENCES",
    "SPEAKERS_FILE",
    "VOICE_VARIANTS",
    "WORD_GAP_GRID",
    "EspeakEngine",
    "SynthesisServer",
    "coloured_noise",
    "get_engine",
    "get_server",
    "make_eq",
    "make_sentence",
    "plan_utterances",
    "prepare_synthetic",
    "render_utterance",
    "resample",
    "sample_speakers",
    "skip",
    "speaker_key",
]
