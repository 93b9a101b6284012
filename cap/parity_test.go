package cap

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/internal/testutil/parity"
)

// The fixtures come from testdata/gen_cap_parity.py: a transcription of
// the official functions (RunxinXu/ContrastivePruning eae11d6) run on
// Debian's torch 1.13, since the official modules import transformers.

func readFixture(t *testing.T) parity.Fixture {
	return parity.Read(t, "testdata/cap_parity.safetensors")
}

// The contrastive loss and its gradient equal the official
// calculate_contrastive_loss on the same inputs and the same extra rows,
// for a bank of one representation per example (PrC, FiC) and of three
// (SnC after three snapshots).
func TestContrastiveLossMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readFixture(t)
	for _, c := range []string{"r1", "r3"} {
		p := x.Floats("cl." + c + ".params")
		z := x.Tensor("cl." + c + ".z")
		z.MustRequiresGrad_(true)
		bank := &Bank{Reps: x.Tensor("cl." + c + ".bank"), Labels: x.Tensor("cl." + c + ".bank_labels")}
		u, s := ContrastiveLoss(z, x.Tensor("cl."+c+".idx"), x.Tensor("cl."+c+".labels"), bank, x.Tensor("cl."+c+".extra_idx").Int64Values(),
			ContrastiveOptions{Temperature: p[0], Unsup: p[1], Sup: p[2], Normalise: "code"})
		assert.InDelta(t, x.Floats("cl." + c + ".loss_unsup")[0], u.Float64Values()[0], 1e-6, c)
		assert.InDelta(t, x.Floats("cl." + c + ".loss_sup")[0], s.Float64Values()[0], 1e-6, c)
		loss := u.MustAdd(s, false)
		assert.InDelta(t, x.Floats("cl." + c + ".loss")[0], loss.Float64Values()[0], 1e-6, c)
		loss.MustBackward()
		assert.InDeltaSlice(t, x.Floats("cl."+c+".grad.z"), z.MustGrad(false).MustTotype(gotch.Double, false).Float64Values(), 1e-6, c)
	}
}

// The paper's normalisation averages each anchor's positives and then the
// anchors: it differs from the code's, and is the code's times the
// number of positives over the batch size when every anchor has as many.
func TestContrastivePaperNormalisation(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readFixture(t)
	z := x.Tensor("cl.r3.z")
	bank := &Bank{Reps: x.Tensor("cl.r3.bank"), Labels: x.Tensor("cl.r3.bank_labels")}
	o := ContrastiveOptions{Temperature: 0.1, Unsup: 1, Sup: 0}
	codeU, _ := ContrastiveLoss(z, x.Tensor("cl.r3.idx"), x.Tensor("cl.r3.labels"), bank, x.Tensor("cl.r3.extra_idx").Int64Values(), o)
	o.Normalise = "paper"
	paperU, _ := ContrastiveLoss(z, x.Tensor("cl.r3.idx"), x.Tensor("cl.r3.labels"), bank, x.Tensor("cl.r3.extra_idx").Int64Values(), o)
	// Unsupervised positives: the anchor's 3 bank rows, plus 3 more for
	// each extra row that is the anchor's own example.
	idx, extra := x.Tensor("cl.r3.idx").Int64Values(), x.Tensor("cl.r3.extra_idx").Int64Values()
	total := 0
	for _, i := range idx {
		total += 3
		for _, e := range extra {
			if e == i {
				total += 3
			}
		}
	}
	// Each anchor's own mean is the code's per-row term times |P_i|/|P_i|,
	// so paper = code * total / B exactly.
	assert.InDelta(t, codeU.Float64Values()[0]*float64(total)/float64(len(idx)), paperU.Float64Values()[0], 1e-5)
}

func TestBinarizersMatchOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readFixture(t)
	scores, w := x.Tensor("bin.scores"), x.Tensor("bin.weight")
	for name, share := range map[string]float64{"50": 0.5, "10": 0.1, "3": 0.03} {
		got := TopKMask(scores, share)
		assert.Equal(t, x.Floats("bin.topk."+name), got.MustTotype(gotch.Double, false).Float64Values(), "topk %s", name)
		// Exactly int(share * 42) kept.
		assert.Equal(t, float64(int(share*42)), got.MustSum(gotch.Double, false).Float64Values()[0], "topk %s count", name)
		assert.Equal(t, x.Floats("bin.magnitude."+name), MagnitudeMask(w, share).MustTotype(gotch.Double, false).Float64Values(), "magnitude %s", name)
	}
	for name, th := range map[string]float64{"50": 0.5, "10": 0.1, "fallback": 0.9999} {
		assert.Equal(t, x.Floats("bin.sigmoid."+name), SigmoidMask(scores, th).MustTotype(gotch.Double, false).Float64Values(), "sigmoid %s", name)
	}
}

