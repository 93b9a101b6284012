package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/ir"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/train"
)

// The ir workloads time one training step of ir.dense (DPR's bi-encoder)
// and of ir.rerank (monoBERT's cross-encoder) as those tasks take it,
// through the ir package's own model constructors, batching and losses,
// on token ids drawn here rather than a tokenised benchmark: the step's
// cost depends on the shapes, not on which tokens fill them. Both write
// their batch to -inputs (for bench/torch_bench.py --inputs) and, with
// -weights, their initial weights and the step-0 loss, as pmlm does, so
// that the two sides can be checked to compute the same loss.

// irTok stands in for bert-base-uncased's tokenizer: the ir models read
// only its special ids and size (for the vocabulary check and [PAD]), and
// the batches here are token ids already, so nothing is tokenised.
var irTok = &mlm.Tokenizer{PAD: pmlmPad, UNK: 100, CLS: pmlmCLS, SEP: pmlmSEP, MASK: pmlmMask, Size: 30522}

// irTokens draws n ids uniform in [999, vocab) (bert-base-uncased's
// ordinary word pieces, past the special and unused ones).
func irTokens(rng *rand.Rand, n int, vocab int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = 999 + rng.Int64N(vocab-999)
	}
	return out
}

// irText is [CLS] ids [SEP] of total length n: a text as DenseEncoder's
// Tokenize leaves it.
func irText(rng *rand.Rand, n int, vocab int64) []int64 {
	return append(append([]int64{pmlmCLS}, irTokens(rng, n-2, vocab)...), pmlmSEP)
}

// i64 is an int64 tensor of a safetensors file.
func i64(name string, v []int64, shape ...int64) safetensors.Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return safetensors.Tensor{Name: name, DType: "I64", Shape: shape, Data: b}
}

// writeStoreWeights writes every parameter of store under its name, for
// bench/torch_bench.py --weights.
func writeStoreWeights(store *torchmods.Store, path string) {
	var tensors []safetensors.Tensor
	for _, p := range store.Params() {
		t, err := torchmods.ToSafetensors(p.Name, p.Tensor, gotch.Float)
		if err != nil {
			panic(err)
		}
		tensors = append(tensors, t)
	}
	if err := safetensors.Write(path, tensors, nil); err != nil {
		panic(err)
	}
}

// clipped is an optimizer whose step first clips the gradients' global
// norm with train.ClipGradNorm, the order train.Session's update keeps
// (clip, then step), so that timedSteps times the update ir's tasks make
// with optim.clip set.
type clipped struct {
	store *torchmods.Store
	max   float64
	opt   train.Optimizer
}

func (c clipped) Step(lr float64) error {
	if _, err := train.ClipGradNorm(c.store, c.max); err != nil {
		return err
	}
	return c.opt.Step(lr)
}

// step0 prints the loss at the initial weights to stderr, without
// gradients: the parity check against bench/torch_bench.py --weights.
func step0(workload, shape string, loss func() *ts.Tensor) {
	s := ts.NewScope()
	defer s.Close()
	ts.NoGrad(func() {
		fmt.Fprintf(os.Stderr, "gobench %s: %s, step-0 loss %.6f\n", workload, shape, loss().Float64Values()[0])
	})
}

