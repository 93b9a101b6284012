package dist

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// DefaultTimeout bounds every rendezvous and collective when Options and
// REPRO_DIST_TIMEOUT say nothing: torch.distributed's default for Gloo.
const DefaultTimeout = 30 * time.Minute

// DefaultPort is the store's port when Options and MASTER_PORT say
// nothing, as torch's TCPStore.
const DefaultPort = 29500

// Options says how to join a group. The zero value means "as torchrun
// says": Init reads the environment (see FromEnv).
type Options struct {
	// Backend is "gloo" (CPU tensors) or "nccl" (CUDA tensors); "" picks
	// nccl for a CUDA Device when this build has it, gloo otherwise.
	Backend string
	// Rank is this process's rank, 0..Size-1; Size the number of ranks
	// (WORLD_SIZE). Size 0 makes Init read the environment.
	Rank, Size int
	// LocalRank is the rank among this machine's processes (LOCAL_RANK),
	// which picks the GPU under NCCL.
	LocalRank int
	// MasterAddr and MasterPort are the TCPStore's address: rank 0 serves
	// it there, the others connect (default 127.0.0.1 and 29500).
	MasterAddr string
	MasterPort int
	// AgentStore says a launcher already serves the store at the master
	// address (torchrun from PyTorch 2.0 does, and says so with
	// TORCHELASTIC_USE_AGENT_STORE=True): every rank, 0 included, is a
	// client then.
	AgentStore bool
	// Timeout bounds the rendezvous and every collective: a peer that
	// never joins or dies makes the others fail within it (default
	// REPRO_DIST_TIMEOUT, else DefaultTimeout).
	Timeout time.Duration
	// Interface is the network interface Gloo binds (GLOO_SOCKET_IFNAME);
	// without one, Hostname is the address or name it binds, and without
	// that, 127.0.0.1 when the master is on this machine's loopback, else
	// libtorch's default (this machine's hostname, or loopback).
	Interface, Hostname string
	// Device is the rank's device: the GPU for NCCL (default cuda:LocalRank),
	// the CPU for Gloo.
	Device gotch.Device
	// Prefix namespaces this group's keys in the store (default "repro/",
	// with torchrun's restart count when it sets one, so a restarted job
	// never reads a dead attempt's keys).
	Prefix string
}

// FromEnv reads torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT, and TORCHELASTIC_USE_AGENT_STORE,
// TORCHELASTIC_RESTART_COUNT, GLOO_SOCKET_IFNAME and REPRO_DIST_TIMEOUT (a
// Go duration such as 90s or 10m). ok is false when WORLD_SIZE is unset:
// the process was not launched as a distributed job. With WORLD_SIZE set,
// RANK, MASTER_ADDR and MASTER_PORT are required, as for
// torch.distributed's env:// (but for a world of size 1).
func FromEnv() (o Options, ok bool, err error) {
	ws := os.Getenv("WORLD_SIZE")
	if ws == "" {
		return Options{}, false, nil
	}
	num := func(name string, required bool) (int, error) {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			if required {
				return 0, fmt.Errorf("dist: WORLD_SIZE is set but %s is not (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)", name)
			}
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("dist: %s=%q is not a non-negative integer", name, v)
		}
		return n, nil
	}
	if o.Size, err = num("WORLD_SIZE", true); err != nil {
		return Options{}, true, err
	}
	if o.Size == 0 {
		return Options{}, true, errors.New("dist: WORLD_SIZE=0; it is the number of ranks, at least 1")
	}
	multi := o.Size > 1
	if o.Rank, err = num("RANK", multi); err != nil {
		return Options{}, true, err
	}
	if o.LocalRank, err = num("LOCAL_RANK", false); err != nil {
		return Options{}, true, err
	}
	if os.Getenv("LOCAL_RANK") == "" {
		o.LocalRank = o.Rank
	}
	o.MasterAddr = strings.TrimSpace(os.Getenv("MASTER_ADDR"))
	if o.MasterAddr == "" && multi {
		return Options{}, true, errors.New("dist: WORLD_SIZE is set but MASTER_ADDR is not (the address of rank 0's store)")
	}
	if o.MasterPort, err = num("MASTER_PORT", multi); err != nil {
		return Options{}, true, err
	}
	o.AgentStore = strings.EqualFold(os.Getenv("TORCHELASTIC_USE_AGENT_STORE"), "true")
	if n := os.Getenv("TORCHELASTIC_RESTART_COUNT"); n != "" {
		o.Prefix = "repro/attempt_" + n + "/"
	}
	o.Interface = os.Getenv("GLOO_SOCKET_IFNAME")
	if v := os.Getenv("REPRO_DIST_TIMEOUT"); v != "" {
		if o.Timeout, err = time.ParseDuration(v); err != nil || o.Timeout <= 0 {
			return Options{}, true, fmt.Errorf("dist: REPRO_DIST_TIMEOUT=%q is not a positive duration such as 90s or 10m", v)
		}
	}
	return o, true, nil
}

