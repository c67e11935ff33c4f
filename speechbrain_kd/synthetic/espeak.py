"""libespeak-ng through ``ctypes``: one engine per process.

libespeak-ng and its voice data come from the PyPI package
``espeakng-loader``. The library keeps state from one synthesis to the next
(pitch flutter phase, filter memories, random generators), which would
make the audio depend on the order of the calls, so ``EspeakEngine``
synthesises every utterance in a short-lived ``fork`` of a process whose
engine has been initialised but never used.
"""

import ctypes
import os
import threading
import warnings

import numpy as np

from speechbrain_kd.synthetic.messages import receive_message, send_message

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
                    send_message(f, err, payload)
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            err, payload = receive_message(f)
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
