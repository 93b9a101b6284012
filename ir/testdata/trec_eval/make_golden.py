# Generates golden.qrels and golden.run (seeded, so rerunning gives the same
# files). golden.trec_eval is then the output of trec_eval 9.0.8
# (usnistgov/trec_eval, tag v9.0.8, built with `make`):
#
#   T=path/to/trec_eval
#   { $T -q -m recip_rank -m ndcg_cut.10 -m recall.5,100 -m P.5 -m map golden.qrels golden.run
#     $T -q -M 10 -m recip_rank golden.qrels golden.run | sed 's/^recip_rank    /recip_rank_M10/'
#   } > golden.trec_eval
import random

random.seed(21)
qids = [str(100 + i) for i in range(1, 41)]
qrels, run = [], []
for qi, q in enumerate(qids):
    pool = list(dict.fromkeys("D%d" % random.randint(1, 3000) for _ in range(150)))
    judged = random.sample(pool, random.randint(3, 40))
    norel = qi % 9 == 4  # queries judged with no relevant document
    for d in judged:
        g = random.choice([0, 0, 0, 1, 1, 2, 3]) if not norel else 0
        if random.random() < 0.03:
            g = -1  # in the pool but unjudged
        qrels.append((q, d, g))
    if qi % 13 == 7:  # judged but missing from the run
        continue
    depth = random.choice([0, 3, 8, 15, 40, 90, 120])
    if qi % 11 == 3:
        depth = max(depth, 5)
    cand = random.sample(pool, min(depth, len(pool)))
    if qi % 17 == 2:  # nothing retrieved is judged
        cand = ["U%d" % i for i in range(depth or 5)]
    for d in cand:
        run.append((q, d, round(random.uniform(0, 5), 1)))  # one decimal: many ties
for q in ["900", "901"]:  # in the run, not judged
    for i in range(5):
        run.append((q, "D%d" % i, float(5 - i)))
random.shuffle(run)
with open("golden.qrels", "w") as f:
    for q, d, g in sorted(qrels):
        f.write(f"{q} 0 {d} {g}\n")
with open("golden.run", "w") as f:
    for i, (q, d, s) in enumerate(run):
        f.write(f"{q} Q0 {d} {i % 7 + 1} {s} golden\n")  # rank column deliberately wrong
