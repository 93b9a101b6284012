package audio

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// MusicPackages are the Debian packages of game music that hold real
// music as Ogg Vorbis (VampNet's small experiment trains on them).
var MusicPackages = []string{
	"singularity-music",
	"nexuiz-music",
	"hyperrogue-music",
	"planetblupi-music-ogg",
	"fretsonfire-songs-muldjord",
	"fretsonfire-songs-sectoid",
}

// dpkgInfoDir is where dpkg keeps each installed package's file list (what
// dpkg -L prints); tests point it elsewhere.
var dpkgInfoDir = "/var/lib/dpkg/info"

// Track is one piece of music: the unit of the train/test split.
type Track struct {
	Package string
	// ID names the track uniquely and stably: its file's path, a pk3
	// member as "archive.pk3:member", or a Frets on Fire song's directory.
	// The split hashes it.
	ID string
	// Stems are the files that, summed, make the track: one for most
	// packages; a Frets on Fire song has song.ogg plus guitar.ogg (and
	// maybe rhythm.ogg), which the game plays together.
	Stems      []Source
	SampleRate int
	Channels   int
	Duration   float64 // seconds, the longest stem's
}

// PackageFiles is the file list of an installed Debian package, read from
// dpkg's database as dpkg -L prints it. A package that is not installed
// is an error that says how to install it.
func PackageFiles(pkg string) ([]string, error) {
	p := filepath.Join(dpkgInfoDir, pkg+".list")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		// Multi-arch packages' lists are named pkg:arch.list.
		if m, _ := filepath.Glob(filepath.Join(dpkgInfoDir, pkg+":*.list")); len(m) > 0 {
			p = m[0]
		}
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("Debian package %s is not installed (apt-get install %s)", pkg, pkg)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var files []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && l != "/." {
			files = append(files, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return files, nil
}

// ListTracks lists the tracks of the given packages (MusicPackages when
// none are given), sorted by ID, with durations read from the Ogg headers.
// Every package must be installed: the error names each missing one and
// the apt-get command, so that a data set never silently shrinks.
func ListTracks(packages ...string) ([]Track, error) {
	if len(packages) == 0 {
		packages = MusicPackages
	}
	var missing []string
	var tracks []Track
	for _, pkg := range packages {
		files, err := PackageFiles(pkg)
		if err != nil {
			if strings.Contains(err.Error(), "is not installed") {
				missing = append(missing, pkg)
				continue
			}
			return nil, err
		}
		ts, err := packageTracks(pkg, files)
		if err != nil {
			return nil, err
		}
		if len(ts) == 0 {
			return nil, fmt.Errorf("Debian package %s has no Ogg Vorbis music in its %d files", pkg, len(files))
		}
		tracks = append(tracks, ts...)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("music packages not installed: %s (apt-get install %s, or REPRO_MUSIC=1 scripts/install_libtorch.sh for all of them and vorbis-tools)", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	sort.Slice(tracks, func(i, j int) bool { return tracks[i].ID < tracks[j].ID })
	return tracks, nil
}

// isEffect reports a sound effect rather than music: a file under a
// directory named "sounds" (hyperrogue-music ships 84 effects of a second
// or so in /usr/share/hyperrogue/sounds beside its 17 tracks).
func isEffect(f string) bool {
	for _, d := range strings.Split(path.Dir(f), "/") {
		if d == "sounds" {
			return true
		}
	}
	return false
}

// packageTracks makes tracks of a package's files: an .ogg file is a
// track (sound effects aside, see isEffect), unless its directory also holds a song.ini (Frets on Fire), when
// all the .ogg files of that directory are the stems of one track; every
// .ogg member of a .pk3 (zip) archive is a track.
func packageTracks(pkg string, files []string) ([]Track, error) {
	songDirs := map[string]bool{}
	for _, f := range files {
		if path.Base(f) == "song.ini" {
			songDirs[path.Dir(f)] = true
		}
	}
	byID := map[string]*Track{}
	var order []string
	add := func(id string, s Source) {
		t := byID[id]
		if t == nil {
			t = &Track{Package: pkg, ID: id}
			byID[id] = t
			order = append(order, id)
		}
		t.Stems = append(t.Stems, s)
	}
	for _, f := range files {
		switch strings.ToLower(path.Ext(f)) {
		case ".ogg":
			if isEffect(f) {
				continue
			}
			if songDirs[path.Dir(f)] {
				add(path.Dir(f), Source{Path: f})
			} else {
				add(f, Source{Path: f})
			}
		case ".pk3":
			z, err := zip.OpenReader(f)
			if err != nil {
				return nil, fmt.Errorf("%s (from %s): %w", f, pkg, err)
			}
			for _, m := range z.File {
				if strings.EqualFold(path.Ext(m.Name), ".ogg") {
					add(f+":"+m.Name, Source{Path: f, Member: m.Name})
				}
			}
			z.Close()
		}
	}
	tracks := make([]Track, 0, len(order))
	for _, id := range order {
		t := byID[id]
		for _, s := range t.Stems {
			info, err := ReadOggInfo(s)
			if err != nil {
				return nil, fmt.Errorf("%s (from %s): %w", s, pkg, err)
			}
			if t.SampleRate != 0 && info.SampleRate != t.SampleRate {
				return nil, fmt.Errorf("%s (from %s): %d Hz, but the track's other stems are %d Hz", s, pkg, info.SampleRate, t.SampleRate)
			}
			t.SampleRate = info.SampleRate
			t.Channels = max(t.Channels, info.Channels)
			t.Duration = math.Max(t.Duration, info.Duration())
		}
		tracks = append(tracks, *t)
	}
	return tracks, nil
}

// SplitKey is the number in [0, 1) that places a track in a split: the
// first 53 bits of the FNV-1a 64-bit hash of its ID, over 2^53. It depends
// on the ID alone, so a track's split never changes when packages are
// added or listed in another order, and all excerpts (and all stems) of a
// track fall on the same side.
func SplitKey(id string) float64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return float64(h.Sum64()>>11) / (1 << 53)
}

// SplitTracks splits by track, never by excerpt: a track goes to test when
// SplitKey(ID) < testFraction. The test share is testFraction in
// expectation, not exactly: exactness would tie a track's side to the
// others.
func SplitTracks(tracks []Track, testFraction float64) (train, test []Track) {
	for _, t := range tracks {
		if SplitKey(t.ID) < testFraction {
			test = append(test, t)
		} else {
			train = append(train, t)
		}
	}
	return train, test
}

// PrepareOptions say how Prepare stores decoded tracks.
type PrepareOptions struct {
	// CacheDir holds the WAV files ("" for DefaultCacheDir()).
	CacheDir string
	// SampleRate resamples (Resample, julius' filter) when not 0; Mono
	// mixes down (the channels' mean). Both are done once here rather than
	// per excerpt.
	SampleRate int
	Mono       bool
	// Progress, if set, is told after each track Prepare has ready
	// (decoding the music packages' six hours takes minutes the first time).
	Progress func(done, total int, t Prepared)
}

// DefaultCacheDir is $XDG_CACHE_HOME/repro/music (or ~/.cache/...).
func DefaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "repro", "music")
}

// Prepared is a track decoded to a WAV file.
type Prepared struct {
	Track
	WAV string
	// SampleRate, Channels and Frames are the WAV file's.
	SampleRate int
	Channels   int
	Frames     int64
}

// Duration is the WAV file's length in seconds.
func (p Prepared) Duration() float64 { return float64(p.Frames) / float64(p.SampleRate) }

// Prepare decodes each track into a WAV file in the cache (reusing one
// already there) and returns them in order. See PrepareTrack.
func Prepare(tracks []Track, o PrepareOptions) ([]Prepared, error) {
	out := make([]Prepared, 0, len(tracks))
	for i, t := range tracks {
		p, err := PrepareTrack(t, o)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		if o.Progress != nil {
			o.Progress(i+1, len(tracks), p)
		}
	}
	return out, nil
}

// PrepareTrack decodes a track with oggdec, sums its stems, applies o's
// resampling and downmix and writes one WAV file into the cache. The name
// holds a hash of the track's ID, its sources' sizes and modification
// times and the options, so a changed package or option makes a new file
// instead of reusing a stale one. The file is 16-bit PCM unless the stems'
// sum leaves [-1, 1), when it is 32-bit float so nothing is clipped.
func PrepareTrack(t Track, o PrepareOptions) (Prepared, error) {
	dir := o.CacheDir
	if dir == "" {
		dir = DefaultCacheDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Prepared{}, err
	}
	if len(t.Stems) == 0 {
		return Prepared{}, fmt.Errorf("track %s has no files", t.ID)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%d|%v", t.ID, o.SampleRate, o.Mono)
	for _, s := range t.Stems {
		st, err := os.Stat(s.Path)
		if err != nil {
			return Prepared{}, fmt.Errorf("track %s: %w", t.ID, err)
		}
		fmt.Fprintf(h, "|%s|%d|%d", s, st.Size(), st.ModTime().UnixNano())
	}
	name := strings.Trim(strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return r
		}
		return '_'
	}, strings.TrimSuffix(path.Base(strings.ReplaceAll(t.ID, ":", "/")), ".ogg")), "_")
	dst := filepath.Join(dir, fmt.Sprintf("%s-%s-%016x.wav", t.Package, name, h.Sum64()))
	if info, err := ReadWAVInfo(dst); err == nil {
		return Prepared{Track: t, WAV: dst, SampleRate: info.SampleRate, Channels: info.Channels, Frames: info.Frames}, nil
	}
	simple := len(t.Stems) == 1 && o.SampleRate == 0 && !o.Mono
	if simple { // oggdec's output is the result
		if err := DecodeOgg(t.Stems[0], dst); err != nil {
			return Prepared{}, err
		}
	} else if err := mixStems(t, dst, o); err != nil {
		return Prepared{}, err
	}
	info, err := ReadWAVInfo(dst)
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{Track: t, WAV: dst, SampleRate: info.SampleRate, Channels: info.Channels, Frames: info.Frames}, nil
}

