package torchmods

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// GenerateOptions configures Generate, after HF's GenerationConfig.
//
// Zero values mean "off" (TopK) or "1" (Temperature, TopP), which is not
// HF's default for TopK: GenerationConfig has top_k 50, so
// generate(do_sample=True) without top_k keeps the 50 best tokens. Pass
// TopK: 50 for that.
type GenerateOptions struct {
	MaxNewTokens int // at least 1
	// DoSample draws each token from the warped distribution; false is
	// greedy decoding (argmax), where the warpers play no part, as in HF.
	DoSample    bool
	Temperature float64 // divides the logits; 0 means 1 (none)
	TopK        int64   // keeps the k best tokens (and ties with the k-th); 0 means all
	TopP        float64 // keeps the smallest set of best tokens whose probability exceeds p; 0 or 1 means all
	// StopTokens end a row when generated (HF's eos_token_id, which may be
	// a list); the stop token is part of the row's output. Each row stops
	// on its own; the others go on. nil means none: HF stops on the
	// model's eos_token_id unless told otherwise, so pass LoadedLlama.EOS
	// (generation_config.json's, else config.json's) for its behaviour.
	StopTokens []int64
	// Seed seeds the sampler (NewSampler); the same seed gives the same
	// tokens for the same logits.
	Seed uint64
	// NoCache recomputes the whole sequence at every step instead of
	// decoding one position against the key/value cache: slower, the
	// reference the cache is tested against.
	NoCache bool
	// KeepLogits returns each step's logits (GenerateResult.Logits).
	KeepLogits bool
}

// GenerateResult is what Generate made.
type GenerateResult struct {
	// Tokens are each row's new tokens, up to and including the stop
	// token that ended it.
	Tokens [][]int64
	// Stopped says whether a row ended on a stop token (else it ran to
	// MaxNewTokens).
	Stopped []bool
	// Logits, with KeepLogits, are step i's last-position logits [B, V]
	// in float32, before any warping, for every row (rows that have
	// stopped go on being computed on the pad token, as in HF). They are
	// the caller's: Drop frees them, else the garbage collector does.
	Logits []*ts.Tensor
}

// Generate continues a batch of prompts, HF's generate for decoder-only
// models: ids [B, L] (int64) left-padded, mask [B, L] (1 for a token, 0
// for padding; nil when no row is padded). Positions come from the mask
// (LlamaPositionIDs), so a padded row generates what it would alone.
// Rows that stopped are fed the pad token (pad_token_id, else the first
// stop token) until every row has stopped or MaxNewTokens are made.
// Options and inputs are checked first; Generate is a boundary (see the
// package doc): tensor failures come back as errors.
func (m *LlamaForCausalLM) Generate(ids, mask *ts.Tensor, o GenerateOptions) (*GenerateResult, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	var rows, masks [][]int64
	err := Try(func() { rows, masks = hostRows(ids, mask) })
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	for r := range rows {
		if len(masks[r]) == 0 || masks[r][len(masks[r])-1] == 0 {
			return nil, fmt.Errorf("generate: row %d ends in padding: a decoder-only model needs its prompts padded on the left", r)
		}
		for j, id := range rows[r] {
			if masks[r][j] != 0 && (id < 0 || id >= m.Cfg.VocabSize) {
				return nil, fmt.Errorf("generate: row %d has token %d outside the vocabulary of %d", r, id, m.Cfg.VocabSize)
			}
		}
	}
	pad := m.Cfg.PadTokenID
	if pad < 0 && len(o.StopTokens) > 0 {
		pad = o.StopTokens[0]
	}
	if pad < 0 {
		pad = 0
	}
	g := &generation{m: m, o: o, dev: ids.MustDevice(), rows: rows, masks: masks, pad: pad, sampler: NewSampler(o.Seed)}
	res := &GenerateResult{Tokens: make([][]int64, len(rows)), Stopped: make([]bool, len(rows))}
	if !o.NoCache {
		g.cache = NewLlamaCache(m)
		defer g.cache.Drop()
	}
	err = Try(func() {
		ts.NoGrad(func() {
			for step := 0; step < o.MaxNewTokens; step++ {
				next, logits := g.step(step == 0)
				if logits != nil {
					res.Logits = append(res.Logits, logits)
				}
				done := true
				for r, t := range next {
					if res.Stopped[r] {
						next[r] = pad
						continue
					}
					res.Tokens[r] = append(res.Tokens[r], t)
					res.Stopped[r] = slices.Contains(o.StopTokens, t)
					done = done && res.Stopped[r]
				}
				for r := range g.rows {
					g.rows[r] = append(g.rows[r], next[r])
					g.masks[r] = append(g.masks[r], 1)
				}
				if done {
					break
				}
			}
		})
	})
	if err != nil {
		for _, t := range res.Logits {
			t.MustDrop()
		}
		return nil, fmt.Errorf("generate: %w", err)
	}
	return res, nil
}

