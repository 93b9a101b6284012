"""Writes pack_fixture.json for mlm/pack_test.go: a transcription of the official packer
(mutonix/better_masking at 35652c2, data_utils.BertDataProcessor: __call__, filter_out, clean,
add_line, _create_example, _make_example without the POS tagging) run on a synthetic corpus.

The corpus is documents of paragraphs ("lines") of 20-200 whitespace-separated words, plus some
paragraphs shorter than 80 characters that the official filter drops. The tokenizer is replaced by
line.split() with one token per word, so a paragraph's token ids can be numbered globally and an
example names the paragraphs it took tokens from. Every random.random() and random.randint() the
packer draws is recorded in order, so the Go packer can replay them and must produce the same
examples; 20 more runs with Python's own generator give the length distribution the Go packer's own
generator must match.

    /usr/bin/python3 mlm/testdata/pack_fixture.py > mlm/testdata/pack_fixture.json
"""
import json
import random
import re
import statistics

MAX_LENGTH = 512


class Recorder:
    """random.random and random.randint, recording each value drawn."""

    def __init__(self, rng):
        self.rng, self.draws = rng, []

    def random(self):
        v = self.rng.random()
        self.draws.append(["f", v])
        return v

    def randint(self, a, b):
        v = self.rng.randint(a, b)
        self.draws.append(["i", v])
        return v


class Tokenizer:
    """Stands in for BertTokenizerFast: a token per whitespace-separated word, ids numbered
    in order of appearance so an example's ids say which paragraph each token came from."""
    cls_token_id, sep_token_id = -1, -2

    def __init__(self):
        self.next = 0

    def tokenize(self, line, max_length=512, truncation=True):
        return line.split()[:max_length]

    def convert_tokens_to_ids(self, tokens):
        ids = list(range(self.next, self.next + len(tokens)))
        self.next += len(tokens)
        return ids


class BertDataProcessor:
    # Transcribed from data_utils.py; `random` is the module or a Recorder.
    def __init__(self, hf_tokenizer, max_length, random, lines_delimiter='\n', apply_cleaning=True):
        self.hf_tokenizer = hf_tokenizer
        self._current_sentences = []
        self._current_length = 0
        self._max_length = max_length
        self._target_length = max_length
        self.lines_delimiter = lines_delimiter
        self.apply_cleaning = apply_cleaning
        self.random = random

    def __call__(self, texts):
        new_example = {'input_ids': []}
        for text in texts:  # for every doc
            for line in re.split(self.lines_delimiter, text):  # for every paragraph
                if re.fullmatch(r'\s*', line): continue
                if self.apply_cleaning and self.filter_out(line): continue
                example = self.add_line(line)
                if example:
                    for k, v in example.items(): new_example[k].append(v)
            if self._current_length != 0:
                example = self._create_example()
                for k, v in example.items(): new_example[k].append(v)
        return new_example

    def filter_out(self, line):
        if len(line) < 80: return True
        return False

    def clean(self, line):
        return line.strip().replace("\n", " ").replace("()", "")

    def add_line(self, line):
        line = self.clean(line)
        tokens = self.hf_tokenizer.tokenize(line, max_length=512, truncation=True)
        tokids = self.hf_tokenizer.convert_tokens_to_ids(tokens)
        self._current_sentences.append(tokids)
        self._current_length += len(tokids)
        if self._current_length >= self._target_length:
            return self._create_example()
        return None

    def _create_example(self):
        random = self.random
        if random.random() < 0.1:
            first_segment_target_length = 100000
        else:
            first_segment_target_length = (self._target_length - 3) // 2

        first_segment = []
        second_segment = []
        for sentence in self._current_sentences:
            if (len(first_segment) == 0 or
                    len(first_segment) + len(sentence) < first_segment_target_length or
                    (len(second_segment) == 0 and
                     len(first_segment) < first_segment_target_length and
                     random.random() < 0.5)):
                first_segment += sentence
            else:
                second_segment += sentence

        first_segment = first_segment[:self._max_length - 2]
        second_segment = second_segment[:max(0, self._max_length - len(first_segment) - 3)]

        self._current_sentences = []
        self._current_length = 0
        if random.random() < 0.05:
            self._target_length = random.randint(5, self._max_length)
        else:
            self._target_length = self._max_length

        return self._make_example(first_segment, second_segment)

    def _make_example(self, first_segment, second_segment):
        # The POS tagging and alignment are left out; the second segment is commented out
        # in the official code, so an example is [CLS] first_segment [SEP].
        input_ids = [self.hf_tokenizer.cls_token_id] + first_segment + [self.hf_tokenizer.sep_token_id]
        return {'input_ids': input_ids}


def corpus(rng, docs):
    """Documents of 1-24 paragraphs; a paragraph is 20-200 words of 2-9 letters, or (one in
    twenty) 3-8 short words, under the filter's 80 characters."""
    out = []
    for _ in range(docs):
        paras = []
        for _ in range(rng.randint(1, 24)):
            n = rng.randint(3, 8) if rng.random() < 0.05 else rng.randint(20, 200)
            short = n <= 8
            paras.append(" ".join("w" * (rng.randint(1, 3) if short else rng.randint(2, 9)) for _ in range(n)))
        out.append("\n".join(paras))
    return out


def runs(ids, starts):
    """An example's tokens as [paragraph, count] runs (paragraph numbers over the corpus)."""
    out = []
    for t in ids[1:-1]:
        p = max(i for i, s in enumerate(starts) if s <= t)
        if out and out[-1][0] == p:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return out


def main():
    texts = corpus(random.Random(20220822), 200)
    docs = [[[len(line), len(line.split())] for line in text.split("\n")] for text in texts]

    tok = Tokenizer()
    rec = Recorder(random.Random(35652))
    proc = BertDataProcessor(tok, MAX_LENGTH, rec)
    examples = []
    for text in texts:  # one document per call, as HF's batched map hands them over
        examples += proc([text])['input_ids']
    # Global paragraph numbering: a paragraph's first id, for the paragraphs that passed the filter.
    starts, nxt, kept = [], 0, 0
    for d in docs:
        for chars, n in d:
            starts.append(nxt if chars >= 80 else 10**12)
            if chars >= 80:
                nxt += min(n, 512)
    lengths = [len(e) for e in examples]
    tokens = sum(min(n, 512) for d in docs for chars, n in d if chars >= 80)

    # Python's own generator, for the distribution: 20 packings of the corpus, pooled.
    own = []
    for seed in range(20):
        proc = BertDataProcessor(Tokenizer(), MAX_LENGTH, random.Random(seed))
        for text in texts:
            own += [len(e) for e in proc([text])['input_ids']]
    q = statistics.quantiles(own, n=10)
    json.dump({
        "max_len": MAX_LENGTH,
        "docs": docs,
        "draws": rec.draws,
        "examples": [runs(e, starts) for e in examples],
        "lengths": lengths,
        "kept_share": (sum(lengths) - 2 * len(lengths)) / tokens,
        "own": {"examples": len(own), "mean": statistics.mean(own), "stdev": statistics.stdev(own),
                "deciles": q, "kept_share": (sum(own) - 2 * len(own)) / tokens / 20},
    }, __import__("sys").stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
