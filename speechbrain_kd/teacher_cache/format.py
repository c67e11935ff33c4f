"""The on-disk format of a teacher cache: layout, keys and top-k storage.

Storage (a folder of NumPy ``.npy`` files, memory-mapped, no pickle):

- ``logits.npy`` ``[N, V, C]`` float16: every logit (``topk`` null, and
  by default when C <= 2048);
- or, with ``topk: K``: ``top_index.npy`` ``[N, V, K+1]`` int32 and
  ``top_logits.npy`` float16 (the K largest logits and the target's,
  which the K largest may not hold: the target's is last), and
  ``tail_lse.npy`` ``[N, V]`` float32, the log-sum-exp of the other
  logits divided by the distillation temperature ``T``. ``logits``
  rebuilds full rows with every tail logit at ``T * (tail_lse -
  log(#tail))``: the top classes and the tail's total probability at
  ``T`` are exact, only the distribution inside the tail is flattened
  (``tail_bound`` gives the resulting bound on KD);
- ``embedding.npy`` ``[N, V, D]`` float16;
- ``done.npy`` ``[N, V]`` uint8 (views written so far) and
  ``meta.json`` (what the cache is valid for).

A cache is keyed by the teacher's weights (``teacher_digest``: a hash of
its checkpoint files), the training manifest (``file_digest``), the view
settings and the storage settings; ``check_meta`` refuses one that does
not match with an error naming what differs.
"""

import hashlib
import json
import math
import os

import torch

FULL_LOGITS_MAX_CLASSES = 2048
FORMAT = 1


def file_digest(paths):
    """SHA-256 of the contents of ``paths`` (in the given order)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def teacher_digest(source):
    """A hash of a teacher folder's weights (its ``*.ckpt`` files)."""
    files = sorted(
        os.path.join(source, f)
        for f in os.listdir(source)
        if f.endswith(".ckpt")
    )
    if not files:
        raise FileNotFoundError(
            f"{source}: no *.ckpt files to key the teacher cache on (the "
            "teacher must be a local pretrained folder)"
        )
    return file_digest(files)


def tail_bound(tail_mass, num_tail, student_log_probs_range, T):
    """Bound ``T^2 * m * (log n + R)`` on |KD(cached) - KD(exact)| when a tail
    of mass m (``tail_mass``) is spread evenly over its n classes; R: the
    range of the student's log-probabilities at T over the tail. (The tail's
    entropy moves by at most m log n, the cross-entropy by at most m R.)
    """
    entropy = math.log(max(num_tail, 1))
    return T**2 * tail_mass * (entropy + student_log_probs_range)


def rebuild_logits(index, top_logits, tail_lse, classes, T):
    """Full logit rows from top-k storage (see the module docstring).

    Every class outside ``index`` gets ``T * (tail_lse - log(#tail))``,
    so that the tail's log-sum-exp at temperature ``T`` is ``tail_lse``.

    Example
    -------
    >>> t = torch.tensor([[4.0, 1.0, 0.0, -1.0]])
    >>> index, top, lse = split_top(t, torch.tensor([0]), k=1, T=2.0)
    >>> full = rebuild_logits(index, top, lse, 4, T=2.0)
    >>> bool(torch.isclose((full / 2).logsumexp(-1), (t / 2).logsumexp(-1)))
    True
    """
    batch = index.shape[0]
    kept = torch.zeros(batch, classes, dtype=torch.bool, device=index.device)
    kept.scatter_(1, index, True)
    num_tail = (classes - kept.sum(-1)).clamp_min(1).to(tail_lse.dtype)
    fill = T * (tail_lse - num_tail.log())
    full = fill.unsqueeze(1).expand(batch, classes).clone()
    return full.scatter(1, index, top_logits)


def split_top(logits, targets, k, T):
    """Top-k storage of logit rows: ``(index, values, tail_lse)``.

    ``index`` / ``values`` ``[batch, k+1]``: the k largest logits, then the
    target's (repeated if already among them, else the (k+1)-th entry is
    the target); ``tail_lse`` ``[batch]``: the log-sum-exp of the other
    logits divided by ``T`` (``-inf`` when there are none).

    Example
    -------
    >>> index, _, _ = split_top(torch.tensor([[0.0, 3, 1, 2]]),
    ...                         torch.tensor([0]), k=2, T=1.0)
    >>> index.tolist()
    [[1, 3, 0]]
    """
    top = logits.topk(k, dim=-1).indices
    index = torch.cat([top, targets.view(-1, 1)], dim=1)
    values = logits.gather(1, index)
    kept = torch.zeros_like(logits, dtype=torch.bool).scatter(1, index, True)
    tail = torch.where(kept, torch.full_like(logits, -math.inf), logits / T)
    return index, values, tail.logsumexp(-1)


def bytes_per_view(classes, embedding_dim, topk=None):
    """Disk bytes of one view (see the module docstring for the layout).

    Example
    -------
    >>> bytes_per_view(269, 192)  # mini corpus: full float16 logits
    923
    >>> bytes_per_view(5994, 192, topk=255)  # VoxCeleb2 classes
    1925
    """
    per = 2 * embedding_dim + 1  # embedding, done flag
    if topk:
        return per + (topk + 1) * (4 + 2) + 4
    return per + 2 * classes


def read_meta(folder):
    """The ``meta.json`` of ``folder``, or None if it has none (or a
    damaged one)."""
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_meta(folder, meta):
    """Error naming the first setting where a complete cache differs."""
    found = read_meta(folder)
    want = dict(meta, format=FORMAT)
    if found == want:
        return
    if found is None:
        raise ValueError(f"{folder}: not a teacher cache (no meta.json)")
    diffs = []
    for name in sorted(set(found) | set(want)):
        a, b = found.get(name), want.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [
                f"{name}.{key}"
                for key in sorted(set(a) | set(b))
                if a.get(key) != b.get(key)
            ]
        elif a != b:
            diffs.append(name)
    raise ValueError(
        f"The teacher cache {folder} was built for other settings "
        f"({', '.join(diffs)} differ: another teacher, manifest or view "
        "settings); remove it, give another teacher_cache folder, or set "
        "teacher_cache: {rebuild: True}"
    )
