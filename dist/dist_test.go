package dist_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/dist"
	"github.com/reprolab/repro/internal/torchinfo"
)

// The multi-rank tests start ranks as processes of this test binary, each
// running TestWorker with REPRO_DIST_TEST_ROLE saying what to do, and
// torchrun's variables saying who it is.

const roleEnv = "REPRO_DIST_TEST_ROLE"

// backendEnv names the spawned ranks' backend ("" for Init's choice: gloo
// for CPU tensors).
const backendEnv = "REPRO_DIST_TEST_BACKEND"

// freePort is a TCP port nothing listens on at the moment.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type rankResult struct {
	out string
	err error
}

// spawn runs n ranks of role on 127.0.0.1 and waits for them all, killing
// them at limit so that a hang fails the test instead of stalling it.
func spawn(t *testing.T, n int, role string, limit time.Duration, env ...string) []rankResult {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for r := range n {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestWorker$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), roleEnv+"="+role,
			"RANK="+strconv.Itoa(r), "LOCAL_RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n),
			"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "OMP_NUM_THREADS=1")
		cmd.Env = append(cmd.Env, env...)
		outs[r] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[r], outs[r]
		require.NoError(t, cmd.Start())
		cmds[r] = cmd
	}
	res := make([]rankResult, n)
	for r, cmd := range cmds {
		res[r].err = cmd.Wait()
	}
	for r := range res {
		res[r].out = outs[r].String()
	}
	if ctx.Err() != nil {
		for r := range res {
			t.Logf("rank %d output:\n%s", r, res[r].out)
		}
		t.Fatalf("%d ranks of %s did not finish within %v: a hang", n, role, limit)
	}
	return res
}

func requireAllPass(t *testing.T, res []rankResult) {
	t.Helper()
	for r, x := range res {
		if x.err != nil || !strings.Contains(x.out, "\nPASS") {
			t.Fatalf("rank %d failed (%v):\n%s", r, x.err, x.out)
		}
	}
}

func TestCollectives2Ranks(t *testing.T) {
	requireAllPass(t, spawn(t, 2, "collectives", 2*time.Minute, "REPRO_DIST_TIMEOUT=60s"))
}

func TestCollectives3Ranks(t *testing.T) {
	requireAllPass(t, spawn(t, 3, "collectives", 2*time.Minute, "REPRO_DIST_TIMEOUT=60s"))
}

// NCCL on one GPU runs every collective of the gloo tests on CUDA
// tensors. It runs where the prepared libtorch has NCCL and a GPU is
// visible (scripts/cuda_checks.sh runs it there), and skips elsewhere.
func TestNCCLCollectives(t *testing.T) {
	_, nccl, missing := dist.Backends()
	if !nccl {
		t.Skipf("this build has no nccl backend: %v", missing)
	}
	if !gotch.CUDA.IsAvailable() {
		t.Skip("no CUDA device visible")
	}
	n := min(2, int(gotch.CUDA.DeviceCount()))
	res := spawn(t, n, "collectives", 2*time.Minute, "REPRO_DIST_TIMEOUT=60s", backendEnv+"=nccl")
	requireAllPass(t, res)
	t.Logf("nccl collectives over %d rank(s) on %d GPU(s)", n, gotch.CUDA.DeviceCount())
}

// A rank that dies after joining makes the survivor's next collective
// fail within the timeout, and the group stays failed.
func TestPeerDies(t *testing.T) {
	res := spawn(t, 2, "dies", 2*time.Minute, "REPRO_DIST_TIMEOUT=10s")
	requireAllPass(t, res[:1])
	require.NoError(t, res[1].err, "rank 1 exits quietly:\n%s", res[1].out)
	assert.Contains(t, res[0].out, "survivor saw: ")
	t.Log(res[0].out)
}

// A peer that never joins makes Init fail within the timeout.
func TestInitPeerNeverJoins(t *testing.T) {
	port := freePort(t)
	start := time.Now()
	g, err := dist.Init(dist.Options{Rank: 0, Size: 2, MasterPort: port, Timeout: 2 * time.Second})
	took := time.Since(start)
	require.Error(t, err)
	assert.Nil(t, g)
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	assert.Contains(t, err.Error(), "rank 0 of 2")
	assert.Less(t, took, 30*time.Second)
}

// A rank that cannot reach the store fails with the address it tried.
func TestInitNoStore(t *testing.T) {
	port := freePort(t)
	start := time.Now()
	g, err := dist.Init(dist.Options{Rank: 1, Size: 2, MasterAddr: "127.0.0.1", MasterPort: port, Timeout: 2 * time.Second})
	took := time.Since(start)
	require.Error(t, err)
	assert.Nil(t, g)
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	assert.Contains(t, err.Error(), fmt.Sprintf("127.0.0.1:%d", port))
	assert.Less(t, took, 30*time.Second)
}

