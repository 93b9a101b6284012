package pmlm

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/reprolab/repro/internal/config"
)

// S2SOptions are s2s-ft's training settings for the pseudo-mask
// fine-tuning (run_seq2seq.py with --mask_way v2, its default), with the
// script's defaults in DefaultS2SOptions.
type S2SOptions struct {
	// MaxSourceLen counts [CLS] and the source's [SEP] (--max_source_seq_length, 464).
	MaxSourceLen int `toml:"max_source_len"`
	// MaxTargetLen counts the target's [SEP] (--max_target_seq_length, 48).
	MaxTargetLen int `toml:"max_target_len"`
	// KeepProb and RandomProb are get_masked_token's split of every pseudo
	// token (and of every dropped word): the target token itself with
	// KeepProb (--keep_prob 0.1), a uniform id in [0, vocab) with
	// RandomProb (--random_prob 0.1), [MASK] otherwise.
	KeepProb   float64 `toml:"keep_prob"`
	RandomProb float64 `toml:"random_prob"`
	// TargetMaskProb is the "target segment word drop": each target slot is
	// replaced by its pseudo token's id with this probability
	// (--target_mask_prob 0.5; the README suggests 0.4-0.5 for XSum and
	// 0.7-0.8 for CNN/DailyMail).
	TargetMaskProb float64 `toml:"target_mask_prob"`
	// SourceMaskProb replaces each source token other than [CLS]/[SEP] by
	// get_masked_token with this probability (--source_mask_prob; the
	// official default -1 and our 0 both mean off).
	SourceMaskProb float64 `toml:"source_mask_prob"`
	// SourceType and TargetType are the segment ids (BertForSeq2SeqConfig's
	// source_type_id 0 and target_type_id 1); the [P] segment is TargetType.
	SourceType int64 `toml:"source_type"`
	TargetType int64 `toml:"target_type"`
}

// DefaultS2SOptions are run_seq2seq.py's defaults.
func DefaultS2SOptions() S2SOptions {
	return S2SOptions{MaxSourceLen: 464, MaxTargetLen: 48, KeepProb: 0.1, RandomProb: 0.1, TargetMaskProb: 0.5, SourceType: 0, TargetType: 1}
}

// Validate refuses lengths with no room for the special tokens and
// probabilities outside [0, 1]; errors are config.Field errors keyed by
// the TOML names, relative to the options' table.
func (o S2SOptions) Validate() error {
	unit := func(x float64) bool { return x >= 0 && x <= 1 }
	switch {
	case o.MaxSourceLen < 2:
		return config.Field("max_source_len", "must hold [CLS] and [SEP] (at least 2), got %d", o.MaxSourceLen)
	case o.MaxTargetLen < 1:
		return config.Field("max_target_len", "must hold the target's [SEP] (at least 1), got %d", o.MaxTargetLen)
	case !unit(o.KeepProb):
		return config.Field("keep_prob", "must be in [0, 1], got %v", o.KeepProb)
	case !unit(o.RandomProb):
		return config.Field("random_prob", "must be in [0, 1], got %v", o.RandomProb)
	case o.KeepProb+o.RandomProb > 1+1e-12:
		return config.Field("random_prob", "keep_prob + random_prob must be at most 1, got %v + %v", o.KeepProb, o.RandomProb)
	case !unit(o.TargetMaskProb):
		return config.Field("target_mask_prob", "must be in [0, 1], got %v", o.TargetMaskProb)
	case !unit(o.SourceMaskProb):
		return config.Field("source_mask_prob", "must be in [0, 1] (0 is off), got %v", o.SourceMaskProb)
	}
	return nil
}

// S2STokens are the tokenizer's ids s2s-ft uses.
type S2STokens struct {
	CLS, SEP, Pad, Mask int64
	Vocab               int64 // random ids are drawn from [0, Vocab)
}

