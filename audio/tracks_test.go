package audio

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeDpkg makes a dpkg info directory listing files, which it creates
// (.ogg files as header-only Vorbis streams of 1 s at 44.1 kHz).
func fakeDpkg(t *testing.T, lists map[string][]string) (root string) {
	t.Helper()
	root = t.TempDir()
	info := filepath.Join(root, "info")
	require.NoError(t, os.MkdirAll(info, 0o755))
	old := dpkgInfoDir
	dpkgInfoDir = info
	t.Cleanup(func() { dpkgInfoDir = old })
	for pkg, files := range lists {
		var list []string
		for _, f := range files {
			p := filepath.Join(root, f)
			list = append(list, p)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			body := []byte("[song]\n")
			if strings.HasSuffix(strings.ToLower(f), ".ogg") {
				body = fakeOgg(2, 44100, 44100)
			}
			require.NoError(t, os.WriteFile(p, body, 0o644))
		}
		require.NoError(t, os.WriteFile(filepath.Join(info, pkg+".list"), []byte("/.\n"+strings.Join(list, "\n")+"\n"), 0o644))
	}
	return root
}

func TestListTracksFake(t *testing.T) {
	root := fakeDpkg(t, map[string][]string{
		"game-music": {"music/a.ogg", "music/b.OGG", "doc/README", "sounds/click.ogg"},
		"fof-songs":  {"songs/x/song.ini", "songs/x/song.ogg", "songs/x/guitar.ogg", "songs/y/song.ini", "songs/y/song.ogg"},
	})
	tracks, err := ListTracks("game-music", "fof-songs")
	require.NoError(t, err)
	require.Len(t, tracks, 4)
	ids := []string{}
	for _, tr := range tracks {
		ids = append(ids, strings.TrimPrefix(tr.ID, root+"/"))
		assert.Equal(t, 44100, tr.SampleRate)
		assert.Equal(t, 1.0, tr.Duration)
	}
	assert.Equal(t, []string{"music/a.ogg", "music/b.OGG", "songs/x", "songs/y"}, ids, "sorted; effects left out; a Frets on Fire song directory is one track")
	assert.Len(t, tracks[2].Stems, 2, "song.ogg and guitar.ogg are stems of one track")
	assert.Equal(t, "fof-songs", tracks[2].Package)

	_, err = ListTracks("game-music", "not-a-package", "nor-this")
	assert.EqualError(t, err, "music packages not installed: not-a-package, nor-this (apt-get install not-a-package nor-this, or REPRO_MUSIC=1 scripts/install_libtorch.sh for all of them and vorbis-tools)")
	_, err = PackageFiles("hyperrogue-music")
	assert.EqualError(t, err, "Debian package hyperrogue-music is not installed (apt-get install hyperrogue-music)")

	fakeDpkg(t, map[string][]string{"docs-only": {"doc/README"}})
	_, err = ListTracks("docs-only")
	assert.ErrorContains(t, err, "Debian package docs-only has no Ogg Vorbis music")
}

func TestSplitTracks(t *testing.T) {
	var tracks []Track
	for i := range 4000 {
		tracks = append(tracks, Track{ID: fmt.Sprintf("/usr/share/music/track%04d.ogg", i)})
	}
	train, test := SplitTracks(tracks, 0.1)
	assert.Equal(t, len(tracks), len(train)+len(test))
	assert.InDelta(t, 0.1, float64(len(test))/float64(len(tracks)), 0.015)

	// Deterministic and independent of order and of the other tracks.
	shuffled := append([]Track(nil), tracks...)
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	_, test2 := SplitTracks(shuffled[:1000], 0.1)
	inTest := map[string]bool{}
	for _, tr := range test {
		inTest[tr.ID] = true
	}
	for _, tr := range test2 {
		assert.True(t, inTest[tr.ID], tr.ID)
	}
	for _, tr := range shuffled[:1000] {
		if inTest[tr.ID] {
			assert.Less(t, SplitKey(tr.ID), 0.1)
		}
	}
	// The key is frozen: FNV-1a 64 of the ID, top 53 bits. Changing it
	// would move tracks between splits.
	assert.Equal(t, float64(uint64(0xaf63dc4c8601ec8c)>>11)/(1<<53), SplitKey("a"))
	assert.True(t, SplitKey("x") >= 0 && SplitKey("x") < 1)
	_, none := SplitTracks(tracks, 0)
	assert.Empty(t, none)
}

