package pmlm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/reprolab/repro/internal/config"
)

// MaskOptions are the knobs of blockwise masking (UniLMv2, Algorithm 1 and
// Section 4.1). They carry TOML tags so an experiment config can set them;
// DefaultMaskOptions holds the paper's values.
//
// The paper's Algorithm 1 reads:
//
//	p <- rand_int(1, |x|)                  // randomly sample an index
//	l <- rand_int(2, 6) if rand() < 0.4 else 1
//	if x_p..x_{p+l-1} has not been masked then M.append({p..p+l-1})
//	until sum |M_j| >= 0.15|x|
//
// so the span length (uniform in [2, 6]) is stated in the main text, in
// Algorithm 1 (the repository's paper notes had it unverified). Section 4.1
// adds: "Among masked positions, 80% of the time we replaced the token with
// masks, 10% of the time with a random token, and keeping the original
// token for the rest", and "The block masking can mask up to 6-gram".
type MaskOptions struct {
	// MaskProb is the share of maskable tokens to mask (0.15). The budget
	// is Budget(n): the smallest count meeting Algorithm 1's stop test.
	MaskProb float64 `toml:"mask_prob"`
	// SpanProb is the chance that a sampled block is a span rather than a
	// single token (0.4: "40% of the time we mask a n-gram block").
	SpanProb float64 `toml:"span_prob"`
	// MinSpan and MaxSpan bound a span's length, drawn uniformly from
	// [MinSpan, MaxSpan] (rand_int(2, 6)).
	MinSpan int `toml:"min_span"`
	MaxSpan int `toml:"max_span"`
	// MaskTokenProb and RandomTokenProb split every masked position of the
	// corrupted sequence: [M] with MaskTokenProb (0.8), a uniformly random
	// id in [0, vocab) with RandomTokenProb (0.1), unchanged otherwise.
	MaskTokenProb   float64 `toml:"mask_token_prob"`
	RandomTokenProb float64 `toml:"random_token_prob"`
}

// DefaultMaskOptions are the paper's settings.
func DefaultMaskOptions() MaskOptions {
	return MaskOptions{MaskProb: 0.15, SpanProb: 0.4, MinSpan: 2, MaxSpan: 6, MaskTokenProb: 0.8, RandomTokenProb: 0.1}
}

// Validate refuses options that would make sampling meaningless or never
// end. Errors are config.Field errors keyed by the TOML names above,
// relative to the table the options are decoded from.
func (o MaskOptions) Validate() error {
	unit := func(x float64) bool { return x >= 0 && x <= 1 } // false for NaN too
	switch {
	case !(o.MaskProb > 0 && o.MaskProb <= 1):
		return config.Field("mask_prob", "must be in (0, 1], got %v", o.MaskProb)
	case !unit(o.SpanProb):
		return config.Field("span_prob", "must be in [0, 1], got %v", o.SpanProb)
	case o.MinSpan < 2:
		return config.Field("min_span", "a span has at least 2 tokens (single tokens are the other 1 - span_prob), got %d", o.MinSpan)
	case o.MaxSpan < o.MinSpan:
		return config.Field("max_span", "must be at least min_span (%d), got %d", o.MinSpan, o.MaxSpan)
	case !unit(o.MaskTokenProb):
		return config.Field("mask_token_prob", "must be in [0, 1], got %v", o.MaskTokenProb)
	case !unit(o.RandomTokenProb):
		return config.Field("random_token_prob", "must be in [0, 1], got %v", o.RandomTokenProb)
	case o.MaskTokenProb+o.RandomTokenProb > 1+1e-12:
		return config.Field("random_token_prob", "mask_token_prob + random_token_prob must be at most 1, got %v + %v", o.MaskTokenProb, o.RandomTokenProb)
	}
	return nil
}

// Budget is the number of tokens masked among n maskable ones:
// ceil(MaskProb * n), at most n. Algorithm 1 stops as soon as
// sum |M_j| >= 0.15|x|, so ceil is the least count it can stop at; unlike
// the paper we never overshoot it (see SampleBlocks), which makes the count
// exact. The 1e-9 slack keeps float error from adding a token when
// MaskProb * n is a whole number (0.15 * 20 is 3, not 4). Every sequence
// with a maskable token thus masks at least one, so PAR always has a step.
func (o MaskOptions) Budget(n int) int {
	if n <= 0 {
		return 0
	}
	return min(n, int(math.Ceil(o.MaskProb*float64(n)-1e-9)))
}

// Block is one factorisation step's masked positions: the contiguous run
// [Start, End) of the original sequence.
type Block struct {
	Start, End int
}

// Len is the number of tokens in the block.
func (b Block) Len() int { return b.End - b.Start }

// Masking is one sampled corruption of a sequence: what Pack lays out.
type Masking struct {
	// Blocks are disjoint and sorted by Start.
	Blocks []Block
	// Order is the factorisation order: step s (1-based) predicts
	// Blocks[Order[s-1]]. It is a permutation of the block indices.
	Order []int
	// Corrupted is the AE input: the original tokens with every masked
	// position replaced per MaskTokenProb / RandomTokenProb.
	Corrupted []int64
}

// maxFails bounds the rejected draws in a row before SampleBlocks settles
// for a single token: with span_prob = 1 and free positions split into
// runs shorter than min_span no span fits, and the loop must still end.
// Under the defaults a draw is rejected with probability < 0.4, so the
// fallback has probability < 0.4^64 per block and does not bias sampling.
const maxFails = 64