// S2SExample is one unpadded training example as Seq2seqDatasetForBert's
// __getitem__ builds it for mask_way v2.
type S2SExample struct {
	Source []int64 // [CLS] source [SEP], truncated, after any source masking
	Target []int64 // target [SEP], truncated, after the word drop: the target slots' ids
	Pseudo []int64 // one per target token: the pseudo-mask slots' ids
	Labels []int64 // target [SEP] as it was: what each pseudo slot predicts
}

// TruncateS2S is __trunk: [CLS] + source cut to MaxSourceLen-1 tokens, then
// [SEP]; target cut to MaxTargetLen-1 tokens, then [SEP]. The tail goes, and
// [CLS] counts towards the source's length.
func TruncateS2S(source, target []int64, tok S2STokens, o S2SOptions) (src, tgt []int64) {
	src = append([]int64{tok.CLS}, source...)
	src = append(src[:min(len(src), o.MaxSourceLen-1)], tok.SEP)
	tgt = append(slices.Clone(target[:min(len(target), o.MaxTargetLen-1)]), tok.SEP)
	return src, tgt
}

// NewS2SExample truncates (TruncateS2S) and corrupts one training pair as
// the official mask_way v2 does, drawing from rng in its order: first the
// source masking (when SourceMaskProb > 0: each token other than [CLS] and
// [SEP] is, with that probability, replaced by get_masked_token), then for
// each target token, its [SEP] included: the pseudo id m =
// get_masked_token(token) (kept with KeepProb, random with RandomProb,
// [MASK] otherwise), then, with TargetMaskProb, the target slot itself
// becomes that same m. Labels are the uncorrupted target. Note that the
// official "pseudo mask" is thus [MASK] (80%), not a separate [P] token.
func NewS2SExample(source, target []int64, tok S2STokens, o S2SOptions, rng *rand.Rand) (S2SExample, error) {
	if err := o.Validate(); err != nil {
		return S2SExample{}, err
	}
	if tok.Vocab <= 0 {
		return S2SExample{}, fmt.Errorf("pmlm: vocabulary size %d", tok.Vocab)
	}
	src, tgt := TruncateS2S(source, target, tok, o)
	masked := func(id int64) int64 {
		switch p := rng.Float64(); {
		case p < o.KeepProb:
			return id
		case p < o.KeepProb+o.RandomProb:
			return rng.Int64N(tok.Vocab)
		}
		return tok.Mask
	}
	if o.SourceMaskProb > 0 {
		for i, id := range src {
			if id != tok.CLS && id != tok.SEP && rng.Float64() < o.SourceMaskProb {
				src[i] = masked(id)
			}
		}
	}
	ex := S2SExample{Source: src, Target: tgt, Labels: slices.Clone(tgt), Pseudo: make([]int64, len(tgt))}
	for i, id := range ex.Labels {
		m := masked(id)
		ex.Pseudo[i] = m
		if rng.Float64() < o.TargetMaskProb {
			ex.Target[i] = m
		}
	}
	return ex, nil
}

// S2SLayout is the model input of one example, as
// BertForSequenceToSequenceWithPseudoMask.forward builds it from the
// padded dataset tensors (the collate function, batch_list_to_batch_tensors,
// only stacks them: every example is already padded to the maximum
// lengths, so Len is the same for all):
//
//	[0, S)        source, padded to S = MaxSourceLen
//	[S, S+T)      target slots, padded to T = MaxTargetLen
//	[S+T, S+2T)   pseudo slots, padded to T
type S2SLayout struct {
	Len                  int // S + 2T
	SourceLen, TargetLen int // S and T, the padded segment lengths
	NumSource, NumTarget int // real tokens in the source ([CLS], [SEP] included) and target ([SEP] included)

	IDs []int64
	// Positions: source j -> j; target and pseudo j -> NumSource + j (the
	// target continues the source, and each pseudo slot reuses its target
	// slot's position); padding -> 0 (create_mask_and_position_ids
	// multiplies by the mask).
	Positions []int64
	// TypeIDs: SourceType over the whole source segment, TargetType over
	// the target and pseudo segments, padding included.
	TypeIDs []int64
	// Labels: the original target token (Labels) at each real pseudo slot,
	// Ignore elsewhere. The official label_ids are padded with pad_id and
	// the loss is multiplied by target_mask instead; the two agree.
	Labels []int64
	// Weight is create_attention_mask's weight: 0 for the source, p for a
	// real target slot at position p, -p for its pseudo slot, 0 for target
	// and pseudo padding.
	Weight []int64
	// Valid is the key mask (source_mask, target_mask, target_mask).
	Valid []bool
	// AttnMask is Len x Len, row-major (query i, key j), exactly
	// create_attention_mask:
	//   true_tokens = w_j >= 0 && Valid[j]
	//   allowed     = (w_i >= 0 && true_tokens && w_j <= w_i)
	//              || (w_i < 0 && true_tokens && -w_j > w_i)
	//              || (w_i < 0 && w_j == w_i)
	// That is: a source token sees the real source (bidirectional); target
	// slot p sees the source and target slots up to p, itself included
	// (causal); pseudo slot p sees the source, the target slots before p
	// and itself only; nobody sees a pseudo slot but itself, nobody sees
	// padding. The target's [SEP] is an ordinary target token (it is
	// predicted, and pseudo slots after it do not exist). Every padding row
	// (weight 0) sees the real source, as in the official mask.
	AttnMask []bool
}

