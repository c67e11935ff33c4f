"""Speaker manifests: reading, checking and writing ``train.csv`` & co.

Every corpus preparation writes SpeechBrain's speaker columns
``ID,duration,wav,start,stop,spk_id`` (``CSV_FIELDS``; ``start``/``stop``
in samples, ``stop`` exclusive). ``read_csv`` checks the columns and every
row (unique non-empty IDs, numbers, ``0 <= start < stop``) and names the
file and line of the first problem; ``write_csv`` writes atomically.
"""

import csv
import math
import os

from speechbrain_kd.fileio import atomic_write_text

CSV_FIELDS = ["ID", "duration", "wav", "start", "stop", "spk_id"]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")


def resolve_path(data_folder, wav):
    """The audio path of a manifest's ``wav``: absolute, or under
    ``data_folder``.
    """
    return wav if os.path.isabs(wav) else os.path.join(data_folder, wav)


def write_csv(rows, path):
    """Writes a speaker manifest (``CSV_FIELDS`` columns) atomically.

    Arguments
    ---------
    rows : list of dict
        One dict per row, with at least the keys of ``CSV_FIELDS``.
    path : str
        Destination CSV file.

    Example
    -------
    >>> path = os.path.join(getfixture("tmpdir"), "m.csv")
    >>> write_csv([dict(ID="a", duration=1.0, wav="a.flac", start=0,
    ...                 stop=16000, spk_id="s1")], path)
    >>> open(path).read().splitlines()[0]
    'ID,duration,wav,start,stop,spk_id'
    """
    lines = [",".join(CSV_FIELDS)]
    for i, row in enumerate(rows):
        missing = [k for k in CSV_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks the keys {missing}")
        values = []
        for key in CSV_FIELDS:
            value = row[key]
            if key == "duration":
                value = f"{float(value):.4f}"
            value = str(value)
            if "," in value or "\n" in value:
                raise ValueError(
                    f"{path}: row {i} has a comma or newline in {key}={value!r}"
                )
            values.append(value)
        lines.append(",".join(values))
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_csv(path):
    """Reads a speaker manifest and checks its columns and values.

    Every row needs the ``CSV_FIELDS`` columns, a unique non-empty ``ID``,
    non-empty ``wav`` and ``spk_id``, ``0 <= start < stop`` (samples) and a
    positive ``duration``; errors name the file and the line.

    Returns
    -------
    list of dict
        The rows, with ``start``/``stop`` as int and ``duration`` as float.

    Example
    -------
    >>> import os
    >>> path = os.path.join(getfixture("tmpdir"), "bad.csv")
    >>> _ = open(path, "w").write(
    ...     "ID,duration,wav,start,stop,spk_id\\na,1.0,a.wav,0,16000,s\\n"
    ...     "a,1.0,b.wav,0,16000,s\\n")
    >>> read_csv(path)
    Traceback (most recent call last):
    ...
    ValueError: ...bad.csv, line 3: duplicate ID 'a' (first on line 2)
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Manifest {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            missing = [k for k in CSV_FIELDS if k not in fields]
            if missing:
                raise ValueError(
                    f"{path}: expected the columns {CSV_FIELDS}, missing "
                    f"{missing}"
                )
            rows, first_line = [], {}
            for n, row in enumerate(reader, start=2):
                rows.append(_check_row(path, n, row, len(fields)))
                line = first_line.setdefault(row["ID"], n)
                if line != n:
                    raise ValueError(
                        f"{path}, line {n}: duplicate ID {row['ID']!r} "
                        f"(first on line {line})"
                    )
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text CSV ({e})") from e
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV ({e})") from e
    if not rows:
        raise ValueError(f"Manifest {path} has no rows (header only)")
    return rows


def _check_row(path, n, row, num_fields):
    """One manifest row with numbers converted; clear error if malformed."""
    extra = len(row.get(None) or [])
    absent = sum(v is None for v in row.values())
    if extra or absent:
        raise ValueError(
            f"{path}, line {n}: expected {num_fields} comma-separated "
            f"fields, got {num_fields + extra - absent}"
        )
    try:
        row["start"] = int(row["start"])
        row["stop"] = int(row["stop"])
        row["duration"] = float(row["duration"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}, line {n}: bad number ({e})") from e
    for key in ("ID", "wav", "spk_id"):
        if not row[key].strip():
            raise ValueError(f"{path}, line {n}: empty {key}")
    if not 0 <= row["start"] < row["stop"]:
        raise ValueError(
            f"{path}, line {n}: expected 0 <= start < stop (samples), got "
            f"start={row['start']}, stop={row['stop']}"
        )
    if not (math.isfinite(row["duration"]) and row["duration"] > 0):
        raise ValueError(
            f"{path}, line {n}: expected a positive duration (seconds), "
            f"got {row['duration']}"
        )
    return row
