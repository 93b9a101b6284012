package audio

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunk is a RIFF chunk with its pad byte when the body is odd.
func chunk(id string, body []byte) []byte {
	b := append([]byte(id), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func riff(chunks ...[]byte) []byte {
	body := []byte("WAVE")
	for _, c := range chunks {
		body = append(body, c...)
	}
	return chunk("RIFF", body)
}

// fmtBody is a 16-byte fmt chunk body.
func fmtBody(tag, channels, rate, bytesPerSample, bits int) []byte {
	le := binary.LittleEndian
	b := le.AppendUint16(nil, uint16(tag))
	b = le.AppendUint16(b, uint16(channels))
	b = le.AppendUint32(b, uint32(rate))
	b = le.AppendUint32(b, uint32(rate*channels*bytesPerSample))
	b = le.AppendUint16(b, uint16(channels*bytesPerSample))
	return le.AppendUint16(b, uint16(bits))
}

// extensible is a 40-byte WAVE_FORMAT_EXTENSIBLE fmt body with subformat sub.
func extensible(sub, channels, rate, bytesPerSample, validBits int) []byte {
	le := binary.LittleEndian
	b := fmtBody(0xFFFE, channels, rate, bytesPerSample, 8*bytesPerSample)
	b = le.AppendUint16(b, 22)
	b = le.AppendUint16(b, uint16(validBits))
	b = le.AppendUint32(b, 3) // front left, front right
	b = le.AppendUint16(b, uint16(sub))
	return append(b, subformatTail...)
}

func TestWAVFormats(t *testing.T) {
	le := binary.LittleEndian
	// Two stereo frames per format: (L0, R0), (L1, R1) = (0.5, -0.25), (-1, 0).
	want := [][]float32{{0.5, -1}, {-0.25, 0}}
	f32 := func(v ...float32) (b []byte) {
		for _, x := range v {
			b = le.AppendUint32(b, math.Float32bits(x))
		}
		return
	}
	f64 := func(v ...float64) (b []byte) {
		for _, x := range v {
			b = le.AppendUint64(b, math.Float64bits(x))
		}
		return
	}
	i16 := func(v ...int16) (b []byte) {
		for _, x := range v {
			b = le.AppendUint16(b, uint16(x))
		}
		return
	}
	i24 := func(v ...int32) (b []byte) {
		for _, x := range v {
			b = append(b, byte(x), byte(x>>8), byte(x>>16))
		}
		return
	}
	i32 := func(v ...int32) (b []byte) {
		for _, x := range v {
			b = le.AppendUint32(b, uint32(x))
		}
		return
	}
	cases := []struct {
		name string
		fmt  []byte
		data []byte
	}{
		{"pcm8", fmtBody(1, 2, 8000, 1, 8), []byte{128 + 64, 128 - 32, 0, 128}},
		{"pcm16", fmtBody(1, 2, 8000, 2, 16), i16(16384, -8192, -32768, 0)},
		{"pcm24", fmtBody(1, 2, 8000, 3, 24), i24(1<<22, -(1 << 21), -(1 << 23), 0)},
		{"pcm32", fmtBody(1, 2, 8000, 4, 32), i32(1<<30, -(1 << 29), math.MinInt32, 0)},
		{"float32", fmtBody(3, 2, 8000, 4, 32), f32(0.5, -0.25, -1, 0)},
		{"float64", fmtBody(3, 2, 8000, 8, 64), f64(0.5, -0.25, -1, 0)},
		{"float32-cbsize", append(fmtBody(3, 2, 8000, 4, 32), 0, 0), f32(0.5, -0.25, -1, 0)},
		{"ext-pcm16", extensible(1, 2, 8000, 2, 16), i16(16384, -8192, -32768, 0)},
		{"ext-pcm24", extensible(1, 2, 8000, 3, 24), i24(1<<22, -(1 << 21), -(1 << 23), 0)},
		// 24 valid bits left-justified in 32-bit containers.
		{"ext-pcm24in32", extensible(1, 2, 8000, 4, 24), i32(1<<30, -(1 << 29), math.MinInt32, 0)},
		{"ext-float32", extensible(3, 2, 8000, 4, 32), f32(0.5, -0.25, -1, 0)},
		{"ext-float64", extensible(3, 2, 8000, 8, 64), f64(0.5, -0.25, -1, 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Unknown chunks before and after, one of odd size (padded).
			b := riff(chunk("LIST", []byte("INFOISFT\x03\x00\x00\x00ab\x00\x00")), chunk("fmt ", c.fmt), chunk("junk", []byte{1, 2, 3}), chunk("data", c.data), chunk("LIST", []byte("xyz")))
			a, err := DecodeWAV(c.name, b)
			require.NoError(t, err)
			assert.Equal(t, 8000, a.SampleRate)
			assert.Equal(t, want, a.Channels)
		})
	}
}

func TestWAVChannelCounts(t *testing.T) {
	for _, nch := range []int{1, 3, 6} {
		a := NewAudio(22050, nch, 5)
		for c := range a.Channels {
			for i := range a.Channels[c] {
				a.Channels[c][i] = float32(c*10+i) / 100
			}
		}
		b, err := EncodeWAV(a, Float32)
		require.NoError(t, err)
		got, err := DecodeWAV("x", b)
		require.NoError(t, err)
		assert.Equal(t, a, got)
	}
}

// An odd-sized data chunk (8-bit mono, 3 frames) is followed by its pad
// byte; the chunk after it is still found, and the pad is not a sample.
func TestWAVOddDataChunk(t *testing.T) {
	b := riff(chunk("data", []byte{128, 255, 0}), chunk("fmt ", fmtBody(1, 1, 100, 1, 8)))
	a, err := DecodeWAV("odd", b)
	require.NoError(t, err, "fmt after data is accepted")
	assert.Equal(t, [][]float32{{0, 127.0 / 128, -1}}, a.Channels)
}

func TestWAVRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a := NewAudio(44100, 2, 1001)
	for i := range a.Len() {
		a.Channels[0][i] = float32(math.Sin(float64(i) * 0.01))
		a.Channels[1][i] = float32(i)/1001*2 - 1 // -1 up to just under 1
	}
	a.Channels[0][7] = 1 // clips to 32767 in PCM16
	a.Channels[1][9] = 1.7
	p := filepath.Join(dir, "f.wav")
	require.NoError(t, WriteWAV(p, a, Float32))
	got, err := ReadWAV(p)
	require.NoError(t, err)
	assert.Equal(t, a, got, "float32 is exact, out-of-range values included")

	p = filepath.Join(dir, "i.wav")
	require.NoError(t, WriteWAV(p, a, PCM16))
	got, err = ReadWAV(p)
	require.NoError(t, err)
	for c := range a.Channels {
		for i, x := range a.Channels[c] {
			if x > 1 {
				assert.Equal(t, float32(32767)/32768, got.Channels[c][i], "clipped")
				continue
			}
			assert.LessOrEqual(t, math.Abs(float64(got.Channels[c][i]-x)), 1.0/32768, "channel %d sample %d", c, i)
		}
	}
	info, err := ReadWAVInfo(p)
	require.NoError(t, err)
	assert.Equal(t, int64(1001), info.Frames)
	assert.Equal(t, 2, info.BytesPerSample)

	part, err := ReadWAVFrames(p, 995, 100)
	require.NoError(t, err)
	assert.Equal(t, 6, part.Len(), "clipped at the end")
	assert.Equal(t, got.Channels[1][995:], part.Channels[1])

	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, ents, 2, "no temporary file left behind")
}

