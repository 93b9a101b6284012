package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	pruning "github.com/reprolab/repro/cap"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The cap workloads time inference of BERT-base (12 layers of width 768,
// 12 heads of 64, feed-forward 3072, bert-base-uncased's 30,522-token
// vocabulary, the pooler) before and after CAP's structured pruning
// (cap.Shrink's result: fewer heads per layer, head width kept, as HF's
// prune_heads leaves them, and narrower feed-forwards), so that the
// speed-up the pruned shapes buy is measured on both sides. The model is
// BERT-base on the CPU too: at a smaller width with 4 heads a layer, one
// head kept per layer would already be a quarter of them, not CAP's 90%.

// capKeptHeads and capKeptFFN are the pruned model's shape: what CAP's
// structured pruning leaves of BERT-base at 90% sparsity with
// prune.at_least_heads 1 (the official default). cap.PruningSequence([90])
// removes int(144 * 0.9) = 129 heads and int(36,864 * 0.9) = 33,177
// neurons, leaving 15 heads and 3,687 neurons; capBertPruned checks the
// pattern against it. The split over layers is a fixed one of the kind
// the importance scores give (Michel et al. 2019 and CAP prune the upper
// layers hardest): one head in every layer, a second in layers 0, 3 and 6,
// and feed-forwards from 520 neurons in layer 0 down to 37 in layer 11.
// Which heads and neurons are kept does not change the work, only how
// many, so the first heads of a layer are kept.
var (
	capKeptHeads = []int64{2, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1}
	capKeptFFN   = []int64{520, 480, 450, 420, 390, 350, 310, 270, 220, 160, 80, 37}
)

// capBert is the dense model's configuration (BertBase without dropout).
func capBert() torchmods.BertConfig {
	cfg := torchmods.BertBase()
	cfg.HiddenDropout, cfg.AttentionDropout = 0, 0
	return cfg
}

// capBertPruned is capBert with Pruned set to capKeptHeads and capKeptFFN:
// per layer the heads after the kept ones are pruned (by their index in
// the unpruned layer, as HF's pruned_heads), the feed-forward width is the
// kept count. It fails if the pattern is not what cap.PruningSequence
// leaves at 90%.
func capBertPruned() (torchmods.BertConfig, error) {
	cfg := capBert()
	L, H, I := cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.IntermediateSize
	headSeq, ffnSeq, err := pruning.PruningSequence([]float64{90}, L, H, I, 1)
	if err != nil {
		return cfg, err
	}
	pr := &torchmods.BertPruned{Heads: map[int][]int64{}}
	var heads, ffn int64
	for l := range L {
		kh, kf := capKeptHeads[l], capKeptFFN[l]
		if kh < 1 || kh > H || kf < 0 || kf > I {
			return cfg, fmt.Errorf("gobench: layer %d keeps %d heads and %d neurons", l, kh, kf)
		}
		for h := kh; h < H; h++ {
			pr.Heads[int(l)] = append(pr.Heads[int(l)], h)
		}
		pr.Intermediate = append(pr.Intermediate, kf)
		heads, ffn = heads+kh, ffn+kf
	}
	if heads != L*H-headSeq[0] || ffn != L*I-ffnSeq[0] {
		return cfg, fmt.Errorf("gobench: the pattern keeps %d heads and %d neurons; 90%% sparsity leaves %d and %d", heads, ffn, L*H-headSeq[0], L*I-ffnSeq[0])
	}
	cfg.Pruned = pr
	return cfg, nil
}

// capBatch is the inference batch: on CPU 8 sequences of 128 tokens, one
// forward a repetition; on CUDA 128 sequences of 128 (GLUE's
// max_seq_length, to which CAP's evaluation pads), 20 forwards. Rows are
// [CLS] ids [SEP] then [PAD]s: the first row fills all 128 positions, the
// others 32 to 128 (from a fixed generator), with HF's attention_mask (1 =
// a real token), so that the padding mask is applied as in evaluation.
func capBatch(dev gotch.Device, vocab int64) (batch, seq int64, steps int, ids, mask []int64) {
	batch, seq, steps = 8, 128, 1
	if dev.IsCuda() {
		batch, steps = 128, 20
	}
	rng := rand.New(rand.NewPCG(0, 24))
	ids, mask = make([]int64, batch*seq), make([]int64, batch*seq)
	for b := range batch {
		n := int(seq)
		if b > 0 {
			n = 32 + rng.IntN(int(seq)-31)
		}
		copy(ids[b*seq:], irText(rng, n, vocab))
		for i := range n {
			mask[b*seq+int64(i)] = 1
		}
	}
	return batch, seq, steps, ids, mask
}

// capInferStep: inference of torchmods' BERT-base, dense (pruned false:
// capBert) or as CAP's structured pruning leaves it at 90% sparsity
// (capBertPruned, built directly by torchmods.NewBert from the pruned
// configuration, the shapes cap.Shrink produces): eval mode, no gradients,
// the encoder with the padding mask and the pooler's tanh(dense([CLS]))
// (what the classifier reads), each forward in a scope of its own. The
// batch (capBatch) goes to inputs (if set) for bench/torch_bench.py
// --inputs; with weights set the initial parameters go there too, for
// --weights, and a sum over the pooled output is printed to stderr, so
// that the two sides can be checked to compute the same thing.
func capInferStep(dev gotch.Device, check *float64, pruned bool, inputs, weights string) func() float64 {
	workload, cfg := "bert_dense_infer", capBert()
	if pruned {
		var err error
		workload = "bert_pruned_infer"
		if cfg, err = capBertPruned(); err != nil {
			panic(err)
		}
	}
	B, L, steps, idv, maskv := capBatch(dev, cfg.VocabSize)
	if inputs != "" {
		if err := safetensors.Write(inputs, []safetensors.Tensor{i64("ids", idv, B, L), i64("mask", maskv, B, L)},
			map[string]string{"workload": workload}); err != nil {
			panic(err)
		}
	}
	store := torchmods.NewStore(dev)
	m := torchmods.NewBert(store.Root(), cfg, true) // BertModel's names, as HF saves a bare BertModel
	if weights != "" {
		writeStoreWeights(store, weights)
	}
	ids, mask := torchmods.FromSlice(idv, []int64{B, L}, dev), torchmods.FromSlice(maskv, []int64{B, L}, dev)
	forward := func() *ts.Tensor { return m.Pool(m.Forward(ids, nil, mask, false)) }
	if weights != "" {
		s := ts.NewScope()
		ts.NoGrad(func() {
			pooled := forward()
			fmt.Fprintf(os.Stderr, "gobench %s: %d x %d, pooled sum %.6f, sum of squares %.6f\n", workload, B, L,
				pooled.MustSum(gotch.Double, false).Float64Values()[0], pooled.MustMul(pooled, false).MustSum(gotch.Double, true).Float64Values()[0])
		})
		s.Close()
	}
	return func() float64 {
		start := time.Now()
		ts.NoGrad(func() {
			for i := 0; i < steps; i++ {
				s := ts.NewScope()
				out := forward()
				if i == steps-1 {
					*check = sync(out)
				}
				s.Close()
			}
		})
		return time.Since(start).Seconds() / float64(steps)
	}
}
