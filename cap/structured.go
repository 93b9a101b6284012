package cap

import (
	"fmt"
	"math"
	"sort"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Structured pruning (CAP-f) removes whole attention heads and
// feed-forward neurons, by importance: the accumulated |dL/dmask| of a mask
// of ones over each head and neuron (Michel et al. 2019; prune_utils.py).

// PruningSequence is determine_pruning_sequence: for sparsity targets in
// percent (10, 20, ..., 90), how many more heads and neurons each round
// prunes. The counts are int(total * percent / 100) of each kind, the
// same share for heads and neurons; heads stop where every layer keeps
// atLeast heads, which the official code asserts and this reports as an
// error naming the largest head target that fits.
func PruningSequence(percents []float64, layers, heads, intermediate int64, atLeast int64) (headSeq, ffnSeq []int64, err error) {
	if len(percents) == 0 {
		return nil, nil, fmt.Errorf("cap: prune.percents is empty")
	}
	p := append([]float64(nil), percents...)
	sort.Float64s(p)
	totalHeads, totalFFN := heads*layers, intermediate*layers
	var prevH, prevF int64
	for _, pc := range p {
		if pc < 0 || pc >= 100 {
			return nil, nil, fmt.Errorf("cap: prune.percents has %v: each must be in [0, 100)", pc)
		}
		nh := int64(float64(totalHeads) * pc / 100)
		if atLeast > 0 && nh > totalHeads-atLeast*layers {
			maxPc := 100 * float64(totalHeads-atLeast*layers) / float64(totalHeads)
			return nil, nil, fmt.Errorf("cap: pruning %v%% of %d heads removes %d, but each of the %d layers keeps %d (prune.at_least_heads): at most %.4g%% of heads; set prune.head_percents lower", pc, totalHeads, nh, layers, atLeast, maxPc)
		}
		nf := int64(float64(totalFFN) * pc / 100)
		headSeq, ffnSeq = append(headSeq, nh-prevH), append(ffnSeq, nf-prevF)
		prevH, prevF = nh, nf
	}
	return headSeq, ffnSeq, nil
}

// NormalizeByLayer divides each layer's (row's) scores by their L2 norm
// plus 1e-20 (normalize_scores_by_layer, exponent 2). Scores are [layers, n].
func NormalizeByLayer(scores [][]float64) [][]float64 {
	out := make([][]float64, len(scores))
	for l, row := range scores {
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		norm := math.Sqrt(ss) + 1e-20
		out[l] = make([]float64, len(row))
		for i, v := range row {
			out[l][i] = v / norm
		}
	}
	return out
}

type scored struct {
	layer, unit int
	score       float64
}

// sortedUnits lists every (layer, unit) by ascending score; ties keep the
// row-major order (Python's sorted is stable).
func sortedUnits(scores [][]float64) []scored {
	var all []scored
	for l, row := range scores {
		for i, v := range row {
			all = append(all, scored{l, i, v})
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].score < all[b].score })
	return all
}

// PruneHeads is what_to_prune_head: it returns a copy of mask (1 = kept)
// with n more heads set to 0, the lowest scoring ones not already pruned,
// never the atLeast highest scoring heads of any layer. official chooses
// how those are found: false protects each layer's highest scoring live
// heads, so every layer keeps atLeast heads (what the code means to do,
// and the paper's rule); true is the official code exactly, which
// protects the highest scoring heads among all, pruned ones included, so
// that a protection spent on a pruned head leaves the layer's live heads
// unprotected and a layer can lose every head (see doc.go).
func PruneHeads(importance [][]float64, n int64, mask [][]float64, atLeast int, official bool) [][]float64 {
	units := sortedUnits(importance)
	if !official {
		var live []scored
		for _, u := range units {
			if mask[u.layer][u.unit] != 0 {
				live = append(live, u)
			}
		}
		units = live
	}
	if atLeast > 0 {
		protect := map[int]int{}
		for l := range importance {
			protect[l] = 0
		}
		var kept []scored
		for i := len(units) - 1; i >= 0; i-- {
			u := units[i]
			if c, ok := protect[u.layer]; ok {
				if c < atLeast {
					protect[u.layer]++
					continue
				}
				delete(protect, u.layer)
			}
			kept = append(kept, u)
		}
		// kept is in descending order; restore ascending.
		for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
			kept[i], kept[j] = kept[j], kept[i]
		}
		units = kept
	}
	return pruneLowest(units, n, mask)
}

