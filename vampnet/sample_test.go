package vampnet

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reprolab/repro/audio"
)

// The re-masking schedule of generate: floor(cos(pi r/2) n0) in float32
// at r = (i+1)/steps, clamped to [1, left-1] before the last step and 0
// at it. The values at r = 2/3 are PyTorch's (cos(pi/3) is 0.49999997 in
// float32, so floor(0.5 x 10) is 4, not 5), from torch 1.13.
func TestRemaskCounts(t *testing.T) {
	for _, c := range []struct {
		steps int
		n0    int64
		want  []int64
	}{
		{3, 10, []int64{8, 4, 0}},
		{6, 10, []int64{9, 8, 7, 4, 2, 0}},
		{3, 1000, []int64{866, 499, 0}},
		{4, 100, []int64{92, 70, 38, 0}},
	} {
		for i, w := range c.want {
			assert.Equal(t, []int64{w}, RemaskCounts(i, c.steps, c.n0, []int64{c.n0}), "steps %d n0 %d step %d", c.steps, c.n0, i)
		}
	}
	// per row: at most all but one of the row's masked positions, at
	// least one, before the last step; the count is the whole batch's
	assert.Equal(t, []int64{2, 70, 1}, RemaskCounts(1, 4, 100, []int64{3, 90, 1}))
	assert.Equal(t, []int64{0, 0}, RemaskCounts(3, 4, 100, []int64{3, 90}))
	// one step: nothing is masked again
	assert.Equal(t, []int64{0}, RemaskCounts(0, 1, 50, []int64{50}))
}

// Prepare is Interface.preprocess: the codec's rate, mono, -24 LUFS and a
// peak of at most 1, on a copy; it returns the input's own loudness.
func TestPrepareNormalises(t *testing.T) {
	in := &Interface{sampleRate: 8000}
	a := audio.NewAudio(16000, 2, 16000)
	for c := range a.Channels {
		for i := range a.Channels[c] {
			a.Channels[c][i] = float32(0.01 * math.Sin(2*math.Pi*440*float64(i)/16000))
		}
	}
	before := a.Channels[0][100]
	var said []string
	p, loud, err := in.Prepare(a, func(f string, args ...any) { said = append(said, fmt.Sprintf(f, args...)) })
	require.NoError(t, err)
	assert.Equal(t, before, a.Channels[0][100], "the input is left alone")
	assert.Equal(t, 8000, p.SampleRate)
	assert.Equal(t, 1, p.NumChannels())
	assert.InDelta(t, audio.Loudness(a), loud, 1e-9)
	assert.InDelta(t, PreprocessLoudness, audio.Loudness(p), 0.05)
	assert.Len(t, said, 2)

	// a loud square wave is brought down to -24 LUFS; one far too quiet
	// for -24 would pass 1 and is divided by its peak
	q := audio.NewAudio(8000, 1, 8000)
	for i := range q.Channels[0] {
		q.Channels[0][i] = 1e-4 * float32(1-2*((i/20)%2))
	}
	q.Channels[0][4000] = 0.9 // one spike
	p, _, err = in.Prepare(q, func(string, ...any) {})
	require.NoError(t, err)
	var peak float64
	for _, v := range p.Channels[0] {
		peak = math.Max(peak, math.Abs(float64(v)))
	}
	assert.LessOrEqual(t, peak, 1.0)
	assert.InDelta(t, 1.0, peak, 1e-6, "the spike, scaled past 1, was brought to the peak of 1")
}
