package tensorboard

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// crc32cBitwise is CRC-32C computed bit by bit (reflected polynomial
// 0x82F63B78), independent of hash/crc32's tables.
func crc32cBitwise(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x82F63B78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

func TestMaskedCRCIsTFRecords(t *testing.T) {
	assert.Equal(t, uint32(0xE3069283), crc32cBitwise([]byte("123456789")), "the CRC-32C check value")
	for _, s := range []string{"", "a", "123456789", "brain.Event:2"} {
		c := crc32cBitwise([]byte(s))
		assert.Equal(t, ((c>>15)|(c<<17))+0xa282ead8, maskedCRC([]byte(s)), s)
	}
}

// rawRecords splits an event file into its records' data, checking both
// CRCs with the bitwise CRC.
func rawRecords(t *testing.T, b []byte) [][]byte {
	t.Helper()
	mask := func(c uint32) uint32 { return ((c >> 15) | (c << 17)) + 0xa282ead8 }
	var out [][]byte
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), 12)
		n := binary.LittleEndian.Uint64(b[:8])
		require.Equal(t, mask(crc32cBitwise(b[:8])), binary.LittleEndian.Uint32(b[8:12]), "length CRC")
		require.GreaterOrEqual(t, uint64(len(b)), 16+n)
		data := b[12 : 12+n]
		require.Equal(t, mask(crc32cBitwise(data)), binary.LittleEndian.Uint32(b[12+n:16+n]), "data CRC")
		out = append(out, data)
		b = b[16+n:]
	}
	return out
}

func TestWriterWritesEventProtosReadBackExactly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	w, err := NewWriter(dir)
	require.NoError(t, err)
	host, _ := os.Hostname()
	assert.Regexp(t, `^events\.out\.tfevents\.\d+\.`+regexpQuote(host)+`$`, filepath.Base(w.Path()))

	wall := time.Unix(1, 500_000_000) // 1.5 s
	require.NoError(t, w.Scalar("a", 3, 2, wall))
	values := []float64{0.1, -1e-7, 6.4501234567, math.Pi, 1e30, 0}
	for i, v := range values {
		require.NoError(t, w.Scalar("train/loss", int64(10*(i+1)), v, wall.Add(time.Duration(i)*time.Second)))
		require.NoError(t, w.Scalar("lr", int64(10*(i+1)), v/2, wall.Add(time.Duration(i)*time.Second)))
	}
	require.NoError(t, w.Flush())
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "closing twice")
	assert.Error(t, w.Scalar("late", 1, 1, wall))

	raw, err := os.ReadFile(w.Path())
	require.NoError(t, err)
	recs := rawRecords(t, raw)
	require.Len(t, recs, 2+2*len(values))
	assert.True(t, bytes.HasSuffix(recs[0], append([]byte{0x1a, 13}, "brain.Event:2"...)), "file_version, field 3: %x", recs[0])
	// Event{wall_time: 1.5, step: 3, summary {value {tag: "a", simple_value: 2}}} as protoc encodes it.
	want := []byte{0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0, 0, 0, 0x40}
	assert.Equal(t, want, recs[1])

	got, err := ReadScalars(w.Path())
	require.NoError(t, err)
	require.Len(t, got, 1+2*len(values))
	assert.Equal(t, Scalar{Tag: "a", Step: 3, Value: 2, WallTime: wall}, got[0])
	for i, v := range values {
		l, r := got[1+2*i], got[2+2*i]
		assert.Equal(t, "train/loss", l.Tag)
		assert.Equal(t, int64(10*(i+1)), l.Step)
		assert.Equal(t, float32(v), l.Value, "exactly the float32")
		assert.Equal(t, "lr", r.Tag)
		assert.Equal(t, float32(v/2), r.Value)
		assert.Equal(t, wall.Add(time.Duration(i)*time.Second).Unix(), l.WallTime.Unix())
	}

	files, err := EventFiles(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{w.Path()}, files)
}

func regexpQuote(s string) string {
	r := strings.NewReplacer(".", `\.`, "-", `\-`)
	return r.Replace(s)
}

func TestSecondWriterInTheSameSecondGetsItsOwnFile(t *testing.T) {
	dir := t.TempDir()
	a, err := NewWriter(dir)
	require.NoError(t, err)
	b, err := NewWriter(dir)
	require.NoError(t, err)
	assert.NotEqual(t, a.Path(), b.Path())
	require.NoError(t, a.Scalar("x", 1, 1, time.Now()))
	require.NoError(t, b.Scalar("x", 2, 2, time.Now()))
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	for _, p := range []string{a.Path(), b.Path()} {
		s, err := ReadScalars(p)
		require.NoError(t, err)
		assert.Len(t, s, 1)
	}
}

func TestReaderRejectsCorruptionAndTruncation(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir)
	require.NoError(t, err)
	require.NoError(t, w.Scalar("loss", 1, 0.5, time.Now()))
	require.NoError(t, w.Close())
	raw, err := os.ReadFile(w.Path())
	require.NoError(t, err)

	bad := filepath.Join(dir, "bad")
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		msg  string
	}{
		{"data byte", func(b []byte) []byte { b[len(b)-6] ^= 1; return b }, "data CRC"},
		{"length byte", func(b []byte) []byte { b[0] ^= 1; return b }, "length CRC"},
		{"cut short", func(b []byte) []byte { return b[:len(b)-3] }, "truncated"},
	} {
		b := append([]byte(nil), raw...)
		require.NoError(t, os.WriteFile(bad, tc.mod(b), 0o644))
		_, err := ReadScalars(bad)
		assert.ErrorContains(t, err, tc.msg, tc.name)
	}
}
