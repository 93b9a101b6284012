package train

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/dist"
	"github.com/reprolab/repro/torchmods"
)

// Data-parallel training (dist, over libtorch's c10d), as PyTorch's
// DistributedDataParallel under torchrun:
//
//   - A run is distributed when RunOptions.Group is set or the process
//     was launched with torchrun's environment and WORLD_SIZE > 1
//     (torchrun, scripts/launch_local.sh).
//   - data.batch is per rank, as the official scripts' per-GPU batch: the
//     global batch is data.batch x trainer.accumulate x world size. Every
//     training loader reads its rank's shard of each epoch, as
//     DistributedSampler (data.SetShard; see data.LoaderOptions).
//   - Rank 0's parameters and buffers are broadcast to the others when
//     Train starts (after a resume's restore too).
//   - Each optimizer step averages the gradients over the ranks after the
//     last micro-batch's backward pass (accumulation communicates once per
//     step), in buckets of about 25 MB taken in reverse parameter order as
//     DDP does, before unscaling, clipping and the update. The step's loss
//     is averaged too, so metrics are the global batch's.
//   - Only rank 0 writes: the run directory (config.toml, metrics.jsonl,
//     TensorBoard, checkpoints, results.json), progress and evaluation.
//     Resuming reads the checkpoint on every rank, so the run directory
//     must be visible to every rank (one machine, or a shared file
//     system), and refuses a checkpoint written with another world size.
//   - A stop (SIGINT/SIGTERM to any rank) is agreed on at each step, so
//     every rank stops after the same step, rank 0 with a checkpoint.
//   - Random streams: every rank seeds libtorch with trainer.seed, so the
//     model is built identically; when Train starts, ranks other than 0
//     reseed with trainer.seed + rank (dropout, masking), as MAE's
//     seed + rank. Only rank 0's generator is checkpointed, so after a
//     resume the other ranks draw new streams.

// bucketBytes is DDP's default bucket_cap_mb.
const bucketBytes = 25 << 20

// groupFor is the run's process group: o.Group, or one joined from
// torchrun's environment when WORLD_SIZE > 1 (own: StartWith closes it).
// Under trainer.device = "cuda" each rank takes the GPU LOCAL_RANK names,
// and the group NCCL (where the prepared libtorch has it), as torchrun
// scripts do with torch.cuda.set_device(local_rank).
func groupFor(o RunOptions, t TrainerConfig) (g *dist.Group, own bool, err error) {
	if o.Group != nil {
		return o.Group, false, nil
	}
	env, ok, err := dist.FromEnv()
	if err != nil || !ok || env.Size <= 1 {
		return nil, false, err
	}
	if t.Device == "cuda" {
		env.Device = gotch.CudaBuilder(uint(env.LocalRank))
	}
	fmt.Fprintf(o.W, "rank %d of %d: joining the group at %s:%d\n", env.Rank, env.Size, env.MasterAddr, env.MasterPort)
	g, err = dist.Init(env)
	return g, err == nil, err
}

// startRanks lets rank 0 take the run directory and tells the others its
// path, or the error that stopped it, so every rank starts or none does.
// Rank 0 gets the lock; the others nil.
func startRanks[C Config](g *dist.Group, c C, o *RunOptions) (*RunDirLock, error) {
	if g.Rank() != 0 {
		msg, err := g.BroadcastString("", 0)
		if err != nil {
			return nil, err
		}
		if dir, ok := strings.CutPrefix(msg, "ok\n"); ok {
			o.Out = dir
			return nil, nil
		}
		return nil, fmt.Errorf("rank 0 could not start the run: %s", strings.TrimPrefix(msg, "error\n"))
	}
	lock, err := func() (*RunDirLock, error) {
		if o.Resume {
			if err := checkResumeDir(o.Out); err != nil {
				return nil, err
			}
		}
		lock, err := TryLockRunDir(o.Out)
		if err != nil {
			return nil, err
		}
		if err := prepareRunDir(c, *o); err != nil {
			lock.Unlock()
			return nil, err
		}
		return lock, nil
	}()
	msg := "ok\n"
	if err != nil {
		msg = "error\n" + err.Error()
	} else if abs, aerr := filepath.Abs(o.Out); aerr == nil {
		msg += abs
	} else {
		msg += o.Out
	}
	if _, berr := g.BroadcastString(msg, 0); berr != nil && err == nil {
		lock.Unlock()
		return nil, berr
	}
	return lock, err
}

// Group is the session's process group, nil for a single process.
func (s *Session) Group() *dist.Group { return s.group }

// Rank is this process's rank in a data-parallel run, 0 otherwise.
func (s *Session) Rank() int {
	if s.group == nil {
		return 0
	}
	return s.group.Rank()
}