// PruneFFN is what_to_prune_mlp: n more neurons set to 0 in a copy of
// mask, the lowest scoring not already pruned. A layer may lose all of
// them (the official code has no floor for neurons).
func PruneFFN(importance [][]float64, n int64, mask [][]float64) [][]float64 {
	return pruneLowest(sortedUnits(importance), n, mask)
}

func pruneLowest(units []scored, n int64, mask [][]float64) [][]float64 {
	out := make([][]float64, len(mask))
	for l := range mask {
		out[l] = append([]float64(nil), mask[l]...)
	}
	for _, u := range units {
		if n <= 0 {
			break
		}
		if mask[u.layer][u.unit] == 0 {
			continue
		}
		out[u.layer][u.unit] = 0
		n--
	}
	return out
}

// Ones is a mask of ones [rows][cols].
func Ones(rows, cols int64) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = make([]float64, cols)
		for j := range m[i] {
			m[i][j] = 1
		}
	}
	return m
}

// Kept counts the ones of a mask.
func Kept(mask [][]float64) int64 {
	var n int64
	for _, row := range mask {
		for _, v := range row {
			if v != 0 {
				n++
			}
		}
	}
	return n
}

func maskTensor(m [][]float64, dev gotch.Device) *ts.Tensor {
	cols := 0
	if len(m) > 0 {
		cols = len(m[0])
	}
	flat := make([]float32, 0, len(m)*cols)
	for _, row := range m {
		for _, v := range row {
			flat = append(flat, float32(v))
		}
	}
	return torchmods.FromSlice(flat, []int64{int64(len(m)), int64(cols)}, dev)
}

func rows(t *ts.Tensor) [][]float64 {
	s := t.MustSize()
	v := t.MustTotype(gotch.Double, false).Float64Values()
	out := make([][]float64, s[0])
	for i := range out {
		out[i] = v[int64(i)*s[1] : int64(i+1)*s[1]]
	}
	return out
}

