"""Summarises metapt/experiment.sh's runs as the tables of metapt/RESULTS.md:
held-out MLM and NSP losses of each pre-training condition and lexname accuracy after 50, 200
and 1,000 fine-tuning steps, mean +- standard deviation over the seeds found, with the per-seed
values. Needs only the standard library.

    python3 metapt/summarize.py [OUT]   (default runs/metapt-wordnet)"""
import json
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "runs/metapt-wordnet"
conds = [("k0", "k = 0 (multi-task)"), ("k1_first", "k = 1, first order"), ("k2_first", "k = 2, first order"),
         ("k1_second", "k = 1, second order"), ("scratch", "no pre-training")]
budgets = [50, 200, 1000]


def load(path):
    try:
        with open(os.path.join(path, "results.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(vals, scale=1.0, digits=3):
    if not vals:
        return "-"
    v = [x * scale for x in vals]
    per = ", ".join(f"{x:.{digits}f}" for x in v)
    if len(v) == 1:
        return f"{v[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f} ({per})"


rows_pre, rows_ft = [], []
for key, name in conds:
    seeds = sorted(int(d.rsplit("seed", 1)[1]) for d in os.listdir(out)
                   if d.startswith(key + "-seed") and d.rsplit("seed", 1)[1].isdigit())
    pre = [(s, load(os.path.join(out, f"{key}-seed{s}"))) for s in seeds]
    pre = [(s, r) for s, r in pre if r]
    if key != "scratch" and pre:
        rows_pre.append((name, [s for s, _ in pre], fmt([r["heldout_mlm_loss"] for _, r in pre]),
                         fmt([r["heldout_nsp_loss"] for _, r in pre]),
                         fmt([r["heldout_nsp_accuracy"] for _, r in pre], 100, 2),
                         fmt([r["train_seconds"] / 60 for _, r in pre], 1, 1),
                         fmt([r["train_cpu_seconds"] / 60 for _, r in pre if "train_cpu_seconds" in r], 1, 1),
                         pre[0][1]["steps"], pre[0][1]["grad_computations"]))
    ft = []
    for n in budgets:
        vals = [r["test_accuracy"] for s in seeds if (r := load(os.path.join(out, f"{key}-seed{s}-lexname{n}")))]
        ft.append(fmt(vals, 100, 2))
    if any(f != "-" for f in ft):
        rows_ft.append((name, ft))

print("| condition | seeds | steps | gradient computations | held-out MLM loss | held-out NSP loss | NSP accuracy, % | training minutes (wall) | CPU minutes |")
print("|---|---|---|---|---|---|---|---|---|")
for name, seeds, mlm, nsp, acc, minutes, cpu, steps, grads in rows_pre:
    print(f"| {name} | {', '.join(map(str, seeds))} | {steps} | {grads} | {mlm} | {nsp} | {acc} | {minutes} | {cpu} |")
print()
print("| condition | lexname accuracy after 50 steps, % | after 200 steps, % | after 1,000 steps, % |")
print("|---|---|---|---|")
for name, ft in rows_ft:
    print(f"| {name} | {' | '.join(ft)} |")
