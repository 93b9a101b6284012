package cocoop

import "math"

// This file is Python's random module, as far as Dassl's few-shot sampling
// uses it: CPython's Mersenne Twister (Modules/_randommodule.c), seeded
// from an int as random.seed(n) seeds it, getrandbits, _randbelow and
// random.sample (Lib/random.py). With it, K-shot sampling draws the same
// items as the official code does for the same seed and the same item
// order (fewshot.go), which is what makes a seed of this package and a seed
// of the paper's runs the same few-shot training set.

const (
	mtN = 624
	mtM = 397
)

// PyRandom is a random.Random whose state came from random.seed(n).
type PyRandom struct {
	mt  [mtN]uint32
	mti int
}

// NewPyRandom is random.Random(seed): init_by_array over the 32-bit words
// of |seed|, least significant first (one word 0 for seed 0), as
// random_seed does for an int.
func NewPyRandom(seed int64) *PyRandom {
	n := uint64(seed)
	if seed < 0 {
		n = uint64(-seed)
	}
	key := []uint32{uint32(n)}
	if hi := uint32(n >> 32); hi != 0 {
		key = append(key, hi)
	}
	r := &PyRandom{}
	r.initByArray(key)
	return r
}

func (r *PyRandom) initGenrand(s uint32) {
	r.mt[0] = s
	for i := 1; i < mtN; i++ {
		r.mt[i] = 1812433253*(r.mt[i-1]^(r.mt[i-1]>>30)) + uint32(i)
	}
	r.mti = mtN
}

func (r *PyRandom) initByArray(key []uint32) {
	r.initGenrand(19650218)
	i, j := 1, 0
	k := max(mtN, len(key))
	for ; k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1664525)) + key[j] + uint32(j)
		i++
		j++
		if i >= mtN {
			r.mt[0] = r.mt[mtN-1]
			i = 1
		}
		if j >= len(key) {
			j = 0
		}
	}
	for k = mtN - 1; k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1566083941)) - uint32(i)
		i++
		if i >= mtN {
			r.mt[0] = r.mt[mtN-1]
			i = 1
		}
	}
	r.mt[0] = 0x80000000
}

// uint32 is genrand_uint32.
func (r *PyRandom) uint32() uint32 {
	const upper, lower = 0x80000000, 0x7fffffff
	mag01 := [2]uint32{0, 0x9908b0df}
	if r.mti >= mtN {
		var kk int
		for kk = 0; kk < mtN-mtM; kk++ {
			y := (r.mt[kk] & upper) | (r.mt[kk+1] & lower)
			r.mt[kk] = r.mt[kk+mtM] ^ (y >> 1) ^ mag01[y&1]
		}
		for ; kk < mtN-1; kk++ {
			y := (r.mt[kk] & upper) | (r.mt[kk+1] & lower)
			r.mt[kk] = r.mt[kk+(mtM-mtN)] ^ (y >> 1) ^ mag01[y&1]
		}
		y := (r.mt[mtN-1] & upper) | (r.mt[0] & lower)
		r.mt[mtN-1] = r.mt[mtM-1] ^ (y >> 1) ^ mag01[y&1]
		r.mti = 0
	}
	y := r.mt[r.mti]
	r.mti++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// GetRandBits is random.getrandbits(k) for 0 < k <= 64: one 32-bit draw
// shifted right for k <= 32, else words from the least significant up,
// the last one shifted.
func (r *PyRandom) GetRandBits(k int) uint64 {
	if k <= 0 || k > 64 {
		panic("PyRandom.GetRandBits: k must be in [1, 64]")
	}
	if k <= 32 {
		return uint64(r.uint32() >> (32 - k))
	}
	lo := uint64(r.uint32())
	return lo | uint64(r.uint32()>>(64-k))<<32
}

// RandBelow is _randbelow_with_getrandbits(n): draws of n.bit_length()
// bits until one is below n.
func (r *PyRandom) RandBelow(n int) int {
	if n <= 0 {
		panic("PyRandom.RandBelow: n must be positive")
	}
	k := 0
	for v := uint64(n); v > 0; v >>= 1 {
		k++
	}
	v := r.GetRandBits(k)
	for v >= uint64(n) {
		v = r.GetRandBits(k)
	}
	return int(v)
}

// Sample is random.sample(range(n), k): the indices random.sample(items,
// k) picks from a population of n, in the order it returns them. Small
// populations are drawn from a shrinking pool, large ones by rejection
// from a set, as random.py decides with its setsize rule.
func (r *PyRandom) Sample(n, k int) []int {
	if k < 0 || k > n {
		panic("PyRandom.Sample: sample larger than population or negative")
	}
	out := make([]int, k)
	setsize := 21
	if k > 5 {
		setsize += int(math.Pow(4, math.Ceil(math.Log(float64(k*3))/math.Log(4))))
	}
	if n <= setsize {
		pool := make([]int, n)
		for i := range pool {
			pool[i] = i
		}
		for i := range k {
			j := r.RandBelow(n - i)
			out[i] = pool[j]
			pool[j] = pool[n-i-1]
		}
		return out
	}
	selected := map[int]bool{}
	for i := range k {
		j := r.RandBelow(n)
		for selected[j] {
			j = r.RandBelow(n)
		}
		selected[j] = true
		out[i] = j
	}
	return out
}
