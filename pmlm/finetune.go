package pmlm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// GenDataConfig picks the sequence-to-sequence data.
type GenDataConfig struct {
	// Corpus is "wordnet" (Task picks the examples, test synsets by mlm's
	// held-out split) or "jsonl": s2s-ft's format, one {"src": ..., "tgt":
	// ...} object per line, in Train and Test, as its README distributes
	// CNN/DailyMail, XSum and SQuAD question generation.
	Corpus string `toml:"corpus"`
	Task   string `toml:"task"` // WordNet: "gloss_to_word" or "word_to_gloss"
	Train  string `toml:"train"`
	Test   string `toml:"test"`
	// Vocab is the vocab.txt of the pre-trained model (WordNet: the one
	// pmlm.pretrain trained, so that its ids mean the same).
	Vocab   string  `toml:"vocab"`
	Heldout float64 `toml:"heldout"` // WordNet: share of held-out synsets (the pre-training run's)
	Batch   int     `toml:"batch"`
	// TrainExamples and TestExamples cap the examples used (0: all): the
	// first training examples, and test examples evenly spaced through the
	// file (WordNet's order groups synsets by lexicographer file, so the
	// first ones would all be nouns of one field).
	TrainExamples int `toml:"train_examples"`
	TestExamples  int `toml:"test_examples"`
}

func (d GenDataConfig) validate() error {
	switch {
	case d.Corpus != "wordnet" && d.Corpus != "jsonl":
		return config.Field("data.corpus", `must be "wordnet" or "jsonl", got %q`, d.Corpus)
	case d.Corpus == "wordnet" && d.Task != GlossToWord && d.Task != WordToGloss:
		return config.Field("data.task", "must be %q or %q, got %q", GlossToWord, WordToGloss, d.Task)
	case d.Corpus == "wordnet" && !(d.Heldout > 0 && d.Heldout < 1):
		return config.Field("data.heldout", "must be in (0, 1), got %v", d.Heldout)
	case d.Corpus == "jsonl" && (d.Train == "" || d.Test == ""):
		return config.Field("data.train", "data.train and data.test must name s2s-ft JSON-lines files")
	case d.Vocab == "":
		return config.Field("data.vocab", "must name the pre-trained model's vocab.txt")
	case d.Batch < 1:
		return config.Field("data.batch", "must be positive, got %d", d.Batch)
	case d.TrainExamples < 0 || d.TestExamples < 0:
		return config.Field("data.train_examples", "must not be negative")
	}
	return nil
}

// spread keeps n of xs, evenly spaced (index i*len/n), in order.
func spread[T any](xs []T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = xs[i*len(xs)/n]
	}
	return out
}

// ReadJSONL reads s2s-ft's data file: one JSON object per line with "src"
// and "tgt", each text or a list of WordPiece tokens (the two formats
// s2s-ft's README distributes).
func ReadJSONL(path string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Example
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r struct {
			Src, Tgt json.RawMessage
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		src, err1 := s2sText(r.Src)
		tgt, err2 := s2sText(r.Tgt)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf(`%s:%d: want an object with "src" and "tgt", each a string or a list of word pieces`, path, n)
		}
		out = append(out, Example{Source: src, Target: tgt, Answers: []string{tgt}})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no examples", path)
	}
	return out, nil
}

// SourceText is s2sText for `repro pmlm generate`'s JSON lines.
func SourceText(raw json.RawMessage) (string, error) { return s2sText(raw) }

// s2sText reads a "src" or "tgt" of s2s-ft's data: text, or its tokenized
// format, a list of WordPiece tokens, which is joined back into text
// ("##" pieces glued to the word before) for the tokenizer to split again
// (the same pieces with BERT's vocabulary).
func s2sText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", fmt.Errorf("missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var toks []string
	if err := json.Unmarshal(raw, &toks); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, t := range toks {
		if rest, ok := strings.CutPrefix(t, "##"); ok && b.Len() > 0 {
			b.WriteString(rest)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t)
	}
	return b.String(), nil
}

