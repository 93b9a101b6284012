package audio

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeTrack writes a stereo 48 kHz WAV: silence, then a loud sine for
// the last loudSec seconds.
func writeTrack(t *testing.T, dir, name string, sec, loudSec float64) Prepared {
	t.Helper()
	const rate = 48000
	n := int(sec * rate)
	a := NewAudio(rate, 2, n)
	s := sine(997, 0.5, rate, int(loudSec*rate))
	copy(a.Channels[0][n-len(s):], s)
	copy(a.Channels[1][n-len(s):], s)
	p := filepath.Join(dir, name)
	require.NoError(t, WriteWAV(p, a, PCM16))
	info, err := ReadWAVInfo(p)
	require.NoError(t, err)
	return Prepared{Track: Track{ID: p}, WAV: p, SampleRate: info.SampleRate, Channels: info.Channels, Frames: info.Frames}
}

func TestExcerptLoader(t *testing.T) {
	dir := t.TempDir()
	// Half the track is loud: a 0.5 s excerpt has about even odds per try.
	half := writeTrack(t, dir, "half.wav", 4, 2)
	silent := writeTrack(t, dir, "silent.wav", 4, 0)
	short := writeTrack(t, dir, "short.wav", 0.3, 0.3)
	l := &ExcerptLoader{Tracks: []Prepared{half, silent, short}, SampleRate: 16000, Duration: 0.5, LoudnessCutoff: -30, Mono: true, WithoutReplacement: true, Seed: 7}

	tries := 0
	for i := 0; i < 30; i += 3 {
		ex, err := l.Item(i)
		require.NoError(t, err)
		assert.Equal(t, 0, ex.Track, "without replacement: item i takes track i mod 3")
		assert.Equal(t, 1, ex.Audio.NumChannels())
		assert.Equal(t, 16000, ex.Audio.SampleRate)
		assert.Equal(t, 8000, ex.Audio.Len())
		assert.True(t, ex.Salient, "8 tries at even odds: item %d", i)
		assert.Greater(t, ex.Loudness, -30.0)
		assert.InDelta(t, ex.Loudness, Loudness(mustExcerpt(t, half, ex.Offset, 0.5)), 1e-9, "the loudness is the native excerpt's")
		assert.True(t, ex.Offset >= 0 && ex.Offset <= 3.5)
		tries += ex.Tries
	}
	assert.Greater(t, tries, 10, "some excerpts were rejected and drawn again")

	// A silent track: every try fails, and the last excerpt comes back.
	ex, err := l.Item(1)
	require.NoError(t, err)
	assert.Equal(t, 1, ex.Track)
	assert.False(t, ex.Salient)
	assert.Equal(t, 8, ex.Tries, "salient_excerpt's num_tries")
	assert.Equal(t, MinLoudness, ex.Loudness)
	assert.Equal(t, 0.0, maxAbs(ex.Audio.Channels[0]))
	assert.Equal(t, 8000, ex.Audio.Len())

	// A track shorter than the excerpt: offset 0, zero-padded.
	ex, err = l.Item(2)
	require.NoError(t, err)
	assert.Equal(t, 0.0, ex.Offset)
	assert.Equal(t, 8000, ex.Audio.Len())
	assert.Equal(t, float32(0), ex.Audio.Channels[0][7999])
	assert.Greater(t, maxAbs(ex.Audio.Channels[0][:4000]), 0.4)

	// Deterministic by (seed, index), whatever the order of calls.
	a, _ := l.Item(9)
	b, _ := l.Item(9)
	assert.Equal(t, a, b)
	l2 := *l
	l2.Seed = 8
	c, _ := l2.Item(9)
	assert.NotEqual(t, a.Offset, c.Offset)

	// No cutoff: one try. Stereo kept without Mono. With replacement, the
	// track is drawn.
	l3 := &ExcerptLoader{Tracks: []Prepared{half, silent, short}, SampleRate: 48000, Duration: 1, LoudnessCutoff: math.Inf(-1)}
	seen := map[int]bool{}
	for i := range 30 {
		ex, err := l3.Item(i)
		require.NoError(t, err)
		assert.Equal(t, 1, ex.Tries)
		assert.Equal(t, 2, ex.Audio.NumChannels())
		assert.Equal(t, 48000, ex.Audio.Len())
		seen[ex.Track] = true
	}
	assert.Len(t, seen, 3)
}

func mustExcerpt(t *testing.T, p Prepared, off, dur float64) *Audio {
	a, err := ReadWAVFrames(p.WAV, int64(off*float64(p.SampleRate)), int64(dur*float64(p.SampleRate)))
	require.NoError(t, err)
	return a
}

func TestExcerptLoaderErrors(t *testing.T) {
	_, err := (&ExcerptLoader{SampleRate: 16000, Duration: 1}).Item(0)
	assert.EqualError(t, err, "excerpt loader: no tracks")
	tr := []Prepared{{WAV: "/nonexistent/x.wav", SampleRate: 44100, Frames: 44100}}
	_, err = (&ExcerptLoader{Tracks: tr, SampleRate: 16000}).Item(0)
	assert.ErrorContains(t, err, "duration 0")
	_, err = (&ExcerptLoader{Tracks: tr, SampleRate: 16000, Duration: 1, LoudnessCutoff: math.NaN()}).Item(0)
	assert.ErrorContains(t, err, "NaN")
	_, err = (&ExcerptLoader{Tracks: tr, SampleRate: 16000, Duration: 1}).Item(0)
	assert.ErrorContains(t, err, "/nonexistent/x.wav")
}