// denseStep: one ir.dense training step of DPR's bi-encoder: two separate
// towers (ir.NewBiEncoder with shared = false, so the store holds
// question_encoder.bert_model.* and ctx_encoder.bert_model.*), [CLS]
// pooling, dot product, B queries against 2B passages in DPR's order
// (query i's positive at column 2i, its one hard negative at 2i+1, every
// other column an in-batch negative), ir.ContrastiveLoss with the
// exclusion mask ir.dense always passes (all false here: no passage is
// judged relevant to another query), backward, gradient clipping at
// optim.clip and AdamW with ir.DefaultDense's eps and weight decay (DPR's
// recipe: 2.0, 1e-8, 0). The loss is BiEncoder.loss's body, which is
// unexported: Batch, Forward, ir.ScoreMatrix and ir.ContrastiveLoss at the
// similarity's temperature, all exported and called as it calls them.
// Sizes: benchBert's BERT (no dropout) with queries of 32 tokens; on CPU 4
// layers of width 256, batch 64, passages of 64, one step a repetition (a
// step reads 10,240 tokens, five times bert_mlm's); on CUDA BERT-base,
// batch 128 (DPR's), passages of 128, 20 steps. Lengths vary (queries 8
// to 32 tokens, passages half to all of theirs, the first of each full),
// so the padding mask is exercised as in training.
func denseStep(dev gotch.Device, check *float64, inputs, weights string) func() float64 {
	cfg, _, steps := benchBert(dev, 20)
	batch, qLen, pLen := 64, 32, 64
	if dev.IsCuda() {
		batch, pLen = 128, 128
	} else {
		steps = 1
	}
	store := torchmods.NewStore(dev)
	m, err := ir.NewBiEncoder(store, ir.BiEncoderConfig{Bert: cfg, Pooling: ir.PoolCLS, Similarity: ir.SimDot,
		QueryMaxLen: qLen, PassageMaxLen: pLen}, irTok, "")
	if err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewPCG(0, 21))
	var q, p [][]int64
	positives := make([]int64, batch)
	for i := range batch {
		n := qLen
		if i > 0 {
			n = 8 + rng.IntN(qLen-7)
		}
		q = append(q, irText(rng, n, cfg.VocabSize))
		positives[i] = int64(2 * i)
		for j := range 2 { // the positive, then the hard negative
			n := pLen
			if i+j > 0 {
				n = pLen/2 + rng.IntN(pLen/2+1)
			}
			p = append(p, irText(rng, n, cfg.VocabSize))
		}
	}
	exclude := make([]bool, batch*len(p))
	if inputs != "" {
		s := ts.NewScope()
		qi, qm := m.Query.Batch(q)
		pi, pm := m.Passage.Batch(p)
		ex := make([]int64, len(exclude))
		for i, e := range exclude {
			if e {
				ex[i] = 1
			}
		}
		B, P := int64(batch), int64(len(p))
		err := safetensors.Write(inputs, []safetensors.Tensor{
			i64("q_ids", qi.Int64Values(), qi.MustSize()...), i64("q_mask", qm.Int64Values(), qm.MustSize()...),
			i64("p_ids", pi.Int64Values(), pi.MustSize()...), i64("p_mask", pm.Int64Values(), pm.MustSize()...),
			i64("positives", positives, B), i64("exclude", ex, B, P),
		}, map[string]string{"workload": "dense_biencoder"})
		s.Close()
		if err != nil {
			panic(err)
		}
	}
	if weights != "" {
		writeStoreWeights(store, weights)
	}
	o := ir.DefaultDense().Optim
	opt := clipped{store, o.Clip, train.NewAdamW(store, 0.9, 0.999, o.Eps, o.WeightDecay)}
	temperature := ir.DefaultTemperature(m.Cfg.Similarity)
	loss := func(training bool) *ts.Tensor {
		qi, qm := m.Query.Batch(q)
		pi, pm := m.Passage.Batch(p)
		return ir.ContrastiveLoss(ir.ScoreMatrix(m.Query.Forward(qi, qm, training), m.Passage.Forward(pi, pm, training)), positives, exclude, temperature)
	}
	if weights != "" {
		step0("dense_biencoder", fmt.Sprintf("%d queries x %d against %d passages x %d", batch, qLen, len(p), pLen),
			func() *ts.Tensor { return loss(false) })
	}
	return timedSteps(steps, check, opt, func() *ts.Tensor { return loss(true) })
}