// A masked linear layer's output and every gradient (input, weight, bias,
// scores) equal emmental's MaskedLinear at threshold 0.1.
func TestMaskedLinearMatchesOfficial(t *testing.T) {
	x := readFixture(t)
	for _, m := range []struct {
		name   string
		method Method
	}{{"topk", TopK}, {"sigmoid", Sigmoid}, {"magnitude", Magnitude}} {
		func() {
			sc := ts.NewScope()
			defer sc.Close()
			in, w, b, s := x.Tensor("ml.x"), x.Tensor("ml.weight"), x.Tensor("ml.bias"), x.Tensor("ml.scores")
			for _, p := range []*ts.Tensor{in, w, b, s} {
				p.MustRequiresGrad_(true)
			}
			mk := &Masked{Method: m.method, Names: []string{"w"}, Weights: []*ts.Tensor{w}}
			if m.method != Magnitude {
				mk.Scores = []*ts.Tensor{s}
			}
			y := ts.MustLinear(in, mk.Fast(0.1)["w"], b)
			assert.InDeltaSlice(t, x.Floats("ml."+m.name+".y"), y.MustTotype(gotch.Double, false).Float64Values(), 1e-6, m.name)
			y.MustMul(x.Tensor("ml.g"), false).MustSum(gotch.Float, true).MustBackward()
			for _, g := range []struct {
				n string
				t *ts.Tensor
			}{{"x", in}, {"weight", w}, {"bias", b}, {"scores", s}} {
				if g.n == "scores" && m.method == Magnitude {
					continue // no scores: the weight's gradient (mask * dL/dW') is the check
				}
				assert.InDeltaSlice(t, x.Floats("ml."+m.name+".grad."+g.n), g.t.MustGrad(false).MustTotype(gotch.Double, false).Float64Values(), 1e-6, "%s grad %s", m.name, g.n)
			}
		}()
	}
}

// The threshold schedule equals schedule_threshold at every step of two
// settings: movement pruning's (1 -> 0.1) and soft movement's (0 -> 0.1,
// lambda up to 550).
func TestThresholdScheduleMatchesOfficial(t *testing.T) {
	x := readFixture(t)
	for _, n := range []string{"sched", "sched2"} {
		p := x.Floats(n + ".params")
		s := ThresholdSchedule{Total: int64(p[0]), Warmup: int64(p[1]), Initial: p[2], Final: p[3], InitialWarmup: int64(p[4]), FinalWarmup: int64(p[5]), FinalLambda: p[6]}
		th, lam := x.Floats(n+".threshold"), x.Floats(n+".lambda")
		for step := range th {
			gt, gl := s.At(int64(step))
			require.InDelta(t, th[step], gt, 1e-12, "%s step %d", n, step)
			require.InDelta(t, lam[step], gl, 1e-9, "%s step %d", n, step)
		}
	}
	// The ends, by hand: 1.0 through step 100 (2 x 50 warm-up steps),
	// 0.1 after step 850 (1000 - 3 x 50), the cube in between.
	s := ThresholdSchedule{Total: 1000, Warmup: 50, Initial: 1, Final: 0.1, InitialWarmup: 2, FinalWarmup: 3, FinalLambda: 5}
	th, lam := s.At(100)
	assert.Equal(t, 1.0, th)
	assert.InDelta(t, 50.0, lam, 1e-12) // final_lambda * threshold / final, in every branch
	th, _ = s.At(450)                   // halfway through the 750 scheduled steps from step 100: 0.1 + 0.9 * (1 - 350/750)^3
	assert.InDelta(t, 0.1+0.9*0.151703703703704, th, 1e-12)
	th, lam = s.At(851)
	assert.Equal(t, 0.1, th)
	assert.Equal(t, 5.0, lam)
}

// The distillation term equals PruneBert's F.kl_div(log_softmax(s/T),
// softmax(t/T), batchmean) * T², value and gradient, at T = 1 and 2.
func TestKDMatchesOfficial(t *testing.T) {
	x := readFixture(t)
	for _, T := range []float64{1, 2} {
		func() {
			sc := ts.NewScope()
			defer sc.Close()
			s := x.Tensor("kd.s")
			s.MustRequiresGrad_(true)
			name := fmt.Sprintf("kd.T%d.", int(T))
			loss := KD(s, x.Tensor("kd.t"), T)
			assert.InDelta(t, x.Floats(name + "loss")[0], loss.Float64Values()[0], 1e-6, "T=%v", T)
			loss.MustBackward()
			assert.InDeltaSlice(t, x.Floats(name+"grad.s"), s.MustGrad(false).MustTotype(gotch.Double, false).Float64Values(), 1e-6, "T=%v", T)
		}()
	}
}

