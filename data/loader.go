package data

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Batch names one batch: its example indices, where it falls in the run,
// and a generator for its random augmentations. The generator depends only
// on the loader's seed and the batch's position, so augmentations are the
// same however many workers run and whenever a run is resumed.
type Batch struct {
	Indices []int
	Epoch   int64 // 0-based
	Index   int64 // batch number within the epoch
	seed    uint64
}

// Rand is the batch's own seeded generator.
func (b Batch) Rand() *rand.Rand {
	return rand.New(rand.NewPCG(b.seed^0x9e3779b97f4a7c15, uint64(b.Epoch)<<32|uint64(b.Index)))
}

// LoaderOptions configures a Loader.
type LoaderOptions struct {
	N        int    // examples in the dataset
	Batch    int    // examples per batch
	Shuffle  bool   // a new seeded permutation every epoch
	DropLast bool   // drop the last, smaller batch of an epoch
	Seed     uint64 // seeds the permutations and the batches' generators
	Workers  int    // goroutines making batches (default GOMAXPROCS, at most 4)
	Prefetch int    // batches made ahead of the consumer (default 2*Workers)
	// Rank and Ranks shard every epoch across the processes of a
	// data-parallel run, as torch's DistributedSampler (drop_last=False)
	// does: each epoch's permutation, the same on every rank (same Seed),
	// is padded to a multiple of Ranks by repeating its first examples,
	// and rank r takes its positions r, r+Ranks, r+2*Ranks, ...; batches
	// are then cut from that shard. So batch i of every rank together is
	// the global batch i of a single loader with batch Batch*Ranks, and
	// every rank has the same number of batches per epoch. Batch is per
	// rank. Ranks 0 takes the process default (SetShard, which train sets
	// for a data-parallel run); Ranks 1 never shards.
	Rank, Ranks int
}

// shardRank and shardRanks are the process default for LoaderOptions'
// Rank and Ranks.
var shardRank, shardRanks atomic.Int64

// SetShard sets the shard that loaders made afterwards take when their
// options leave Ranks 0: train calls it when a data-parallel session
// starts (and SetShard(0, 1) when it ends), so every task's training
// loader reads its rank's shard without naming it.
func SetShard(rank, ranks int) {
	shardRank.Store(int64(rank))
	shardRanks.Store(int64(ranks))
}

// LoaderState is a Loader's position, for checkpoints: the next batch to
// hand out. With the seed it determines everything that follows.
type LoaderState struct {
	Epoch int64 `json:"epoch"`
	Index int64 `json:"index"`
}

// Loader hands out batches in a seeded order, endlessly, epoch after epoch.
// Make turns a Batch into B on worker goroutines ahead of the consumer, so
// decoding and augmentation overlap the training step. B should be plain Go
// data (slices), not tensors: tensors are made on the training goroutine,
// inside its step's scope.
type Loader[B any] struct {
	opt   LoaderOptions
	make  func(Batch) (B, error)
	next  LoaderState // the next batch Next returns
	queue chan chan result[B]
	stop  chan struct{}
	wg    sync.WaitGroup
}

type result[B any] struct {
	b   B
	err error
}

