"""Writes corpus.txt, the tests' small corpus: a document per line made of a
WordNet synset's gloss and its example sentences, for the first 120 noun and
120 verb synsets (in data-file order) that have at least one example. Run with
Debian's wordnet-base installed:

    python3 gen_corpus.py [PER_POS [OUT]]   (default 120 corpus.txt)

metapt/cost.sh writes a larger one the same way."""
import re
import sys

per_pos = int(sys.argv[1]) if len(sys.argv) > 1 else 120
out = sys.argv[2] if len(sys.argv) > 2 else "corpus.txt"

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
            if n == per_pos:
                break
with open(out, "w") as f:
    f.write("\n".join(docs) + "\n")
