"""Reads SpeechBrain's ``train_log.txt`` (``FileTrainLogger``) back into
numbers, one dict per epoch."""


def parse_line(line):
    """``{"epoch": 1.0, "train loss": 2.3, ...}`` of one log line (the
    fields that are numbers).

    Example
    -------
    >>> parse_line("epoch: 2, lr: 1.00e-03 - train loss: 9.18, "
    ...            "train trkd_F_median: 2.00 - valid ErrorRate: 2.83e-01")
    ... # doctest: +NORMALIZE_WHITESPACE
    {'epoch': 2.0, 'lr': 0.001, 'train loss': 9.18,
     'train trkd_F_median': 2.0, 'valid ErrorRate': 0.283}
    """
    values = {}
    for part in line.replace(" - ", ", ").split(", "):
        key, _, value = part.partition(": ")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            pass
    return values


def read_train_log(path):
    """The epochs of a ``train_log.txt``, as ``parse_line`` dicts."""
    with open(path, encoding="utf-8") as f:
        return [parse_line(line) for line in f if line.strip()]
