"""Writes pwc_train.jsonl and pwc_eval.jsonl, the fine-tuning tests' tiny
prompt-with-context files, from corpus.txt (metapt/testdata/gen_corpus.py's
WordNet glosses and examples, copied): the input is a corpus line, the
prompt asks for the definition, the answer is the line's first sentence.
Lines 1-24 train, 201-208 evaluate.

    python3 gen_pwc.py
"""
import json

lines = [l.strip() for l in open("corpus.txt") if l.strip()]


def example(line):
    first = line.split(". ")[0].rstrip(".") + "."
    return {"input": line, "prompt": "repeat the definition.", "answer": first}


with open("pwc_train.jsonl", "w") as f:
    for line in lines[:24]:
        f.write(json.dumps(example(line)) + "\n")
with open("pwc_eval.jsonl", "w") as f:
    for line in lines[200:208]:
        f.write(json.dumps(example(line)) + "\n")
