package pmlm

import (
	"errors"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/reprolab/repro/internal/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var sTok = S2STokens{CLS: 101, SEP: 102, Pad: 0, Mask: 103, Vocab: 200}

func smallS2S() S2SOptions {
	o := DefaultS2SOptions()
	o.MaxSourceLen, o.MaxTargetLen = 5, 4
	return o
}

func TestDefaultS2SOptionsAreOfficial(t *testing.T) {
	o := DefaultS2SOptions()
	assert.Equal(t, S2SOptions{MaxSourceLen: 464, MaxTargetLen: 48, KeepProb: 0.1, RandomProb: 0.1, TargetMaskProb: 0.5, SourceMaskProb: 0, SourceType: 0, TargetType: 1}, o)
	require.NoError(t, o.Validate())
	_, err := toml.Decode("max_source_len = 608\nmax_target_len = 160\ntarget_mask_prob = 0.7\n", &o)
	require.NoError(t, err)
	assert.Equal(t, 608, o.MaxSourceLen)
	assert.Equal(t, 160, o.MaxTargetLen)
	assert.Equal(t, 0.7, o.TargetMaskProb)
}

func TestS2SOptionsValidate(t *testing.T) {
	for key, f := range map[string]func(*S2SOptions){
		"max_source_len":   func(o *S2SOptions) { o.MaxSourceLen = 1 },
		"max_target_len":   func(o *S2SOptions) { o.MaxTargetLen = 0 },
		"keep_prob":        func(o *S2SOptions) { o.KeepProb = -0.1 },
		"random_prob":      func(o *S2SOptions) { o.KeepProb, o.RandomProb = 0.6, 0.5 },
		"target_mask_prob": func(o *S2SOptions) { o.TargetMaskProb = 1.1 },
		"source_mask_prob": func(o *S2SOptions) { o.SourceMaskProb = -1 },
	} {
		o := DefaultS2SOptions()
		f(&o)
		err := o.Validate()
		var fe *config.FieldError
		require.True(t, errors.As(err, &fe), "%s: %v", key, err)
		assert.Equal(t, key, fe.Key)
	}
}

// The truncation of Seq2seqDatasetForBert.__trunk: [CLS] counts towards the
// source length, the tail goes, and [SEP] always closes each side.
func TestTruncateS2S(t *testing.T) {
	o := smallS2S() // 5 and 4
	long := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		src, tgt         []int64
		wantSrc, wantTgt []int64
	}{
		{[]int64{7, 8}, []int64{20, 21}, []int64{101, 7, 8, 102}, []int64{20, 21, 102}},
		{long, long, []int64{101, 1, 2, 3, 102}, []int64{1, 2, 3, 102}},
		{[]int64{1, 2, 3}, []int64{1, 2, 3}, []int64{101, 1, 2, 3, 102}, []int64{1, 2, 3, 102}}, // exactly full
		{[]int64{1, 2, 3, 4}, []int64{1, 2, 3, 4}, []int64{101, 1, 2, 3, 102}, []int64{1, 2, 3, 102}},
		{nil, nil, []int64{101, 102}, []int64{102}},
	} {
		s, tg := TruncateS2S(c.src, c.tgt, sTok, o)
		assert.Equal(t, c.wantSrc, s)
		assert.Equal(t, c.wantTgt, tg)
	}
	o.MaxSourceLen, o.MaxTargetLen = 2, 1
	s, tg := TruncateS2S(long, long, sTok, o)
	assert.Equal(t, []int64{101, 102}, s)
	assert.Equal(t, []int64{102}, tg)
	assert.Equal(t, int64(1), long[0], "inputs untouched")
}

