"""Makes fewshot_python.json: what Python's random module and the official few-shot and base-to-new code
give, for cocoop/fewshot_test.go to compare with pyrandom.go and fewshot.go.

Run with any Python 3 (no torch needed): /usr/bin/python3 cocoop/testdata/gen_fewshot.py

generate_fewshot_dataset and split_dataset_by_label are transcribed from Dassl
(dassl/data/datasets/base_dataset.py, DatasetBase), which is not in this repository's mirror: they are written
here as Dassl documents and CoOp's datasets call them (generate_fewshot_dataset(train, num_shots=K) right after
train.py's set_random_seed, repeat=False). subsample_classes is copied from CoOp's datasets/oxford_pets.py at
commit ff61507c790454bce7c5052c3ac39e60772f1f89 (lines 146-190), with Datum replaced by a tuple.
"""
import json
import math
import os
import random
from collections import defaultdict


def split_dataset_by_label(data_source):
    output = defaultdict(list)
    for item in data_source:
        output[item[1]].append(item)
    return output


def generate_fewshot_dataset(data_source, num_shots=-1, repeat=False):
    if num_shots < 1:
        return data_source
    tracker = split_dataset_by_label(data_source)
    dataset = []
    for label, items in tracker.items():
        if len(items) >= num_shots:
            sampled_items = random.sample(items, num_shots)
        else:
            if repeat:
                sampled_items = random.choices(items, k=num_shots)
            else:
                sampled_items = items
        dataset.extend(sampled_items)
    return dataset


def subsample_classes(*args, subsample="all"):
    assert subsample in ["all", "base", "new"]
    if subsample == "all":
        return args
    dataset = args[0]
    labels = set()
    for item in dataset:
        labels.add(item[1])
    labels = list(labels)
    labels.sort()
    n = len(labels)
    m = math.ceil(n / 2)
    if subsample == "base":
        selected = labels[:m]
    else:
        selected = labels[m:]
    relabeler = {y: y_new for y_new, y in enumerate(selected)}
    output = []
    for dataset in args:
        dataset_new = []
        for item in dataset:
            if item[1] not in selected:
                continue
            dataset_new.append((item[0], relabeler[item[1]], item[2]))
        output.append(dataset_new)
    return output


def main():
    out = {"raw": [], "sample": [], "fewshot": []}
    # The generator itself: the first 8 words of getrandbits(32) and a few below-n draws per seed.
    for seed in [0, 1, 2, 3, 42, 2**32 + 5]:
        random.seed(seed)
        words = [random.getrandbits(32) for _ in range(8)]
        below = [random._inst._randbelow(n) for n in [1, 2, 3, 7, 100, 1000, 2**31 + 3]]
        bits = [random.getrandbits(k) for k in [1, 5, 31, 33, 64]]
        out["raw"].append({"seed": seed, "words": words, "below": below, "bits": bits})
    # random.sample on both of its paths (pool for small populations, set for large ones).
    for seed, n, k in [(1, 10, 4), (1, 20, 16), (2, 85, 16), (3, 86, 16), (1, 500, 16), (4, 30, 0), (5, 7, 7)]:
        random.seed(seed)
        out["sample"].append({"seed": seed, "n": n, "k": k, "got": random.sample(range(n), k)})
    # A split_zhou-like train list: labels first appearing out of order, classes of 3 to 40 items, then
    # K-shot sampling and both halves of the base-to-new split.
    items = []
    sizes = {4: 20, 0: 3, 2: 40, 1: 16, 3: 17, 5: 9, 6: 25}
    names = {y: f"class_{y}" for y in sizes}
    for y, n in sizes.items():
        for i in range(n):
            items.append((f"{names[y]}/img{i:03d}.jpg", y, names[y]))
    for seed in [1, 2, 3]:
        for shots in [1, 4, 16]:
            random.seed(seed)
            fs = generate_fewshot_dataset(items, num_shots=shots)
            base, = subsample_classes(fs, subsample="base")
            new, = subsample_classes(fs, subsample="new")
            out["fewshot"].append({"seed": seed, "shots": shots, "got": [it[0] for it in fs],
                                   "base": [[it[0], it[1]] for it in base], "new": [[it[0], it[1]] for it in new]})
    out["items"] = [[it[0], it[1], it[2]] for it in items]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fewshot_python.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
