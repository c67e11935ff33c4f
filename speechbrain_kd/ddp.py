"""Process-group helpers: rank, world size, sums over processes.

Outside ``torchrun`` (no initialised ``torch.distributed`` group) every
helper is the single-process identity.
"""

import torch


def distributed():
    """True inside an initialised ``torch.distributed`` process group.

    Example
    -------
    >>> distributed()
    False
    """
    return (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    )


def world():
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside DDP.

    Example
    -------
    >>> world()
    (0, 1)
    """
    if not distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def sum_over_processes(sums, mean, device="cpu"):
    """The values of ``sums`` summed over the processes, ``mean`` averaged.

    Each process holds the sums of its part of the data (e.g. of an epoch's
    losses) and its own mean; under DDP every process gets the totals and
    the mean of the means. Outside DDP the inputs come back unchanged.

    Arguments
    ---------
    sums : dict
        ``{name: number}``.
    mean : float
        A per-process average.
    device : str or torch.device
        Where the collective runs (the process group's device).

    Returns
    -------
    (dict, float)

    Example
    -------
    >>> sum_over_processes({"task": 2.0, "steps": 4}, 0.5)
    ({'task': 2.0, 'steps': 4}, 0.5)
    """
    if not distributed():
        return sums, mean
    keys = sorted(sums)
    values = torch.tensor(
        [float(sums[k]) for k in keys] + [float(mean)],
        dtype=torch.float64,
        device=device,
    )
    torch.distributed.all_reduce(values)
    values = values.tolist()
    size = torch.distributed.get_world_size()
    return dict(zip(keys, values[:-1])), values[-1] / size
