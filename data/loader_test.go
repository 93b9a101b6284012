package data

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// batchOf records what a batch was made of, including one draw from its generator.
func batchOf(b Batch) (string, error) {
	return fmt.Sprintf("%d/%d:%v:%d", b.Epoch, b.Index, b.Indices, b.Rand().IntN(1000)), nil
}

func take(t *testing.T, l *Loader[string], n int) []string {
	t.Helper()
	var out []string
	for range n {
		b, err := l.Next()
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

func TestLoaderCoversEveryExampleOncePerEpoch(t *testing.T) {
	for _, drop := range []bool{false, true} {
		l, err := NewLoader(LoaderOptions{N: 10, Batch: 3, Shuffle: true, DropLast: drop, Seed: 7}, func(b Batch) ([]int, error) {
			return slices.Clone(b.Indices), nil
		})
		require.NoError(t, err)
		want := map[bool]int64{false: 4, true: 3}[drop]
		require.Equal(t, want, l.PerEpoch())
		var epochs [2][]int
		for e := range 2 {
			for range want {
				b, err := l.Next()
				require.NoError(t, err)
				epochs[e] = append(epochs[e], b...)
			}
		}
		l.Close()
		for _, ep := range epochs {
			if drop {
				require.Len(t, ep, 9)
			} else {
				s := slices.Clone(ep)
				slices.Sort(s)
				require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, s)
			}
		}
		require.NotEqual(t, epochs[0], epochs[1], "each epoch gets a new permutation")
		require.Equal(t, l.Order(0)[:9], epochs[0][:9])
	}
}

func TestLoaderIsDeterministicAcrossWorkersAndRestore(t *testing.T) {
	opt := LoaderOptions{N: 50, Batch: 8, Shuffle: true, DropLast: true, Seed: 3, Workers: 1}
	a, err := NewLoader(opt, batchOf)
	require.NoError(t, err)
	all := take(t, a, 20) // crosses three epoch boundaries
	a.Close()

	opt.Workers, opt.Prefetch = 4, 7
	b, err := NewLoader(opt, batchOf)
	require.NoError(t, err)
	require.Equal(t, all, take(t, b, 20), "worker count must not change the batches")
	b.Close()

	// Stop after 9 batches, save the position, resume in a fresh loader.
	c, _ := NewLoader(opt, batchOf)
	first := take(t, c, 9)
	st := c.State()
	require.Equal(t, LoaderState{Epoch: 1, Index: 3}, st)
	c.Close()
	d, _ := NewLoader(opt, batchOf)
	require.NoError(t, d.Restore(st))
	require.Equal(t, all, append(first, take(t, d, 11)...))
	d.Close()

	require.Error(t, d.Restore(LoaderState{Index: 6}), "6 batches per epoch: index 6 is out of range")
}

func TestLoaderReportsErrors(t *testing.T) {
	l, err := NewLoader(LoaderOptions{N: 4, Batch: 2}, func(b Batch) (int, error) {
		if b.Index == 1 {
			return 0, errors.New("bad image")
		}
		return 0, nil
	})
	require.NoError(t, err)
	_, err = l.Next()
	require.NoError(t, err)
	_, err = l.Next()
	require.ErrorContains(t, err, "epoch 0 batch 1: bad image")
	l.Close()

	_, err = NewLoader(LoaderOptions{N: 3, Batch: 4, DropLast: true}, batchOf)
	require.ErrorContains(t, err, "larger than the dataset")
	_, err = NewLoader(LoaderOptions{N: 0, Batch: 4}, batchOf)
	require.ErrorContains(t, err, "empty")
}

func TestSequential(t *testing.T) {
	var got [][]int
	require.NoError(t, Sequential(5, 2, func(idx []int) error { got = append(got, slices.Clone(idx)); return nil }))
	require.Equal(t, [][]int{{0, 1}, {2, 3}, {4}}, got)
}

// TestLoaderCountsWaiting: a batch that takes 30 ms to make keeps the
// first Next waiting at least that long, and Waited says so (a lower bound
// that holds however loaded the machine is).
func TestLoaderCountsWaiting(t *testing.T) {
	l, err := NewLoader(LoaderOptions{N: 4, Batch: 2, Workers: 1, Seed: 1}, func(b Batch) (int, error) {
		time.Sleep(30 * time.Millisecond)
		return len(b.Indices), nil
	})
	require.NoError(t, err)
	defer l.Close()
	before := Waited()
	n, err := l.Next()
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.GreaterOrEqual(t, Waited()-before, 30*time.Millisecond)
}

// TestSliceLoaderPicksItems: a slice loader's batches are the items its
// indices name, so it is NewLoader over the slice.
func TestSliceLoaderPicksItems(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e"}
	l, err := NewSliceLoader(items, LoaderOptions{Batch: 2, Shuffle: true, Seed: 7, Workers: 1})
	require.NoError(t, err)
	defer l.Close()
	order := l.Order(0)
	first, err := l.Next()
	require.NoError(t, err)
	assert.Equal(t, []string{items[order[0]], items[order[1]]}, first)
	assert.Equal(t, int64(3), l.PerEpoch())
}
