package train

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/dist"
	"github.com/reprolab/repro/torchmods"
)

// The data-parallel tests start ranks as processes of this test binary
// (TestDistWorker) with torchrun's variables, so that StartWith joins the
// group from the environment exactly as `repro train` under torchrun does.

// dpConfig trains a small MLP on fixed synthetic data.
type dpConfig struct {
	Base
	Batch int `toml:"batch"`
}

func (c *dpConfig) Validate() error { return nil }

const dpN, dpIn, dpHidden, dpClasses = 96, 6, 16, 3

// dpTask trains dpConfig's MLP with AdamW and clipping (so the gradients'
// average must come before the clip); it writes every rank's final
// parameters to <run>/params-rank<r>.safetensors.
var dpTask = TaskSpec[*dpConfig, float64]{
	Name: "test.data_parallel",
	Default: func() *dpConfig {
		t := DefaultTrainer()
		t.MaxSteps, t.LogEvery, t.TensorBoard, t.Seed = 50, 10, false, 3
		return &dpConfig{Base: Base{Task: "test.data_parallel", Trainer: t}, Batch: 16}
	},
	Run: func(s *Session, c *dpConfig) (float64, error) {
		rng := rand.New(rand.NewPCG(42, 0))
		xs := make([]float32, dpN*dpIn)
		ys := make([]int64, dpN)
		for i := range xs {
			xs[i] = float32(rng.NormFloat64())
		}
		for i := range ys {
			ys[i] = int64(rng.IntN(dpClasses))
		}
		X := ts.MustOfSlice(xs).MustView([]int64{dpN, dpIn}, true).MustTo(s.Device, true)
		Y := ts.MustOfSlice(ys).MustTo(s.Device, true)
		fc1 := torchmods.NewLinear(s.Store.Root().Sub("fc1"), torchmods.LinearOptions{In: dpIn, Out: dpHidden})
		fc2 := torchmods.NewLinear(s.Store.Root().Sub("fc2"), torchmods.LinearOptions{In: dpHidden, Out: dpClasses})
		// An unused parameter: every rank still reduces the same list.
		s.Store.Root().New("unused", []int64{2}, torchmods.FanInUniform(2), true)
		loader, err := data.NewLoader(data.LoaderOptions{N: dpN, Batch: c.Batch, Shuffle: true, DropLast: true, Seed: 7, Workers: 1},
			func(b data.Batch) ([]int64, error) {
				out := make([]int64, len(b.Indices))
				for i, x := range b.Indices {
					out[i] = int64(x)
				}
				return out, nil
			})
		if err != nil {
			return 0, err
		}
		defer loader.Close()
		perEpoch, steps, err := s.Steps(loader.PerEpoch())
		if err != nil {
			return 0, err
		}
		var last float64
		p := Plan{Steps: steps, PerEpoch: perEpoch, Opt: NewAdamW(s.Store, 0.9, 0.999, 1e-8, 0.05), Clip: 0.5,
			LR: func(step int64) float64 { return 0.01 * (1 + float64(step%7)/7) },
			Loss: func(step int64, micro int) (*ts.Tensor, error) {
				if die := os.Getenv("DP_DIE_AT"); die != "" && die == strconv.FormatInt(step, 10) && s.Rank() == 1 {
					os.Exit(3) // killed mid-run, without a word to the others
				}
				idx, err := loader.Next()
				if err != nil {
					return nil, err
				}
				it := ts.MustOfSlice(idx).MustTo(s.Device, true)
				x := X.MustIndexSelect(0, it, false)
				y := Y.MustIndexSelect(0, it, false)
				h := fc1.Forward(x).MustRelu(true)
				return torchmods.CrossEntropy(fc2.Forward(h), y, torchmods.CEOptions{}), nil
			},
			AfterStep: func(int64) error { return nil },
			State:     map[string]State{"loader": LoaderState(loader)},
		}
		if err := s.Train(p); err != nil {
			return 0, err
		}
		var names []string
		var tensors []*ts.Tensor
		for _, prm := range s.Store.Params() {
			names, tensors = append(names, prm.Name), append(tensors, prm.Tensor)
		}
		path := filepath.Join(s.Out, "params-rank"+strconv.Itoa(s.Rank())+".safetensors")
		if err := torchmods.SaveTensors(path, names, tensors, "", nil); err != nil {
			return 0, err
		}
		return last, nil
	},
}

func dpFreePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runRanks runs n ranks of dpTask in out with the given -set style
// overrides (env DP_SETS) and waits for them, failing on a hang or a
// failed rank.
func runRanks(t *testing.T, n int, out string, env ...string) []string {
	t.Helper()
	res, errs := startRanksForTest(t, n, out, env...)
	for r := range n {
		if errs[r] != nil || !strings.Contains(res[r], "\nPASS") {
			for q := range n {
				t.Logf("rank %d:\n%s", q, res[q])
			}
			t.Fatalf("rank %d failed (%v)", r, errs[r])
		}
	}
	return res
}

