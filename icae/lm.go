package icae

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// LMConfig is "icae.lm": the small Llama that the experiment here freezes
// and compresses for, pre-trained from scratch on the corpus.
type LMConfig struct {
	train.Base
	Model ModelConfig `toml:"model"`
	Optim OptimConfig `toml:"optim"`
	Data  DataConfig  `toml:"data"` // data.doc_len is the sequence length
	Eval  struct {
		Batches int `toml:"batches"` // held-out batches the perplexity is measured on (0: all)
	} `toml:"eval"`
	// CopyShare is the share of training sequences that are a window of
	// doc_len/2 tokens written twice, so that the LM learns to copy text
	// it has seen. The ICAE reconstructs only through its frozen decoder's
	// copying, which a small LM trained on plain text does not learn
	// (icae/RESULTS.md). 0 (the default): plain text only. Not in the
	// paper, whose LLMs copy already.
	CopyShare float64 `toml:"copy_share"`
	// Export is the HF model folder written at the end, relative to the
	// run directory: config.json, model.safetensors and the vocabulary,
	// what icae.pretrain's base names.
	Export string `toml:"export"`
}

// Validate checks the task's keys, naming the key.
func (c *LMConfig) Validate() error {
	if err := c.Model.validate(); err != nil {
		return err
	}
	if err := c.Optim.validate(); err != nil {
		return err
	}
	if err := c.Data.validate(true, false); err != nil {
		return err
	}
	if filepath.Ext(c.Data.Vocab) == ".json" {
		return config.Field("data.vocab", "icae.lm trains a WordPiece vocab.txt (its [PAD], [CLS], [SEP] are the LM's pad, BOS and EOS); got %q", c.Data.Vocab)
	}
	if int64(c.Data.DocLen) > c.Model.MaxPositions {
		return config.Field("data.doc_len", "%d is longer than model.max_position_embeddings %d", c.Data.DocLen, c.Model.MaxPositions)
	}
	if c.CopyShare < 0 || c.CopyShare > 1 {
		return config.Field("copy_share", "must be in [0, 1], got %v", c.CopyShare)
	}
	if c.Eval.Batches < 0 {
		return config.Field("eval.batches", "must not be negative, got %d", c.Eval.Batches)
	}
	if c.Export == "" || filepath.IsAbs(c.Export) {
		return config.Field("export", "must be a folder name inside the run directory, got %q", c.Export)
	}
	return nil
}

// LMResult is what icae.lm reports.
type LMResult struct {
	HeldoutLoss float64 `json:"heldout_loss"` // mean cross-entropy per predicted token
	HeldoutPPL  float64 `json:"heldout_ppl"`
	// CopyPPL is the perplexity of the second copy of held-out windows of
	// doc_len/2 tokens written twice: how well the LM copies.
	CopyPPL float64 `json:"heldout_copy_ppl"`
	Tokens  int64   `json:"heldout_tokens"`
	Steps   int64   `json:"steps"`
	Params  int64   `json:"params"`
	Export  string  `json:"export"` // the HF folder written
}

// LMTask is "icae.lm".
var LMTask = train.TaskSpec[*LMConfig, *LMResult]{
	Name: "icae.lm",
	Doc:  "pre-trains a small Llama (causal LM) on a corpus, to be frozen and compressed for by icae.pretrain",
	Default: func() *LMConfig {
		c := &LMConfig{Base: train.Base{Task: "icae.lm", Trainer: train.DefaultTrainer()},
			Model: ModelConfig{HiddenSize: 128, IntermediateSize: 384, Layers: 2, Heads: 4, KVHeads: 4, RMSNormEps: 1e-5, RopeTheta: 10000,
				InitializerRange: 0.02, MaxPositions: 512},
			Optim:  defaultOptim(1e-3, 100),
			Data:   DataConfig{Corpus: "wordnet", VocabSize: 8000, Heldout: 0.05, DocLen: 128, Batch: 32},
			Export: "hf"}
		c.Eval.Batches = 50
		return c
	},
	Run: RunLM,
}