// One example by hand from create_attention_mask and
// create_mask_and_position_ids. Source "7 8" (max 5), target "20 21" (max
// 4); the word drop replaced target slot 1 by its pseudo id [MASK]; the
// pseudo ids are [MASK] [MASK] and the random id 55 (for [SEP]).
func TestS2SHandExample(t *testing.T) {
	o := smallS2S()
	src, tgt := TruncateS2S([]int64{7, 8}, []int64{20, 21}, sTok, o)
	ex := S2SExample{
		Source: src,
		Target: []int64{20, 103, 102},
		Pseudo: []int64{103, 103, 55},
		Labels: tgt,
	}
	l, err := ex.Layout(sTok, o)
	require.NoError(t, err)
	const I = Ignore
	assert.Equal(t, 13, l.Len)
	assert.Equal(t, 4, l.NumSource)
	assert.Equal(t, 3, l.NumTarget)
	assert.Equal(t, 9, l.PseudoStart())
	//                      source (5)         | target (4)      | pseudo (4)
	assert.Equal(t, []int64{101, 7, 8, 102, 0, 20, 103, 102, 0, 103, 103, 55, 0}, l.IDs)
	assert.Equal(t, []int64{0, 1, 2, 3, 0, 4, 5, 6, 0, 4, 5, 6, 0}, l.Positions)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, l.TypeIDs)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 4, 5, 6, 0, -4, -5, -6, 0}, l.Weight)
	assert.Equal(t, []bool{true, true, true, true, false, true, true, true, false, true, true, true, false}, l.Valid)
	assert.Equal(t, []int64{I, I, I, I, I, I, I, I, I, 20, 21, 102, I}, l.Labels)
	want := parseMask(t,
		// keys: s0-s3 sPad | t0 t1 t2 tPad | p0 p1 p2 pPad
		"1111000000000", // [CLS]: the real source, bidirectional
		"1111000000000", // 7
		"1111000000000", // 8
		"1111000000000", // [SEP]
		"1111000000000", // source pad (weight 0): the real source
		"1111010000000", // t0 (w 4): source, t0
		"1111011000000", // t1 (w 5): source, t0 t1
		"1111011100000", // t2 = target [SEP] (w 6): source, t0 t1 t2
		"1111000000000", // target pad (weight 0): the real source
		"1111000001000", // p0 (w -4): source, itself
		"1111010000100", // p1 (w -5): source, t0, itself
		"1111011000010", // p2 (w -6): source, t0 t1, itself
		"1111000000000", // pseudo pad (weight -0 = 0): the real source
	)
	assert.Equal(t, want, l.AttnMask, "got\n%s", showMask(l.AttnMask, l.Len))
	assert.True(t, l.Allowed(10, 5))
	assert.False(t, l.Allowed(10, 6))
}

func TestS2SLayoutErrors(t *testing.T) {
	o := smallS2S()
	ok := S2SExample{Source: []int64{101, 102}, Target: []int64{102}, Pseudo: []int64{103}, Labels: []int64{102}}
	_, err := ok.Layout(sTok, o)
	require.NoError(t, err)
	for want, ex := range map[string]S2SExample{
		"source of 6": {Source: make([]int64, 6), Target: ok.Target, Pseudo: ok.Pseudo, Labels: ok.Labels},
		"source of 0": {Target: ok.Target, Pseudo: ok.Pseudo, Labels: ok.Labels},
		"target of 5": {Source: ok.Source, Target: make([]int64, 5), Pseudo: make([]int64, 5), Labels: make([]int64, 5)},
		"target of 0": {Source: ok.Source},
		"2 pseudo":    {Source: ok.Source, Target: ok.Target, Pseudo: []int64{1, 2}, Labels: ok.Labels},
		"2 label":     {Source: ok.Source, Target: ok.Target, Pseudo: ok.Pseudo, Labels: []int64{1, 2}},
	} {
		_, err := ex.Layout(sTok, o)
		assert.ErrorContains(t, err, want)
	}
	o.KeepProb = 2
	_, err = ok.Layout(sTok, o)
	assert.ErrorContains(t, err, "keep_prob")
}

// Over random lengths (some truncated), the mask in plain terms, segment
// by segment, and the positions, segments and labels.
func TestS2SLayoutProperties(t *testing.T) {
	for seed := range uint64(300) {
		rng := newRng(seed)
		o := DefaultS2SOptions()
		o.MaxSourceLen, o.MaxTargetLen = 2+rng.IntN(12), 1+rng.IntN(8)
		src, tgt := make([]int64, rng.IntN(16)), make([]int64, rng.IntN(10))
		for i := range src {
			src[i] = 10 + rng.Int64N(80)
		}
		for i := range tgt {
			tgt[i] = 10 + rng.Int64N(80)
		}
		ex, err := NewS2SExample(src, tgt, sTok, o, rng)
		require.NoError(t, err)
		l, err := ex.Layout(sTok, o)
		require.NoError(t, err)
		S, T, ns, nt := o.MaxSourceLen, o.MaxTargetLen, l.NumSource, l.NumTarget
		require.Equal(t, S+2*T, l.Len)
		require.Equal(t, min(len(src)+2, S), ns)
		require.Equal(t, min(len(tgt)+1, T), nt)
		type slot struct {
			seg  byte // 's', 't', 'p'
			j    int
			real bool
		}
		at := func(i int) slot {
			switch {
			case i < S:
				return slot{'s', i, i < ns}
			case i < S+T:
				return slot{'t', i - S, i-S < nt}
			}
			return slot{'p', i - S - T, i-S-T < nt}
		}
		for i := range l.Len {
			a := at(i)
			switch {
			case a.seg == 's':
				require.EqualValues(t, o.SourceType, l.TypeIDs[i])
			default:
				require.EqualValues(t, o.TargetType, l.TypeIDs[i])
			}
			switch {
			case !a.real:
				require.Equal(t, int64(0), l.Positions[i])
				require.Equal(t, sTok.Pad, l.IDs[i])
			case a.seg == 's':
				require.Equal(t, int64(a.j), l.Positions[i])
			default:
				require.Equal(t, int64(ns+a.j), l.Positions[i])
			}
			if a.seg == 'p' && a.real {
				require.Equal(t, ex.Labels[a.j], l.Labels[i])
			} else {
				require.EqualValues(t, Ignore, l.Labels[i])
			}
			some := false
			for j := range l.Len {
				b := at(j)
				var want bool
				switch {
				case !b.real:
					want = false // nobody sees padding
				case b.seg == 's':
					want = true // everybody sees the real source
				case !a.real || a.seg == 's':
					want = false // source and padding rows see only the source
				case a.seg == 't' && b.seg == 't':
					want = b.j <= a.j // causal, self included
				case a.seg == 'p' && b.seg == 't':
					want = b.j < a.j // earlier target slots only
				case a.seg == 'p' && b.seg == 'p':
					want = b.j == a.j // itself only
				default: // target row, pseudo key
					want = false
				}
				got := l.Allowed(i, j)
				some = some || got
				if got != want {
					t.Fatalf("seed %d: row %d %+v key %d %+v: got %v\n%s", seed, i, a, j, b, got, showMask(l.AttnMask, l.Len))
				}
			}
			require.True(t, some, "seed %d: row %d attends nothing", seed, i)
		}
	}
}