// WorldSize is the number of ranks in a data-parallel run, 1 otherwise:
// the factor by which the global batch exceeds data.batch x
// trainer.accumulate (learning-rate scaling rules need it).
func (s *Session) WorldSize() int {
	if s.group == nil {
		return 1
	}
	return s.group.Size()
}

// Main says whether this process writes the run's files: the only
// process, or rank 0.
func (s *Session) Main() bool { return s.Rank() == 0 }

// syncStart makes every rank start from rank 0's model, then gives the
// other ranks their own random streams.
func (s *Session) syncStart() error {
	if s.group == nil {
		return nil
	}
	if err := s.broadcastStore(); err != nil {
		return fmt.Errorf("broadcasting rank 0's parameters: %w", err)
	}
	if r := s.Rank(); r != 0 {
		ts.ManualSeed(s.Cfg.Seed + int64(r))
	}
	if s.Main() {
		fmt.Fprintf(s.W, "data-parallel over %d ranks (%s): rank 0's parameters broadcast; global batch = data.batch x %d x %d\n",
			s.WorldSize(), s.group.Backend(), s.Cfg.Accumulate, s.WorldSize())
	}
	return nil
}

// broadcastStore sends every tensor of the store (parameters and buffers)
// from rank 0, in buckets.
func (s *Session) broadcastStore() error {
	var all []*ts.Tensor
	for _, p := range s.Store.Params() {
		all = append(all, p.Tensor)
	}
	for _, b := range buckets(all) {
		if err := s.group.Broadcast(b, 0); err != nil {
			return err
		}
	}
	return nil
}

// syncStep averages the step's gradients and its loss over the ranks and
// agrees on whether to stop after it. It runs inside the step's scope.
func (s *Session) syncStep(loss float64) (float64, error) {
	t0 := time.Now()
	if err := torchmods.Try(s.allReduceGrads); err != nil {
		return 0, err
	}
	stop := 0.0
	if s.stop.Load() {
		stop = 1
	}
	v, err := s.group.OnDevice([]float64{loss, stop})
	if err != nil {
		return 0, err
	}
	if err := s.group.AllReduceSum([]*ts.Tensor{v}); err != nil {
		return 0, err
	}
	vals := v.Float64Values()
	s.stopAgreed = vals[1] > 0
	s.commTime += time.Since(t0)
	return vals[0] / float64(s.WorldSize()), nil
}

// allReduceGrads replaces every trainable parameter's gradient with its
// mean over the ranks, bucket by bucket in reverse parameter order (the
// order backward produces them, as DDP's buckets). A trainable parameter
// that this step left without a gradient gets a zero one first, so that
// every rank reduces the same list (DDP's find_unused_parameters).
// Tensor code: panics on a libtorch error (called under Try).
func (s *Session) allReduceGrads() {
	params := s.Store.Params()
	var grads []*ts.Tensor
	var unused []*ts.Tensor
	for i := len(params) - 1; i >= 0; i-- {
		p := params[i].Tensor
		if !p.MustRequiresGrad() {
			continue
		}
		g := p.MustGrad(false)
		if !g.MustDefined() {
			unused = append(unused, p)
			continue
		}
		grads = append(grads, g)
	}
	if len(unused) > 0 {
		// sum(p * 0) over the unused parameters: its backward pass leaves
		// each a zero gradient.
		var z *ts.Tensor
		for _, p := range unused {
			t := p.MustMulScalar(ts.FloatScalar(0), false).MustSum(p.DType(), false)
			if z == nil {
				z = t
			} else {
				z = z.MustAdd(t, true)
			}
		}
		if err := z.Backward(); err != nil {
			panic(err)
		}
		// Collect again, in the same order on every rank.
		grads = grads[:0]
		for i := len(params) - 1; i >= 0; i-- {
			if p := params[i].Tensor; p.MustRequiresGrad() {
				grads = append(grads, p.MustGrad(false))
			}
		}
	}
	for _, b := range buckets(grads) {
		if err := s.group.AllReduceMean(b); err != nil {
			panic(err)
		}
	}
}

// buckets cuts a list of tensors into consecutive runs of about
// bucketBytes (a tensor larger than that is a bucket of its own).
func buckets(xs []*ts.Tensor) [][]*ts.Tensor {
	var out [][]*ts.Tensor
	var cur []*ts.Tensor
	var size int64
	for _, x := range xs {
		n := int64(x.Numel()) * int64(x.DType().Size())
		if len(cur) > 0 && size+n > bucketBytes {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, x)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// checkResumeDir refuses to resume a run directory that does not exist.
func checkResumeDir(out string) error {
	if st, err := os.Stat(out); err != nil || !st.IsDir() {
		return fmt.Errorf("-resume %s: no such run directory", out)
	}
	return nil
}