func startRanksForTest(t *testing.T, n int, out string, env ...string) ([]string, []error) {
	t.Helper()
	port := dpFreePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for r := range n {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDistWorker$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "REPRO_TRAIN_DIST_WORKER=1", "DP_OUT="+out,
			"RANK="+strconv.Itoa(r), "LOCAL_RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n),
			"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "REPRO_DIST_TIMEOUT=60s", "OMP_NUM_THREADS=1")
		cmd.Env = append(cmd.Env, env...)
		outs[r] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[r], outs[r]
		require.NoError(t, cmd.Start())
		cmds[r] = cmd
	}
	var errs []error
	for _, cmd := range cmds {
		errs = append(errs, cmd.Wait())
	}
	res := make([]string, n)
	for r := range n {
		res[r] = outs[r].String()
	}
	if ctx.Err() != nil {
		for q := range n {
			t.Logf("rank %d:\n%s", q, res[q])
		}
		t.Fatalf("the ranks did not finish within the test's limit: a hang")
	}
	return res, errs
}

// dpConfigFrom applies "key=value;..." overrides to the default config.
func dpConfigFrom(t testing.TB, sets string) *dpConfig {
	c := dpTask.Default()
	for _, kv := range strings.Split(sets, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if k == "device" {
			c.Trainer.Device = v
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, kv)
		switch k {
		case "batch":
			c.Batch = int(n)
		case "accumulate":
			c.Trainer.Accumulate = n
		case "max_steps":
			c.Trainer.MaxSteps = n
		default:
			t.Fatalf("unknown override %q", k)
		}
	}
	return c
}

// TestDistWorker is one rank; run directly it skips.
func TestDistWorker(t *testing.T) {
	if os.Getenv("REPRO_TRAIN_DIST_WORKER") == "" {
		t.Skip("run by the data-parallel tests")
	}
	c := dpConfigFrom(t, os.Getenv("DP_SETS"))
	o := RunOptions{Out: os.Getenv("DP_OUT"), W: os.Stdout, Resume: os.Getenv("DP_RESUME") != ""}
	if o.Resume {
		o.AllowChange = []string{"trainer.max_steps"}
	}
	start := time.Now()
	_, err := dpTask.StartWith(c, o)
	if os.Getenv("DP_EXPECT_ERROR") != "" {
		require.Error(t, err)
		fmt.Printf("rank error after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
		return
	}
	require.NoError(t, err)
}

func loadParams(t *testing.T, path string) map[string]*ts.Tensor {
	t.Helper()
	w, err := torchmods.LoadWeights(path, gotch.CPU)
	require.NoError(t, err)
	return w
}

// maxDiff is the largest absolute difference between two sets of named
// tensors with the same names.
func maxDiff(t *testing.T, a, b map[string]*ts.Tensor) float64 {
	t.Helper()
	require.Equal(t, len(a), len(b))
	var d float64
	for k, x := range a {
		y, ok := b[k]
		require.True(t, ok, k)
		xv, yv := x.Float64Values(), y.Float64Values()
		require.Equal(t, len(xv), len(yv), k)
		for i := range xv {
			d = math.Max(d, math.Abs(xv[i]-yv[i]))
		}
	}
	return d
}

// single runs dpTask in this process (no group) and returns its params.
func single(t *testing.T, sets string) map[string]*ts.Tensor {
	t.Helper()
	out := t.TempDir()
	_, err := dpTask.StartWith(dpConfigFrom(t, sets), RunOptions{Out: out, W: io.Discard})
	require.NoError(t, err)
	return loadParams(t, filepath.Join(out, "params-rank0.safetensors"))
}

// 2 ranks with batch B/2 each end with the weights of 1 process with batch
// B, and with each other's, after 50 AdamW steps with clipping; so do 2
// ranks with batch B/4 and 2 accumulated micro-batches. Only rank 0 writes
// the run directory.
func TestDataParallelMatchesOneProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	want := single(t, "batch=16")
	for _, tc := range []struct{ name, sets string }{
		{"batch 8 x 2 ranks", "batch=8"},
		{"batch 4 x accumulate 2 x 2 ranks", "batch=4;accumulate=2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			logs := runRanks(t, 2, out, "DP_SETS="+tc.sets)
			p0 := loadParams(t, filepath.Join(out, "params-rank0.safetensors"))
			p1 := loadParams(t, filepath.Join(out, "params-rank1.safetensors"))
			assert.Zero(t, maxDiff(t, p0, p1), "every rank ends with the same parameters")
			d := maxDiff(t, p0, want)
			t.Logf("max |2 ranks - 1 process| = %.3g", d)
			assert.LessOrEqual(t, d, 1e-6)
			assert.Contains(t, logs[0], "data-parallel over 2 ranks (gloo)")
			// Rank 0 wrote the run; rank 1 only its parameters (the test's).
			entries, err := os.ReadDir(out)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			assert.Subset(t, names, []string{"config.toml", "metrics.jsonl", "results.json", "checkpoints"})
			rows := readRows(t, filepath.Join(out, "metrics.jsonl"))
			require.Len(t, rows, 5)
			assert.Contains(t, rows[0], "allreduce_s")
			ck, err := LatestCheckpoint(out)
			require.NoError(t, err)
			world, err := checkpointWorldSize(ck)
			require.NoError(t, err)
			assert.Equal(t, 2, world)
		})
	}
}

