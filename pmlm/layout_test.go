package pmlm

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parseMask reads rows of '1' (may attend) and '0' into a flat mask.
func parseMask(t *testing.T, rows ...string) []bool {
	t.Helper()
	var m []bool
	for i, r := range rows {
		require.Len(t, r, len(rows), "row %d", i)
		for _, c := range r {
			m = append(m, c == '1')
		}
	}
	return m
}

// showMask prints a flat mask as rows of 0/1, for failure messages.
func showMask(m []bool, n int) string {
	var b strings.Builder
	for i := range n {
		for j := range n {
			if m[i*n+j] {
				b.WriteByte('1')
			} else {
				b.WriteByte('0')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

const (
	hCLS, hSEP, hM, hP, hPad = 101, 102, 103, 104, 0
)

var hSpecials = Specials{Mask: hM, Pseudo: hP, Pad: hPad}

// handExample: [CLS] a b c d e f [SEP] = 101 11 12 13 14 15 16 102, two
// segments (the last three tokens are segment 1). Block 0 is the span
// {2, 3} (b c), block 1 the single token {5} (e). The order is block 1,
// then block 0. Corrupt turned b into [M], c into the random id 42, and
// kept e.
func handExample() (tokens, types []int64, m Masking) {
	tokens = []int64{hCLS, 11, 12, 13, 14, 15, 16, hSEP}
	types = []int64{0, 0, 0, 0, 0, 1, 1, 1}
	m = Masking{
		Blocks:    []Block{{2, 4}, {5, 6}},
		Order:     []int{1, 0},
		Corrupted: []int64{hCLS, 11, hM, 42, 14, 15, 16, hSEP},
	}
	return
}

func TestPackHandExample(t *testing.T) {
	tokens, types, m := handExample()
	l, err := Pack(tokens, types, m, hSpecials, 16)
	require.NoError(t, err)
	const I = Ignore
	//                          corrupted sequence                  | step 1: e | step 2: b c       | pad
	assert.Equal(t, []int64{hCLS, 11, hM, 42, 14, 15, 16, hSEP /**/, hP, 15 /**/, hP, hP, 12, 13 /**/, 0, 0}, l.IDs)
	assert.Equal(t, []int64{0, 1, 2, 3, 4, 5, 6, 7 /**/, 5, 5 /**/, 2, 3, 2, 3 /**/, 0, 0}, l.Positions)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 1, 1, 1 /**/, 1, 1 /**/, 0, 0, 0, 0 /**/, 0, 0}, l.TypeIDs)
	assert.Equal(t, []int{0, 0, 0, 0, 0, 0, 0, 0 /**/, -1, 1 /**/, -2, -2, 2, 2 /**/, 0, 0}, l.Weight)
	C, M, T, P, D := KindContext, KindMasked, KindTrue, KindPseudo, KindPad
	assert.Equal(t, []Kind{C, C, M, M, C, M, C, C, P, T, P, P, T, T, D, D}, l.Kind)
	assert.Equal(t, []int64{I, I, 12, 13, I, 15, I, I /**/, I, I /**/, I, I, I, I /**/, I, I}, l.AELabels)
	assert.Equal(t, []int64{I, I, I, I, I, I, I, I /**/, 15, I /**/, 12, 13, I, I /**/, I, I}, l.PARLabels)
	assert.Equal(t, 16, l.Len)
	assert.Equal(t, 14, l.N)
	assert.Equal(t, 8, l.SeqLen)
	want := parseMask(t,
		// keys: 0-7 corrupted | 8 [P]e 9 e | 10 [P]b 11 [P]c 12 b 13 c | 14 15 pad
		"1111111100000000", // 0 [CLS]: context sees w=0 only
		"1111111100000000", // 1 a
		"1111111100000000", // 2 [M] (b's slot)
		"1111111100000000", // 3 42 (c's slot, random id)
		"1111111100000000", // 4 d
		"1111111100000000", // 5 e (e's slot, kept)
		"1111111100000000", // 6 f
		"1111111100000000", // 7 [SEP]
		"1111111110000000", // 8 [P] of e (step 1): context and itself
		"1111111101000000", // 9 e (step 1): context and itself
		"1111111101110000", // 10 [P] of b (step 2): context, e (step 1), both [P]s of its block
		"1111111101110000", // 11 [P] of c
		"1111111101001100", // 12 b (step 2): context, e, b c
		"1111111101001100", // 13 c
		"0000000000000010", // 14 pad: itself only
		"0000000000000001", // 15 pad
	)
	assert.Equal(t, want, l.AttnMask, "got\n%s", showMask(l.AttnMask, l.Len))
	assert.True(t, l.Allowed(10, 9))
	assert.False(t, l.Allowed(9, 10))

	// Unpadded: the same without the last two rows and columns.
	u, err := Pack(tokens, types, m, hSpecials, 0)
	require.NoError(t, err)
	assert.Equal(t, 14, u.Len)
	for i := range 14 {
		for j := range 14 {
			require.Equal(t, l.Allowed(i, j), u.Allowed(i, j), "%d %d", i, j)
		}
	}
	assert.Equal(t, l.IDs[:14], u.IDs)
}

func TestNaiveBlocksHandExample(t *testing.T) {
	tokens, types, m := handExample()
	nv, err := NaiveBlocks(tokens, types, m, hSpecials)
	require.NoError(t, err)
	require.Len(t, nv, 2)

	// Step 1 predicts e from the corrupted sequence alone.
	s1 := nv[0]
	assert.Equal(t, 1, s1.Step)
	assert.Equal(t, Block{5, 6}, s1.Block)
	assert.Equal(t, []int64{hCLS, 11, hM, 42, 14, 15, 16, hSEP, hP}, s1.IDs)
	assert.Equal(t, []int64{0, 1, 2, 3, 4, 5, 6, 7, 5}, s1.Positions)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 1, 1, 1, 1}, s1.TypeIDs)
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8}, s1.PackedIndex)
	assert.Equal(t, []int{8}, s1.Pseudo)
	assert.Equal(t, []int64{15}, s1.Labels)
	assert.Equal(t, parseMask(t,
		"111111110", "111111110", "111111110", "111111110",
		"111111110", "111111110", "111111110", "111111110",
		"111111111", // [P] of e
	), s1.AttnMask)

	// Step 2 predicts b c from the corrupted sequence and e's true token.
	s2 := nv[1]
	assert.Equal(t, 2, s2.Step)
	assert.Equal(t, Block{2, 4}, s2.Block)
	assert.Equal(t, 11, s2.Len)
	assert.Equal(t, []int64{hCLS, 11, hM, 42, 14, 15, 16, hSEP, 15, hP, hP}, s2.IDs)
	assert.Equal(t, []int64{0, 1, 2, 3, 4, 5, 6, 7, 5, 2, 3}, s2.Positions)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0}, s2.TypeIDs)
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11}, s2.PackedIndex)
	assert.Equal(t, []int{9, 10}, s2.Pseudo)
	assert.Equal(t, []int64{12, 13}, s2.Labels)
	assert.Equal(t, parseMask(t,
		"11111111000", "11111111000", "11111111000", "11111111000",
		"11111111000", "11111111000", "11111111000", "11111111000",
		"11111111100", // e (step 1)
		"11111111111", // [P] of b
		"11111111111", // [P] of c
	), s2.AttnMask, "got\n%s", showMask(s2.AttnMask, s2.Len))
}