// The official corruption's statistics: pseudo ids are the token itself
// 10%, random 10%, [MASK] 80%; half the target slots are replaced, always
// by their own pseudo id; labels keep the target; the source is untouched
// by default; [SEP] is treated like any target token.
func TestNewS2SExampleStats(t *testing.T) {
	o := DefaultS2SOptions()
	tok := sTok
	tok.Vocab = 1 << 30
	rng := newRng(11)
	src := []int64{1000, 1001, 1002}
	tgt := make([]int64, 40)
	for i := range tgt {
		tgt[i] = 2000 + int64(i)
	}
	var keep, rnd, msk, drop, total float64
	for range 2000 {
		ex, err := NewS2SExample(src, tgt, tok, o, rng)
		require.NoError(t, err)
		require.Equal(t, []int64{101, 1000, 1001, 1002, 102}, ex.Source)
		require.Equal(t, append(append([]int64(nil), tgt...), 102), ex.Labels)
		for i, p := range ex.Pseudo {
			total++
			switch p {
			case ex.Labels[i]:
				keep++
			case tok.Mask:
				msk++
			default:
				rnd++
			}
			if ex.Target[i] != ex.Labels[i] {
				require.Equal(t, p, ex.Target[i], "a dropped slot takes its pseudo id")
			}
			if ex.Target[i] == p {
				drop++ // includes slots whose pseudo id is the token itself
			}
		}
	}
	assert.InDelta(t, 0.1, keep/total, 0.01)
	assert.InDelta(t, 0.1, rnd/total, 0.01)
	assert.InDelta(t, 0.8, msk/total, 0.01)
	// P(target == pseudo) = P(drop) + P(no drop) P(kept) = 0.5 + 0.5 * 0.1.
	assert.InDelta(t, 0.55, drop/total, 0.01)

	// Reproducible with the same seed.
	a, _ := NewS2SExample(src, tgt, tok, o, newRng(4))
	b, _ := NewS2SExample(src, tgt, tok, o, newRng(4))
	assert.Equal(t, a, b)
	assert.Equal(t, int64(2000), tgt[0], "inputs untouched")
}

// source_mask_prob 1: every source token but [CLS] and [SEP] goes through
// get_masked_token.
func TestNewS2SExampleSourceMask(t *testing.T) {
	o := DefaultS2SOptions()
	o.SourceMaskProb = 1
	tok := sTok
	tok.Vocab = 1 << 30
	src := make([]int64, 50)
	for i := range src {
		src[i] = 5000 + int64(i)
	}
	rng := newRng(2)
	var msk, total float64
	for range 400 {
		ex, err := NewS2SExample(src, []int64{7}, tok, o, rng)
		require.NoError(t, err)
		require.Equal(t, tok.CLS, ex.Source[0])
		require.Equal(t, tok.SEP, ex.Source[len(ex.Source)-1])
		for _, id := range ex.Source[1 : len(ex.Source)-1] {
			total++
			if id == tok.Mask {
				msk++
			}
		}
	}
	assert.InDelta(t, 0.8, msk/total, 0.01)

	_, err := NewS2SExample(src, nil, S2STokens{CLS: 1, SEP: 2, Mask: 3}, o, rng)
	assert.ErrorContains(t, err, "vocabulary")
	o.TargetMaskProb = -1
	_, err = NewS2SExample(src, nil, tok, o, rng)
	assert.ErrorContains(t, err, "target_mask_prob")
}