// musicInstalled skips unless every package is installed, naming the
// missing ones.
func musicInstalled(t *testing.T, pkgs ...string) {
	t.Helper()
	var missing []string
	for _, p := range pkgs {
		if _, err := PackageFiles(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Skipf("Debian packages not installed: %s (apt-get install %s)", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
}

func TestRealMusicTracks(t *testing.T) {
	musicInstalled(t, MusicPackages...)
	tracks, err := ListTracks()
	require.NoError(t, err)
	perPkg := map[string]int{}
	total := 0.0
	for _, tr := range tracks {
		perPkg[tr.Package]++
		total += tr.Duration
		assert.Greater(t, tr.Duration, 0.0, tr.ID)
		assert.Contains(t, []int{11025, 22050, 44100, 48000}, tr.SampleRate, tr.ID)
		assert.Greater(t, tr.Duration, 30.0, "%s: music, not an effect", tr.ID)
		if strings.HasPrefix(tr.Package, "fretsonfire") {
			assert.GreaterOrEqual(t, len(tr.Stems), 2, "%s: song and guitar stems", tr.ID)
		}
	}
	for _, p := range MusicPackages {
		assert.Positive(t, perPkg[p], p)
	}
	t.Logf("%d tracks, %.1f hours: %v", len(tracks), total/3600, perPkg)
	train, test := SplitTracks(tracks, 0.1)
	assert.NotEmpty(t, train)
	assert.NotEmpty(t, test)
}

func TestRealMusicPrepare(t *testing.T) {
	musicInstalled(t, "nexuiz-music", "fretsonfire-songs-sectoid")
	requireOggdec(t)
	tracks, err := ListTracks("nexuiz-music", "fretsonfire-songs-sectoid")
	require.NoError(t, err)
	var thunder, song Track
	for _, tr := range tracks {
		if strings.HasSuffix(tr.ID, ":sound/cdtracks/thunder.ogg") {
			thunder = tr
		}
		if strings.HasSuffix(tr.ID, "/Metal madness") {
			song = tr
		}
	}
	require.NotEmpty(t, thunder.ID, "nexuiz-music's thunder.ogg, inside music.pk3")
	require.NotEmpty(t, song.ID, "fretsonfire-songs-sectoid's Metal madness")
	cache := t.TempDir()

	// A pk3 member, decoded as it is.
	p, err := PrepareTrack(thunder, PrepareOptions{CacheDir: cache})
	require.NoError(t, err)
	assert.Equal(t, thunder.SampleRate, p.SampleRate)
	assert.InDelta(t, thunder.Duration, p.Duration(), 0.05)
	a, err := ReadWAV(p.WAV)
	require.NoError(t, err)
	assert.Greater(t, Loudness(a), -40.0, "music, not silence")
	// A second call reuses the file.
	st, _ := os.Stat(p.WAV)
	p2, err := PrepareTrack(thunder, PrepareOptions{CacheDir: cache})
	require.NoError(t, err)
	st2, _ := os.Stat(p2.WAV)
	assert.Equal(t, p.WAV, p2.WAV)
	assert.Equal(t, st.ModTime(), st2.ModTime())

	// Stems summed and mixed down.
	m, err := PrepareTrack(song, PrepareOptions{CacheDir: cache, Mono: true})
	require.NoError(t, err)
	assert.Equal(t, 1, m.Channels)
	assert.InDelta(t, song.Duration, m.Duration(), 0.05)
	assert.NotEqual(t, p.WAV, m.WAV)
	ents, _ := os.ReadDir(cache)
	assert.Len(t, ents, 2, "no temporary files left")

	// VampNet-style excerpts of real music: 44.1 kHz mono, -30 LUFS cutoff.
	l := &ExcerptLoader{Tracks: []Prepared{p, m}, SampleRate: 44100, Duration: 1, LoudnessCutoff: -30, Mono: true, WithoutReplacement: true}
	for i := range 4 {
		ex, err := l.Item(i)
		require.NoError(t, err)
		assert.Equal(t, 44100, ex.Audio.Len())
		assert.True(t, ex.Salient, "item %d: %v LUFS after %d tries", i, ex.Loudness, ex.Tries)
	}
}