func TestRegularizationMatchesOfficial(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	x := readFixture(t)
	s0, s1 := x.Tensor("reg.s0"), x.Tensor("reg.s1")
	s0.MustRequiresGrad_(true)
	s1.MustRequiresGrad_(true)
	m := &Masked{Method: Sigmoid, Scores: []*ts.Tensor{s0, s1}}
	r := m.Regularization()
	assert.InDelta(t, x.Floats("reg.l1")[0], r.Float64Values()[0], 1e-7)
	r.MustBackward()
	assert.InDeltaSlice(t, x.Floats("reg.grad.s0"), s0.MustGrad(false).MustTotype(gotch.Double, false).Float64Values(), 1e-7)
	assert.InDeltaSlice(t, x.Floats("reg.grad.s1"), s1.MustGrad(false).MustTotype(gotch.Double, false).Float64Values(), 1e-7)
}

// Importance normalisation, the pruning sequence and the choice of heads
// and neurons equal prune_utils.py's, the head protection in its official
// form included: the second round's fixture leaves layer 0 without heads,
// which the default ("live") protection does not.
func TestStructuredPruningMatchesOfficial(t *testing.T) {
	x := readFixture(t)
	for _, sfx := range []string{"", "2"} {
		assert.InDeltaSlice(t, testutil.Flatten(rows(x.Tensor("prune.norm_head"+sfx))), testutil.Flatten(NormalizeByLayer(rows(x.Tensor("prune.importance_head"+sfx)))), 1e-6)
		assert.InDeltaSlice(t, testutil.Flatten(rows(x.Tensor("prune.norm_ffn"+sfx))), testutil.Flatten(NormalizeByLayer(rows(x.Tensor("prune.importance_ffn"+sfx)))), 1e-6)
	}
	h, f, err := PruningSequence(x.Floats("prune.percents"), 3, 4, 10, 1)
	require.NoError(t, err)
	seq := x.Tensor("prune.sequence").Int64Values()
	assert.Equal(t, seq[:len(h)], h)
	assert.Equal(t, seq[len(h):], f)
	_, _, err = PruningSequence([]float64{90}, 3, 4, 10, 1)
	assert.ErrorContains(t, err, "at most 75% of heads")

	n1, n2 := x.Tensor("prune.n_round1").Int64Values(), x.Tensor("prune.n_round2").Int64Values()
	head1 := PruneHeads(rows(x.Tensor("prune.norm_head")), n1[0], Ones(3, 4), 1, true)
	assert.Equal(t, rows(x.Tensor("prune.head_mask_round1")), head1)
	assert.Equal(t, head1, PruneHeads(rows(x.Tensor("prune.norm_head")), n1[0], Ones(3, 4), 1, false), "no head pruned yet: both protections agree")
	ffn1 := PruneFFN(rows(x.Tensor("prune.norm_ffn")), n1[1], Ones(3, 10))
	assert.Equal(t, rows(x.Tensor("prune.ffn_mask_round1")), ffn1)
	head2 := PruneHeads(rows(x.Tensor("prune.norm_head2")), n2[0], head1, 1, true)
	assert.Equal(t, rows(x.Tensor("prune.head_mask_round2")), head2)
	assert.Equal(t, []float64{0, 0, 0, 0}, head2[0], "the official protection was spent on a pruned head")
	live := PruneHeads(rows(x.Tensor("prune.norm_head2")), n2[0], head1, 1, false)
	for l, row := range live {
		assert.NotZero(t, Kept([][]float64{row}), "layer %d keeps a head", l)
	}
	assert.Equal(t, Kept(head1)-n2[0], Kept(live))
	assert.Equal(t, rows(x.Tensor("prune.ffn_mask_round2")), PruneFFN(rows(x.Tensor("prune.norm_ffn2")), n2[1], ffn1))
}

// DrawExtra draws distinct rows, extra_examples / R of them, every row
// about equally often, and refuses more than the bank holds.
func TestDrawExtra(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	got, err := DrawExtra(rng, 100, 3, 90)
	require.NoError(t, err)
	require.Len(t, got, 30)
	seen := map[int64]bool{}
	for _, v := range got {
		require.False(t, seen[v])
		require.True(t, v >= 0 && v < 100)
		seen[v] = true
	}
	counts := make([]int, 10)
	for range 20000 {
		d, err := DrawExtra(rng, 10, 1, 3)
		require.NoError(t, err)
		for _, v := range d {
			counts[v]++
		}
	}
	for i, n := range counts { // 6,000 expected of each
		assert.InDelta(t, 6000, n, 400, "row %d", i)
	}
	got, err = DrawExtra(rng, 10, 1, 10)
	require.NoError(t, err)
	assert.ElementsMatch(t, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, got, "all rows: a permutation")
	_, err = DrawExtra(rng, 10, 1, 4096)
	require.ErrorContains(t, err, "more than the bank's 10 examples")
}