// On CUDA the group takes NCCL on each rank's GPU, and the ranks end with
// the weights of a process without a group on one GPU. On one GPU the
// group has one rank (the NCCL path end to end: broadcast, bucketed
// gradient allreduce, the loss's reduction); with two GPUs, two ranks
// launched as torchrun would. It runs where the prepared libtorch has NCCL
// and a GPU is visible (scripts/cuda_checks.sh), and skips elsewhere.
func TestDataParallelNCCL(t *testing.T) {
	if _, nccl, missing := dist.Backends(); !nccl {
		t.Skipf("this build has no nccl backend: %v", missing)
	}
	if !gotch.CUDA.IsAvailable() {
		t.Skip("no CUDA device visible")
	}
	want := single(t, "batch=16;device=cuda")
	out := t.TempDir()
	var log string
	n := min(2, int(gotch.CUDA.DeviceCount()))
	if n == 1 {
		g, err := dist.Init(dist.Options{Rank: 0, Size: 1, Backend: "nccl", MasterPort: dpFreePort(t), Timeout: time.Minute})
		require.NoError(t, err)
		defer g.Close()
		var b strings.Builder
		_, err = dpTask.StartWith(dpConfigFrom(t, "batch=16;device=cuda"), RunOptions{Out: out, W: &b, Group: g})
		require.NoError(t, err)
		log = b.String()
	} else {
		log = runRanks(t, n, out, fmt.Sprintf("DP_SETS=batch=%d;device=cuda", 16/n))[0]
	}
	assert.Contains(t, log, fmt.Sprintf("data-parallel over %d ranks (nccl)", n))
	p0 := loadParams(t, filepath.Join(out, "params-rank0.safetensors"))
	d := maxDiff(t, p0, want)
	t.Logf("%d NCCL rank(s): max |ranks - 1 process| = %.3g", n, d)
	assert.LessOrEqual(t, d, 1e-6)
}

func readRows(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return slices.DeleteFunc(strings.Split(string(b), "\n"), func(s string) bool { return s == "" })
}

// A 2-rank run stopped at step 20 and resumed to 50 ends where an
// uninterrupted one does; a single process may not resume it.
func TestDataParallelResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	want := single(t, "batch=16")
	out := t.TempDir()
	runRanks(t, 2, out, "DP_SETS=batch=8;max_steps=20")
	_, err := dpTask.StartWith(dpConfigFrom(t, "batch=8;max_steps=50"), RunOptions{Out: out, W: io.Discard, Resume: true, AllowChange: []string{"trainer.max_steps"}})
	require.ErrorContains(t, err, "written by a run of 2 rank(s), and this run has 1")
	logs := runRanks(t, 2, out, "DP_SETS=batch=8;max_steps=50", "DP_RESUME=1")
	assert.Contains(t, logs[0], "resuming from")
	p0 := loadParams(t, filepath.Join(out, "params-rank0.safetensors"))
	p1 := loadParams(t, filepath.Join(out, "params-rank1.safetensors"))
	assert.Zero(t, maxDiff(t, p0, p1))
	d := maxDiff(t, p0, want)
	t.Logf("max |resumed 2 ranks - 1 process| = %.3g", d)
	assert.LessOrEqual(t, d, 1e-6)
}

// Killing one of 2 ranks mid-run ends the other with an error within the
// timeout, naming its rank and the step, instead of a hang.
func TestDataParallelPeerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	start := time.Now()
	res, errs := startRanksForTest(t, 2, t.TempDir(), "DP_SETS=batch=8", "DP_DIE_AT=10", "DP_EXPECT_ERROR=1", "REPRO_DIST_TIMEOUT=20s")
	took := time.Since(start)
	var exit *exec.ExitError
	require.ErrorAs(t, errs[1], &exit)
	assert.Equal(t, 3, exit.ExitCode(), "rank 1 was killed at step 10:\n%s", res[1])
	require.NoError(t, errs[0], res[0])
	assert.Contains(t, res[0], "rank error after")
	assert.Contains(t, res[0], "step 11: dist: rank 0 of 2")
	assert.Less(t, took, 60*time.Second)
	for _, l := range strings.Split(res[0], "\n") {
		if strings.Contains(l, "rank error after") {
			t.Log(l)
		}
	}
}
