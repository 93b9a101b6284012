"""Writes corpus.txt, the tests' small corpus: a document per line made of a
WordNet synset's gloss and its example sentences, for the first 240 noun and
verb synsets (in data-file order) that have at least one example. Run with
Debian's wordnet-base installed: python3 gen_corpus.py"""
import re

docs = []
for pos in ("noun", "verb"):
    n = 0
    with open(f"/usr/share/wordnet/data.{pos}", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  ") or "|" not in line:
                continue
            gloss = line.split("|", 1)[1].strip()
            examples = re.findall(r'"([^"]+)"', gloss)
            definition = gloss.split('"')[0].strip().rstrip(";").strip()
            if not examples or not definition:
                continue
            sents = [definition] + [e.strip() for e in examples]
            docs.append(" ".join(s if s.endswith((".", "!", "?")) else s + "." for s in sents))
            n += 1
            if n == 120:
                break
with open("corpus.txt", "w") as f:
    f.write("\n".join(docs) + "\n")
