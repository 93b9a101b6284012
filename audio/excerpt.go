package audio

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// ExcerptLoader draws fixed-length excerpts from prepared tracks as
// audiotools' AudioDataset and AudioLoader do for VampNet's training:
// item idx takes a track (tracks[idx mod n] without replacement, as
// vampnet.yml sets, else one uniformly at random), draws salient excerpts
// of it (AudioSignal.salient_excerpt), then mixes down to mono, resamples
// and pads to the requested length.
type ExcerptLoader struct {
	Tracks     []Prepared
	SampleRate int     // of the excerpts (the codec's: 44100 for VampNet)
	Duration   float64 // seconds (vampnet.yml: 10, c2f.yml: 3)
	// LoudnessCutoff in LUFS: an excerpt must be louder to be accepted
	// (vampnet.yml: -30; audiotools' default -40). math.Inf(-1) accepts
	// the first excerpt, as audiotools' loudness_cutoff=None does.
	LoudnessCutoff float64
	// NumTries bounds the draws per item (0 for salient_excerpt's 8).
	NumTries int
	// Mono mixes down (num_channels=1, VampNet's setting); otherwise the
	// track's channels are kept.
	Mono bool
	// WithoutReplacement walks the tracks in order by item index
	// (AudioDataset's without_replacement, true in vampnet.yml).
	WithoutReplacement bool
	// Seed, with the item index, seeds the item's generator.
	Seed uint64
}

// Excerpt is one drawn excerpt and how it was found.
type Excerpt struct {
	Audio    *Audio
	Track    int     // index into ExcerptLoader.Tracks
	Offset   float64 // seconds into the track
	Loudness float64 // LUFS of the accepted excerpt, at the track's rate
	Tries    int
	// Salient is false when every try was at or below the cutoff: then,
	// as in audiotools, the last excerpt drawn is returned anyway, so a
	// track that is quiet throughout still yields items (and a silent
	// track yields silence) rather than stalling the loader.
	Salient bool
}

// Item draws item idx. Its generator is seeded by (Seed, idx) alone, as
// audiotools seeds numpy's RandomState with idx, so an item is the same
// whatever order or goroutine asks for it (the numbers are not numpy's).
//
// Each try picks an offset uniform in [0, max(track - duration, 0)] and
// reads int(offset·rate) onwards for int(duration·rate) frames at the
// track's rate (fewer at the end of a short track), measures Loudness on
// those frames, all channels, and stops at the first one louder than the
// cutoff, or after NumTries. The accepted excerpt is then mixed to mono
// (if Mono), resampled to SampleRate, and cut or zero-padded to exactly
// int(Duration·SampleRate) frames: audiotools only zero-pads, but a batch
// needs one length.
func (l *ExcerptLoader) Item(idx int) (*Excerpt, error) {
	if len(l.Tracks) == 0 {
		return nil, errors.New("excerpt loader: no tracks")
	}
	if l.SampleRate <= 0 || !(l.Duration > 0) {
		return nil, fmt.Errorf("excerpt loader: sample rate %d and duration %v, want both > 0", l.SampleRate, l.Duration)
	}
	if math.IsNaN(l.LoudnessCutoff) {
		return nil, errors.New("excerpt loader: loudness cutoff is NaN (use math.Inf(-1) for none)")
	}
	if idx < 0 {
		return nil, fmt.Errorf("excerpt loader: item %d < 0", idx)
	}
	tries := l.NumTries
	if tries == 0 {
		tries = 8
	}
	rng := rand.New(rand.NewPCG(l.Seed, uint64(idx)))
	ti := idx % len(l.Tracks)
	if !l.WithoutReplacement {
		ti = rng.IntN(len(l.Tracks))
	}
	t := l.Tracks[ti]
	if t.SampleRate <= 0 {
		return nil, fmt.Errorf("excerpt loader: track %s: sample rate %d", t.WAV, t.SampleRate)
	}
	ex := &Excerpt{Track: ti, Loudness: math.Inf(-1)}
	var a *Audio
	for ex.Loudness <= l.LoudnessCutoff && ex.Tries < tries {
		upper := math.Max(t.Duration()-l.Duration, 0)
		off := rng.Float64() * upper
		var err error
		a, err = ReadWAVFrames(t.WAV, int64(off*float64(t.SampleRate)), int64(l.Duration*float64(t.SampleRate)))
		if err != nil {
			return nil, err
		}
		ex.Offset = off
		ex.Loudness = Loudness(a)
		ex.Tries++
	}
	ex.Salient = ex.Loudness > l.LoudnessCutoff
	if l.Mono {
		a = a.Mono()
	}
	a, err := a.Resample(l.SampleRate)
	if err != nil {
		return nil, fmt.Errorf("excerpt loader: track %s: %w", t.WAV, err)
	}
	n := int(l.Duration * float64(l.SampleRate))
	for c, ch := range a.Channels {
		if len(ch) >= n {
			a.Channels[c] = ch[:n]
		} else {
			a.Channels[c] = append(ch, make([]float32, n-len(ch))...)
		}
	}
	ex.Audio = a
	return ex, nil
}