// RunLM trains the LM on the corpus's training stream, cut into data.doc_len
// sequences, reports its held-out perplexity, and writes the HF folder.
func RunLM(s *train.Session, c *LMConfig) (*LMResult, error) {
	tok, err := PrepareTokenizer(c.Data, s.W)
	if err != nil {
		return nil, err
	}
	wp, ok := tok.(*wordPiece)
	if !ok {
		return nil, fmt.Errorf("data.vocab %s: icae.lm needs a WordPiece vocab.txt", c.Data.Vocab)
	}
	pad, bos, eos := wp.Specials()
	st, err := LoadStreams(c.Data, c.Data.Vocab, tok, bos, eos, s.W)
	if err != nil {
		return nil, err
	}
	trainSeqs, heldSeqs := Chunks(st.Train, c.Data.DocLen), Chunks(st.Heldout, c.Data.DocLen)
	if len(heldSeqs) == 0 {
		return nil, fmt.Errorf("data: the held-out documents make no sequence of %d tokens (data.heldout, data.doc_len)", c.Data.DocLen)
	}
	if c.Eval.Batches > 0 {
		heldSeqs = heldSeqs[:min(len(heldSeqs), c.Eval.Batches*c.Data.Batch)]
	}
	lc := c.Model.llama(tok.Size(), pad, bos, eos)
	var m *torchmods.LlamaForCausalLM
	if err := torchmods.Try(func() { m = torchmods.NewLlamaForCausalLM(s.Store.Root(), lc, torchmods.LlamaBuild{}) }); err != nil {
		return nil, err
	}
	var params int64
	for _, p := range s.Store.Params() {
		params += int64(p.Tensor.Numel())
	}
	loader, err := data.NewSliceLoader(trainSeqs, data.LoaderOptions{Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)})
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	rp, err := c.Optim.plan(s, loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	perEpoch, steps, opt, sched := rp.perEpoch, rp.steps, rp.opt, rp.sched
	fmt.Fprintf(s.W, "icae.lm: %s; %d parameters; %d training and %d held-out sequences of %d tokens (%d and %d documents); %d steps\n",
		lc.Summary(), params, len(trainSeqs), len(heldSeqs), c.Data.DocLen, st.Docs[0], st.Docs[1], steps)
	heldCopies := make([][]int64, len(heldSeqs))
	for i, q := range heldSeqs {
		heldCopies[i] = repeatTo(q[:len(q)/2], len(q))
	}
	var last map[string]float64
	evaluate := func() (map[string]float64, error) {
		loss, n, err := lmLoss(m, heldSeqs, c.Data.Batch, s, 0)
		if err != nil {
			return nil, err
		}
		cp, _, err := lmLoss(m, heldCopies, c.Data.Batch, s, c.Data.DocLen/2)
		if err != nil {
			return nil, err
		}
		last = map[string]float64{"heldout_loss": loss, "heldout_ppl": math.Exp(loss), "heldout_tokens": float64(n), "heldout_copy_ppl": math.Exp(cp)}
		return last, nil
	}
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(step int64, _ int) (*ts.Tensor, error) {
			seqs, err := loader.Next()
			if err != nil {
				return nil, err
			}
			if c.CopyShare > 0 {
				seqs = withCopies(seqs, c.CopyShare, c.Trainer.Seed, step)
			}
			ids := tensorOf(seqs, s)
			return torchmods.LlamaLoss(m.Forward(torchmods.LlamaInput{IDs: ids}, true), ids), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval:  func(int64) (map[string]float64, error) { return evaluate() },
	})
	if err != nil {
		return nil, err
	}
	if last == nil {
		if _, err := evaluate(); err != nil {
			return nil, err
		}
	}
	res := &LMResult{HeldoutLoss: last["heldout_loss"], HeldoutPPL: last["heldout_ppl"], CopyPPL: last["heldout_copy_ppl"], Tokens: int64(last["heldout_tokens"]), Steps: steps, Params: params,
		Export: filepath.Join(s.Out, c.Export)}
	if s.Main() {
		if err := torchmods.ExportHF(res.Export, s.Store, torchmods.LlamaFamily, "LlamaForCausalLM", torchmods.NewLlamaForExport(m)); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		if err := copyFile(c.Data.Vocab, filepath.Join(res.Export, "vocab.txt")); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	fmt.Fprintf(s.W, "held-out loss %.4f, perplexity %.2f over %d tokens; copying a window seen just before: perplexity %.2f; HF folder %s\n",
		res.HeldoutLoss, res.HeldoutPPL, res.Tokens, res.CopyPPL, res.Export)
	return res, nil
}

// repeatTo is w written again and again, cut to n tokens (twice and a token
// for n = 2·len(w)+1).
func repeatTo(w []int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = w[i%len(w)]
	}
	return out
}

// withCopies replaces each sequence of the batch, with probability share
// (drawn from the seed, the step and the row, so a resumed run draws the
// same), by its first half written twice.
func withCopies(seqs [][]int64, share float64, seed, step int64) [][]int64 {
	out := make([][]int64, len(seqs))
	for i, q := range seqs {
		out[i] = q
		if rand.New(rand.NewPCG(uint64(seed), uint64(step)<<20|uint64(i))).Float64() < share {
			out[i] = repeatTo(q[:len(q)/2], len(q))
		}
	}
	return out
}

// lmLoss is the mean next-token cross-entropy over seqs, in batches, and
// the number of predicted tokens; from > 0 scores only the positions from
// that index on (the second copy of a window written twice).
func lmLoss(m *torchmods.LlamaForCausalLM, seqs [][]int64, batch int, s *train.Session, from int) (float64, int64, error) {
	var sum float64
	var n int64
	err := data.Sequential(len(seqs), batch, func(idx []int) error {
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				rows := seqs[idx[0] : idx[len(idx)-1]+1]
				ids := tensorOf(rows, s)
				labels := ids
				k := int64(len(idx) * (len(rows[0]) - 1))
				if from > 0 {
					var lab []int64
					for _, r := range rows {
						lab = append(append(lab, slices.Repeat([]int64{IgnoreLabel}, from)...), r[from:]...)
					}
					labels = torchmods.FromSlice(lab, []int64{int64(len(rows)), int64(len(rows[0]))}, s.Device)
					k = int64(len(idx) * (len(rows[0]) - from))
				}
				sum += torchmods.LlamaLoss(m.Forward(torchmods.LlamaInput{IDs: ids}, false), labels).Float64Values()[0] * float64(k)
				n += k
			})
		})
	})
	if err != nil {
		return 0, 0, err
	}
	return sum / float64(n), n, nil
}

// tensorOf is equal-length rows as an int64 tensor [B, L] on the session's
// device.
func tensorOf(rows [][]int64, s *train.Session) *ts.Tensor {
	var flat []int64
	for _, r := range rows {
		flat = append(flat, r...)
	}
	return torchmods.FromSlice(flat, []int64{int64(len(rows)), int64(len(rows[0]))}, s.Device)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(to+".tmp", to)
}