// Backends says which backends this build has: Gloo (CPU) and NCCL (CUDA),
// as scripts/install_libtorch.sh found them for the prepared libtorch, and
// why any is missing.
func Backends() (gloo, nccl bool, missing map[string]string) {
	b := readBuild()
	return b.Gloo, b.NCCL, b.Missing
}

// Group is one process's membership of a process group. Its collectives
// must be called by every rank in the same order; a Group serialises the
// calls of its own goroutines. After a collective fails (a peer died or
// timed out) the group is broken: every later call returns that error. A
// call refused for its arguments (a nil tensor, the mean of integers, a
// root out of range) communicates nothing and leaves the group as it was.
type Group struct {
	mu        sync.Mutex
	c         cgroup
	rank      int
	size      int
	localRank int
	backend   string
	device    gotch.Device
	timeout   time.Duration
	broken    error
}

// Init joins the group Options describe (the environment's, when
// opts.Size is 0): it creates the TCPStore, served by rank 0 unless
// AgentStore, and the backend's process group, which waits until every
// rank has joined, within Timeout.
func Init(opts Options) (*Group, error) {
	if opts.Size == 0 {
		env, ok, err := FromEnv()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("dist: no group described: Options.Size is 0 and WORLD_SIZE is not set (launch with torchrun, scripts/launch_local.sh or repro train -nproc)")
		}
		// Explicit settings win over the environment's.
		if opts.Backend != "" {
			env.Backend = opts.Backend
		}
		if opts.Timeout != 0 {
			env.Timeout = opts.Timeout
		}
		if opts.Hostname != "" {
			env.Hostname = opts.Hostname
		}
		if opts.Interface != "" {
			env.Interface = opts.Interface
		}
		if opts.Device != (gotch.Device{}) {
			env.Device = opts.Device
		}
		if opts.Prefix != "" {
			env.Prefix = opts.Prefix
		}
		opts = env
	}
	if opts.Size < 1 || opts.Rank < 0 || opts.Rank >= opts.Size {
		return nil, fmt.Errorf("dist: rank %d is not in a group of %d", opts.Rank, opts.Size)
	}
	if opts.MasterAddr == "" {
		opts.MasterAddr = "127.0.0.1"
	}
	if opts.MasterPort == 0 {
		opts.MasterPort = DefaultPort
	}
	if opts.MasterPort < 1 || opts.MasterPort > 65535 {
		return nil, fmt.Errorf("dist: master port %d is not a TCP port", opts.MasterPort)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
		if v := os.Getenv("REPRO_DIST_TIMEOUT"); v != "" {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				opts.Timeout = d
			}
		}
	}
	if opts.Timeout < time.Millisecond {
		return nil, fmt.Errorf("dist: timeout %v is too short", opts.Timeout)
	}
	if opts.Prefix == "" {
		opts.Prefix = "repro/"
	}
	gloo, nccl, missing := Backends()
	if opts.Backend == "" {
		opts.Backend = "gloo"
		if isCuda(opts.Device) && nccl {
			opts.Backend = "nccl"
		}
	}
	cudaDevice := -1
	switch opts.Backend {
	case "gloo":
		if !gloo {
			return nil, fmt.Errorf("dist: this build has no gloo backend: %s", missing["gloo"]+missing["c10d"])
		}
		if isCuda(opts.Device) {
			return nil, errors.New("dist: the gloo backend here reduces CPU tensors only; use nccl for CUDA")
		}
		if opts.Interface == "" && opts.Hostname == "" && isLoopback(opts.MasterAddr) {
			opts.Hostname = "127.0.0.1"
		}
	case "nccl":
		if !nccl {
			return nil, fmt.Errorf("dist: this build has no nccl backend: %s", missing["nccl"]+missing["c10d"])
		}
		if !isCuda(opts.Device) {
			opts.Device = gotch.CudaBuilder(uint(opts.LocalRank))
		}
		cudaDevice = opts.Device.Value
	default:
		return nil, fmt.Errorf("dist: unknown backend %q (gloo or nccl)", opts.Backend)
	}
	server := opts.Rank == 0 && !opts.AgentStore
	c, err := cInit(opts.Backend, opts.MasterAddr, opts.MasterPort, server, opts.Prefix, opts.Rank, opts.Size, opts.Timeout, opts.Interface, opts.Hostname, cudaDevice)
	if err != nil {
		return nil, fmt.Errorf("dist: rank %d of %d: %w", opts.Rank, opts.Size, err)
	}
	dev := opts.Device
	if opts.Backend == "gloo" {
		dev = gotch.CPU
	}
	return &Group{c: c, rank: opts.Rank, size: opts.Size, localRank: opts.LocalRank, backend: opts.Backend, device: dev, timeout: opts.Timeout}, nil
}

