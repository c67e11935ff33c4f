"""Atomic file writes with the permissions of a plain ``open``.

Every file the package publishes (manifests, trial lists, scores, model
folders) is written through a temporary file and a rename
(``atomic_write_text``), so that a reader never sees a half-written file.
``tempfile`` creates private (``0o600`` / ``0o700``) files and folders;
``default_mode`` gives what ``open`` / ``os.mkdir`` would under the current
umask (``current_umask``), so that published files get the usual
permissions.
"""

import os
import tempfile


def current_umask():
    """The process's file mode creation mask (umask), read without
    changing it.

    Read from ``/proc/self/status`` (Linux); elsewhere ``os.umask`` is set
    and restored at once (the only portable way, briefly visible to other
    threads that create files).

    Example
    -------
    >>> old = os.umask(0o027)
    >>> oct(current_umask())
    '0o27'
    >>> _ = os.umask(old)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder=False):
    """Mode ``open`` (``0o666``) or, with ``folder``, ``os.mkdir`` (``0o777``)
    gives a new file or folder under the current umask.
    """
    return (0o777 if folder else 0o666) & ~current_umask()


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and an interrupted write leaves
    the previous file (if any) untouched. The file gets the permissions of
    a plain ``open`` (``default_mode``: 0644 under umask 022), not the
    temporary file's 0600.

    Example
    -------
    >>> path = os.path.join(getfixture("tmpdir"), "a.txt")
    >>> atomic_write_text(path, "hello\\n")
    >>> open(path).read()
    'hello\\n'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