// SampleBlocks draws the masked blocks of a sequence whose maskable
// positions are true in maskable (false for [CLS], [SEP], padding and other
// special tokens: the paper's Algorithm 1 samples over all of x, but a
// special token is never a prediction target). It follows Algorithm 1:
// repeatedly draw a start p and a length l (MinSpan..MaxSpan uniformly with
// probability SpanProb, else 1), and keep the block if all of p..p+l-1 are
// maskable and not yet masked, until Budget(#maskable) tokens are masked.
//
// Two departures, both to make the count exact and sampling total:
//   - p is drawn uniformly among the maskable, unmasked positions instead
//     of among all positions. A draw whose start is masked or special is
//     rejected in the paper anyway, so the accepted (p, l) have the same
//     distribution; only the wasted draws go.
//   - l is cut to the tokens left in the budget (as s2s-ft's span code
//     does with min(span_len, num_target_tokens - len(span_ids))), where the
//     paper lets the last block overshoot 0.15|x| by up to 5 tokens. Only
//     the last accepted block can be cut, possibly below MinSpan.
//
// As in Algorithm 1, a rejected draw redraws the length too, so spans that
// would hit masked tokens are under-represented: at the default 15% about
// 63% of the blocks are single tokens instead of 60%.
//
// The blocks come back sorted by Start; the factorisation order is drawn
// separately (Sample), since here the draw order is not uniform over
// permutations once budget cuts and rejections are taken into account.
func (o MaskOptions) SampleBlocks(maskable []bool, rng *rand.Rand) []Block {
	n := len(maskable)
	taken := make([]bool, n)
	// free holds the maskable, unmasked positions (in no particular order);
	// where[i] is i's index in free, so taking i is a swap-remove.
	var free []int
	where := make([]int, n)
	for i, m := range maskable {
		if m {
			where[i] = len(free)
			free = append(free, i)
		}
	}
	take := func(i int) {
		taken[i] = true
		k, last := where[i], free[len(free)-1]
		free[k], where[last] = last, k
		free = free[:len(free)-1]
	}
	budget := o.Budget(len(free))
	fits := func(p, l int) bool {
		if p+l > n {
			return false
		}
		for i := p; i < p+l; i++ {
			if !maskable[i] || taken[i] {
				return false
			}
		}
		return true
	}
	var blocks []Block
	for masked, fails := 0, 0; masked < budget; {
		p := free[rng.IntN(len(free))]
		l := 1
		if rng.Float64() < o.SpanProb {
			l = o.MinSpan + rng.IntN(o.MaxSpan-o.MinSpan+1)
		}
		l = min(l, budget-masked)
		if !fits(p, l) {
			if fails++; fails < maxFails {
				continue
			}
			l = 1 // p itself is free: a single token always fits
		}
		fails = 0
		for i := p; i < p+l; i++ {
			take(i)
		}
		blocks = append(blocks, Block{p, p + l})
		masked += l
	}
	slices.SortFunc(blocks, func(a, b Block) int { return a.Start - b.Start })
	return blocks
}

// Corrupt returns tokens with each position inside a block replaced:
// [M] (maskID) with MaskTokenProb, a uniform id in [0, vocab) with
// RandomTokenProb, else left as it is. The choice is per token, not per
// block: the paper says "Among masked positions, 80% of the time we
// replaced the token with masks, 10% ... random ... keeping the original
// token for the rest" (Section 4.1), and s2s-ft's get_masked_token also
// draws per token. The random id may be a special token, as in BERT and in
// s2s-ft's random.randint(0, vocab_size - 1).
func (o MaskOptions) Corrupt(tokens []int64, blocks []Block, maskID, vocab int64, rng *rand.Rand) []int64 {
	out := slices.Clone(tokens)
	for _, b := range blocks {
		for i := b.Start; i < b.End; i++ {
			switch u := rng.Float64(); {
			case u < o.MaskTokenProb:
				out[i] = maskID
			case u < o.MaskTokenProb+o.RandomTokenProb:
				out[i] = rng.Int64N(vocab)
			}
		}
	}
	return out
}

// Sample is one full corruption of tokens: SampleBlocks, then Corrupt,
// then a uniformly random factorisation order (rng.Perm), in that order of
// draws, so the same rng state and inputs give the same Masking. The paper
// samples "one factorization order M for each input text" (Section 3.1.2);
// a permutation drawn after the blocks makes every order of the sampled
// blocks equally likely.
func (o MaskOptions) Sample(tokens []int64, maskable []bool, maskID, vocab int64, rng *rand.Rand) (Masking, error) {
	if err := o.Validate(); err != nil {
		return Masking{}, err
	}
	if len(maskable) != len(tokens) {
		return Masking{}, fmt.Errorf("pmlm: %d maskable flags for %d tokens", len(maskable), len(tokens))
	}
	if vocab <= 0 {
		return Masking{}, fmt.Errorf("pmlm: vocabulary size %d", vocab)
	}
	blocks := o.SampleBlocks(maskable, rng)
	corrupted := o.Corrupt(tokens, blocks, maskID, vocab, rng)
	return Masking{Blocks: blocks, Order: rng.Perm(len(blocks)), Corrupted: corrupted}, nil
}
