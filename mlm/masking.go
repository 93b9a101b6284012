package mlm

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Modes are the masking-ratio schedules of the official code (its
// masking_mode): "constant" is the fixed-ratio baseline; "cosine" and
// "linear" are the paper's MRD; the rest are its ablations. "linear" is
// the paper's formula 2p(1 - t/T), which the official code computes only
// under the name "desc": it has no "linear" branch, so the README's
// `--masking_mode linear` falls into its else branch, "cos_quad" (a cosine
// from 0.3 to 0.1 over the first 40% of training, then a falling
// quadratic). "official_linear" is that curve under that name, to
// reproduce a run of the official script as documented.
var Modes = []string{"constant", "cosine", "linear", "asc", "square_above", "square_below", "poly_asc", "poly_desc", "lin_warm_decay", "cos_quad", "official_linear"}

// LinWarmDecayWarmup is lin_warm_decay's warm-up, hard-coded to 80,000
// steps in the official get_mask_prob; masking.warmup defaults to it.
const LinWarmDecayWarmup = 80000

// Ratio is the masking ratio at step t of T for base ratio p (0.15), as
// BertModelWithLoss.forward and BertDataCollator.get_mask_prob compute it
// every step. warmup is lin_warm_decay's warm-up (80,000 in the code).
func Ratio(mode string, p float64, t, T, warmup int64) (float64, error) {
	s, n := float64(t), float64(T)
	switch mode {
	case "constant":
		return p, nil
	case "cosine":
		return p*(1+math.Cos(math.Pi/n*s)) + 0.02, nil
	case "linear", "desc":
		return (1 - s/n) * 2 * p, nil
	case "asc":
		return s / n * 2 * p, nil
	case "square_above":
		return -math.Pow(s/n*math.Sqrt(p*2), 2) + p*2 + 0.01, nil
	case "square_below":
		return p * 2 / (n * n) * (s - n) * (s - n), nil
	case "poly_asc":
		if s < n/2 {
			return s / n * 4 * p, nil
		}
		return (1 - s/n) * 4 * p, nil
	case "poly_desc":
		if s < n/2 {
			return (1-2*s/n)*2*p + 0.01, nil
		}
		return (2*s-n)/n*2*p + 0.01, nil
	case "lin_warm_decay":
		w := float64(warmup)
		if s < w {
			return s / w * 2 * p, nil
		}
		return (1 + (w-s)/(n-w)) * 2 * p, nil
	case "cos_quad", "official_linear": // official_linear: what --masking_mode linear runs officially
		turn := n * 0.4
		if s < turn {
			return 0.2 + 0.1*math.Cos(math.Pi/turn*s), nil
		}
		return -math.Pow(0.5/n, 2)*(s-turn)*(s-turn) + 0.1, nil
	}
	return 0, fmt.Errorf("masking mode %q; want one of %v", mode, Modes)
}

// Ignore is the label of positions without a prediction.
const Ignore = -100

// Special says which token ids are never masked.
type Special func(id int64) bool

// MaskTokens is the official _mask_tokens: every non-special token is
// chosen independently with probability ratio; a chosen token becomes
// [MASK] with probability 0.8, else a random id in [0, vocab) with
// probability 0.5, else stays. Labels hold the original id at chosen
// positions and Ignore elsewhere.
func MaskTokens(ids []int64, ratio float64, mask, vocab int64, special Special, rng *rand.Rand) (inputs, labels []int64) {
	inputs = append([]int64(nil), ids...)
	labels = make([]int64, len(ids))
	for i, id := range ids {
		labels[i] = Ignore
		if special(id) || rng.Float64() >= ratio {
			continue
		}
		labels[i] = id
		replace(inputs, i, mask, vocab, rng)
	}
	return inputs, labels
}

// replace applies 80% [MASK], 10% random, 10% unchanged at position i.
func replace(inputs []int64, i int, mask, vocab int64, rng *rand.Rand) {
	if rng.Float64() < 0.8 {
		inputs[i] = mask
	} else if rng.Float64() < 0.5 {
		inputs[i] = rng.Int64N(vocab)
	}
}

// PTW is POS-tagging weighted masking's state: the running loss of each tag.
type PTW struct {
	Loss     []float64 // per tag, starting at 0 as the code's all_pos_score
	Momentum float64   // 0.999
	// OnlyWWM is the official --only_wwm baseline: whole-word masking
	// with every tag's weight 1 (the running loss is still kept, as the
	// official probe keeps it, but does not steer the masking).
	OnlyWWM bool
}

// NewPTW starts every tag at loss 0.
func NewPTW(tags int) *PTW { return &PTW{Loss: make([]float64, tags), Momentum: 0.999} }

// Update folds in one batch: for each tag with masked tokens, L_c <-
// (1 - m) mean(CE of its tokens) + m L_c. A tag with no masked token in
// the batch keeps its value, as the official code updates only the
// classes present (all_pos_score[pos_classes]). Pre-training calls it
// once per optimizer step with the whole step's tokens (StepLosses).
func (p *PTW) Update(tags []int, losses []float64) {
	sum := make([]float64, len(p.Loss))
	cnt := make([]int, len(p.Loss))
	for i, t := range tags {
		sum[t] += losses[i]
		cnt[t]++
	}
	for t := range p.Loss {
		if cnt[t] > 0 {
			p.Loss[t] = (1-p.Momentum)*sum[t]/float64(cnt[t]) + p.Momentum*p.Loss[t]
		}
	}
}

// Weights are sigmoid(2 (L_c - mean L) / std L) with the unbiased standard
// deviation (1e-4 while it is 0), as BertDataCollator computes them; the
// mean and std run over all tags, seen or not. With OnlyWWM every weight
// is 1.
func (p *PTW) Weights() []float64 {
	if p.OnlyWWM {
		w := make([]float64, len(p.Loss))
		for i := range w {
			w[i] = 1
		}
		return w
	}
	n := float64(len(p.Loss))
	var mean float64
	for _, l := range p.Loss {
		mean += l / n
	}
	var v float64
	for _, l := range p.Loss {
		v += (l - mean) * (l - mean)
	}
	std := math.Sqrt(v / (n - 1))
	if std == 0 {
		std = 1e-4
	}
	w := make([]float64, len(p.Loss))
	for i, l := range p.Loss {
		w[i] = 1 / (1 + math.Exp(-(l-mean)/std*2))
	}
	return w
}

// WholeWordMask is the code's _whole_word_mask with tag weights, then
// HF's torch_mask_tokens: the words (runs of tokens with one word id;
// [CLS] and [SEP], whose word is -1, excluded) are shuffled, and each is
// accepted with probability weight[its tag] until max(1, round(len(ids) *
// ratio)) tokens are chosen (a word that would overshoot is skipped);
// chosen tokens get 80/10/10, except special ones. As officially, an
// [UNK] word is a candidate like any other and takes its share of the
// budget, and torch_mask_tokens then unmasks it (it zeroes every special
// id, [UNK] included): a sequence with [UNK] words gets fewer predictions.
// wordTags[w] is word w's tag.
func WholeWordMask(ids []int64, words []int, wordTags []int, weights []float64, ratio float64, mask, vocab int64, special Special, rng *rand.Rand) (inputs, labels []int64) {
	var cands [][]int // token positions of each word
	last := -2
	for i, w := range words {
		if w < 0 {
			last = -2
			continue
		}
		if w == last {
			cands[len(cands)-1] = append(cands[len(cands)-1], i)
		} else {
			cands = append(cands, []int{i})
		}
		last = w
	}
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	// Python's round() rounds halves to even.
	target := max(1, int(math.RoundToEven(float64(len(ids))*ratio)))
	chosen := map[int]bool{}
	for _, c := range cands {
		if rng.Float64() > weights[wordTags[words[c[0]]]] {
			continue
		}
		if len(chosen) >= target {
			break
		}
		if len(chosen)+len(c) > target {
			continue
		}
		for _, i := range c {
			chosen[i] = true
		}
	}
	inputs = append([]int64(nil), ids...)
	labels = make([]int64, len(ids))
	for i := range ids {
		labels[i] = Ignore
		if chosen[i] && !special(ids[i]) {
			labels[i] = ids[i]
			replace(inputs, i, mask, vocab, rng)
		}
	}
	return inputs, labels
}

// StepLosses collects one optimizer step's masked tokens, their tags and
// losses, over its micro-batches, so that PTW's running loss is updated
// once per optimizer step on the whole batch, as the official code (one
// forward pass of 32 sequences per process and step, no accumulation)
// updates it, rather than once per micro-batch.
type StepLosses struct {
	Tags   []int
	Losses []float64
}

// Add appends one micro-batch's masked tokens.
func (s *StepLosses) Add(tags []int, losses []float64) {
	s.Tags, s.Losses = append(s.Tags, tags...), append(s.Losses, losses...)
}

// Flush folds the step's tokens into p and empties s.
func (s *StepLosses) Flush(p *PTW) {
	if len(s.Tags) > 0 {
		p.Update(s.Tags, s.Losses)
	}
	s.Tags, s.Losses = s.Tags[:0], s.Losses[:0]
}
