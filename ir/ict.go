package ir

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// This file is the "ir.ict" task: the Inverse Cloze Task of Lee, Chang
// and Toutanova (ORQA, ACL 2019), pre-training a bi-encoder for retrieval
// without any query. A random sentence of a document is the pseudo-query;
// the document is its positive, with that sentence removed 90% of the time
// (so the task is semantic, not word matching) and kept 10% (so the model
// still learns that word overlap is evidence, as ORQA argues); the other
// documents of the batch are its negatives. The survey (Fan et al., 2021)
// lists ICT among the pre-training tasks designed for IR; the run it makes
// is a starting point for ir.dense (pretrained = the run).

// ICTKeys is the [ict] table.
type ICTKeys struct {
	// RemoveProb is the probability that the pseudo-query's sentence is
	// removed from its document (ORQA: 0.9).
	RemoveProb float64 `toml:"remove_prob"`
}

// ICTConfig is the "ir.ict" task's config. Of the data it reads the
// collection only (a benchmark's documents, or data.collection); [eval]
// optionally measures the pre-trained bi-encoder's zero-shot retrieval on a
// benchmark split.
type ICTConfig struct {
	train.Base
	BiEncoderSetup
	ICT   ICTKeys    `toml:"ict"`
	Optim DenseOptim `toml:"optim"`
	Data  DenseData  `toml:"data"`
	Eval  DenseEval  `toml:"eval"`
}

// DefaultICT is ORQA's ICT where it applies to any model: separate
// towers, [CLS] and dot product, the sentence removed 90% of the time,
// in-batch negatives; lr 1e-4 with 10% warm-up and linear decay; no
// evaluation.
func DefaultICT() *ICTConfig {
	return &ICTConfig{Base: train.Base{Task: "ir.ict", Trainer: train.DefaultTrainer()},
		BiEncoderSetup: BiEncoderSetup{VocabSize: 8000,
			Encoder: EncoderKeys{Temperature: 0, QueryMaxLen: DefaultQueryMaxLen, PassageMaxLen: DefaultPassageMaxLen}},
		ICT:   ICTKeys{RemoveProb: 0.9},
		Optim: DenseOptim{LR: 1e-4, WarmupRatio: 0.1, Clip: 1, Eps: 1e-8},
		Data:  DenseData{Batch: 64},
		Eval:  DenseEval{Batch: 256, Depth: 100},
	}
}