// loadExamples gives the training and test examples, capped.
func (d GenDataConfig) loadExamples() (trainEx, testEx []Example, err error) {
	if d.Corpus == "wordnet" {
		all, err := WordNetExamples("", d.Task, d.Heldout)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range all {
			if e.Heldout {
				testEx = append(testEx, e)
			} else {
				trainEx = append(trainEx, e)
			}
		}
	} else {
		if trainEx, err = ReadJSONL(d.Train); err != nil {
			return nil, nil, err
		}
		if testEx, err = ReadJSONL(d.Test); err != nil {
			return nil, nil, err
		}
	}
	if d.TrainExamples > 0 && len(trainEx) > d.TrainExamples {
		trainEx = trainEx[:d.TrainExamples]
	}
	if d.TestExamples > 0 && len(testEx) > d.TestExamples {
		testEx = spread(testEx, d.TestExamples)
	}
	return trainEx, testEx, nil
}

// FinetuneConfig is "pmlm.s2s": s2s-ft's sequence-to-sequence fine-tuning
// with pseudo masks, then decoding and scoring the test set.
type FinetuneConfig struct {
	train.Base
	Model torchmods.BertConfig `toml:"model"` // vocab_size 0 takes the tokenizer's
	// Pretrained is a pmlm.pretrain run, a UniLM/s2s-ft checkpoint or a HF
	// BERT folder; "" starts from scratch.
	Pretrained string     `toml:"pretrained"`
	S2S        S2SOptions `toml:"s2s"`
	// LabelSmoothing is s2s-ft's --label_smoothing (0.1 in its recipes).
	LabelSmoothing float64       `toml:"label_smoothing"`
	Decode         BeamOptions   `toml:"decode"` // eos_id is the vocabulary's [SEP] whatever is written
	Optim          OptimConfig   `toml:"optim"`
	Data           GenDataConfig `toml:"data"`
}