func (o GenerateOptions) check() error {
	switch {
	case o.MaxNewTokens < 1:
		return fmt.Errorf("generate: MaxNewTokens %d, want at least 1", o.MaxNewTokens)
	case o.Temperature < 0 || math.IsNaN(o.Temperature) || math.IsInf(o.Temperature, 0):
		return fmt.Errorf("generate: Temperature %v, want a positive number (0 for none)", o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("generate: TopK %d, want 0 (all) or more", o.TopK)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(o.TopP):
		return fmt.Errorf("generate: TopP %v, want a number in (0, 1] (0 for none)", o.TopP)
	}
	return nil
}

// hostRows copies ids [B, L] and mask (nil: all ones) to the host.
func hostRows(ids, mask *ts.Tensor) (rows, masks [][]int64) {
	s := ids.MustSize()
	if len(s) != 2 || s[0] == 0 || s[1] == 0 {
		panic(fmt.Errorf("input_ids of shape %v, want [batch, length] with both positive", s))
	}
	if mask != nil && !equalShape(mask.MustSize(), s) {
		panic(fmt.Errorf("attention_mask of shape %v, input_ids %v", mask.MustSize(), s))
	}
	flat := ids.MustTotype(gotch.Int64, false).Int64Values(true)
	var mflat []int64
	if mask != nil {
		mflat = mask.MustTotype(gotch.Int64, false).Int64Values(true)
	}
	for r := range s[0] {
		rows = append(rows, slices.Clone(flat[r*s[1]:(r+1)*s[1]]))
		m := make([]int64, s[1])
		for j := range m {
			m[j] = 1
			if mflat != nil {
				m[j] = mflat[r*s[1]+int64(j)]
			}
		}
		masks = append(masks, m)
	}
	return rows, masks
}

// generation is one Generate call's state: the rows so far on the host
// (prompt, padding and new tokens), their masks, and the cache.
type generation struct {
	m           *LlamaForCausalLM
	o           GenerateOptions
	dev         gotch.Device
	rows, masks [][]int64
	pad         int64
	cache       *LlamaCache
	sampler     *Sampler
}

// step runs one forward pass in its own scope and picks each row's next
// token: over the whole rows on the first step or without a cache, over
// the last token against the cache otherwise. It returns the tokens and,
// with KeepLogits, the step's logits (persisted: the caller's).
func (g *generation) step(first bool) ([]int64, *ts.Tensor) {
	s := ts.NewScope()
	defer s.Close()
	b, n := int64(len(g.rows)), int64(len(g.rows[0]))
	flat := func(x [][]int64, from int64) []int64 {
		var out []int64
		for _, r := range x {
			out = append(out, r[from:]...)
		}
		return out
	}
	mask := FromSlice(flat(g.masks, 0), []int64{b, n}, g.dev)
	pos := LlamaPositionIDs(mask)
	from := int64(0)
	if g.cache != nil && !first {
		from = n - 1
		pos = pos.MustNarrow(1, from, 1, true)
	}
	ids := FromSlice(flat(g.rows, from), []int64{b, n - from}, g.dev)
	// Only the last position's logits are needed (HF's logits_to_keep=1):
	// a long prompt's [B, L, V] would be gigabytes for a large vocabulary.
	hidden := g.m.Hidden(LlamaInput{IDs: ids, Mask: mask, Positions: pos, Cache: g.cache}, false)
	last := g.m.Logits(hidden.MustNarrow(1, n-from-1, 1, true)).MustSelect(1, 0, true).MustTotype(gotch.Float, true).MustContiguous(true) // [B, V]
	var kept *ts.Tensor
	if g.o.KeepLogits {
		kept = last.MustDetach(false)
		ts.Persist(kept)
	}
	if !g.o.DoSample {
		return last.MustArgmax([]int64{-1}, false, false).Int64Values(true), kept
	}
	return g.sampler.Sample(WarpLogits(last, g.o)), kept
}

// WarpLogits applies the sampling warpers of o to scores [B, V] (float32)
// in HF's order: temperature, top-k, top-p, each only when it changes
// something (temperature not 1, top-k not 0, top-p below 1), as generate
// adds them. Removed tokens get -inf.
func WarpLogits(scores *ts.Tensor, o GenerateOptions) *ts.Tensor {
	if o.Temperature != 0 && o.Temperature != 1 {
		scores = TemperatureWarp(scores, o.Temperature)
	}
	if o.TopK > 0 {
		scores = TopKWarp(scores, o.TopK)
	}
	if o.TopP > 0 && o.TopP < 1 {
		scores = TopPWarp(scores, o.TopP)
	}
	return scores
}

// TemperatureWarp is TemperatureLogitsWarper: scores / t.
func TemperatureWarp(scores *ts.Tensor, t float64) *ts.Tensor {
	return scores.MustDivScalar(ts.FloatScalar(t), false)
}

// TopKWarp is TopKLogitsWarper (min_tokens_to_keep 1): every score below
// the k-th largest of its row becomes -inf, so ties with the k-th stay.
func TopKWarp(scores *ts.Tensor, k int64) *ts.Tensor {
	v := scores.MustSize()[1]
	k = min(max(k, 1), v)
	values, idx := scores.MustTopk(k, -1, true, true, false)
	idx.MustDrop()
	kth := values.MustNarrow(1, k-1, 1, true)
	return scores.MustMaskedFill(scores.MustLtTensor(kth, false), ts.FloatScalar(math.Inf(-1)), false)
}

// TopPWarp is TopPLogitsWarper (min_tokens_to_keep 1): sorting a row's
// scores in ascending order, the tokens whose cumulative probability is at
// most 1-p become -inf, but never the best one.
func TopPWarp(scores *ts.Tensor, p float64) *ts.Tensor {
	sorted, idx := scores.MustSort(-1, false, false)
	cum := sorted.MustSoftmax(-1, gotch.Float, true).MustCumsum(-1, gotch.Float, true)
	remove := cum.MustLe(ts.FloatScalar(1-p), true)
	s := remove.MustSize()
	keepBest := ts.MustZeros([]int64{s[0], 1}, gotch.Bool, remove.MustDevice())
	remove = ts.MustCat([]*ts.Tensor{remove.MustNarrow(1, 0, s[1]-1, false), keepBest}, 1)
	remove = remove.MustScatter(1, idx, remove, false) // back to the vocabulary's order
	return scores.MustMaskedFill(remove, ts.FloatScalar(math.Inf(-1)), false)
}

// Sampler draws tokens from warped logits with its own generator (PCG,
// seeded), not libtorch's: the same seed gives the same tokens for the
// same logits on any device, whatever else draws random numbers. (It does
// not reproduce torch.multinomial's draws, which no other generator
// could.)
type Sampler struct{ rng *rand.Rand }

// NewSampler is a sampler seeded with seed.
func NewSampler(seed uint64) *Sampler {
	return &Sampler{rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

// Sample draws one token per row of scores [B, V] from softmax(scores),
// by inverting the cumulative distribution at a uniform draw; a token of
// probability 0 (score -inf) is never drawn.
func (s *Sampler) Sample(scores *ts.Tensor) []int64 {
	sz := scores.MustSize()
	probs := scores.MustSoftmax(-1, gotch.Double, false).MustTo(gotch.CPU, true).Float64Values(true)
	out := make([]int64, sz[0])
	for r := range sz[0] {
		row := probs[r*sz[1] : (r+1)*sz[1]]
		var total float64
		for _, p := range row {
			total += p
		}
		u := s.rng.Float64() * total
		last := int64(-1)
		var cum float64
		for j, p := range row {
			if p <= 0 {
				continue
			}
			last = int64(j)
			if cum += p; cum > u {
				break
			}
		}
		if last < 0 {
			panic(fmt.Errorf("sample: row %d has no token of positive probability (every score -inf or NaN)", r))
		}
		out[r] = last
	}
	return out
}

// LeftPad makes a batch of prompts of different lengths into input_ids
// [B, max length] padded on the left with pad, and the attention_mask
// that marks the tokens, as a tokenizer with padding_side="left" does.
func LeftPad(prompts [][]int64, pad int64, dev gotch.Device) (ids, mask *ts.Tensor) {
	n := 0
	for _, p := range prompts {
		n = max(n, len(p))
	}
	flat := make([]int64, 0, len(prompts)*n)
	mflat := make([]int64, 0, len(prompts)*n)
	for _, p := range prompts {
		for range n - len(p) {
			flat, mflat = append(flat, pad), append(mflat, 0)
		}
		for _, t := range p {
			flat, mflat = append(flat, t), append(mflat, 1)
		}
	}
	shape := []int64{int64(len(prompts)), int64(n)}
	return FromSlice(flat, shape, dev), FromSlice(mflat, shape, dev)
}
