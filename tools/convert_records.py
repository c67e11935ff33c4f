#!/usr/bin/env python3
"""One-off: converts the run records under bench/runs/ (verification.json,
replicates.json, wall_seconds.txt, pruning.json, card.md) into record.json
(speechbrain_kd.records), keeping card.md, card_pruned.md, train_log.txt
and command.txt for people.

    python tools/convert_records.py bench/runs
"""

import json
import os
import re
import sys

from speechbrain_kd.records import write_record
from speechbrain_kd.train_log import read_train_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHOD = re.compile(r"hparams/methods/(\w+)\.yaml")


def label_of(folder, command):
    """The label of the method fragment the run's recipe YAML includes."""
    rel = folder.replace(os.sep, "/")
    yaml = None
    if command:
        yaml = command[1] if len(command) > 1 else None
    if yaml is None:
        row = rel.split("/")[-2]
        yaml = {"nokd_4ep": "nokd", "frame": "ml", "utt": "ml",
                "concat": "ml"}.get(row, row)  # fmt: skip
        yaml = "teacher" if row.startswith("teacher") else yaml
        yaml = "trkd" if row.startswith(("trkd", "dyn", "fixed")) else yaml
        yaml = "ml" if "/ml" in rel and row != "nokd" else yaml
        yaml = f"hparams/{yaml}.yaml"
    if "/ml" in rel and rel.split("/")[-2] == "nokd":
        return "no KD"  # ml.yaml --ml_level=nokd
    name = os.path.basename(yaml)[: -len(".yaml")]
    if name.startswith("teacher"):
        return "teacher"
    path = os.path.join(ROOT, "recipes", "MiniSpeakers", "hparams", name)
    with open(path + ".yaml") as f:
        found = METHOD.search(f.read())
    if not found:
        return "no KD"
    fragment = os.path.join(ROOT, "hparams", "methods", found[1] + ".yaml")
    with open(fragment) as f:
        return re.search(r"^label: (.+)$", f.read(), re.M)[1]


def card_value(path, key):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        found = re.search(rf"^\| {key} \| ([^|]+) \|", f.read(), re.M)
    return found[1].strip() if found else None


def convert(folder):
    def path(name):
        return os.path.join(folder, name)

    def load(name):
        with open(path(name)) as f:
            return json.load(f)

    ver = load("verification.json")
    record = {"models": {}, "resamples": None, "bootstrap_seed": None}
    for model, result in ver.items():
        for lst, backends in result["by_list"].items():
            for backend, fig in backends.items():
                keep = {k: fig[k] for k in ("EER", "minDCF_norm") if k in fig}
                keep["trials"] = fig.get("target_trials", 0) + fig.get(
                    "nontarget_trials", 0
                )
                record["models"].setdefault(model, {}).setdefault(lst, {})[
                    backend
                ] = keep
    if os.path.isfile(path("replicates.json")):
        rep = load("replicates.json")
        record["resamples"], record["bootstrap_seed"] = rep["resamples"], 0
        for model, lists in rep["models"].items():
            for lst, fig in lists.items():
                record["models"].setdefault(model, {}).setdefault(lst, {})[
                    "cosine"
                ] = fig
    command = None
    if os.path.isfile(path("command.txt")):
        with open(path("command.txt")) as f:
            lines = [line for line in f.read().splitlines() if line]
        command = lines[0].split() + lines[1:]
    record["command"] = command
    record["label"] = label_of(folder, command)
    params = card_value(path("card.md"), "embedding model parameters")
    record["parameters"] = int(params.replace(",", "")) if params else None
    macs = card_value(
        path("card.md"), r"MACs per 3 s of audio \(features \+ embedding\)"
    )
    record["macs_3s"] = (
        round(float(macs.split()[0]) * 1e6) if macs and "M" in macs else None
    )
    if os.path.isfile(path("wall_seconds.txt")):
        with open(path("wall_seconds.txt")) as f:
            record["wall_seconds"] = float(f.read().split()[0])
    if os.path.isfile(path("pruning.json")):
        record["pruning"] = load("pruning.json")
        record["pruned_parameters"] = record["pruning"]["params_pruned"]
    history = []
    if os.path.isfile(path("train_log.txt")):
        history = read_train_log(path("train_log.txt"))
    record["history"] = history
    record["epochs"] = len(history)
    record["seed"] = int(os.path.basename(folder))
    write_record(folder, record)
    for name in ("verification.json", "replicates.json", "wall_seconds.txt",
                 "pruning.json"):  # fmt: skip
        if os.path.isfile(path(name)):
            os.remove(path(name))
    return record


def main(root):
    for dirpath, _, files in sorted(os.walk(root)):
        if "verification.json" in files:
            record = convert(dirpath)
            print(dirpath, record["label"], record["parameters"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