// Validate checks the task's sections, naming the key.
func (c *FinetuneConfig) Validate() error {
	if err := validateRun(c.Trainer.MaxSteps, c.Model); err != nil {
		return err
	}
	if err := c.S2S.Validate(); err != nil {
		return config.Field("s2s", "%v", err)
	}
	// Positions run over the source and then the target, in training and
	// in decoding, and must stay in the position table (decode_seq2seq.py
	// caps them the same way through max_seq_length).
	if n := int64(c.S2S.MaxSourceLen + max(c.S2S.MaxTargetLen, c.Decode.MaxTgtLength)); n > c.Model.MaxPositionEmbeddings {
		return config.Field("model.max_position_embeddings", "is %d, but s2s.max_source_len + max(s2s.max_target_len, decode.max_tgt_length) = %d positions", c.Model.MaxPositionEmbeddings, n)
	}
	if c.LabelSmoothing < 0 || c.LabelSmoothing >= 1 {
		return config.Field("label_smoothing", "must be in [0, 1), got %v", c.LabelSmoothing)
	}
	if c.Decode.BeamSize < 1 || c.Decode.MaxTgtLength < 1 || c.Decode.LengthPenalty < 0 || c.Decode.MinLen < 0 ||
		(c.Decode.ForbidDuplicateNgrams && c.Decode.NgramSize < 1) {
		return config.Field("decode", "beam_size and max_tgt_length must be positive, length_penalty and min_len not negative, ngram_size positive when forbid_duplicate_ngrams")
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	return c.Data.validate()
}

// FinetuneTask is "pmlm.s2s".
var FinetuneTask = train.TaskSpec[*FinetuneConfig, *FinetuneResult]{
	Name:  "pmlm.s2s",
	Added: torchmods.BertAddedKeys(nil), // an absent rel_pos_bins is 0 in any case (omitempty)
	Doc:   "UniLMv2 sequence-to-sequence fine-tuning with pseudo masks (s2s-ft), then beam search and ROUGE/BLEU on the test set",
	Default: func() *FinetuneConfig {
		m := torchmods.BertBase()
		m.RelPosBins, m.MaxRelPos = 32, 128
		return &FinetuneConfig{Base: train.Base{Task: "pmlm.s2s", Trainer: train.DefaultTrainer()}, Model: m,
			S2S: DefaultS2SOptions(), LabelSmoothing: 0.1, Decode: defaultDecode(),
			Optim: OptimConfig{LR: 7e-5, Beta2: 0.999, Eps: 1e-8, Warmup: 1000, WeightDecay: 0.01, Clip: 1}}
	},
	Run: Finetune,
}

// defaultDecode is decode_seq2seq.py's defaults with s2s-ft's recipes'
// target length (48, the default s2s.max_target_len), so that the default
// task's positions fit BERT's 512.
func defaultDecode() BeamOptions {
	o := DefaultBeamOptions()
	o.MaxTgtLength = 48
	return o
}

// FinetuneResult is the test set's scores.
type FinetuneResult struct {
	// FirstMatch is the share of test examples whose first generated item
	// is an answer: for gloss-to-word a lemma of the synset (a reverse
	// dictionary's hit at 1); for other data exact match with the target.
	FirstMatch    float64 `json:"first_match"`
	Rouge1        float64 `json:"rouge1"` // F, rouge-score's definition, no stemming
	Rouge2        float64 `json:"rouge2"`
	RougeL        float64 `json:"rougeL"`
	BLEU4         float64 `json:"bleu4"` // corpus BLEU-4, qgevalcap's definition
	HeldoutLoss   float64 `json:"heldout_loss"`
	TrainExamples int     `json:"train_examples"`
	TestExamples  int     `json:"test_examples"`
	Steps         int64   `json:"steps"`
	DecodeSeconds float64 `json:"decode_seconds"`
	Seconds       float64 `json:"seconds"`
}

// encodedPair is an example tokenised without [CLS]/[SEP].
type encodedPair struct{ src, tgt []int64 }

func encodePairs(tok *mlm.Tokenizer, ex []Example, o S2SOptions) ([]encodedPair, error) {
	out := make([]encodedPair, len(ex))
	for i, e := range ex {
		s, err := tok.Encode(e.Source, o.MaxSourceLen+1)
		if err != nil {
			return nil, fmt.Errorf("example %d source: %w", i, err)
		}
		t, err := tok.Encode(e.Target, o.MaxTargetLen+1)
		if err != nil {
			return nil, fmt.Errorf("example %d target: %w", i, err)
		}
		src, err := inner(tok, s.IDs)
		if err != nil {
			return nil, fmt.Errorf("example %d source: %w", i, err)
		}
		tgt, err := inner(tok, t.IDs)
		if err != nil {
			return nil, fmt.Errorf("example %d target: %w", i, err)
		}
		out[i] = encodedPair{src: src, tgt: tgt}
	}
	return out, nil
}

// inner is an encoding without its [CLS] and [SEP]; a tokenizer that does
// not add them (a tokenizer.json without BERT's post-processor) is an error
// rather than a silent loss of the text's first and last tokens.
func inner(tok *mlm.Tokenizer, ids []int64) ([]int64, error) {
	if len(ids) < 2 || ids[0] != tok.CLS || ids[len(ids)-1] != tok.SEP {
		return nil, fmt.Errorf("the tokenizer does not wrap texts in [CLS] ... [SEP], which pmlm's layouts expect")
	}
	return ids[1 : len(ids)-1], nil
}

// loadPretrained reads a pmlm.pretrain run, a UniLM or s2s-ft checkpoint
// (its names converted by torchmods.UniLMStateDict) or a HF BERT into the
// store, and reports what it renamed, dropped and found missing.
func loadPretrained(store *torchmods.Store, path string, w io.Writer) error {
	src, err := torchmods.Resolve(path)
	if err != nil {
		return err
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return err
	}
	weights := make(map[string]*ts.Tensor, len(wf.Tensors))
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	for _, t := range wf.Tensors {
		x, err := torchmods.FromSafetensors(t, store.Device)
		if err != nil {
			return fmt.Errorf("%s: %w", src.File, err)
		}
		weights[t.Name] = x
	}
	conv, err := torchmods.UniLMStateDict(weights)
	if err != nil {
		return fmt.Errorf("%s: %w", src.File, err)
	}
	if err := torchmods.Try(func() { resizePositions(store, weights, w) }); err != nil {
		return fmt.Errorf("%s: %w", src.File, err)
	}
	rep, err := store.Load(weights, false)
	if err != nil {
		return fmt.Errorf("%s: %w", src.File, err)
	}
	fmt.Fprintf(w, "%s: %s; %d names converted, %d dropped (UniLM checkpoint conventions)\n", src.File, rep, len(conv.Renamed), len(conv.Dropped))
	if len(rep.Missing) > 0 || len(rep.Mismatched) > 0 {
		return fmt.Errorf("%s does not fit [model]: missing %v, mismatched %v", src.File, rep.Missing, rep.Mismatched)
	}
	return nil
}

// resizePositions fits the checkpoint's position table to the model's, as
// s2s-ft's from_pretrained does with reuse_position_embedding (which
// run_seq2seq.py passes): a longer table repeats the checkpoint's rows
// (CNN/DM's 608 + 160 positions from BERT's 512), a shorter one keeps the
// first rows. It says so on w.
func resizePositions(store *torchmods.Store, weights map[string]*ts.Tensor, w io.Writer) {
	const name = "bert.embeddings.position_embeddings.weight"
	have, ok := weights[name]
	p, ok2 := store.Param(name)
	if !ok || !ok2 {
		return
	}
	hs := have.MustSize()
	if len(hs) != 2 || hs[0] == 0 {
		panic(fmt.Errorf("%s: shape %v, want [positions, hidden]", name, hs))
	}
	n, old := p.Tensor.MustSize()[0], hs[0]
	if n == old {
		return
	}
	var parts []*ts.Tensor
	for got := int64(0); got < n; got += old {
		parts = append(parts, have.MustNarrow(0, 0, min(old, n-got), false))
	}
	resized := ts.MustCat(parts, 0)
	for _, t := range parts {
		t.MustDrop()
	}
	have.MustDrop()
	weights[name] = resized
	fmt.Fprintf(w, "%s: %d positions in the checkpoint, %d in the model: the table's rows are repeated or cut (s2s-ft's reuse_position_embedding)\n", name, old, n)
}

// Finetune trains on the pseudo-masked layout of s2s-ft, then decodes the
// test set and scores it.
func Finetune(s *train.Session, c *FinetuneConfig) (*FinetuneResult, error) {
	w := s.W
	tok, err := mlm.LoadTokenizer(c.Data.Vocab)
	if err != nil {
		return nil, fmt.Errorf("data.vocab: %w", err)
	}
	trainEx, testEx, err := c.Data.loadExamples()
	if err != nil {
		return nil, err
	}
	trainEnc, err := encodePairs(tok, trainEx, c.S2S)
	if err != nil {
		return nil, fmt.Errorf("training data: %w", err)
	}
	testEnc, err := encodePairs(tok, testEx, c.S2S)
	if err != nil {
		return nil, fmt.Errorf("test data: %w", err)
	}
	if c.Model.VocabSize == 0 {
		c.Model.VocabSize = tok.Size
	}
	if c.Model.VocabSize < tok.Size {
		return nil, fmt.Errorf("model.vocab_size %d is smaller than the tokenizer's %d tokens", c.Model.VocabSize, tok.Size)
	}
	c.Model.PadTokenID = tok.PAD
	c.Decode.EOSID = tok.SEP
	if err := resolveIgnoreWords(&c.Decode, tok); err != nil {
		return nil, err
	}
	st := S2STokens{CLS: tok.CLS, SEP: tok.SEP, Pad: tok.PAD, Mask: tok.MASK, Vocab: c.Model.VocabSize}
	var model *torchmods.BertForMaskedLM
	if err := torchmods.Try(func() { model = torchmods.NewBertForMaskedLM(s.Store.Root(), c.Model) }); err != nil {
		return nil, err
	}
	if c.Pretrained != "" && !s.Resuming() {
		if err := loadPretrained(s.Store, c.Pretrained, w); err != nil {
			return nil, fmt.Errorf("pretrained: %w", err)
		}
	}
	loader, err := data.NewLoader(data.LoaderOptions{N: len(trainEnc), Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)},
		func(b data.Batch) ([]int, error) { return b.Indices, nil })
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	steps := c.Trainer.MaxSteps
	opt, sched, err := c.Optim.plan(s, steps)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "pmlm s2s: %d training and %d test examples (%s %s), %d steps, label smoothing %g, beam %d\n",
		len(trainEnc), len(testEnc), c.Data.Corpus, c.Data.Task, steps, c.LabelSmoothing, c.Decode.BeamSize)
	var rng *rand.Rand
	lastEval, lastLoss := int64(-1), 0.0
	err = s.Train(train.Plan{Steps: steps, PerEpoch: loader.PerEpoch() / c.Trainer.Accumulate, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		BeforeStep: func(step int64) error {
			rng = rand.New(rand.NewPCG(uint64(c.Trainer.Seed), uint64(step)))
			return nil
		},
		Loss: func(int64, int) (*ts.Tensor, error) {
			idx, err := loader.Next()
			if err != nil {
				return nil, err
			}
			rows, err := s2sRows(trainEnc, idx, st, c.S2S, rng)
			if err != nil {
				return nil, err
			}
			b := stack(rows, tok.PAD, s.Device)
			logits, targets := labelled(model, model.Bert.ForwardInput(b.in, true), b.par)
			return SmoothedLoss(logits, targets, c.LabelSmoothing, tok.PAD), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval: func(step int64) (map[string]float64, error) {
			l, err := s2sHeldoutLoss(model, testEnc, st, c, s.Device)
			lastEval, lastLoss = step, l
			return map[string]float64{"heldout_loss": l}, err
		},
	})
	if err != nil {
		return nil, err
	}
	res := &FinetuneResult{Steps: steps, TrainExamples: len(trainEnc), TestExamples: len(testEnc), HeldoutLoss: lastLoss}
	if lastEval != steps { // the trainer evaluates at the last step; a resumed, finished run did not
		if res.HeldoutLoss, err = s2sHeldoutLoss(model, testEnc, st, c, s.Device); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	preds, err := decodeAll(model, testEnc, st, c, s.Device)
	if err != nil {
		return nil, err
	}
	res.DecodeSeconds = time.Since(start).Seconds()
	if err := scoreInto(res, tok, testEx, preds, c.Data.Corpus == "wordnet" && c.Data.Task == GlossToWord); err != nil {
		return nil, err
	}
	if s.Main() { // every rank of a data-parallel run decodes the same test set; one writes it
		if err := writePredictions(filepath.Join(s.Out, "predictions.tsv"), tok, testEx, preds); err != nil {
			return nil, err
		}
	}
	res.Seconds = s.Elapsed().Seconds()
	fmt.Fprintf(w, "test: first match %.2f%%, ROUGE-1/2/L %.2f/%.2f/%.2f, BLEU-4 %.2f on %d examples (decoding %.0f s)\n",
		100*res.FirstMatch, 100*res.Rouge1, 100*res.Rouge2, 100*res.RougeL, 100*res.BLEU4, len(testEnc), res.DecodeSeconds)
	return res, nil
}

// resolveIgnoreWords adds the ids of decode.forbid_ignore_words to
// ForbidIgnoreIDs; a word outside the vocabulary is an error.
func resolveIgnoreWords(o *BeamOptions, tok *mlm.Tokenizer) error {
	for _, w := range o.ForbidIgnoreWords {
		id, ok := tok.ID(w)
		if !ok {
			return fmt.Errorf("decode.forbid_ignore_words: %q is not in the vocabulary", w)
		}
		o.ForbidIgnoreIDs = append(o.ForbidIgnoreIDs, id)
	}
	o.ForbidIgnoreWords = nil
	return nil
}

// s2sRows corrupts and lays out the examples of one batch.
func s2sRows(enc []encodedPair, idx []int, st S2STokens, o S2SOptions, rng *rand.Rand) ([]row, error) {
	rows := make([]row, len(idx))
	for i, k := range idx {
		ex, err := NewS2SExample(enc[k].src, enc[k].tgt, st, o, rng)
		if err != nil {
			return nil, fmt.Errorf("example %d: %w", k, err)
		}
		l, err := ex.Layout(st, o)
		if err != nil {
			return nil, fmt.Errorf("example %d: %w", k, err)
		}
		rows[i] = s2sRow(l)
	}
	return rows, nil
}

// s2sHeldoutLoss is the fine-tuning loss on the test examples with a
// fixed generator for the pseudo-mask corruption.
func s2sHeldoutLoss(m *torchmods.BertForMaskedLM, enc []encodedPair, st S2STokens, c *FinetuneConfig, dev gotch.Device) (float64, error) {
	rng := rand.New(rand.NewPCG(uint64(c.Trainer.Seed), 0x5e25))
	var sum float64
	var count int
	err := data.Sequential(len(enc), c.Data.Batch, func(idx []int) error {
		rows, err := s2sRows(enc, idx, st, c.S2S, rng)
		if err != nil {
			return err
		}
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				b := stack(rows, st.Pad, dev)
				logits, targets := labelled(m, m.Bert.ForwardInput(b.in, false), b.par)
				n := int(targets.MustSize()[0])
				sum += SmoothedLoss(logits, targets, c.LabelSmoothing, st.Pad).Float64Values()[0] * (float64(n) + 1e-5)
				count += n
			})
		})
	})
	if count == 0 {
		return 0, err
	}
	return sum / float64(count), err
}