// monoBERTStep: one ir.rerank training step with monoBERT's pointwise
// loss: the cross-encoder RunRerank builds (CrossEncoderSource.Build from
// scratch: a BertForSequenceClassification with 2 outputs, bert.* with its
// pooler and classifier.*), pairs [CLS] q [SEP] p [SEP] assembled by
// CrossEncoder.Pair and padded by ir.PadPairs, each query with its
// positive and one negative (the pointwise loss's default, labels 1 then
// 0), CrossEncoder.Logits, ir.PointwiseLoss (cross-entropy over not
// relevant, relevant), backward, clipping and AdamW with
// ir.DefaultRerankConfig's optim (BERT's: clip 1, betas 0.9/0.999, eps
// 1e-6, weight decay 0.01 but not on biases and norms). The Loss closure
// of RunRerank, exported calls in the same order. Sizes: benchBert's BERT
// (no dropout); on CPU 32 queries x 2 = 64 pairs of at most 64 tokens
// (the query's part at most 32), 2 steps a repetition; on CUDA BERT-base,
// 64 x 2 = 128 pairs (monoBERT's batch) of at most 256 (the query's part
// at most monoBERT's 64), 20 steps. Queries take 4 to 20 tokens and
// passages 16 to 4x the pair limit (the first pair's 20 and 4x), so most
// pairs are cut to the limit, as MS MARCO's are at 512, and some are
// padded.
func monoBERTStep(dev gotch.Device, check *float64, inputs, weights string) func() float64 {
	cfg, _, steps := benchBert(dev, 20)
	queries, maxQuery, maxLen := 32, 32, 64
	if dev.IsCuda() {
		queries, maxQuery, maxLen = 64, ir.DefaultMaxQueryLen, 256
	}
	store := torchmods.NewStore(dev)
	model, err := (&ir.CrossEncoderSource{Kind: "from scratch", Config: cfg}).Build(store, irTok, 2, false, nil)
	if err != nil {
		panic(err)
	}
	ce, err := ir.NewCrossEncoder(model, irTok, nil, ir.CrossEncoderOptions{MaxQueryLen: maxQuery, MaxLen: maxLen})
	if err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewPCG(0, 22))
	var enc []ir.PairEncoding
	var labels []int64
	for i := range queries {
		qn := 20
		if i > 0 {
			qn = 4 + rng.IntN(17)
		}
		qt := irTokens(rng, qn, cfg.VocabSize)
		for j := range 2 { // the positive first, as makeBatch orders them
			pn := 4 * maxLen
			if i+j > 0 {
				pn = 16 + rng.IntN(4*maxLen-15)
			}
			enc = append(enc, ce.Pair(qt, irTokens(rng, pn, cfg.VocabSize)))
			labels = append(labels, int64(1-j))
		}
	}
	pairs := ir.PadPairs(enc, irTok.PAD)
	N, L := int64(pairs.N), int64(pairs.L)
	if inputs != "" {
		if err := safetensors.Write(inputs, []safetensors.Tensor{
			i64("ids", pairs.IDs, N, L), i64("types", pairs.Types, N, L), i64("mask", pairs.Mask, N, L), i64("labels", labels, N),
		}, map[string]string{"workload": "monobert"}); err != nil {
			panic(err)
		}
	}
	if weights != "" {
		writeStoreWeights(store, weights)
	}
	o := ir.DefaultRerankConfig().Optim
	opt := clipped{store, o.Clip, train.NewAdamW(store, o.Betas[0], o.Betas[1], o.Eps, o.WeightDecay)}
	loss := func(training bool) *ts.Tensor {
		return ir.PointwiseLoss(ce.Logits(pairs, training), torchmods.FromSlice(labels, []int64{N}, dev))
	}
	if weights != "" {
		step0("monobert", fmt.Sprintf("%d pairs x %d", N, L), func() *ts.Tensor { return loss(false) })
	}
	return timedSteps(steps, check, opt, func() *ts.Tensor { return loss(true) })
}