func TestPackErrors(t *testing.T) {
	tokens, types, m := handExample()
	bad := func(f func(m *Masking)) Masking {
		c := Masking{Blocks: append([]Block(nil), m.Blocks...), Order: append([]int(nil), m.Order...), Corrupted: append([]int64(nil), m.Corrupted...)}
		f(&c)
		return c
	}
	for want, mm := range map[string]Masking{
		"overlaps":        bad(func(m *Masking) { m.Blocks[1] = Block{3, 5} }),
		"outside":         bad(func(m *Masking) { m.Blocks[1] = Block{7, 9} }),
		"or empty":        bad(func(m *Masking) { m.Blocks[1] = Block{5, 5} }),
		"permutation":     bad(func(m *Masking) { m.Order = []int{1, 1} }),
		"permutation of":  bad(func(m *Masking) { m.Order = []int{0} }),
		"differs":         bad(func(m *Masking) { m.Corrupted[0] = hM }),
		"corrupted seque": bad(func(m *Masking) { m.Corrupted = m.Corrupted[:7] }),
	} {
		_, err := Pack(tokens, types, mm, hSpecials, 0)
		assert.ErrorContains(t, err, want)
		_, err = NaiveBlocks(tokens, types, mm, hSpecials)
		assert.ErrorContains(t, err, want)
	}
	_, err := Pack(tokens, types[:3], m, hSpecials, 0)
	assert.ErrorContains(t, err, "segment ids")
	_, err = Pack(tokens, types, m, hSpecials, 13)
	assert.ErrorContains(t, err, "padded length")
	// No blocks at all is a valid (AE-free, PAR-free) layout.
	l, err := Pack(tokens, nil, Masking{Corrupted: tokens}, hSpecials, 0)
	require.NoError(t, err)
	assert.Equal(t, 8, l.N)
	assert.Equal(t, make([]int64, 8), l.TypeIDs)
}