// Shrink really prunes: it builds, under p, a BERT of the shape that
// headMask and ffnMask leave ([layers, heads] and [layers,
// intermediate_size], 1 = kept) and copies into it the kept rows and
// columns of src's query, key, value, attention output, intermediate and
// output weights (HF's prune_heads for the heads; the same index_select
// for the neurons), and every other parameter whole, the pooler too when
// src has one. The result computes what src computes with those masks,
// with fewer weights.
func Shrink(p torchmods.Path, src *torchmods.Bert, headMask, ffnMask [][]float64) (*torchmods.Bert, error) {
	c := src.Cfg
	if c.Pruned != nil {
		return nil, fmt.Errorf("cap: the model is already pruned")
	}
	if src.RelPosBias != nil {
		return nil, fmt.Errorf("cap: really pruning heads of a model with a relative position bias (rel_pos_bins) is not implemented: the bias is shared by layers that would keep different heads")
	}
	if int64(len(headMask)) != c.NumHiddenLayers || int64(len(ffnMask)) != c.NumHiddenLayers {
		return nil, fmt.Errorf("cap: masks for %d and %d layers, the model has %d", len(headMask), len(ffnMask), c.NumHiddenLayers)
	}
	pr := &torchmods.BertPruned{Heads: map[int][]int64{}}
	keptHeads := make([][]int64, c.NumHiddenLayers)
	keptFFN := make([][]int64, c.NumHiddenLayers)
	for l := range c.NumHiddenLayers {
		if int64(len(headMask[l])) != c.NumAttentionHeads || int64(len(ffnMask[l])) != c.IntermediateSize {
			return nil, fmt.Errorf("cap: layer %d's masks have %d heads and %d neurons, the model %d and %d", l, len(headMask[l]), len(ffnMask[l]), c.NumAttentionHeads, c.IntermediateSize)
		}
		for h, v := range headMask[l] {
			if v != 0 {
				keptHeads[l] = append(keptHeads[l], int64(h))
			} else {
				pr.Heads[int(l)] = append(pr.Heads[int(l)], int64(h))
			}
		}
		for i, v := range ffnMask[l] {
			if v != 0 {
				keptFFN[l] = append(keptFFN[l], int64(i))
			}
		}
		pr.Intermediate = append(pr.Intermediate, int64(len(keptFFN[l])))
	}
	c.Pruned = pr
	var dst *torchmods.Bert
	err := torchmods.Try(func() {
		dst = torchmods.NewBert(p, c, src.Pooler != nil)
		hd := c.HiddenSize / c.NumAttentionHeads
		ts.NoGrad(func() {
			copyLinear := func(d, s *torchmods.Linear, rowsIdx, colsIdx []int64) {
				w := s.Weight
				if rowsIdx != nil {
					w = w.MustIndexSelect(0, torchmods.FromSlice(rowsIdx, []int64{int64(len(rowsIdx))}, w.MustDevice()), false)
				}
				if colsIdx != nil {
					w = w.MustIndexSelect(1, torchmods.FromSlice(colsIdx, []int64{int64(len(colsIdx))}, w.MustDevice()), false)
				}
				d.Weight.Copy_(w)
				if s.Bias != nil {
					b := s.Bias
					if rowsIdx != nil {
						b = b.MustIndexSelect(0, torchmods.FromSlice(rowsIdx, []int64{int64(len(rowsIdx))}, b.MustDevice()), false)
					}
					d.Bias.Copy_(b)
				}
			}
			copyAll := func(d, s *ts.Tensor) { d.Copy_(s) }
			copyAll(dst.Word.Weight, src.Word.Weight)
			copyAll(dst.Position.Weight, src.Position.Weight)
			copyAll(dst.TokenType.Weight, src.TokenType.Weight)
			copyAll(dst.EmbNorm.Weight, src.EmbNorm.Weight)
			copyAll(dst.EmbNorm.Bias, src.EmbNorm.Bias)
			for l, sl := range src.Layers {
				dl := dst.Layers[l]
				var dims []int64 // the kept heads' rows of q, k, v and columns of the output
				for _, h := range keptHeads[l] {
					for j := range hd {
						dims = append(dims, h*hd+j)
					}
				}
				if len(dims) > 0 {
					copyLinear(dl.Attn.Q, sl.Attn.Q, dims, nil)
					copyLinear(dl.Attn.K, sl.Attn.K, dims, nil)
					copyLinear(dl.Attn.V, sl.Attn.V, dims, nil)
					copyLinear(dl.Attn.Out, sl.Attn.Out, nil, dims)
				} else {
					copyAll(dl.AttnBias, sl.Attn.Out.Bias)
				}
				copyAll(dl.AttnNorm.Weight, sl.AttnNorm.Weight)
				copyAll(dl.AttnNorm.Bias, sl.AttnNorm.Bias)
				if len(keptFFN[l]) > 0 {
					copyLinear(dl.Intermediate, sl.Intermediate, keptFFN[l], nil)
					copyLinear(dl.Output, sl.Output, nil, keptFFN[l])
				} else {
					copyAll(dl.FFNBias, sl.Output.Bias)
				}
				copyAll(dl.OutNorm.Weight, sl.OutNorm.Weight)
				copyAll(dl.OutNorm.Bias, sl.OutNorm.Bias)
			}
			if src.Pooler != nil {
				copyLinear(dst.Pooler, src.Pooler, nil, nil)
			}
		})
	})
	return dst, err
}