// decodeRow is the decoding input for a source and a target prefix, as
// s2s-ft's decoder sees it: [CLS] source [SEP], the prefix, and a [MASK]
// in the next target slot whose output predicts the next token. The
// source attends to itself; each target slot to the source, the slots
// before it and itself (BertForSeq2SeqDecoder's mask).
func decodeRow(src, prefix []int64, st S2STokens, o S2SOptions) row {
	ns, nt := len(src), len(prefix)+1
	n := ns + nt
	r := row{IDs: make([]int64, 0, n), Positions: make([]int64, n), TypeIDs: make([]int64, n), Mask: make([]bool, n*n)}
	r.IDs = append(append(append(r.IDs, src...), prefix...), st.Mask)
	for i := range n {
		r.Positions[i] = int64(i)
		if i >= ns {
			r.TypeIDs[i] = o.TargetType
		} else {
			r.TypeIDs[i] = o.SourceType
		}
		for j := range n {
			r.Mask[i*n+j] = j < ns || (i >= ns && j <= i)
		}
	}
	return r
}

// decodeAll decodes every test source as decode_seq2seq.py does and
// returns the generated ids, EOS cut.
func decodeAll(m *torchmods.BertForMaskedLM, enc []encodedPair, st S2STokens, c *FinetuneConfig, dev gotch.Device) ([][]int64, error) {
	out := make([][]int64, len(enc))
	for i, e := range enc {
		ids, err := decodeOne(m, e.src, st, c.S2S, c.Decode, dev)
		if err != nil {
			return nil, fmt.Errorf("decoding test example %d: %w", i, err)
		}
		out[i] = ids
	}
	return out, nil
}