// isCuda is Device.IsCuda for a device that was set: gotch counts the
// zero Device as CUDA.
func isCuda(d gotch.Device) bool { return d.Name != "" && d.IsCuda() }

func isLoopback(addr string) bool {
	if addr == "localhost" {
		return true
	}
	ip := net.ParseIP(addr)
	return ip != nil && ip.IsLoopback()
}

// Rank is this process's rank, 0..Size()-1.
func (g *Group) Rank() int { return g.rank }

// Size is the number of ranks.
func (g *Group) Size() int { return g.size }

// LocalRank is the rank among this machine's processes.
func (g *Group) LocalRank() int { return g.localRank }

// Backend is "gloo" or "nccl".
func (g *Group) Backend() string { return g.backend }

// Device is where the group's tensors live: the CPU for Gloo, the rank's
// GPU for NCCL.
func (g *Group) Device() gotch.Device { return g.device }

// Timeout bounds each collective.
func (g *Group) Timeout() time.Duration { return g.timeout }

// do runs one collective under the lock, marking the group broken when it
// fails.
func (g *Group) do(fn func(c cgroup) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.c == nil {
		return fmt.Errorf("dist: rank %d of %d: the group is closed", g.rank, g.size)
	}
	if g.broken != nil {
		return fmt.Errorf("dist: rank %d of %d: the group is broken by an earlier failure: %w", g.rank, g.size, g.broken)
	}
	if err := fn(g.c); err != nil {
		// The shim checks its arguments before it communicates, so a
		// caller's mistake leaves the group usable.
		if !strings.Contains(err.Error(), ": invalid argument: ") {
			g.broken = err
		}
		return fmt.Errorf("dist: rank %d of %d: %w", g.rank, g.size, err)
	}
	return nil
}

// AllReduceSum replaces each tensor with its sum over the ranks, in place.
// Tensors of one dtype travel flattened together in one collective, so a
// list of many small tensors costs one round trip. Every rank passes
// tensors of the same shapes and dtypes in the same order.
func (g *Group) AllReduceSum(xs []*ts.Tensor) error {
	return g.do(func(c cgroup) error { return cAllReduce(c, xs, false, g.timeout) })
}

