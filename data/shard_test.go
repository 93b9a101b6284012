package data

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type idxBatch struct {
	idx  []int
	draw int
}

func shardLoader(t *testing.T, opt LoaderOptions) *Loader[idxBatch] {
	t.Helper()
	l, err := NewLoader(opt, func(b Batch) (idxBatch, error) {
		return idxBatch{slices.Clone(b.Indices), b.Rand().IntN(1 << 30)}, nil
	})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	return l
}

// Batch i of every rank together is batch i of one loader with batch
// size Batch*Ranks, epoch after epoch, so a data-parallel step sees the
// global batch a single process would.
func TestShardsMakeTheGlobalBatch(t *testing.T) {
	const n, b, ranks = 48, 4, 3
	global := shardLoader(t, LoaderOptions{N: n, Batch: b * ranks, Shuffle: true, DropLast: true, Seed: 5, Workers: 1, Ranks: 1})
	var shards []*Loader[idxBatch]
	for r := range ranks {
		shards = append(shards, shardLoader(t, LoaderOptions{N: n, Batch: b, Shuffle: true, DropLast: true, Seed: 5, Workers: 1, Rank: r, Ranks: ranks}))
	}
	require.Equal(t, global.PerEpoch(), shards[0].PerEpoch())
	for range 2 * global.PerEpoch() {
		g, err := global.Next()
		require.NoError(t, err)
		var union []int
		for _, l := range shards {
			s, err := l.Next()
			require.NoError(t, err)
			require.Len(t, s.idx, b)
			union = append(union, s.idx...)
		}
		slices.Sort(union)
		slices.Sort(g.idx)
		require.Equal(t, g.idx, union)
	}
}

// As DistributedSampler: the permutation is padded to a multiple of the
// ranks with its own beginning, rank r takes positions r, r+ranks, ...
func TestShardPadsLikeDistributedSampler(t *testing.T) {
	const n, ranks = 10, 4
	var all []int
	for r := range ranks {
		l := shardLoader(t, LoaderOptions{N: n, Batch: 2, Shuffle: true, Seed: 9, Rank: r, Ranks: ranks})
		order := l.Order(0)
		sh := l.ShardOrder(0)
		require.Len(t, sh, 3) // ceil(10/4)
		padded := append(slices.Clone(order), order[:2]...)
		for i, x := range sh {
			assert.Equal(t, padded[r+i*ranks], x)
		}
		assert.Equal(t, int64(2), l.PerEpoch())
		all = append(all, sh...)
		assert.NotEqual(t, l.ShardOrder(0), l.ShardOrder(1), "reshuffled every epoch")
	}
	slices.Sort(all)
	seen := slices.Compact(slices.Clone(all))
	assert.Len(t, seen, n, "every example is read")
	assert.Len(t, all, 12, "two repeated to pad")
}

// The process default applies to loaders that leave Ranks 0; rank 0's
// batches augment as a single process's, the other ranks' differently.
func TestDefaultShardAndBatchSeeds(t *testing.T) {
	SetShard(1, 2)
	l1 := shardLoader(t, LoaderOptions{N: 8, Batch: 2, Seed: 3, Workers: 1})
	SetShard(0, 2)
	l0 := shardLoader(t, LoaderOptions{N: 8, Batch: 2, Seed: 3, Workers: 1})
	SetShard(0, 1)
	single := shardLoader(t, LoaderOptions{N: 8, Batch: 2, Seed: 3, Workers: 1})
	r, k := l1.Shard()
	assert.Equal(t, []int{1, 2}, []int{r, k})
	assert.Equal(t, int64(2), l1.PerEpoch())
	assert.Equal(t, int64(4), single.PerEpoch())
	b1, err := l1.Next()
	require.NoError(t, err)
	b0, err := l0.Next()
	require.NoError(t, err)
	bs, err := single.Next()
	require.NoError(t, err)
	assert.Equal(t, []int{1, 3}, b1.idx)
	assert.Equal(t, []int{0, 2}, b0.idx)
	assert.Equal(t, bs.draw, b0.draw, "rank 0 draws as a single process")
	assert.NotEqual(t, b0.draw, b1.draw)

	_, err = NewLoader(LoaderOptions{N: 8, Batch: 5, DropLast: true, Rank: 0, Ranks: 2}, func(b Batch) (int, error) { return 0, nil })
	assert.ErrorContains(t, err, "per rank")
	_, err = NewLoader(LoaderOptions{N: 8, Batch: 1, Rank: 2, Ranks: 2}, func(b Batch) (int, error) { return 0, nil })
	assert.ErrorContains(t, err, "rank 2")
}