// sampled is a random sequence, its segments and a Masking from Sample.
func sampled(t *testing.T, seed uint64) (tokens, types []int64, m Masking) {
	rng := newRng(seed)
	n := 2 + rng.IntN(80)
	tokens, types = make([]int64, n), make([]int64, n)
	for i := range tokens {
		tokens[i] = 10 + rng.Int64N(40)
		if i > n/2 {
			types[i] = 1
		}
	}
	maskable := randomMaskable(n, rng)
	m, err := DefaultMaskOptions().Sample(tokens, maskable, hM, 50, rng)
	require.NoError(t, err)
	return tokens, types, m
}

// Over random sequences and maskings, the mask read in the paper's terms
// (kinds and steps recovered from the positions, not from Weight).
func TestPackProperties(t *testing.T) {
	for seed := range uint64(300) {
		tokens, types, m := sampled(t, seed)
		n := len(tokens)
		stepOf := make([]int, n) // 0: not masked
		for s0, bi := range m.Order {
			for i := m.Blocks[bi].Start; i < m.Blocks[bi].End; i++ {
				stepOf[i] = s0 + 1
			}
		}
		K := 0
		for _, b := range m.Blocks {
			K += b.Len()
		}
		pad := int(seed % 4)
		l, err := Pack(tokens, types, m, hSpecials, n+2*K+pad)
		require.NoError(t, err)
		require.Equal(t, n+2*K, l.N)
		kind := func(i int) Kind {
			switch {
			case i >= l.N:
				return KindPad
			case i < n && stepOf[i] > 0:
				return KindMasked
			case i < n:
				return KindContext
			case l.IDs[i] == hP:
				return KindPseudo
			}
			return KindTrue
		}
		step := func(i int) int { return stepOf[l.Positions[i]] }
		var nP, nT int
		for i := range l.Len {
			require.Equal(t, kind(i), l.Kind[i], "seed %d token %d", seed, i)
			if i < l.N {
				pos := int(l.Positions[i])
				require.Equal(t, types[pos], l.TypeIDs[i])
				if i >= n {
					require.Positive(t, stepOf[pos], "an appended copy sits in a masked slot")
				}
			}
			switch kind(i) {
			case KindMasked:
				require.Equal(t, tokens[i], l.AELabels[i])
				require.EqualValues(t, Ignore, l.PARLabels[i])
			case KindPseudo:
				nP++
				require.Equal(t, tokens[l.Positions[i]], l.PARLabels[i])
				require.EqualValues(t, Ignore, l.AELabels[i])
			case KindTrue:
				nT++
				require.Equal(t, tokens[l.Positions[i]], l.IDs[i])
				fallthrough
			default:
				require.EqualValues(t, Ignore, l.AELabels[i])
				require.EqualValues(t, Ignore, l.PARLabels[i])
			}
		}
		require.Equal(t, K, nP)
		require.Equal(t, K, nT)

		for i := range l.Len {
			some := false
			for j := range l.Len {
				a := l.Allowed(i, j)
				some = some || a
				ki, kj := kind(i), kind(j)
				switch {
				case ki == KindPad:
					require.Equal(t, i == j, a, "seed %d: pad row %d key %d", seed, i, j)
				case kj == KindPad:
					require.False(t, a, "seed %d: row %d attends pad %d", seed, i, j)
				case kj == KindPseudo && ki != KindPseudo:
					require.False(t, a, "seed %d: non-[P] row %d (%v) attends [P] %d", seed, i, ki, j)
				case ki == KindPseudo && kj == KindPseudo:
					require.Equal(t, step(i) == step(j), a, "seed %d: [P] %d (step %d) and [P] %d (step %d)", seed, i, step(i), j, step(j))
				case ki == KindPseudo && kj == KindTrue:
					require.Equal(t, step(j) < step(i), a, "seed %d: [P] %d (step %d) and true %d (step %d)", seed, i, step(i), j, step(j))
				case kj == KindContext || kj == KindMasked:
					require.True(t, a, "seed %d: row %d (%v) must see context/[M] %d", seed, i, ki, j)
				case ki == KindTrue && kj == KindTrue:
					require.Equal(t, step(j) <= step(i), a, "seed %d: true %d (step %d) and true %d (step %d)", seed, i, step(i), j, step(j))
				case ki == KindContext || ki == KindMasked:
					require.False(t, a, "seed %d: context row %d attends %v %d", seed, i, kj, j)
				default:
					t.Fatalf("unhandled pair %v %v", ki, kj)
				}
			}
			require.True(t, some, "seed %d: row %d attends nothing", seed, i)
		}
	}
}