// Validate checks the task's keys, naming them.
func (c *ICTConfig) Validate() error {
	if err := c.BiEncoderSetup.validate(); err != nil {
		return err
	}
	if p := c.ICT.RemoveProb; p < 0 || p > 1 {
		return config.Field("ict.remove_prob", "must be in [0, 1], got %v", p)
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	if err := c.Data.validate(false); err != nil {
		return err
	}
	return c.Eval.validate(c.Data, true)
}

// ICTResult is what an ir.ict run reports; with [eval] split set, the
// zero-shot retrieval measures too.
type ICTResult struct {
	Docs int `json:"docs"`
	// ICTDocs are the documents with at least two sentences, the ones a
	// pseudo-query can be cut from.
	ICTDocs  int     `json:"ict_documents"`
	Steps    int64   `json:"steps"`
	Seconds  float64 `json:"seconds"`
	LastLoss float64 `json:"last_loss"` // the mean ICT loss of the last (up to 50) steps
	*DenseEvaluation
}

// ICTTask is "ir.ict"; papers/papers.go registers it.
var ICTTask = train.TaskSpec[*ICTConfig, *ICTResult]{
	Name:    "ir.ict",
	Doc:     "pre-train a bi-encoder with the Inverse Cloze Task (ORQA): a sentence retrieves its document, in-batch negatives",
	Default: DefaultICT,
	Run:     RunICT,
	Added:   torchmods.BertAddedKeys(nil),
}

// ictSentences splits text into sentences, as byte ranges [start, end)
// with surrounding spaces trimmed: a sentence ends after '.', '!' or '?'
// (which it keeps) or at ';' (which separates, as in the WordNet
// benchmark's "lemmas; example; related lemmas"), when white space
// follows. Empty pieces are skipped.
func ictSentences(text string) [][2]int {
	var out [][2]int
	start := 0
	add := func(a, b int) {
		for a < b {
			r, n := utf8.DecodeRuneInString(text[a:])
			if !unicode.IsSpace(r) {
				break
			}
			a += n
		}
		for b > a {
			r, n := utf8.DecodeLastRuneInString(text[:b])
			if !unicode.IsSpace(r) {
				break
			}
			b -= n
		}
		if a < b {
			out = append(out, [2]int{a, b})
		}
	}
	for i, r := range text {
		if r != '.' && r != '!' && r != '?' && r != ';' {
			continue
		}
		next, _ := utf8.DecodeRuneInString(text[i+1:])
		if i+1 < len(text) && !unicode.IsSpace(next) {
			continue // "3.5", "e.g.x": not a boundary
		}
		if r == ';' {
			add(start, i)
		} else {
			add(start, i+1)
		}
		start = i + 1
	}
	add(start, len(text))
	return out
}

// ictRemove is text without sentence s of sents: the text before it
// joined to the next sentence (so the separator after it goes too), or,
// for the last sentence, the text up to the end of the one before.
func ictRemove(text string, sents [][2]int, s int) string {
	if s+1 < len(sents) {
		return strings.TrimSpace(text[:sents[s][0]] + text[sents[s+1][0]:])
	}
	return strings.TrimSpace(text[:sents[s-1][1]])
}

// ictBatch is one micro-batch: pseudo-queries and contexts, tokenised,
// and the pairs that are the same document text (so not negatives).
type ictBatch struct {
	q, p    [][]int64
	exclude []bool
}

// RunICT pre-trains the bi-encoder with the Inverse Cloze Task on the
// collection's documents and writes a run that ir.dense can start from.
func RunICT(s *train.Session, c *ICTConfig) (*ICTResult, error) {
	w := s.W
	corpus, err := loadDenseData(c.Data, c.Eval, false)
	if err != nil {
		return nil, err
	}
	m, err := setupBiEncoder(s, c.BiEncoderSetup, corpus.docTexts)
	if err != nil {
		return nil, err
	}
	var docs []int
	var sents [][][2]int
	for i, d := range corpus.docs {
		if ss := ictSentences(d.Text); len(ss) >= 2 {
			docs = append(docs, i)
			sents = append(sents, ss)
		}
	}
	if len(docs) < c.Data.Batch {
		return nil, fmt.Errorf("ir: %d documents have two sentences or more, fewer than a batch of %d", len(docs), c.Data.Batch)
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(docs), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) (*ictBatch, error) {
			rng := b.Rand()
			var qs, ps, orig []string
			for _, k := range b.Indices {
				text := corpus.docs[docs[k]].Text
				ss := sents[k]
				i := rng.IntN(len(ss))
				qs = append(qs, text[ss[i][0]:ss[i][1]])
				if rng.Float64() < c.ICT.RemoveProb {
					ps = append(ps, ictRemove(text, ss, i))
				} else {
					ps = append(ps, text)
				}
				orig = append(orig, text)
			}
			out := &ictBatch{exclude: make([]bool, len(orig)*len(orig))}
			for i := range orig {
				for j := range orig {
					out.exclude[i*len(orig)+j] = i != j && orig[i] == orig[j]
				}
			}
			var err error
			if out.q, err = m.Query.TokenizeAll(qs); err != nil {
				return nil, err
			}
			out.p, err = m.Passage.TokenizeAll(ps)
			return out, err
		})
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	perEpoch, steps, err := s.Steps(loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	opt, sched, err := c.Optim.plan(s.Store, steps)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "ir.ict: %d of %d documents have two sentences or more; %s; batch %d, %d steps (%.2f epochs), sentence removed with p = %v, weights %s\n",
		len(docs), len(corpus.docs), m.describe(), c.Data.Batch, steps, float64(steps)/float64(perEpoch), c.ICT.RemoveProb, denseOrNone(c.Pretrained))
	positives := make([]int64, c.Data.Batch)
	for i := range positives {
		positives[i] = int64(i)
	}
	var last []float64
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(int64, int) (*ts.Tensor, error) {
			b, err := loader.Next()
			if err != nil {
				return nil, err
			}
			l := m.loss(b.q, b.p, positives, b.exclude, c.Encoder.Temperature, true)
			last = append(last, l.Float64Values()[0])
			if len(last) > 50 {
				last = last[1:]
			}
			return l, nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
	})
	if err != nil {
		return nil, err
	}
	res := &ICTResult{Docs: len(corpus.docs), ICTDocs: len(docs), Steps: steps}
	for _, l := range last {
		res.LastLoss += l / float64(len(last))
	}
	if len(corpus.eval) > 0 {
		if res.DenseEvaluation, err = evaluateBiEncoder(m, corpus, c.Eval, s.Out, true, w); err != nil {
			return nil, err
		}
	}
	res.Seconds = s.Elapsed().Seconds()
	return res, nil
}