func TestSingleRank(t *testing.T) {
	g, err := dist.Init(dist.Options{Rank: 0, Size: 1, MasterPort: freePort(t), Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer g.Close()
	x := ts.MustOfSlice([]float32{1, 2, 3})
	require.NoError(t, g.AllReduceMean([]*ts.Tensor{x}))
	assert.Equal(t, []float64{1, 2, 3}, x.Float64Values())
	// Refused arguments leave the group usable.
	err = g.AllReduceMean([]*ts.Tensor{ts.MustOfSlice([]int64{1})})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid argument")
	err = g.Broadcast([]*ts.Tensor{x}, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid argument")
	require.NoError(t, g.Barrier())
	require.NoError(t, g.Close())
	require.NoError(t, g.Close())
	assert.ErrorContains(t, g.Barrier(), "closed")
}

func TestFromEnv(t *testing.T) {
	for _, v := range []string{"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "GLOO_SOCKET_IFNAME", "REPRO_DIST_TIMEOUT"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	_, ok, err := dist.FromEnv()
	require.NoError(t, err)
	assert.False(t, ok)
	_, err = dist.Init(dist.Options{})
	assert.ErrorContains(t, err, "WORLD_SIZE is not set")

	t.Setenv("WORLD_SIZE", "4")
	_, _, err = dist.FromEnv()
	assert.ErrorContains(t, err, "RANK is not")
	t.Setenv("RANK", "3")
	_, _, err = dist.FromEnv()
	assert.ErrorContains(t, err, "MASTER_ADDR")
	t.Setenv("MASTER_ADDR", "10.0.0.1")
	t.Setenv("MASTER_PORT", "1234")
	t.Setenv("LOCAL_RANK", "1")
	t.Setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
	t.Setenv("TORCHELASTIC_RESTART_COUNT", "2")
	t.Setenv("REPRO_DIST_TIMEOUT", "90s")
	o, ok, err := dist.FromEnv()
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, dist.Options{Rank: 3, Size: 4, LocalRank: 1, MasterAddr: "10.0.0.1", MasterPort: 1234,
		AgentStore: true, Prefix: "repro/attempt_2/", Timeout: 90 * time.Second}, o)
	t.Setenv("REPRO_DIST_TIMEOUT", "soon")
	_, _, err = dist.FromEnv()
	assert.ErrorContains(t, err, "REPRO_DIST_TIMEOUT")
}

func TestBackends(t *testing.T) {
	gloo, nccl, missing := dist.Backends()
	t.Logf("gloo %v, nccl %v, missing %v", gloo, nccl, missing)
	// Debian's libtorch comes with libgloo-dev, which scripts/install_libtorch.sh
	// installs; a LIBTORCH from a PyTorch wheel ships no gloo headers, so
	// there gloo may be missing, with a reason.
	if m, err := torchinfo.ReadManifest(); err == nil && m.Libtorch.Root == "system" {
		assert.True(t, gloo, "scripts/install_libtorch.sh installs libgloo-dev, so this build should have gloo: %v", missing)
	}
	if !gloo {
		assert.NotEmpty(t, missing["gloo"]+missing["c10d"])
	}
	if !nccl {
		assert.NotEmpty(t, missing["nccl"])
	}
}

// TestWorker is one rank of a spawned test; run directly it skips.
func TestWorker(t *testing.T) {
	role := os.Getenv(roleEnv)
	if role == "" {
		t.Skip("run by the multi-rank tests")
	}
	g, err := dist.Init(dist.Options{Backend: os.Getenv(backendEnv)}) // torchrun's environment
	require.NoError(t, err)
	switch role {
	case "collectives":
		collectives(t, g)
		require.NoError(t, g.Barrier())
		require.NoError(t, g.Close())
	case "dies":
		if g.Rank() == 1 {
			os.Exit(0) // without a word to the others
		}
		start := time.Now()
		x := ts.MustOfSlice([]float32{1})
		var err error
		for i := 0; i < 100 && err == nil; i++ { // the first may finish before the peer is gone
			err = g.AllReduceSum([]*ts.Tensor{x})
			time.Sleep(10 * time.Millisecond)
		}
		require.Error(t, err)
		fmt.Printf("survivor saw: %v (after %v)\n", err, time.Since(start).Round(time.Millisecond))
		assert.Less(t, time.Since(start), 10*time.Second+10*time.Second)
		assert.ErrorContains(t, g.Barrier(), "broken")
		require.NoError(t, g.Close())
	case "bench":
		bench(t, g)
		require.NoError(t, g.Close())
	default:
		t.Fatalf("unknown role %q", role)
	}
}

func collectives(t *testing.T, g *dist.Group) {
	n, r := g.Size(), g.Rank()
	dev := g.Device() // the CPU under gloo, the rank's GPU under nccl
	on := func(x *ts.Tensor) *ts.Tensor { return x.MustTo(dev, true) }
	sum := float64(n * (n + 1) / 2) // of rank+1 over the ranks

	// Sum over mixed dtypes, with a non-contiguous tensor.
	a := ts.MustFull([]int64{3, 4}, ts.FloatScalar(float64(r+1)), gotch.Float, dev)
	b := on(ts.MustOfSlice([]int64{1, 2, 3})).MustMulScalar(ts.IntScalar(int64(r+1)), true)
	c := on(ts.MustOfSlice([]float64{1, 2, 3, 4, 5, 6})).MustView([]int64{2, 3}, true).MustMulScalar(ts.FloatScalar(float64(r+1)), true).MustTranspose(0, 1, true)
	require.False(t, c.MustIsContiguous())
	require.NoError(t, g.AllReduceSum([]*ts.Tensor{a, b, c}))
	for _, v := range a.Float64Values() {
		assert.Equal(t, sum, v)
	}
	assert.Equal(t, []int64{int64(sum), 2 * int64(sum), 3 * int64(sum)}, b.Int64Values())
	assert.Equal(t, []int64{3, 2}, c.MustSize())
	assert.Equal(t, []float64{1 * sum, 4 * sum, 2 * sum, 5 * sum, 3 * sum, 6 * sum}, c.Float64Values())

	// Mean.
	m := ts.MustFull([]int64{5}, ts.FloatScalar(float64(r)), gotch.Double, dev)
	require.NoError(t, g.AllReduceMean([]*ts.Tensor{m}))
	for _, v := range m.Float64Values() {
		assert.InDelta(t, float64(n-1)/2, v, 1e-12)
	}

	// Broadcast from the last rank, into a parameter that requires grad too.
	root := n - 1
	x := ts.MustFull([]int64{4}, ts.FloatScalar(float64(r)), gotch.Float, dev)
	y := on(ts.MustOfSlice([]int64{int64(r), int64(10 * r)}))
	p := ts.MustFull([]int64{2, 2}, ts.FloatScalar(float64(r)), gotch.Float, dev).MustSetRequiresGrad(true, false)
	require.NoError(t, g.Broadcast([]*ts.Tensor{x, y, p}, root))
	for _, v := range x.Float64Values() {
		assert.Equal(t, float64(root), v)
	}
	assert.Equal(t, []int64{int64(root), int64(10 * root)}, y.Int64Values())
	for _, v := range p.Float64Values() {
		assert.Equal(t, float64(root), v)
	}
	assert.True(t, p.MustRequiresGrad())

	// AllGather.
	in := on(ts.MustOfSlice([]float32{float32(r), float32(10 * r)}))
	out, err := g.AllGather(in)
	require.NoError(t, err)
	assert.Equal(t, []int64{int64(n), 2}, out.MustSize())
	want := make([]float64, 0, 2*n)
	for i := range n {
		want = append(want, float64(i), float64(10*i))
	}
	assert.Equal(t, want, out.Float64Values())

	// A string from rank 0 (an empty one too).
	msg := ""
	if r == 0 {
		msg = "runs/x-20260101 é"
	}
	got, err := g.BroadcastString(msg, 0)
	require.NoError(t, err)
	assert.Equal(t, "runs/x-20260101 é", got)
	got, err = g.BroadcastString("", 0)
	require.NoError(t, err)
	assert.Equal(t, "", got)

	// A large buffer, bigger than one socket buffer, summed exactly.
	big := ts.MustOnes([]int64{1 << 20}, gotch.Float, dev)
	require.NoError(t, g.AllReduceSum([]*ts.Tensor{big}))
	assert.Equal(t, float64(n), big.MustSum(gotch.Double, false).Float64Values()[0]/float64(1<<20))
}

// bench times allreduces of REPRO_DIST_BENCH_MB megabytes of float32.
func bench(t *testing.T, g *dist.Group) {
	mb, _ := strconv.Atoi(os.Getenv("REPRO_DIST_BENCH_MB"))
	if mb <= 0 {
		mb = 100
	}
	x := ts.MustOnes([]int64{int64(mb) << 18}, gotch.Float, gotch.CPU)
	require.NoError(t, g.AllReduceSum([]*ts.Tensor{x})) // warm-up
	const reps = 5
	var best time.Duration = math.MaxInt64
	var total time.Duration
	for range reps {
		require.NoError(t, g.Barrier())
		start := time.Now()
		require.NoError(t, g.AllReduceSum([]*ts.Tensor{x}))
		d := time.Since(start)
		total += d
		best = min(best, d)
	}
	if g.Rank() == 0 {
		fmt.Printf("allreduce of %d MB over %d ranks (%s): best %v, mean %v\n", mb, g.Size(), g.Backend(), best.Round(time.Millisecond), (total / reps).Round(time.Millisecond))
	}
}

// TestAllReduceTiming times a 2-rank allreduce of 100 MB; it runs only with
// REPRO_DIST_BENCH=1.
func TestAllReduceTiming(t *testing.T) {
	if os.Getenv("REPRO_DIST_BENCH") == "" {
		t.Skip("set REPRO_DIST_BENCH=1 (and REPRO_DIST_BENCH_MB) to time an allreduce")
	}
	res := spawn(t, 2, "bench", 5*time.Minute, "REPRO_DIST_TIMEOUT=120s")
	requireAllPass(t, res)
	for _, line := range strings.Split(res[0].out, "\n") {
		if strings.HasPrefix(line, "allreduce of") {
			t.Log(line)
		}
	}
}
