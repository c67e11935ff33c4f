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

Authors
 * speechbrain_kd contributors
"""

import ctypes
import json
import logging
import math
import multiprocessing
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np
import soundfile

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
OPTS_FILE = "synthetic_opts.json"
SPEAKERS_FILE = "speakers.json"
# Bump when a change of this module changes the audio or the manifests, so
# that corpora prepared by an older version are regenerated, not reused.
GENERATOR_VERSION = 1

# Voice variants of espeak-ng 1.52 (``espeak-ng-data/voices/!v``).
VOICE_VARIANTS = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic",
    "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee",
    "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot", "adam",
    "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda",
    "benjamin", "boris", "caleb", "croak", "david", "ed", "edward",
    "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "grandma", "grandpa",
    "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "linda", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo",
    "max", "michel", "miguel", "mike2", "norbert", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3",
    "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8",
    "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor",
    "whisper", "whisperf", "zac",
)  # fmt: skip

# espeak-ng languages that read English text, and their files under
# ``espeak-ng-data/lang``.
ACCENTS = {
    "en": "gmw/en",
    "en-us": "gmw/en-US",
    "en-us-nyc": "gmw/en-US-nyc",
    "en-gb-scotland": "gmw/en-GB-scotland",
    "en-gb-x-rp": "gmw/en-GB-x-rp",
    "en-gb-x-gbclan": "gmw/en-GB-x-gbclan",
    "en-gb-x-gbcwmd": "gmw/en-GB-x-gbcwmd",
    "en-029": "gmw/en-029",
}

# Grids of the discrete speaker parameters (espeak units: pitch and range
# 0-100, rate in words per minute, word gap in units of 10 ms).
PITCH_GRID = tuple(range(15, 90, 5))
RANGE_GRID = tuple(range(20, 100, 10))
RATE_GRID = tuple(range(130, 240, 10))
WORD_GAP_GRID = (0, 1, 2)

# Hand-written sentences, used for about one utterance in four.
SENTENCES = (
    "The old lighthouse keeper walked along the shore before sunrise.",
    "Please remember to close the window when the rain starts again.",
    "A bright orange kite drifted slowly above the crowded park.",
    "We found an old map hidden behind the books in the attic.",
    "The train to the northern coast leaves at half past seven.",
    "Could you tell me where the nearest post office is?",
    "Fresh bread and warm soup were waiting on the kitchen table.",
    "The committee will publish its final report next Thursday.",
    "Three small boats were tied together at the end of the pier.",
    "Nobody expected the quiet student to win the chess tournament.",
    "The museum opens its new exhibition on ancient pottery today.",
    "Heavy snow closed the mountain road for most of the week.",
    "She carefully painted the fence a pale shade of green.",
    "Why did the engineers decide to rebuild the bridge in steel?",
    "Every morning the baker lights the oven before five o'clock.",
    "The orchestra tuned their instruments while the audience waited.",
    "A sudden gust of wind scattered the papers across the floor.",
    "My grandfather still repairs clocks in his tiny workshop.",
    "The children built a sandcastle with towers and a deep moat.",
    "Turn left at the church and follow the river for a mile.",
    "The scientist recorded the temperature every hour for a month.",
    "Our neighbours are planting apple trees along the garden wall.",
    "The library stays open late on weekdays during the exams.",
    "A family of ducks crossed the road in front of the bus.",
    "The detective noticed a muddy footprint near the back door.",
    "We should leave early if we want to avoid the traffic.",
    "The farmer sold honey, eggs and cheese at the Saturday market.",
    "Light from the street lamps reflected on the wet pavement.",
    "Have you ever seen the northern lights over the frozen lake?",
    "The pilot announced that we would land twenty minutes early.",
    "Several volunteers cleaned the beach after the summer festival.",
    "The recipe asks for two cups of flour and a pinch of salt.",
    "An owl was calling softly from the top of the old oak tree.",
    "The new software update fixed most of the problems we reported.",
    "He forgot his umbrella on the bus for the third time this month.",
    "The hikers reached the summit just before the clouds rolled in.",
    "The teacher asked everyone to read the first chapter by Monday.",
    "A narrow staircase led down to a cold and silent cellar.",
    "They celebrated the anniversary with a picnic by the waterfall.",
    "The price of coffee has risen sharply over the last year.",
    "Can you hear the bells ringing from the valley below?",
    "The carpenter measured the door twice before cutting the wood.",
    "Our flight was delayed because of fog at the airport.",
    "The young violinist practised the same passage for hours.",
    "Strong coffee and a good book make a perfect rainy afternoon.",
    "The gardener trimmed the hedges into the shape of animals.",
    "A long line of cars waited at the border crossing.",
    "The mayor promised to repair the roads before the winter.",
    "Nobody could explain the strange noise coming from the engine.",
    "The students measured the height of the tower with a shadow.",
)

_SUBJECTS = (
    "the old fisherman", "my younger sister", "a tired doctor",
    "the new manager", "our neighbour", "the quiet librarian",
    "a curious child", "the city council", "the football coach",
    "an elderly painter", "the head chef", "a young journalist",
    "the school principal", "my best friend", "the night guard",
    "a travelling musician", "the village baker", "the local farmer",
    "a famous architect", "the science teacher", "the taxi driver",
    "a nervous student", "the museum curator", "the ship captain",
    "my uncle", "the hotel receptionist", "a retired pilot",
    "the gardener", "the film director", "a patient nurse",
    "the bus driver", "our lawyer", "the mountain guide",
    "a clever engineer", "the shop owner", "the radio host",
    "my grandmother", "the postman", "a street vendor", "the mechanic",
)  # fmt: skip

_VERBS = (
    "quietly repaired", "carefully examined", "proudly presented",
    "suddenly dropped", "slowly painted", "happily described",
    "eventually found", "quickly packed", "nervously opened",
    "patiently explained", "secretly borrowed", "gently cleaned",
    "finally delivered", "bravely carried", "loudly praised",
    "calmly inspected", "politely returned", "eagerly collected",
    "rarely mentioned", "hastily wrapped", "cheerfully shared",
    "firmly closed", "barely noticed", "boldly questioned",
    "thoroughly tested", "gladly accepted", "cleverly rebuilt",
    "casually ignored", "neatly folded", "warmly welcomed",
)  # fmt: skip

_OBJECTS = (
    "a wooden chair", "the broken radio", "an ancient coin",
    "the silver bicycle", "a basket of ripe plums", "the heavy suitcase",
    "a letter from abroad", "the blue umbrella", "a jar of honey",
    "the kitchen clock", "a pair of leather boots", "the garden gate",
    "a stack of old newspapers", "the family photograph",
    "a bright yellow scarf", "the village map", "a bag of potatoes",
    "the antique mirror", "a box of matches", "the rusty lantern",
    "a loaf of warm bread", "the small piano", "a bunch of tulips",
    "the stolen painting", "a cup of green tea", "the spare key",
    "a model sailing ship", "the winter coat", "a notebook full of poems",
    "the fishing net", "a crate of oranges", "the golden trophy",
    "a roll of blue ribbon", "the wooden ladder", "a jar of buttons",
)  # fmt: skip

_PLACES = (
    "near the harbour", "in the crowded station", "behind the town hall",
    "at the edge of the forest", "on the top floor", "beside the river",
    "in the busy market", "outside the bakery", "under the old bridge",
    "at the back of the church", "in the school yard",
    "on the northern hill", "inside the empty barn", "along the canal",
    "next to the fountain", "in the hospital garden", "at the airport",
    "on the narrow balcony", "by the stone wall", "in the dusty attic",
)  # fmt: skip

_TIMES = (
    "early this morning", "late last night", "before the storm began",
    "after the long meeting", "during the summer holidays",
    "on a cold Tuesday", "just before lunch", "while everyone was asleep",
    "at the end of the week", "in the middle of the afternoon",
    "two days ago", "as the sun went down", "right after breakfast",
    "on the first day of spring", "once the guests had left",
)  # fmt: skip

_OPENERS = (
    "", "", "", "", "", "Apparently, ", "Last year, ", "To our surprise, ",
    "As expected, ", "Believe it or not, ", "Once again, ", "Sadly, ",
)  # fmt: skip


def make_sentence(rng):
    """Draws one English sentence, hand-written or combinatorial.

    About one sentence in four comes from ``SENTENCES``; the others combine
    word lists (subject, verb, object, place, time, an optional opener and a
    statement / question / exclamation form), which gives several million
    distinct sentences.

    Arguments
    ---------
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    str
        The sentence.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> s = make_sentence(rng)
    >>> s[0].isupper() and s[-1] in ".?!"
    True
    """

    def pick(options):
        return options[int(rng.integers(len(options)))]

    if rng.random() < 0.25:
        return pick(SENTENCES)
    subject, verb, obj = pick(_SUBJECTS), pick(_VERBS), pick(_OBJECTS)
    place, when = pick(_PLACES), pick(_TIMES)
    form = rng.random()
    if form < 0.15:
        text = f"Did you know that {subject} {verb} {obj} {place} {when}?"
    elif form < 0.25:
        text = f"I cannot believe {subject} {verb} {obj} {when}!"
    elif rng.random() < 0.5:
        text = f"{pick(_OPENERS)}{subject} {verb} {obj} {place} {when}."
    else:
        text = f"{pick(_OPENERS)}{when}, {subject} {verb} {obj} {place}."
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------------------
# libespeak-ng through ctypes
# ---------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_ESPEAK_VOLUME = 25  # low enough that no variant clips the int16 output
_INSTALL_HINT = (
    "The synthetic corpus needs libespeak-ng and its voice data from the "
    "PyPI package espeakng-loader: pip install espeakng-loader"
)

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_short),
    ctypes.c_int,
    ctypes.c_void_p,
)


def _locate_espeak():
    """Returns ``(library_path, data_path)`` of the espeakng-loader install."""
    import espeakng_loader

    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class EspeakEngine:
    """One libespeak-ng instance, initialised in synchronous mode.

    The library is process-global state: create one engine per process
    (``get_engine`` does) and let ``synthesize`` serialise the calls.

    Arguments
    ---------
    lib_path : str, optional
        Path of libespeak-ng (default: the one of ``espeakng-loader``).
    data_path : str, optional
        Path of ``espeak-ng-data`` (default: the one of ``espeakng-loader``).

    Raises
    ------
    RuntimeError
        If the library or its data cannot be found, loaded or initialised;
        the message says what failed and that ``pip install
        espeakng-loader`` is needed.

    Example
    -------
    >>> engine = get_engine()
    >>> audio = engine.synthesize("en-us+m3", "Hello there.", rate=175,
    ...                           pitch=50, pitch_range=50, word_gap=0)
    >>> audio.dtype, engine.sample_rate
    (dtype('int16'), 22050)
    """

    def __init__(self, lib_path=None, data_path=None):
        try:
            if lib_path is None or data_path is None:
                found_lib, found_data = _locate_espeak()
                lib_path = lib_path or found_lib
                data_path = data_path or found_data
        except Exception as e:
            raise RuntimeError(
                f"{_INSTALL_HINT} (locating the library failed: "
                f"{type(e).__name__}: {e})"
            ) from e
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise RuntimeError(
                f"{_INSTALL_HINT} (loading {lib_path} failed: {e})"
            ) from e
        if not os.path.isdir(os.path.join(data_path, "voices", "!v")):
            raise RuntimeError(
                f"{_INSTALL_HINT} (no espeak-ng voice data in {data_path})"
            )
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int
        ]  # fmt: skip
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int] * 3
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synchronize.restype = ctypes.c_int
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            500,
            data_path.encode(),
            _INITIALIZE_DONT_EXIT,
        )
        if sample_rate <= 0:
            raise RuntimeError(
                f"{_INSTALL_HINT} (espeak_Initialize failed with {sample_rate} "
                f"using the data in {data_path})"
            )
        self.lib = lib
        self.lib_path = lib_path
        self.data_path = data_path
        self.sample_rate = sample_rate
        self.version = lib.espeak_Info(None).decode()
        self._chunks = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _on_audio(self, wav, num_samples, events):
        if num_samples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, num_samples * 2))
        return 0

    def check_voices(self, variants=VOICE_VARIANTS, accents=ACCENTS):
        """Raises RuntimeError if a voice variant or an accent is missing.

        espeak silently falls back to a default voice for an unknown
        variant, so the files are checked in the data folder.
        """
        missing = [
            f"voices/!v/{v}"
            for v in variants
            if not os.path.isfile(
                os.path.join(self.data_path, "voices", "!v", v)
            )
        ] + [
            f"lang/{f}"
            for f in accents.values()
            if not os.path.isfile(os.path.join(self.data_path, "lang", f))
        ]
        if missing:
            raise RuntimeError(
                f"The espeak-ng data in {self.data_path} (espeak-ng "
                f"{self.version}) lacks {len(missing)} voice files needed by "
                f"the synthetic corpus, e.g. {missing[:5]}; install the "
                "espeakng-loader version this module was written for"
            )

    def _synth_here(self, voice, text, rate, pitch, pitch_range, word_gap):
        """Synthesises in this process; returns ``(error_code, pcm_bytes)``."""
        lib = self.lib
        self._chunks.clear()
        err = lib.espeak_SetVoiceByName(voice.encode())
        if err != 0:
            return err, b""
        for param, value in (
            (_RATE, rate),
            (_VOLUME, _ESPEAK_VOLUME),
            (_PITCH, pitch),
            (_RANGE, pitch_range),
            (_WORDGAP, word_gap),
        ):
            lib.espeak_SetParameter(param, int(value), 0)
        data = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if err == 0:
            err = lib.espeak_Synchronize()
        pcm = b"".join(self._chunks)
        self._chunks.clear()
        return err, pcm

    def _synth_forked(self, *args):
        """Synthesises in a fork, so that this instance stays pristine."""
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork() in multi-threaded processes;
            # the child only calls into libespeak-ng and exits.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: synthesise, send, exit without cleanup
            try:
                os.close(read_fd)
                try:
                    err, payload = self._synth_here(*args)
                except BaseException as e:  # reported to the parent
                    err, payload = -1, repr(e).encode()
                with os.fdopen(write_fd, "wb") as f:
                    _send(f, err, payload)
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            err, payload = _receive(f)
        _, status = os.waitpid(pid, 0)
        if err is None:
            raise RuntimeError(
                f"The espeak-ng synthesis process failed (status {status})"
            )
        if err != 0:
            raise RuntimeError(
                f"espeak-ng failed with code {err} "
                f"({payload.decode(errors='replace') or 'no message'})"
            )
        return payload

    def synthesize(self, voice, text, rate, pitch, pitch_range, word_gap):
        """Synthesises ``text``; returns int16 samples at ``sample_rate``.

        Where ``os.fork`` exists (Linux, macOS), the synthesis runs in a
        fork of this process and leaves this instance untouched, so that
        the output depends only on the arguments. Elsewhere it runs in
        place, and the audio may depend on earlier calls.

        Arguments
        ---------
        voice : str
            espeak voice name, ``accent+variant`` (e.g. ``"en-us+f3"``).
        text : str
            Text to read.
        rate : int
            Speaking rate in words per minute.
        pitch : int
            Base pitch, 0-100 (50 is the voice's default).
        pitch_range : int
            Pitch range, 0-100 (0 is monotone).
        word_gap : int
            Extra pause between words, in units of 10 ms.

        Returns
        -------
        numpy.ndarray
            int16 samples.
        """
        args = (voice, text, rate, pitch, pitch_range, word_gap)
        with self._lock:
            if hasattr(os, "fork"):
                pcm = self._synth_forked(*args)
            else:
                err, pcm = self._synth_here(*args)
                if err != 0:
                    raise RuntimeError(f"espeak-ng failed with code {err}")
        if not pcm:
            raise RuntimeError(
                f"espeak-ng produced no audio for voice {voice!r}, "
                f"text {text!r}"
            )
        return np.frombuffer(pcm, dtype=np.int16)


_ENGINE = None


def get_engine():
    """Returns this process's ``EspeakEngine``, creating it on first use.

    Raises
    ------
    RuntimeError
        If libespeak-ng cannot be loaded (``pip install espeakng-loader``).
    """
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = EspeakEngine()
    return _ENGINE


def _send(stream, code, payload):
    stream.write(struct.pack("<iq", code, len(payload)) + payload)
    stream.flush()


def _receive(stream):
    """Reads one ``_send`` message; ``(None, b"")`` at end of stream."""
    header = stream.read(12)
    if len(header) < 12:
        return None, b""
    code, size = struct.unpack("<iq", header)
    payload = stream.read(size)
    if len(payload) != size:
        return None, b""
    return code, payload


def _serve(lib_path, data_path):
    """Main loop of the synthesis server process (see ``SynthesisServer``).

    Reads JSON requests (``synthesize`` arguments) on stdin and answers on
    the original stdout with int16 PCM or an error message; the library
    and Python print to stderr instead, so as not to corrupt the answers.
    """
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    try:
        engine = EspeakEngine(lib_path, data_path)
    except Exception as e:
        _send(answers, 1, str(e).encode())
        return
    info = [engine.sample_rate, engine.version]
    _send(answers, 0, json.dumps(info).encode())
    while True:
        code, request = _receive(requests)
        if code is None:
            return
        try:
            pcm = engine.synthesize(*json.loads(request)).tobytes()
        except Exception as e:
            _send(answers, 1, str(e).encode())
        else:
            _send(answers, 0, pcm)


class SynthesisServer:
    """A light process owning a pristine libespeak-ng, forked per request.

    Forking costs time in proportion to the memory of the process, and a
    process that imported torch and SpeechBrain is large. The server runs
    this file as a script (numpy, soundfile and the standard library only)
    so that the fork of ``EspeakEngine.synthesize`` stays cheap. Same
    interface as ``EspeakEngine`` (``synthesize``, ``sample_rate``,
    ``version``).

    Arguments
    ---------
    lib_path : str
        Path of libespeak-ng.
    data_path : str
        Path of ``espeak-ng-data``.
    """

    def __init__(self, lib_path, data_path):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), _SERVE_FLAG]
            + [lib_path, data_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.pid = os.getpid()
        code, payload = _receive(self.proc.stdout)
        if code != 0:
            self.close()
            raise RuntimeError(
                f"{_INSTALL_HINT} (the synthesis process failed to start: "
                f"{payload.decode(errors='replace') or 'no answer'})"
            )
        self.sample_rate, self.version = json.loads(payload)

    def synthesize(self, voice, text, rate, pitch, pitch_range, word_gap):
        """Same as ``EspeakEngine.synthesize``, in the server process."""
        args = [voice, text, int(rate), int(pitch), int(pitch_range)]
        request = json.dumps(args + [int(word_gap)]).encode()
        try:
            _send(self.proc.stdin, 0, request)
        except OSError as e:
            raise RuntimeError(f"The synthesis process died ({e})") from e
        code, payload = _receive(self.proc.stdout)
        if code is None:
            raise RuntimeError(
                f"The synthesis process died (exit code {self.proc.poll()})"
            )
        if code != 0:
            raise RuntimeError(payload.decode(errors="replace"))
        return np.frombuffer(payload, dtype=np.int16)

    def close(self):
        """Stops the server process."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


_SERVE_FLAG = "--espeak-server"
_SERVER = None


def get_server():
    """Returns this process's ``SynthesisServer``, starting it if needed."""
    global _SERVER
    if _SERVER is None or _SERVER.pid != os.getpid():
        engine = get_engine()
        _SERVER = SynthesisServer(engine.lib_path, engine.data_path)
    return _SERVER


def _close_server():
    global _SERVER
    if _SERVER is not None and _SERVER.pid == os.getpid():
        _SERVER.close()
    _SERVER = None


# ---------------------------------------------------------------------------
# Signal processing (numpy only)
# ---------------------------------------------------------------------------


def resample(x, orig_sr, new_sr, taper=0.1):
    """Band-limited resampling in the frequency domain.

    The signal is zero-padded (so that the circular FFT does not wrap its
    end onto its start), its spectrum cut at the lower Nyquist frequency
    with a raised-cosine taper over the top ``taper`` fraction of the band,
    and transformed back at the new length.

    Arguments
    ---------
    x : numpy.ndarray
        1-D signal.
    orig_sr : int
        Sample rate of ``x``.
    new_sr : int
        Wanted sample rate.
    taper : float
        Fraction of the kept band over which the gain falls to zero.

    Returns
    -------
    numpy.ndarray
        float64 signal of ``ceil(len(x) * new_sr / orig_sr)`` samples.

    Example
    -------
    >>> t = np.arange(22050) / 22050
    >>> y = resample(np.sin(2 * np.pi * 440 * t), 22050, 16000)
    >>> y.shape
    (16000,)
    >>> ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> bool(np.abs(y - ref)[400:-400].max() < 1e-3)
    True
    """
    x = np.asarray(x, dtype=np.float64)
    if orig_sr == new_sr:
        return x.copy()
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    n_out = -(-len(x) * up // down)
    pad = max(1024, len(x) // 8)  # zeros against circular wrap-around
    blocks = _fast_length(-(-(len(x) + pad) // down))
    n_in, n_new = blocks * down, blocks * up
    spectrum = np.fft.rfft(x, n=n_in)[: min(n_in, n_new) // 2 + 1]
    freqs = np.arange(len(spectrum)) / (min(n_in, n_new) / 2)
    ramp = np.clip((freqs - (1.0 - taper)) / taper, 0.0, 1.0)
    spectrum *= 0.5 * (1.0 + np.cos(np.pi * ramp))
    y = np.fft.irfft(spectrum, n=n_new) * (n_new / n_in)
    return y[:n_out]


def make_eq(rng, num_taps=33, max_db=6.0):
    """Draws a smooth random equaliser as a linear-phase FIR filter.

    The gain curve (in dB, over 0-8 kHz) is a random tilt plus three random
    cosine ripples, at most about ``max_db`` away from flat.

    Arguments
    ---------
    rng : numpy.random.Generator
        Source of randomness.
    num_taps : int
        Odd filter length.
    max_db : float
        Scale of the gain curve, in dB.

    Returns
    -------
    numpy.ndarray
        The FIR taps.

    Example
    -------
    >>> taps = make_eq(np.random.default_rng(0))
    >>> taps.shape
    (33,)
    """
    freqs = np.linspace(0.0, 1.0, num_taps // 2 + 1)
    db = rng.uniform(-1.0, 1.0) * max_db * (freqs - 0.5)
    for k in (1, 2, 3):
        amp = rng.uniform(-1.0, 1.0) * max_db / (2 * k)
        db += amp * np.cos(np.pi * k * freqs + rng.uniform(0, 2 * np.pi))
    return _fir_from_db(db, num_taps)


def _fir_from_db(db, num_taps):
    """Linear-phase FIR (Hann-windowed) with the given dB gain curve."""
    impulse = np.fft.irfft(10.0 ** (db / 20.0), n=num_taps)
    impulse = np.roll(impulse, num_taps // 2)
    return impulse * np.hanning(num_taps + 2)[1:-1]


def _tilt_fir(tilt_db, num_taps=33):
    """FIR with a linear spectral tilt of ``tilt_db`` from 0 to 8 kHz."""
    freqs = np.linspace(0.0, 1.0, num_taps // 2 + 1)
    return _fir_from_db(tilt_db * (freqs - 0.5), num_taps)


def coloured_noise(rng, num_samples, exponent):
    """Gaussian noise with a power spectrum proportional to ``f**-exponent``.

    ``exponent`` 0 is white noise, 1 pink noise. The result has unit RMS.
    """
    n_fft = _fast_length(num_samples)
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2.0), n=n_fft)
    noise = noise[:num_samples]
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-12)


def _fast_length(n):
    """The smallest ``2**a * 3**b * 5**c >= n`` (a fast FFT length)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 * (1 << max(0, (-(-n // p35) - 1).bit_length()))
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


# ---------------------------------------------------------------------------
# Speakers and utterances
# ---------------------------------------------------------------------------


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
    speech = np.convolve(speech, _tilt_fir(utt["tilt_db"]), mode="same")
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


def _write_flac(path, audio):
    """Writes 16-bit FLAC through a temporary file and a rename."""
    from speechbrain_kd.fileio import default_mode

    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".flac")
    os.close(fd)
    try:
        soundfile.write(tmp, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.chmod(tmp, default_mode())  # as open(), not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return len(pcm)


def _generate_one(task):
    """Renders and writes one utterance; returns ``(path, num_samples)``."""
    path, speaker, utt = task
    audio = render_utterance(get_server(), speaker, utt)
    return path, _write_flac(path, audio)


def _init_worker():
    """Pool initializer: starts the worker's synthesis server."""
    get_server()


# ---------------------------------------------------------------------------
# Corpus preparation
# ---------------------------------------------------------------------------


def _settings(**kwargs):
    return dict(
        generator_version=GENERATOR_VERSION, sample_rate=SAMPLE_RATE, **kwargs
    )


def _output_paths(save_folder):
    return {
        "train_csv": os.path.join(save_folder, "train.csv"),
        "valid_csv": os.path.join(save_folder, "valid.csv"),
        "test_csv": os.path.join(save_folder, "test.csv"),
        "trials": os.path.join(save_folder, "veri_test2.txt"),
    }


def skip(data_folder, save_folder, settings):
    """Whether a corpus with these settings is already fully prepared.

    True when ``synthetic_opts.json`` (written last) holds the same
    settings and the manifests, the trial list and every audio file they
    list exist.
    """
    from speechbrain_kd.data import read_csv

    opts_path = os.path.join(save_folder, OPTS_FILE)
    try:
        with open(opts_path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return False
    if saved.get("settings") != settings:
        return False
    paths = _output_paths(save_folder)
    if not all(os.path.isfile(p) for p in paths.values()):
        return False
    try:
        for key in ("train_csv", "valid_csv", "test_csv"):
            for row in read_csv(paths[key]):
                wav = os.path.join(data_folder, row["wav"])
                if not os.path.isfile(wav):
                    return False
    except (OSError, ValueError):
        return False
    return True


def _check_sizes(
    seed,
    num_train_speakers,
    num_test_speakers,
    utts_per_speaker,
    valid_utts_per_speaker,
    num_trials,
):
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0")
    if num_train_speakers < 1:
        raise ValueError(f"num_train_speakers={num_train_speakers} < 1")
    if num_test_speakers < 2:
        raise ValueError(f"num_test_speakers={num_test_speakers} < 2")
    if utts_per_speaker < 2:
        raise ValueError(f"utts_per_speaker={utts_per_speaker} < 2")
    if not 1 <= valid_utts_per_speaker < utts_per_speaker:
        raise ValueError(
            f"valid_utts_per_speaker={valid_utts_per_speaker} must be in "
            f"[1, utts_per_speaker={utts_per_speaker})"
        )
    n = num_test_speakers * utts_per_speaker
    max_target = (
        num_test_speakers * utts_per_speaker * (utts_per_speaker - 1) // 2
    )
    max_nontarget = n * (n - 1) // 2 - max_target
    if not 2 <= num_trials <= 2 * min(max_target, max_nontarget):
        raise ValueError(
            f"num_trials={num_trials}: {num_test_speakers} test speakers with "
            f"{utts_per_speaker} utterances allow between 2 and "
            f"{2 * min(max_target, max_nontarget)} balanced trials"
        )


def prepare_synthetic(
    data_folder,
    save_folder=None,
    num_train_speakers=200,
    num_test_speakers=40,
    utts_per_speaker=12,
    valid_utts_per_speaker=2,
    num_trials=4000,
    seed=1234,
    num_workers=2,
):
    """Generates (or reuses) the synthetic speaker-verification corpus.

    Audio goes to ``<data_folder>/wav/<spk_id>/<utt_id>.flac`` (16 kHz mono
    16-bit FLAC) and the manifests to ``save_folder``: ``train.csv`` and
    ``valid.csv`` (the training speakers, ``valid_utts_per_speaker``
    held-out utterances each in ``valid.csv``), ``test.csv`` (the test
    speakers, disjoint from the training ones) and ``veri_test2.txt``
    (balanced VoxCeleb-format trials among the test utterances). The
    manifests store ``wav`` relative to ``data_folder`` and IDs such as
    ``wav/spk0007/utt003``. ``speakers.json`` in ``data_folder`` records
    every speaker's parameters.

    The output is byte-identical for the same seed and sizes, whatever
    ``num_workers``. Every file is written atomically and
    ``synthetic_opts.json`` last; a corpus already prepared with the same
    settings is reused without loading espeak.

    Arguments
    ---------
    data_folder : str
        Corpus root (the recipe's ``data_folder``).
    save_folder : str, optional
        Folder of the manifests (default: ``data_folder``).
    num_train_speakers : int
        Number of training speakers.
    num_test_speakers : int
        Number of test speakers.
    utts_per_speaker : int
        Utterances per speaker (training speakers: including the
        validation ones).
    valid_utts_per_speaker : int
        Utterances per training speaker held out in ``valid.csv``.
    num_trials : int
        Number of verification trials (half target, half non-target).
    seed : int
        Seed of everything random.
    num_workers : int
        Worker processes for the synthesis (1: in this process).

    Returns
    -------
    dict
        Paths ``{"train_csv", "valid_csv", "test_csv", "trials"}``.

    Raises
    ------
    RuntimeError
        If libespeak-ng cannot be loaded (``pip install espeakng-loader``).
    """
    from speechbrain_kd.data import make_trials, write_csv, write_trials

    data_folder = os.path.abspath(data_folder)
    save_folder = os.path.abspath(save_folder or data_folder)
    _check_sizes(
        seed,
        num_train_speakers,
        num_test_speakers,
        utts_per_speaker,
        valid_utts_per_speaker,
        num_trials,
    )
    settings = _settings(
        num_train_speakers=int(num_train_speakers),
        num_test_speakers=int(num_test_speakers),
        utts_per_speaker=int(utts_per_speaker),
        valid_utts_per_speaker=int(valid_utts_per_speaker),
        num_trials=int(num_trials),
        seed=int(seed),
    )
    paths = _output_paths(save_folder)
    if skip(data_folder, save_folder, settings):
        logger.info(
            f"Synthetic corpus already prepared in {data_folder} (manifests "
            f"in {save_folder}), skipping generation"
        )
        return paths

    engine = get_engine()  # fails early and clearly without espeak
    engine.check_voices()
    os.makedirs(save_folder, exist_ok=True)
    opts_path = os.path.join(save_folder, OPTS_FILE)
    if os.path.exists(opts_path):
        os.remove(opts_path)  # the files below are about to change

    start_time = time.time()
    num_speakers = num_train_speakers + num_test_speakers
    speakers = sample_speakers(num_speakers, seed)
    num_valid_from = utts_per_speaker - valid_utts_per_speaker
    tasks, rows = [], []
    for index, spk in enumerate(speakers):
        utts = plan_utterances(spk, index, utts_per_speaker, seed)
        for u, utt in enumerate(utts):
            utt_id = f"wav/{spk['spk_id']}/{utt['utt_id']}"
            path = os.path.join(data_folder, *utt_id.split("/")) + ".flac"
            if index >= num_train_speakers:
                split = "test"
            else:
                split = "train" if u < num_valid_from else "valid"
            tasks.append((path, spk, utt))
            rows.append(
                dict(
                    split=split,
                    ID=utt_id,
                    wav=utt_id + ".flac",
                    start=0,
                    spk_id=spk["spk_id"],
                )
            )
    logger.info(
        f"Synthesising {len(tasks)} utterances of {num_speakers} speakers "
        f"with espeak-ng {engine.version} ({num_workers} workers)"
    )
    num_samples = dict(_run_tasks(tasks, num_workers))

    manifests = {"train": [], "valid": [], "test": []}
    for row, (path, _, _) in zip(rows, tasks):
        row["stop"] = num_samples[path]
        row["duration"] = num_samples[path] / SAMPLE_RATE
        manifests[row.pop("split")].append(row)

    speakers_text = json.dumps(
        [
            dict(spk, split="train" if i < num_train_speakers else "test")
            for i, spk in enumerate(speakers)
        ],
        indent=1,
    )
    _atomic_write(os.path.join(data_folder, SPEAKERS_FILE), speakers_text)
    for split in ("train", "valid", "test"):
        write_csv(manifests[split], paths[f"{split}_csv"])
    trials = make_trials(manifests["test"], num_trials, seed)
    write_trials(trials, paths["trials"])
    elapsed = time.time() - start_time
    hours = sum(num_samples.values()) / SAMPLE_RATE / 3600
    info = dict(
        espeak_version=engine.version,
        num_utterances=len(tasks),
        hours=round(hours, 3),
        generation_seconds=round(elapsed, 1),
    )
    _atomic_write(
        opts_path, json.dumps(dict(settings=settings, info=info), indent=1)
    )
    logger.info(
        f"Synthetic corpus: {len(tasks)} utterances ({hours:.2f} h) of "
        f"{num_speakers} speakers generated in {elapsed:.1f} s"
    )
    return paths


def _atomic_write(path, text):
    from speechbrain_kd.fileio import atomic_write_text

    atomic_write_text(path, text + "\n")


def _run_tasks(tasks, num_workers):
    """Runs ``_generate_one`` over ``tasks``, in a pool if asked."""
    if num_workers <= 1 or len(tasks) < 2:
        try:
            return [_generate_one(t) for t in tasks]
        finally:
            _close_server()
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    chunksize = max(1, min(16, len(tasks) // (8 * num_workers)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with ctx.Pool(num_workers, initializer=_init_worker) as pool:
            return list(pool.imap_unordered(_generate_one, tasks, chunksize))


def main(argv=None):
    """Command line: ``python -m speechbrain_kd.synthetic FOLDER [options]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_folder")
    parser.add_argument("--save_folder", default=None)
    parser.add_argument("--num_train_speakers", type=int, default=200)
    parser.add_argument("--num_test_speakers", type=int, default=40)
    parser.add_argument("--utts_per_speaker", type=int, default=12)
    parser.add_argument("--valid_utts_per_speaker", type=int, default=2)
    parser.add_argument("--num_trials", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num_workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.time()
    paths = prepare_synthetic(**vars(args))
    print(f"Done in {time.time() - start:.1f} s: {json.dumps(paths)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [_SERVE_FLAG]:
        _serve(*sys.argv[2:4])
    else:
        sys.exit(main())