// Each Naive is the packed input restricted to a set of tokens closed
// under attention: same ids, positions, segments, the same mask entries,
// and no packed row of the set reaching outside it.
func TestNaiveBlocksMatchPacked(t *testing.T) {
	for seed := range uint64(300) {
		tokens, types, m := sampled(t, seed)
		l, err := Pack(tokens, types, m, hSpecials, 0)
		require.NoError(t, err)
		nv, err := NaiveBlocks(tokens, types, m, hSpecials)
		require.NoError(t, err)
		require.Len(t, nv, len(m.Order))
		before := 0
		for s0, v := range nv {
			s := s0 + 1
			require.Equal(t, s, v.Step)
			require.Equal(t, m.Blocks[m.Order[s0]], v.Block)
			require.Equal(t, len(tokens)+before+v.Block.Len(), v.Len)
			before += v.Block.Len()
			in := map[int]bool{}
			for q, p := range v.PackedIndex {
				in[p] = true
				require.Equal(t, l.IDs[p], v.IDs[q])
				require.Equal(t, l.Positions[p], v.Positions[q])
				require.Equal(t, l.TypeIDs[p], v.TypeIDs[q])
			}
			require.Len(t, in, v.Len, "PackedIndex is one-to-one")
			for q, p := range v.PackedIndex {
				for k, pk := range v.PackedIndex {
					if l.Allowed(p, pk) != v.AttnMask[q*v.Len+k] {
						t.Fatalf("seed %d step %d: naive (%d,%d) is %v, packed (%d,%d) %v", seed, s, q, k, v.AttnMask[q*v.Len+k], p, pk, l.Allowed(p, pk))
					}
				}
				for j := range l.N {
					if l.Allowed(p, j) && !in[j] {
						t.Fatalf("seed %d step %d: packed %d attends %d outside the naive input", seed, s, p, j)
					}
				}
			}
			var packedP []int
			for j := range l.N {
				if l.Weight[j] == -s {
					packedP = append(packedP, j)
				}
			}
			var got []int
			for k, q := range v.Pseudo {
				got = append(got, v.PackedIndex[q])
				require.Equal(t, l.PARLabels[v.PackedIndex[q]], v.Labels[k])
			}
			require.Equal(t, packedP, got, "seed %d step %d", seed, s)
		}
	}
}

// toy is a tiny post-LN Transformer in plain Go (one head, absolute
// position and segment embeddings plus a learned relative position bias
// from the position ids), to check that the packed forward and the naive
// per-step forwards give the same hidden states.
type toy struct {
	d, layers      int
	tok, pos, typ  [][]float64 // embeddings
	relRange       int
	relBias        [][]float64 // per layer, over clamp(pos_k - pos_q, ±relRange)
	wq, wk, wv, wo [][][]float64
	w1, w2         [][][]float64
}

func randMat(rng *rand.Rand, r, c int, scale float64) [][]float64 {
	m := make([][]float64, r)
	for i := range m {
		m[i] = make([]float64, c)
		for j := range m[i] {
			m[i][j] = rng.NormFloat64() * scale
		}
	}
	return m
}

func newToy(seed uint64, vocab, maxPos int) *toy {
	rng := newRng(seed)
	const d, ff, nl, R = 8, 16, 2, 6
	m := &toy{d: d, layers: nl, relRange: R}
	m.tok, m.pos, m.typ = randMat(rng, vocab, d, 1), randMat(rng, maxPos, d, 1), randMat(rng, 2, d, 1)
	for range nl {
		m.relBias = append(m.relBias, randMat(rng, 1, 2*R+1, 1)[0])
		s := 1 / math.Sqrt(d)
		m.wq, m.wk, m.wv, m.wo = append(m.wq, randMat(rng, d, d, s)), append(m.wk, randMat(rng, d, d, s)), append(m.wv, randMat(rng, d, d, s)), append(m.wo, randMat(rng, d, d, s))
		m.w1, m.w2 = append(m.w1, randMat(rng, ff, d, s)), append(m.w2, randMat(rng, d, ff, 1/math.Sqrt(ff)))
	}
	return m
}

func matVec(m [][]float64, v []float64) []float64 {
	out := make([]float64, len(m))
	for i, row := range m {
		for j, x := range row {
			out[i] += x * v[j]
		}
	}
	return out
}