func TestWAVErrors(t *testing.T) {
	good := riff(chunk("fmt ", fmtBody(1, 1, 8000, 2, 16)), chunk("data", make([]byte, 8)))
	cases := []struct {
		name, want string
		b          []byte
	}{
		{"empty", "not a RIFF file", nil},
		{"text", "not a RIFF file", []byte("hello, this is not audio")},
		{"avi", "not WAVE", append([]byte("RIFF\x04\x00\x00\x00AVI "), make([]byte, 8)...)},
		{"truncated", "truncated data chunk: 8 bytes declared, 5 in the file", good[:len(good)-3]},
		{"adpcm", "unsupported format tag 2 ", riff(chunk("fmt ", fmtBody(2, 1, 8000, 2, 4)), chunk("data", nil))},
		{"ext-adpcm", "unsupported format tag 2 ", riff(chunk("fmt ", extensible(2, 1, 8000, 2, 16)), chunk("data", nil))},
		{"zero channels", "zero channels", riff(chunk("fmt ", fmtBody(1, 0, 8000, 2, 16)), chunk("data", nil))},
		{"no data", "no data chunk", riff(chunk("fmt ", fmtBody(1, 1, 8000, 2, 16)))},
		{"no fmt", "no fmt chunk", riff(chunk("data", make([]byte, 4)))},
		{"short fmt", "fmt chunk of 12 bytes", riff(chunk("fmt ", fmtBody(1, 1, 8000, 2, 16)[:12]), chunk("data", nil))},
		{"float16", "unsupported float sample size of 2 bytes", riff(chunk("fmt ", fmtBody(3, 1, 8000, 2, 16)), chunk("data", nil))},
		{"partial frame", "not a whole number of 4-byte frames", riff(chunk("fmt ", fmtBody(1, 2, 8000, 2, 16)), chunk("data", make([]byte, 6)))},
		{"rf64", "RF64 files are not supported", append([]byte("RF64"), good[4:]...)},
	}
	for _, c := range cases {
		_, err := DecodeWAV("clip.wav", c.b)
		if assert.Error(t, err, c.name) {
			assert.Contains(t, err.Error(), "clip.wav: ", c.name)
			assert.Contains(t, err.Error(), c.want, c.name)
		}
	}
	_, err := DecodeWAV("good.wav", good)
	require.NoError(t, err)

	// From a file, the error names the path.
	p := filepath.Join(t.TempDir(), "bad.wav")
	require.NoError(t, os.WriteFile(p, good[:30], 0o644))
	_, err = ReadWAV(p)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), p+": "), err.Error())
	_, err = ReadWAV(filepath.Join(t.TempDir(), "missing.wav"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	assert.ErrorContains(t, WriteWAV(filepath.Join(t.TempDir(), "z.wav"), &Audio{SampleRate: 8000}, PCM16), "zero channels")
}

// FuzzDecodeWAV checks that no input panics or allocates beyond its size.
func FuzzDecodeWAV(f *testing.F) {
	f.Add(riff(chunk("fmt ", fmtBody(1, 1, 8000, 2, 16)), chunk("data", make([]byte, 8))))
	f.Add(riff(chunk("fmt ", extensible(3, 2, 8000, 4, 32)), chunk("data", make([]byte, 8))))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeWAV("f", b)
		if err == nil && a.Len()*a.NumChannels() > len(b) {
			t.Fatalf("%d samples from %d bytes", a.Len()*a.NumChannels(), len(b))
		}
	})
}