// NewLoader validates the options and returns a loader positioned at the
// start; call Restore to continue from a checkpoint, then Next.
func NewLoader[B any](opt LoaderOptions, make func(Batch) (B, error)) (*Loader[B], error) {
	switch {
	case opt.N <= 0:
		return nil, fmt.Errorf("data loader: the dataset is empty")
	case opt.Batch <= 0:
		return nil, fmt.Errorf("data loader: batch size must be positive, got %d", opt.Batch)
	}
	if opt.Ranks == 0 {
		opt.Rank, opt.Ranks = int(shardRank.Load()), int(shardRanks.Load())
	}
	switch {
	case opt.Ranks <= 1:
		opt.Rank, opt.Ranks = 0, 1
	case opt.Rank < 0 || opt.Rank >= opt.Ranks:
		return nil, fmt.Errorf("data loader: rank %d is not one of %d ranks", opt.Rank, opt.Ranks)
	}
	if n := shardLen(opt); opt.DropLast && opt.Batch > n {
		if opt.Ranks > 1 {
			return nil, fmt.Errorf("data loader: batch size %d per rank is larger than each of %d ranks' share of the dataset (%d of %d examples), and drop_last leaves no batch", opt.Batch, opt.Ranks, n, opt.N)
		}
		return nil, fmt.Errorf("data loader: batch size %d is larger than the dataset's %d examples, and drop_last leaves no batch", opt.Batch, opt.N)
	}
	if opt.Workers <= 0 {
		opt.Workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if opt.Prefetch <= 0 {
		opt.Prefetch = 2 * opt.Workers
	}
	return &Loader[B]{opt: opt, make: make}, nil
}

// shardLen is the number of examples a rank reads per epoch: the dataset's
// size, or with Ranks > 1 that size rounded up to a multiple of Ranks,
// divided by Ranks.
func shardLen(opt LoaderOptions) int {
	if opt.Ranks <= 1 {
		return opt.N
	}
	return (opt.N + opt.Ranks - 1) / opt.Ranks
}

// NewSliceLoader is a Loader over items already in memory: each batch is
// the items its indices pick, in order (o.N is set to len(items)).
func NewSliceLoader[T any](items []T, o LoaderOptions) (*Loader[[]T], error) {
	o.N = len(items)
	return NewLoader(o, func(b Batch) ([]T, error) {
		out := make([]T, len(b.Indices))
		for i, k := range b.Indices {
			out[i] = items[k]
		}
		return out, nil
	})
}

// PerEpoch is the number of batches in an epoch (of this rank's shard).
func (l *Loader[B]) PerEpoch() int64 {
	n := shardLen(l.opt)
	if l.opt.DropLast {
		return int64(n / l.opt.Batch)
	}
	return int64((n + l.opt.Batch - 1) / l.opt.Batch)
}

// Shard is the loader's rank and number of ranks (0 and 1 unsharded).
func (l *Loader[B]) Shard() (rank, ranks int) { return l.opt.Rank, l.opt.Ranks }

// State is the position of the next batch Next returns.
func (l *Loader[B]) State() LoaderState { return l.next }

// Restore moves the loader to a checkpointed position, dropping anything
// made ahead.
func (l *Loader[B]) Restore(s LoaderState) error {
	if s.Epoch < 0 || s.Index < 0 || s.Index >= l.PerEpoch() {
		return fmt.Errorf("data loader: position epoch %d batch %d is outside this dataset's %d batches per epoch", s.Epoch, s.Index, l.PerEpoch())
	}
	l.Close()
	l.next = s
	return nil
}

// Order is epoch e's permutation of the whole dataset (the identity
// without Shuffle), the same on every rank.
func (l *Loader[B]) Order(epoch int64) []int {
	order := make([]int, l.opt.N)
	for i := range order {
		order[i] = i
	}
	if l.opt.Shuffle {
		rng := rand.New(rand.NewPCG(l.opt.Seed, uint64(epoch)))
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	return order
}

// ShardOrder is the examples this rank reads in epoch e, in order: Order
// itself unsharded, else its positions Rank, Rank+Ranks, ... after padding
// it to a multiple of Ranks with its own beginning (DistributedSampler).
func (l *Loader[B]) ShardOrder(epoch int64) []int {
	order := l.Order(epoch)
	if l.opt.Ranks <= 1 {
		return order
	}
	n := shardLen(l.opt)
	out := make([]int, n)
	for i := range out {
		out[i] = order[(l.opt.Rank+i*l.opt.Ranks)%len(order)]
	}
	return out
}

// batchSeed is the seed of rank's batch generators: the loader's seed on
// rank 0 (so a single process and rank 0 augment alike), another stream on
// every other rank, as each of PyTorch's workers seeds with seed + rank.
func (l *Loader[B]) batchSeed() uint64 {
	return l.opt.Seed + uint64(l.opt.Rank)*0xbf58476d1ce4e5b9
}

// waited is the time the loaders' Next calls of this process have spent
// blocked on a batch that was not made yet: the training loop reports its
// share of the wall time, which says whether a run is compute-bound or
// waiting on decoding and augmentation.
var waited atomic.Int64

// Waited is the total time Next has spent waiting for batches in this
// process, over all loaders.
func Waited() time.Duration { return time.Duration(waited.Load()) }

// Next returns the next batch, starting the workers on first use.
func (l *Loader[B]) Next() (B, error) {
	if l.queue == nil {
		l.start()
	}
	t := time.Now()
	r := <-<-l.queue
	waited.Add(int64(time.Since(t)))
	if r.err != nil {
		return r.b, fmt.Errorf("data loader, epoch %d batch %d: %w", l.next.Epoch, l.next.Index, r.err)
	}
	l.next.Index++
	if l.next.Index == l.PerEpoch() {
		l.next = LoaderState{Epoch: l.next.Epoch + 1}
	}
	return r.b, nil
}

// start launches a producer that walks the batch sequence from l.next and
// queues one result channel per batch, in order, while workers fill them.
func (l *Loader[B]) start() {
	l.queue = make(chan chan result[B], l.opt.Prefetch)
	l.stop = make(chan struct{})
	jobs := make(chan func(), l.opt.Workers)
	for range l.opt.Workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for job := range jobs {
				job()
			}
		}()
	}
	l.wg.Add(1)
	go func(pos LoaderState, queue chan chan result[B], stop chan struct{}) {
		defer l.wg.Done()
		defer close(jobs)
		order := l.ShardOrder(pos.Epoch)
		seed := l.batchSeed()
		for {
			lo := int(pos.Index) * l.opt.Batch
			hi := min(lo+l.opt.Batch, len(order))
			b := Batch{Indices: order[lo:hi], Epoch: pos.Epoch, Index: pos.Index, seed: seed}
			out := make(chan result[B], 1)
			select {
			case queue <- out:
			case <-stop:
				return
			}
			select {
			case jobs <- func() { v, err := l.make(b); out <- result[B]{v, err} }:
			case <-stop:
				return
			}
			pos.Index++
			if pos.Index == l.PerEpoch() {
				pos = LoaderState{Epoch: pos.Epoch + 1}
				order = l.ShardOrder(pos.Epoch)
			}
		}
	}(l.next, l.queue, l.stop)
}

// Close stops the workers; the loader can go on from its State afterwards.
func (l *Loader[B]) Close() {
	if l.queue == nil {
		return
	}
	close(l.stop) // the producer selects on it; workers never block (buffered results)
	l.wg.Wait()
	l.queue = nil
}

// Sequential calls fn for the batches of 0..n-1 in order, for evaluation.
func Sequential(n, batch int, fn func(idx []int) error) error {
	idx := make([]int, 0, batch)
	for i := 0; i < n; i += batch {
		idx = idx[:0]
		for j := i; j < min(i+batch, n); j++ {
			idx = append(idx, j)
		}
		if err := fn(idx); err != nil {
			return err
		}
	}
	return nil
}