// decodeOne generates the target of one source (ids without [CLS] and
// [SEP]) as decode_seq2seq.py does: beam search, or its plain argmax loop
// with beam 1 (DecodeLikeS2SFT). Each step reruns the model on the source
// and the prefixes of the beam, batched: no key/value cache, which costs
// little at WordNet's lengths.
func decodeOne(m *torchmods.BertForMaskedLM, source []int64, st S2STokens, o S2SOptions, opt BeamOptions, dev gotch.Device) ([]int64, error) {
	src, _ := TruncateS2S(source, nil, st, o)
	step := func(prefixes [][]int64) ([][]float32, error) {
		var scores [][]float32
		sc := ts.NewScope()
		defer sc.Close()
		err := torchmods.Try(func() {
			ts.NoGrad(func() {
				rows := make([]row, len(prefixes))
				for k, p := range prefixes {
					rows[k] = decodeRow(src, p, st, o)
				}
				b := stack(rows, st.Pad, dev)
				hidden := m.Bert.ForwardInput(b.in, false)
				L := hidden.MustSize()[1]
				last := make([]int64, len(rows))
				for k, r := range rows {
					last[k] = int64(k)*L + int64(len(r.IDs)-1) // the [MASK] slot
				}
				h := hidden.MustView([]int64{-1, m.Bert.Cfg.HiddenSize}, false).MustIndexSelect(0, torchmods.FromSlice(last, []int64{int64(len(last))}, dev), false)
				logp := m.Logits(h).MustLogSoftmax(-1, gotch.Float, true)
				V := int(logp.MustSize()[1])
				v := logp.Float64Values()
				scores = make([][]float32, len(prefixes))
				for k := range scores {
					scores[k] = make([]float32, V)
					for j := range V {
						scores[k][j] = float32(v[k*V+j])
					}
				}
			})
		})
		return scores, err
	}
	hyp, err := DecodeLikeS2SFT(step, opt)
	toks := hyp.Tokens
	for i, t := range toks { // decode_seq2seq.py cuts at [SEP] (done) or [PAD]
		if t == st.Pad {
			toks = toks[:i]
			break
		}
	}
	return toks, err
}