func mixStems(t Track, dst string, o PrepareOptions) error {
	var mix *Audio
	for i, s := range t.Stems {
		tmp := fmt.Sprintf("%s.stem%d.wav", dst, i)
		if err := DecodeOgg(s, tmp); err != nil {
			return err
		}
		a, err := ReadWAV(tmp)
		os.Remove(tmp)
		if err != nil {
			return err
		}
		if mix == nil {
			mix = a
			continue
		}
		if a.NumChannels() != mix.NumChannels() {
			if a.NumChannels() == 1 {
				a = &Audio{SampleRate: a.SampleRate, Channels: repeatChannel(a.Channels[0], mix.NumChannels())}
			} else if mix.NumChannels() == 1 {
				mix = &Audio{SampleRate: mix.SampleRate, Channels: repeatChannel(mix.Channels[0], a.NumChannels())}
			} else {
				return fmt.Errorf("track %s: stem %s has %d channels, the others %d", t.ID, s, a.NumChannels(), mix.NumChannels())
			}
		}
		for c := range mix.Channels {
			if n := a.Len(); n > len(mix.Channels[c]) {
				mix.Channels[c] = append(mix.Channels[c], make([]float32, n-len(mix.Channels[c]))...)
			}
			for j, v := range a.Channels[c] {
				mix.Channels[c][j] += v
			}
		}
	}
	if o.Mono {
		mix = mix.Mono()
	}
	if o.SampleRate != 0 {
		var err error
		if mix, err = mix.Resample(o.SampleRate); err != nil {
			return fmt.Errorf("track %s: %w", t.ID, err)
		}
	}
	f := PCM16
	for _, ch := range mix.Channels {
		for _, v := range ch {
			if v >= 1 || v < -1 {
				f = Float32
			}
		}
	}
	return WriteWAV(dst, mix, f)
}

func repeatChannel(x []float32, n int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = append([]float32(nil), x...)
	}
	return out
}
