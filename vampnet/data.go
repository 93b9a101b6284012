package vampnet

import (
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// DataConfig says where the music comes from and how excerpts are drawn,
// as audiotools' AudioLoader and AudioDataset do for the official scripts.
type DataConfig struct {
	// Source is "debian" (the Ogg Vorbis music of Debian's packages,
	// decoded once with oggdec into a cache) or "folder" (WAV files under
	// Folder, each a track).
	Source   string   `toml:"source"`
	Packages []string `toml:"packages"` // debian: default audio.MusicPackages
	Folder   string   `toml:"folder"`
	Cache    string   `toml:"cache"` // debian: decoded WAVs ("" for ~/.cache/repro/music)
	// Duration of an excerpt in seconds (vampnet.yml 10, c2f.yml 3, lac's
	// codec training 0.38).
	Duration float64 `toml:"duration"`
	// LoudnessCutoff (LUFS): excerpts at or below it are redrawn, up to 8
	// tries (salient_excerpt); vampnet.yml -30, c2f.yml -40. Use -200 for
	// no cutoff.
	LoudnessCutoff float64 `toml:"loudness_cutoff"`
	// TestFraction of the tracks (by a hash of each track's ID, never by
	// excerpt) is held out for evaluation.
	TestFraction float64 `toml:"test_fraction"`
	Batch        int     `toml:"batch"`
	Workers      int     `toml:"workers"` // loader goroutines (0: the loader's default)
	// EvalExcerpts held-out excerpts are drawn once (seeded) for every
	// evaluation, so that evaluations compare.
	EvalExcerpts int `toml:"eval_excerpts"`
}

func (d DataConfig) validate() error {
	switch {
	case d.Source != "debian" && d.Source != "folder":
		return config.Field("data.source", `"debian" (the music packages) or "folder" (WAV files), got %q`, d.Source)
	case d.Source == "folder" && d.Folder == "":
		return config.Field("data.folder", "a folder of WAV files is needed with data.source = \"folder\"")
	case !(d.Duration > 0):
		return config.Field("data.duration", "excerpts must last more than 0 s, got %v", d.Duration)
	case math.IsNaN(d.LoudnessCutoff):
		return config.Field("data.loudness_cutoff", "NaN; use -200 for no cutoff")
	case !(d.TestFraction > 0 && d.TestFraction < 1):
		return config.Field("data.test_fraction", "must be in (0, 1), got %v", d.TestFraction)
	case d.Batch < 1:
		return config.Field("data.batch", "must be positive, got %d", d.Batch)
	case d.EvalExcerpts < 0:
		return config.Field("data.eval_excerpts", "must not be negative, got %d", d.EvalExcerpts)
	}
	return nil
}

// tracks lists and prepares the source's tracks at sampleRate, mono, and
// splits them by track.
func (d DataConfig) tracks(sampleRate int, w io.Writer) (train, test []audio.Prepared, err error) {
	if d.Source == "folder" {
		all, err := folderTracks(d.Folder)
		if err != nil {
			return nil, nil, err
		}
		for _, p := range all {
			if p.SampleRate != sampleRate {
				return nil, nil, fmt.Errorf("%s: sample rate %d Hz, the codec's is %d Hz: resample the folder's files (or use data.source = \"debian\", which resamples)", p.WAV, p.SampleRate, sampleRate)
			}
			if audio.SplitKey(p.ID) < d.TestFraction {
				test = append(test, p)
			} else {
				train = append(train, p)
			}
		}
	} else {
		list, err := audio.ListTracks(d.Packages...)
		if err != nil {
			return nil, nil, err
		}
		tr, te := audio.SplitTracks(list, d.TestFraction)
		o := audio.PrepareOptions{CacheDir: d.Cache, SampleRate: sampleRate, Mono: true,
			Progress: func(done, total int, p audio.Prepared) {
				if done%10 == 0 || done == total { // a line per 10 tracks: logs have no carriage returns
					fmt.Fprintf(w, "music: %d/%d tracks ready at %d Hz (last: %s)\n", done, total, sampleRate, p.ID)
				}
			}}
		if train, err = audio.Prepare(tr, o); err != nil {
			return nil, nil, err
		}
		if test, err = audio.Prepare(te, o); err != nil {
			return nil, nil, err
		}
	}
	if len(train) == 0 || len(test) == 0 {
		return nil, nil, fmt.Errorf("data: %d training and %d held-out tracks: need at least one of each (data.test_fraction %v)", len(train), len(test), d.TestFraction)
	}
	return train, test, nil
}

// folderTracks lists the WAV files under dir, each a track whose ID is
// its path relative to dir.
func folderTracks(dir string) ([]audio.Prepared, error) {
	var out []audio.Prepared
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !strings.EqualFold(filepath.Ext(path), ".wav") {
			return nil
		}
		info, err := audio.ReadWAVInfo(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, audio.Prepared{
			Track: audio.Track{Package: "folder", ID: rel, SampleRate: info.SampleRate, Channels: info.Channels, Duration: info.Duration()},
			WAV:   path, SampleRate: info.SampleRate, Channels: info.Channels, Frames: info.Frames,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("data.folder: %w", err)
	}
	if len(out) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("data.folder: %w", err)
		}
		return nil, fmt.Errorf("data.folder %s: no .wav files", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// excerpts is a seeded excerpt reader over prepared tracks.
func (d DataConfig) excerpts(tracks []audio.Prepared, sampleRate int, seed uint64) *audio.ExcerptLoader {
	return &audio.ExcerptLoader{Tracks: tracks, SampleRate: sampleRate, Duration: d.Duration, LoudnessCutoff: d.LoudnessCutoff,
		Mono: true, WithoutReplacement: true, Seed: seed}
}

// excerptBatch draws items idx and stacks them as [B, 1, samples] float32
// (plain Go memory: loader goroutines make it, the step moves it to a tensor).
type excerptBatch struct {
	samples []float32
	n, len  int
}

func drawBatch(l *audio.ExcerptLoader, idx []int) (excerptBatch, error) {
	var b excerptBatch
	for _, i := range idx {
		e, err := l.Item(i)
		if err != nil {
			return b, err
		}
		ch := e.Audio.Channels[0]
		if b.len == 0 {
			b.len = len(ch)
		}
		b.samples = append(b.samples, ch...)
		b.n++
	}
	return b, nil
}

func (b excerptBatch) tensor(dev gotch.Device) *ts.Tensor {
	return torchmods.FromSlice(b.samples, []int64{int64(b.n), 1, int64(b.len)}, dev)
}

// excerptData is a training task's data: an endless seeded loader of
// training excerpts, the held-out excerpts drawn once, and the run's
// step counts.
type excerptData struct {
	loader          *data.Loader[excerptBatch]
	heldout         []excerptBatch
	perEpoch, steps int64
}

// openExcerpts opens the training loader and draws the held-out excerpts,
// both normalised to target LUFS (volumeNorm; <= -200 for none), as the
// official scripts' transforms do for training and validation alike.
func openExcerpts(s *train.Session, d DataConfig, trainTracks, testTracks []audio.Prepared, sr int, seed int64, target float64) (*excerptData, error) {
	ex := d.excerpts(trainTracks, sr, uint64(seed))
	loader, err := data.NewLoader(data.LoaderOptions{N: 1 << 20, Batch: d.Batch, Shuffle: true, DropLast: true, Seed: uint64(seed), Workers: d.Workers},
		func(b data.Batch) (excerptBatch, error) {
			eb, err := drawBatch(ex, b.Indices)
			if err == nil {
				normalizeBatch(eb, target, sr)
			}
			return eb, err
		})
	if err != nil {
		return nil, err
	}
	out := &excerptData{loader: loader}
	if out.perEpoch, out.steps, err = s.Steps(loader.PerEpoch()); err == nil {
		out.heldout, err = evalExcerpts(d, testTracks, sr)
	}
	if err != nil {
		loader.Close()
		return nil, err
	}
	for _, b := range out.heldout {
		normalizeBatch(b, target, sr)
	}
	return out, nil
}