// scoreInto computes the test metrics of the decoded outputs.
func scoreInto(res *FinetuneResult, tok *mlm.Tokenizer, ex []Example, preds [][]int64, firstItem bool) error {
	if len(ex) == 0 {
		return fmt.Errorf("no test examples to score")
	}
	gen, refs, refSets := make([]string, len(ex)), make([]string, len(ex)), make([][]string, len(ex))
	hits := 0
	for i, e := range ex {
		gen[i] = Normalize(Detokenize(tok, preds[i]))
		refs[i] = Normalize(e.Target)
		refSets[i] = []string{refs[i]}
		if firstItem {
			if FirstAnswerMatch(gen[i], e.Answers) {
				hits++
			}
		} else if Normalize(gen[i]) == refs[i] {
			hits++
		}
	}
	res.FirstMatch = float64(hits) / float64(len(ex))
	r, err := CorpusRouge(refs, gen, nil)
	if err != nil {
		return err
	}
	res.Rouge1, res.Rouge2, res.RougeL = r.Rouge1.F, r.Rouge2.F, r.RougeL.F
	b, err := CorpusBLEU(gen, refSets)
	if err != nil {
		return err
	}
	res.BLEU4 = b.BLEU[3]
	return nil
}

// writePredictions writes source, reference and generated text, one
// example per line, for reading the outputs.
func writePredictions(path string, tok *mlm.Tokenizer, ex []Example, preds [][]int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintln(bw, "source\treference\tgenerated")
	for i, e := range ex {
		clean := func(s string) string { return strings.NewReplacer("\t", " ", "\n", " ").Replace(s) }
		fmt.Fprintf(bw, "%s\t%s\t%s\n", clean(e.Source), clean(e.Target), clean(Detokenize(tok, preds[i])))
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
