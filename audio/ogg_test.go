package audio

import (
	"archive/zip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oggPage builds one Ogg page holding packet (under 255 bytes) with a
// valid CRC.
func oggPage(granule int64, seq uint32, packet []byte) []byte {
	le := binary.LittleEndian
	b := []byte("OggS\x00\x00")
	b = le.AppendUint64(b, uint64(granule))
	b = le.AppendUint32(b, 0x1234) // serial
	b = le.AppendUint32(b, seq)
	b = le.AppendUint32(b, 0) // CRC, filled below
	b = append(b, 1, byte(len(packet)))
	b = append(b, packet...)
	var crc uint32
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	le.PutUint32(b[22:26], crc)
	return b
}

func vorbisID(channels, rate int) []byte {
	b := append([]byte{1}, "vorbis"...)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, byte(channels))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	return append(b, make([]byte, 13)...) // bitrates, block sizes, framing
}

// fakeOgg is a header-only Vorbis stream of the given length: enough for
// ReadOggInfo (oggdec would reject it).
func fakeOgg(channels, rate int, frames int64) []byte {
	b := oggPage(0, 0, vorbisID(channels, rate))
	b = append(b, oggPage(-1, 1, []byte("OggS fake capture pattern inside a packet"))...)
	return append(b, oggPage(frames, 2, []byte{0})...)
}

func TestReadOggInfo(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.ogg")
	require.NoError(t, os.WriteFile(p, fakeOgg(2, 44100, 441000), 0o644))
	info, err := ReadOggInfo(Source{Path: p})
	require.NoError(t, err)
	assert.Equal(t, OggInfo{SampleRate: 44100, Channels: 2, Frames: 441000}, info)
	assert.Equal(t, 10.0, info.Duration())

	// The same stream stored in a zip (a pk3), and compressed.
	z := filepath.Join(dir, "music.pk3")
	f, err := os.Create(z)
	require.NoError(t, err)
	zw := zip.NewWriter(f)
	for name, method := range map[string]uint16{"sound/a.ogg": zip.Store, "sound/b.ogg": zip.Deflate} {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		require.NoError(t, err)
		_, err = w.Write(fakeOgg(1, 22050, 22050))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
	for _, m := range []string{"sound/a.ogg", "sound/b.ogg"} {
		info, err = ReadOggInfo(Source{Path: z, Member: m})
		require.NoError(t, err, m)
		assert.Equal(t, OggInfo{SampleRate: 22050, Channels: 1, Frames: 22050}, info, m)
	}
	_, err = ReadOggInfo(Source{Path: z, Member: "sound/c.ogg"})
	assert.ErrorContains(t, err, z+":sound/c.ogg: no such member")
}

func TestReadOggInfoErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]byte{
		"not an Ogg file":                        []byte("RIFF....WAVE"),
		"not Vorbis (oggdec decodes only Vorbis": oggPage(0, 0, append([]byte("OggHead"), make([]byte, 20)...)),
		"an Ogg Opus stream":                     oggPage(0, 0, append([]byte("OpusHead"), make([]byte, 20)...)),
		"truncated first Ogg page":               oggPage(0, 0, vorbisID(2, 44100))[:30],
		"no Ogg page with a granule position":    oggPage(0, 0, vorbisID(2, 44100))[:50],
		"with 0 channels at 44100 Hz":            oggPage(0, 0, vorbisID(0, 44100)),
	}
	cases["the first Ogg packet is not a Vorbis identification header"] = cases["not Vorbis (oggdec decodes only Vorbis"]
	delete(cases, "not Vorbis (oggdec decodes only Vorbis")
	for want, b := range cases {
		p := filepath.Join(dir, "x.ogg")
		require.NoError(t, os.WriteFile(p, b, 0o644))
		_, err := ReadOggInfo(Source{Path: p})
		if assert.Error(t, err, want) {
			assert.Contains(t, err.Error(), p+": ")
			assert.Contains(t, err.Error(), want)
		}
	}
	_, err := ReadOggInfo(Source{Path: filepath.Join(dir, "missing.ogg")})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestDecodeOggNeedsOggdec(t *testing.T) {
	old := oggdec
	oggdec = "oggdec-not-installed-here"
	defer func() { oggdec = old }()
	err := DecodeOgg(Source{Path: "/x/song.ogg"}, filepath.Join(t.TempDir(), "o.wav"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "decoding /x/song.ogg: oggdec not found on PATH: install Debian's vorbis-tools (apt-get install vorbis-tools, or REPRO_MUSIC=1 scripts/install_libtorch.sh)")
}

func TestDecodeOggErrors(t *testing.T) {
	requireOggdec(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "fake.ogg")
	require.NoError(t, os.WriteFile(p, fakeOgg(2, 44100, 100), 0o644))
	dst := filepath.Join(dir, "out.wav")
	err := DecodeOgg(Source{Path: p}, dst)
	require.Error(t, err, "headers alone do not decode")
	assert.Contains(t, err.Error(), "decoding "+p+": oggdec")
	_, err = os.Stat(dst)
	assert.ErrorIs(t, err, os.ErrNotExist, "no output on failure")
	err = DecodeOgg(Source{Path: filepath.Join(dir, "missing.ogg")}, dst)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func requireOggdec(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/oggdec"); err != nil {
		t.Skip("oggdec is not installed (Debian's vorbis-tools)")
	}
}
