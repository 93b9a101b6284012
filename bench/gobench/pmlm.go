package main

import (
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/pmlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/train"
)

// pmlmBatch is a packed pseudo-masked batch as pmlm's pre-training step
// takes it (pmlm/batch.go's stack): [B, L] ids, positions and segments,
// the [B, L, L] attention mask (1 = query may attend key) and the [B*L]
// targets of L_AE (at the [M] slots) and L_PAR (at the [P]s), Ignore
// elsewhere.
type pmlmBatch struct {
	B, L                  int64
	IDs, Positions, Types []int64
	Mask                  []int64
	AE, PAR               []int64
}

// BERT's special ids in bert-base-uncased's vocabulary.
const (
	pmlmPad, pmlmCLS, pmlmSEP, pmlmMask = 0, 101, 102, 103
	pmlmSeq                             = 128 // tokens per sequence before packing
)

// makePMLMBatch draws batch sequences of pmlmSeq tokens ([CLS], 126 ids
// uniform in [999, vocab), [SEP]) and masks and packs each with pmlm's own
// MaskOptions.Sample (the paper's defaults: 15%, spans of 2-6 40% of the
// time, 80/10/10) and pmlm.Pack, [P] = [MASK] as pmlm.pretrain's default,
// from a fixed generator. 126 maskable tokens give a budget of 19 masked
// tokens each, so every row packs to 128 + 2*19 = 166 tokens; Pack's
// padding (pad rows attending to themselves) would cover uneven rows.
func makePMLMBatch(batch, vocab int64) (*pmlmBatch, error) {
	rng := rand.New(rand.NewPCG(0, 20))
	opt := pmlm.DefaultMaskOptions()
	sp := pmlm.Specials{Mask: pmlmMask, Pseudo: pmlmMask, Pad: pmlmPad}
	tokens := make([][]int64, batch)
	maskings := make([]pmlm.Masking, batch)
	maxLen := 0
	for b := range tokens {
		ids := make([]int64, pmlmSeq)
		maskable := make([]bool, pmlmSeq)
		ids[0], ids[pmlmSeq-1] = pmlmCLS, pmlmSEP
		for i := 1; i < pmlmSeq-1; i++ {
			ids[i] = 999 + rng.Int64N(vocab-999)
			maskable[i] = true
		}
		m, err := opt.Sample(ids, maskable, pmlmMask, vocab, rng)
		if err != nil {
			return nil, err
		}
		k := 0
		for _, bl := range m.Blocks {
			k += bl.Len()
		}
		tokens[b], maskings[b], maxLen = ids, m, max(maxLen, pmlmSeq+2*k)
	}
	L := int64(maxLen)
	out := &pmlmBatch{B: batch, L: L}
	for b := range tokens {
		l, err := pmlm.Pack(tokens[b], nil, maskings[b], sp, maxLen)
		if err != nil {
			return nil, err
		}
		out.IDs = append(out.IDs, l.IDs...)
		out.Positions = append(out.Positions, l.Positions...)
		out.Types = append(out.Types, l.TypeIDs...)
		out.AE = append(out.AE, l.AELabels...)
		out.PAR = append(out.PAR, l.PARLabels...)
		for _, a := range l.AttnMask {
			v := int64(0)
			if a {
				v = 1
			}
			out.Mask = append(out.Mask, v)
		}
	}
	return out, nil
}

// write stores the batch as int64 tensors in a safetensors file, which
// bench/torch_bench.py --inputs reads.
func (p *pmlmBatch) write(path string) error {
	B, L := p.B, p.L
	return safetensors.Write(path, []safetensors.Tensor{
		i64("ids", p.IDs, B, L), i64("positions", p.Positions, B, L), i64("types", p.Types, B, L),
		i64("mask", p.Mask, B, L, L), i64("ae", p.AE, B*L), i64("par", p.PAR, B*L),
	}, map[string]string{"workload": "pmlm"})
}

// pmlmStep: one UniLMv2 pre-training step (pmlm.pretrain's): the forward
// pass of torchmods' BERT with UniLMv2's relative position bias (32 bins,
// max distance 128) on the packed pseudo-masked batch of makePMLMBatch
// with explicit positions and the 2-D mask, L_AE + L_PAR (each the mean
// cross-entropy over its positions, projected to the vocabulary there
// only: pmlm/pretrain.go's pretrainLoss), backward, AdamW. bert_mlm's
// sizes (benchBert): on CPU 4 layers of width 256, batch 16; on CUDA
// BERT-base, batch 32, 20 steps. The batch goes to inputs (if set) for
// bench/torch_bench.py --inputs; with weights set the initial parameters
// go there too, for --weights, and the step-0 loss is printed to stderr,
// so that the two sides can be checked to compute the same loss.
func pmlmStep(dev gotch.Device, check *float64, inputs, weights string) func() float64 {
	cfg, batch, steps := benchBert(dev, 20)
	cfg.RelPosBins, cfg.MaxRelPos = 32, 128
	pb, err := makePMLMBatch(batch, cfg.VocabSize)
	if err != nil {
		panic(err)
	}
	if inputs != "" {
		if err := pb.write(inputs); err != nil {
			panic(err)
		}
	}
	store := torchmods.NewStore(dev)
	m := torchmods.NewBertForMaskedLM(store.Root(), cfg)
	if weights != "" {
		writeStoreWeights(store, weights)
	}
	opt := train.NewAdamW(store, 0.9, 0.999, 1e-8, 0.01)
	B, L := pb.B, pb.L
	in := torchmods.BertInput{IDs: torchmods.FromSlice(pb.IDs, []int64{B, L}, dev),
		Positions: torchmods.FromSlice(pb.Positions, []int64{B, L}, dev),
		TypeIDs:   torchmods.FromSlice(pb.Types, []int64{B, L}, dev),
		Mask:      torchmods.FromSlice(pb.Mask, []int64{B, L, L}, dev)}
	ae, par := torchmods.FromSlice(pb.AE, []int64{B * L}, dev), torchmods.FromSlice(pb.PAR, []int64{B * L}, dev)
	loss := func(train bool) *ts.Tensor {
		hidden := m.Bert.ForwardInput(in, train)
		var total *ts.Tensor
		for _, lab := range []*ts.Tensor{ae, par} { // pmlm's labelled, then CrossEntropy
			at := lab.MustNe(ts.IntScalar(pmlm.Ignore), false).MustNonzero(true).MustView([]int64{-1}, true)
			h := hidden.MustView([]int64{-1, cfg.HiddenSize}, false).MustIndexSelect(0, at, false)
			l := torchmods.CrossEntropy(m.Logits(h), lab.MustIndexSelect(0, at, false), torchmods.CEOptions{})
			if total == nil {
				total = l
			} else {
				total = total.MustAdd(l, true)
			}
		}
		return total
	}
	if weights != "" {
		s := ts.NewScope()
		ts.NoGrad(func() {
			fmt.Fprintf(os.Stderr, "gobench pmlm: batch %d x %d packed, step-0 loss %.6f\n", B, L, loss(false).Float64Values()[0])
		})
		s.Close()
	}
	return timedSteps(steps, check, opt, func() *ts.Tensor { return loss(true) })
}