// AllReduceMean replaces each tensor with its mean over the ranks, in
// place (floating-point tensors only).
func (g *Group) AllReduceMean(xs []*ts.Tensor) error {
	return g.do(func(c cgroup) error { return cAllReduce(c, xs, true, g.timeout) })
}

// Broadcast copies root's tensors into every other rank's, in place.
func (g *Group) Broadcast(xs []*ts.Tensor, root int) error {
	return g.do(func(c cgroup) error { return cBroadcast(c, xs, root, g.timeout) })
}

// AllGather returns every rank's x stacked in rank order: a new tensor of
// shape [Size(), x's shape...], in the caller's scope. Every rank's x has
// the same shape and dtype.
func (g *Group) AllGather(x *ts.Tensor) (*ts.Tensor, error) {
	if x == nil {
		return nil, errors.New("dist: AllGather of a nil tensor")
	}
	shape, err := x.Size()
	if err != nil {
		return nil, fmt.Errorf("dist: AllGather: %w", err)
	}
	dev, err := x.Device()
	if err != nil {
		return nil, fmt.Errorf("dist: AllGather: %w", err)
	}
	out, err := ts.Empty(append([]int64{int64(g.size)}, shape...), x.DType(), dev)
	if err != nil {
		return nil, fmt.Errorf("dist: AllGather: %w", err)
	}
	if err := g.do(func(c cgroup) error { return cAllGather(c, x, out, g.timeout) }); err != nil {
		out.Drop()
		return nil, err
	}
	return out, nil
}

// Barrier returns once every rank has called it.
func (g *Group) Barrier() error {
	return g.do(func(c cgroup) error { return cBarrier(c, g.timeout) })
}

// Close leaves the group and frees it; the store's server goes with rank
// 0's Close, so ranks should pass a last Barrier first. A broken group's
// C side is not freed (its threads may still wait on a dead peer until
// the timeout; freeing would wait with them): the process is expected to
// exit. Close is idempotent.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.c == nil {
		return nil
	}
	cDestroy(g.c, g.broken != nil)
	g.c = nil
	return nil
}

// OnDevice is a new tensor of vals on the device the group's collectives
// take (the CPU for gloo, the rank's GPU for nccl, whose collectives refuse
// CPU tensors), in the caller's scope.
func (g *Group) OnDevice(vals []float64) (*ts.Tensor, error) { return onDevice(g, vals) }

func onDevice[T int64 | float64](g *Group, vals []T) (*ts.Tensor, error) {
	x, err := ts.OfSlice(vals)
	if err != nil || g.device == gotch.CPU {
		return x, err
	}
	return x.To(g.device, true)
}

// BroadcastString returns root's s on every rank (the others' s is
// ignored): a run directory, or the error that stopped rank 0.
func (g *Group) BroadcastString(s string, root int) (string, error) {
	n, err := onDevice(g, []int64{int64(len(s))})
	if err != nil {
		return "", err
	}
	if err := g.Broadcast([]*ts.Tensor{n}, root); err != nil {
		return "", err
	}
	size := n.Int64Values()[0]
	if size == 0 {
		return "", nil
	}
	if size < 0 || size > 1<<20 {
		return "", fmt.Errorf("dist: rank %d of %d: BroadcastString: rank %d sent a length of %d", g.rank, g.size, root, size)
	}
	buf := make([]int64, size)
	if g.rank == root {
		for i := range buf {
			buf[i] = int64(s[i])
		}
	}
	t, err := onDevice(g, buf)
	if err != nil {
		return "", err
	}
	if err := g.Broadcast([]*ts.Tensor{t}, root); err != nil {
		return "", err
	}
	b := make([]byte, size)
	for i, v := range t.Int64Values() {
		b[i] = byte(v)
	}
	return string(b), nil
}