func layerNorm(v []float64) []float64 {
	var mu, va float64
	for _, x := range v {
		mu += x
	}
	mu /= float64(len(v))
	for _, x := range v {
		va += (x - mu) * (x - mu)
	}
	va /= float64(len(v))
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = (x - mu) / math.Sqrt(va+1e-5)
	}
	return out
}

// forward returns the last hidden state of every token; allowed(i, j) is
// the attention mask (query i, key j). Masked keys are left out of the
// softmax entirely, as -inf would.
func (m *toy) forward(ids, pos, typ []int64, allowed func(i, j int) bool) [][]float64 {
	L := len(ids)
	h := make([][]float64, L)
	for i := range L {
		h[i] = make([]float64, m.d)
		for k := range m.d {
			h[i][k] = m.tok[ids[i]][k] + m.pos[pos[i]][k] + m.typ[typ[i]][k]
		}
		h[i] = layerNorm(h[i])
	}
	for l := range m.layers {
		q, k, v := make([][]float64, L), make([][]float64, L), make([][]float64, L)
		for i := range L {
			q[i], k[i], v[i] = matVec(m.wq[l], h[i]), matVec(m.wk[l], h[i]), matVec(m.wv[l], h[i])
		}
		next := make([][]float64, L)
		for i := range L {
			scores := make([]float64, L)
			best := math.Inf(-1)
			for j := range L {
				if !allowed(i, j) {
					continue
				}
				var s float64
				for c := range m.d {
					s += q[i][c] * k[j][c]
				}
				rel := max(-m.relRange, min(m.relRange, int(pos[j]-pos[i])))
				scores[j] = s/math.Sqrt(float64(m.d)) + m.relBias[l][rel+m.relRange]
				best = max(best, scores[j])
			}
			att := make([]float64, m.d)
			var z float64
			for j := range L {
				if allowed(i, j) {
					e := math.Exp(scores[j] - best)
					z += e
					for c := range m.d {
						att[c] += e * v[j][c]
					}
				}
			}
			for c := range att {
				att[c] /= z
			}
			o := matVec(m.wo[l], att)
			for c := range o {
				o[c] += h[i][c]
			}
			a := layerNorm(o)
			f := matVec(m.w1[l], a)
			for c := range f {
				f[c] = max(0, f[c])
			}
			g := matVec(m.w2[l], f)
			for c := range g {
				g[c] += a[c]
			}
			next[i] = layerNorm(g)
		}
		h = next
	}
	return h
}

func maxDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// The key property, checked numerically on a toy Transformer: one packed
// forward gives, at every step's [P]s (and at every other token of the
// naive inputs), the hidden states of the naive per-step forwards, and its
// corrupted-sequence outputs (the AE half) are those of a plain
// bidirectional forward of the corrupted sequence. A mask that lets the
// context see a true token breaks it, so the check has teeth.
func TestNaiveBlocksToyForward(t *testing.T) {
	const vocab = 120
	for seed := range uint64(40) {
		tokens, types, m := sampled(t, seed)
		if len(m.Blocks) < 2 {
			continue
		}
		model := newToy(seed, vocab, 128)
		l, err := Pack(tokens, types, m, hSpecials, len(tokens)+2*len(tokens)) // padded: pads must not matter
		require.NoError(t, err)
		packed := model.forward(l.IDs, l.Positions, l.TypeIDs, l.Allowed)
		nv, err := NaiveBlocks(tokens, types, m, hSpecials)
		require.NoError(t, err)
		for _, v := range nv {
			out := model.forward(v.IDs, v.Positions, v.TypeIDs, func(i, j int) bool { return v.AttnMask[i*v.Len+j] })
			for q, p := range v.PackedIndex {
				require.Less(t, maxDiff(out[q], packed[p]), 1e-9, "seed %d step %d naive %d packed %d", seed, v.Step, q, p)
			}
		}
		n := len(tokens)
		ae := model.forward(m.Corrupted, l.Positions[:n], l.TypeIDs[:n], func(int, int) bool { return true })
		for i := range n {
			require.Less(t, maxDiff(ae[i], packed[i]), 1e-9, "seed %d: AE output %d", seed, i)
		}

		// Negative control: context token 0 may also see every true token.
		leaky := func(i, j int) bool { return l.Allowed(i, j) || (i == 0 && l.Kind[j] == KindTrue) }
		bad := model.forward(l.IDs, l.Positions, l.TypeIDs, leaky)
		worst := 0.0
		for _, v := range nv {
			for _, q := range v.Pseudo {
				worst = max(worst, maxDiff(bad[v.PackedIndex[q]], packed[v.PackedIndex[q]]))
			}
		}
		require.Greater(t, worst, 1e-6, "seed %d: a leak must change the [P] outputs", seed)
	}
}