// Allowed reports AttnMask for query i, key j.
func (l *S2SLayout) Allowed(i, j int) bool { return l.AttnMask[i*l.Len+j] }

// PseudoStart is the index of the first pseudo slot: the official forward
// predicts from sequence_output[:, source_len + target_len:].
func (l *S2SLayout) PseudoStart() int { return l.SourceLen + l.TargetLen }

// Layout pads e to the maximum lengths of o and builds the model input. It
// errors when e does not fit them or its parts disagree in length.
func (e S2SExample) Layout(tok S2STokens, o S2SOptions) (*S2SLayout, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	S, T := o.MaxSourceLen, o.MaxTargetLen
	ns, nt := len(e.Source), len(e.Target)
	switch {
	case ns < 1 || ns > S:
		return nil, fmt.Errorf("pmlm: source of %d tokens, want 1..%d", ns, S)
	case nt < 1 || nt > T:
		return nil, fmt.Errorf("pmlm: target of %d tokens, want 1..%d", nt, T)
	case len(e.Pseudo) != nt || len(e.Labels) != nt:
		return nil, fmt.Errorf("pmlm: %d target, %d pseudo and %d label tokens", nt, len(e.Pseudo), len(e.Labels))
	}
	L := S + 2*T
	l := &S2SLayout{
		Len: L, SourceLen: S, TargetLen: T, NumSource: ns, NumTarget: nt,
		IDs: make([]int64, L), Positions: make([]int64, L), TypeIDs: make([]int64, L),
		Labels: make([]int64, L), Weight: make([]int64, L), Valid: make([]bool, L),
		AttnMask: make([]bool, L*L),
	}
	for i := range L {
		l.IDs[i], l.Labels[i] = tok.Pad, Ignore
	}
	for j := range S {
		l.TypeIDs[j] = o.SourceType
		if j < ns {
			l.IDs[j], l.Positions[j], l.Valid[j] = e.Source[j], int64(j), true
		}
	}
	for j := range T {
		t, p := S+j, S+T+j
		l.TypeIDs[t], l.TypeIDs[p] = o.TargetType, o.TargetType
		if j < nt {
			pos := int64(ns + j)
			l.IDs[t], l.IDs[p] = e.Target[j], e.Pseudo[j]
			l.Positions[t], l.Positions[p] = pos, pos
			l.Weight[t], l.Weight[p] = pos, -pos
			l.Valid[t], l.Valid[p] = true, true
			l.Labels[p] = e.Labels[j]
		}
	}
	for i := range L {
		wi := l.Weight[i]
		for j := range L {
			wj := l.Weight[j]
			trueTok := wj >= 0 && l.Valid[j]
			l.AttnMask[i*L+j] = (wi >= 0 && trueTok && wj <= wi) ||
				(wi < 0 && trueTok && -wj > wi) ||
				(wi < 0 && wj == wi)
		}
	}
	return l, nil
}
