"""Prints mlm/RESULTS.md's table from a mlm/experiment.sh output folder: per condition, the mean
and standard deviation over seeds of the held-out MLM loss at 15% and of the lexname accuracy."""
import json
import os
import statistics
import sys

out = sys.argv[1]
conds = [("fixed", "fixed 15%"), ("cosine", "MRD cosine"), ("linear", "MRD linear"), ("ptw", "PTW"), ("ptw_cosine", "PTW + MRD cosine"),
         ("only_wwm", "whole words, weights 1 (only_wwm)")]
print("| condition | held-out MLM loss at 15% (lower is better) | lexname accuracy, % | seeds |")
print("|---|---|---|---|")
for c, name in conds:
    loss, acc = [], []
    for s in range(10):
        run = os.path.join(out, f"{c}-seed{s}")
        if os.path.exists(os.path.join(run, "results.json")):
            loss.append(json.load(open(os.path.join(run, "results.json")))["heldout_mlm_loss"])
        if os.path.exists(os.path.join(run + "-lexname", "results.json")):
            acc.append(100 * json.load(open(os.path.join(run + "-lexname", "results.json")))["test_accuracy"])
    fmt = lambda v, d: f"{statistics.mean(v):.{d}f} ± {statistics.stdev(v):.{d}f}" if len(v) > 1 else (f"{v[0]:.{d}f}" if v else "-")
    each = lambda v, d: " (" + ", ".join(f"{x:.{d}f}" for x in v) + ")" if v else ""
    print(f"| {name} | {fmt(loss, 3)}{each(loss, 3)} | {fmt(acc, 2)}{each(acc, 2)} | {len(loss)} |")
