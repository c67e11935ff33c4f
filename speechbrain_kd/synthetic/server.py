"""The synthesis server: a light process that forks per request.

Forking a process that imported torch costs far more than forking a small
one, so every worker of the corpus preparation talks to its own server
process (``get_server``), which owns a pristine ``EspeakEngine`` and forks
it for every utterance.
"""

import json
import os
import subprocess
import sys

import numpy as np

from speechbrain_kd.synthetic.espeak import (
    _INSTALL_HINT,
    EspeakEngine,
    get_engine,
)
from speechbrain_kd.synthetic.messages import receive_message, send_message


def serve(lib_path, data_path):
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
        send_message(answers, 1, str(e).encode())
        return
    info = [engine.sample_rate, engine.version]
    send_message(answers, 0, json.dumps(info).encode())
    while True:
        code, request = receive_message(requests)
        if code is None:
            return
        try:
            pcm = engine.synthesize(*json.loads(request)).tobytes()
        except Exception as e:
            send_message(answers, 1, str(e).encode())
        else:
            send_message(answers, 0, pcm)


# The server process: a fresh interpreter that imports this package (from
# the tree this file is in, whatever sys.path holds) and serves requests.
_PACKAGE_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
_SERVER_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from speechbrain_kd.synthetic.server import serve; serve(*sys.argv[2:4])"
)


class SynthesisServer:
    """A light process owning a pristine libespeak-ng, forked per request.

    Forking costs time in proportion to the memory of the process, and a
    process that imported torch and SpeechBrain is large. The server is a
    fresh interpreter that imports this package's ``synthetic`` modules only
    (numpy, soundfile and the standard library) and runs ``serve``, so that
    the fork of ``EspeakEngine.synthesize`` stays cheap. Same
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
            [sys.executable, "-c", _SERVER_CODE, _PACKAGE_ROOT]
            + [lib_path, data_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.pid = os.getpid()
        code, payload = receive_message(self.proc.stdout)
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
            send_message(self.proc.stdin, 0, request)
        except OSError as e:
            raise RuntimeError(f"The synthesis process died ({e})") from e
        code, payload = receive_message(self.proc.stdout)
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


_SERVER = None


def get_server():
    """Returns this process's ``SynthesisServer``, starting it if needed."""
    global _SERVER
    if _SERVER is None or _SERVER.pid != os.getpid():
        engine = get_engine()
        _SERVER = SynthesisServer(engine.lib_path, engine.data_path)
    return _SERVER


def close_server():
    global _SERVER
    if _SERVER is not None and _SERVER.pid == os.getpid():
        _SERVER.close()
    _SERVER = None
