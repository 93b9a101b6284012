package audio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Audio is a multi-channel signal. Channels are planar, Channels[c][i]
// being sample i of channel c, because every consumer here (resampling,
// loudness filters, downmix, the [B, C, T] tensors of audiotools) works a
// channel at a time. All channels have the same length.
type Audio struct {
	SampleRate int
	Channels   [][]float32
}

// NewAudio is a silent signal of the given shape.
func NewAudio(sampleRate, channels, frames int) *Audio {
	a := &Audio{SampleRate: sampleRate, Channels: make([][]float32, channels)}
	for c := range a.Channels {
		a.Channels[c] = make([]float32, frames)
	}
	return a
}

// Len is the number of frames (samples per channel).
func (a *Audio) Len() int {
	if len(a.Channels) == 0 {
		return 0
	}
	return len(a.Channels[0])
}

// NumChannels is the channel count.
func (a *Audio) NumChannels() int { return len(a.Channels) }

// Duration is the length in seconds.
func (a *Audio) Duration() float64 {
	if a.SampleRate <= 0 {
		return 0
	}
	return float64(a.Len()) / float64(a.SampleRate)
}

// Clone is a deep copy.
func (a *Audio) Clone() *Audio {
	b := &Audio{SampleRate: a.SampleRate, Channels: make([][]float32, len(a.Channels))}
	for c, ch := range a.Channels {
		b.Channels[c] = append([]float32(nil), ch...)
	}
	return b
}

// check reports a malformed signal: callers' data, so an error, not a panic.
func (a *Audio) check() error {
	if a == nil {
		return errors.New("nil audio")
	}
	if a.SampleRate <= 0 {
		return fmt.Errorf("sample rate %d, want > 0", a.SampleRate)
	}
	if len(a.Channels) == 0 {
		return errors.New("zero channels")
	}
	for c, ch := range a.Channels {
		if len(ch) != len(a.Channels[0]) {
			return fmt.Errorf("channel %d has %d samples, channel 0 has %d", c, len(ch), len(a.Channels[0]))
		}
	}
	return nil
}

// WAV format tags (the fmt chunk's wFormatTag).
const (
	formatPCM        = 1
	formatFloat      = 3
	formatExtensible = 0xFFFE
)

// subformatTail is the part of a WAVE_FORMAT_EXTENSIBLE SubFormat GUID after
// its first two bytes, which hold the format tag (KSDATAFORMAT_SUBTYPE_PCM
// is 00000001-0000-0010-8000-00aa00389b71).
var subformatTail = []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// WAVInfo is what a WAV file's header says.
type WAVInfo struct {
	SampleRate int
	Channels   int
	// Format is formatPCM (1) or formatFloat (3), the extensible subformat
	// resolved; BytesPerSample is the container size (1-4 for PCM, 4 or 8
	// for float).
	Format         int
	BytesPerSample int
	Frames         int64
	dataOffset     int64
}

// Duration is the length in seconds.
func (w WAVInfo) Duration() float64 { return float64(w.Frames) / float64(w.SampleRate) }

// ReadWAVInfo reads a WAV file's header without its samples.
func ReadWAVInfo(path string) (WAVInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return WAVInfo{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return WAVInfo{}, err
	}
	info, err := parseWAVHeader(f, st.Size())
	if err != nil {
		return WAVInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// ReadWAV reads a whole WAV file. Integer PCM is scaled by 2^(bits-1) (8-bit
// PCM, which WAV stores unsigned, is offset by 128 first), so samples lie in
// [-1, 1) as soundfile, and so audiotools, reads them; float files are read
// as they are.
func ReadWAV(path string) (*Audio, error) {
	return ReadWAVFrames(path, 0, -1)
}

// ReadWAVFrames reads frames [start, start+n) of a WAV file, fewer where the
// file ends first; n < 0 reads to the end. Only those frames are read, so an
// excerpt of a long track costs its own length.
func ReadWAVFrames(path string, start, n int64) (*Audio, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	a, err := decodeWAV(f, st.Size(), start, n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// DecodeWAV decodes a whole WAV file held in memory; name is used in errors.
func DecodeWAV(name string, b []byte) (*Audio, error) {
	a, err := decodeWAV(bytes.NewReader(b), int64(len(b)), 0, -1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

func decodeWAV(r io.ReaderAt, size, start, n int64) (*Audio, error) {
	info, err := parseWAVHeader(r, size)
	if err != nil {
		return nil, err
	}
	if start < 0 {
		return nil, fmt.Errorf("start frame %d < 0", start)
	}
	if start > info.Frames {
		start = info.Frames
	}
	if n < 0 || start+n > info.Frames {
		n = info.Frames - start
	}
	block := int64(info.BytesPerSample * info.Channels)
	buf := make([]byte, n*block)
	if len(buf) > 0 {
		if _, err := r.ReadAt(buf, info.dataOffset+start*block); err != nil {
			return nil, fmt.Errorf("reading data chunk: %w", err)
		}
	}
	a := NewAudio(info.SampleRate, info.Channels, int(n))
	bps := info.BytesPerSample
	for i := 0; i < int(n); i++ {
		for c := 0; c < info.Channels; c++ {
			p := buf[(i*info.Channels+c)*bps:]
			a.Channels[c][i] = decodeSample(p, info.Format, bps)
		}
	}
	return a, nil
}

func decodeSample(p []byte, format, bps int) float32 {
	if format == formatFloat {
		if bps == 4 {
			return math.Float32frombits(binary.LittleEndian.Uint32(p))
		}
		return float32(math.Float64frombits(binary.LittleEndian.Uint64(p)))
	}
	switch bps {
	case 1:
		return float32(int(p[0])-128) / 128
	case 2:
		return float32(int16(binary.LittleEndian.Uint16(p))) / 32768
	case 3:
		v := int32(uint32(p[0])<<8|uint32(p[1])<<16|uint32(p[2])<<24) >> 8
		return float32(float64(v) / 8388608)
	default:
		return float32(float64(int32(binary.LittleEndian.Uint32(p))) / 2147483648)
	}
}

// parseWAVHeader walks the RIFF chunks: fmt and data are required, any
// other chunk (LIST, fact, cue, ...) is skipped, and a chunk of odd size is
// followed by a pad byte, as RIFF requires. Sizes in the header are checked
// against the file's size before anything is allocated.
func parseWAVHeader(r io.ReaderAt, size int64) (WAVInfo, error) {
	var hdr [12]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return WAVInfo{}, fmt.Errorf("not a RIFF file: only %d bytes", size)
	}
	if string(hdr[0:4]) != "RIFF" {
		if string(hdr[0:4]) == "RIFX" || string(hdr[0:4]) == "RF64" {
			return WAVInfo{}, fmt.Errorf("%s files are not supported, only little-endian RIFF", hdr[0:4])
		}
		return WAVInfo{}, fmt.Errorf("not a RIFF file (starts with %q)", hdr[0:4])
	}
	if string(hdr[8:12]) != "WAVE" {
		return WAVInfo{}, fmt.Errorf("RIFF file of form %q, not WAVE", hdr[8:12])
	}
	var info WAVInfo
	haveFmt, haveData := false, false
	var dataSize int64
	var blockAlign, bits int
	pos := int64(12)
	for pos+8 <= size && !(haveFmt && haveData) {
		var ch [8]byte
		if _, err := r.ReadAt(ch[:], pos); err != nil {
			return WAVInfo{}, fmt.Errorf("chunk header at byte %d: %w", pos, err)
		}
		id := string(ch[0:4])
		csize := int64(binary.LittleEndian.Uint32(ch[4:8]))
		body := pos + 8
		switch id {
		case "fmt ":
			if csize < 16 {
				return WAVInfo{}, fmt.Errorf("fmt chunk of %d bytes, want at least 16", csize)
			}
			if body+csize > size {
				return WAVInfo{}, fmt.Errorf("truncated fmt chunk: %d bytes declared, %d in the file", csize, size-body)
			}
			b := make([]byte, min(csize, 40))
			if _, err := r.ReadAt(b, body); err != nil {
				return WAVInfo{}, fmt.Errorf("fmt chunk: %w", err)
			}
			tag := int(binary.LittleEndian.Uint16(b[0:2]))
			info.Channels = int(binary.LittleEndian.Uint16(b[2:4]))
			info.SampleRate = int(binary.LittleEndian.Uint32(b[4:8]))
			blockAlign = int(binary.LittleEndian.Uint16(b[12:14]))
			bits = int(binary.LittleEndian.Uint16(b[14:16]))
			if tag == formatExtensible {
				if len(b) < 40 {
					return WAVInfo{}, fmt.Errorf("WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes, want 40", csize)
				}
				if !bytes.Equal(b[26:40], subformatTail) {
					return WAVInfo{}, fmt.Errorf("WAVE_FORMAT_EXTENSIBLE with unknown subformat GUID % x", b[24:40])
				}
				tag = int(binary.LittleEndian.Uint16(b[24:26]))
			}
			if tag != formatPCM && tag != formatFloat {
				return WAVInfo{}, fmt.Errorf("unsupported format tag %d (0x%04x): only PCM (1), IEEE float (3) and extensible with those", tag, tag)
			}
			info.Format = tag
			haveFmt = true
		case "data":
			info.dataOffset = body
			if csize == 0xFFFFFFFF { // written while streaming: the rest of the file
				csize = size - body
			}
			dataSize = csize
			haveData = true
			if !haveFmt {
				// Some writers put fmt after data; keep looking for it.
				if body+csize > size {
					csize = size - body
				}
			}
		}
		pos = body + csize + csize&1
	}
	if !haveFmt {
		return WAVInfo{}, errors.New("no fmt chunk")
	}
	if !haveData {
		return WAVInfo{}, errors.New("no data chunk")
	}
	if info.Channels == 0 {
		return WAVInfo{}, errors.New("zero channels")
	}
	if info.SampleRate == 0 {
		return WAVInfo{}, errors.New("sample rate 0")
	}
	if blockAlign == 0 || blockAlign%info.Channels != 0 {
		return WAVInfo{}, fmt.Errorf("block align %d is not a multiple of %d channels", blockAlign, info.Channels)
	}
	info.BytesPerSample = blockAlign / info.Channels
	if bits == 0 || bits > 8*info.BytesPerSample {
		return WAVInfo{}, fmt.Errorf("%d bits per sample in %d-byte containers", bits, info.BytesPerSample)
	}
	switch {
	case info.Format == formatPCM && info.BytesPerSample >= 1 && info.BytesPerSample <= 4:
	case info.Format == formatFloat && (info.BytesPerSample == 4 || info.BytesPerSample == 8):
	default:
		kind := map[int]string{formatPCM: "PCM", formatFloat: "float"}[info.Format]
		return WAVInfo{}, fmt.Errorf("unsupported %s sample size of %d bytes", kind, info.BytesPerSample)
	}
	if info.dataOffset+dataSize > size {
		return WAVInfo{}, fmt.Errorf("truncated data chunk: %d bytes declared, %d in the file", dataSize, size-info.dataOffset)
	}
	if dataSize%int64(blockAlign) != 0 {
		return WAVInfo{}, fmt.Errorf("data chunk of %d bytes is not a whole number of %d-byte frames", dataSize, blockAlign)
	}
	info.Frames = dataSize / int64(blockAlign)
	return info, nil
}

// WAVFormat is a sample format WriteWAV writes.
type WAVFormat int

// The formats written.
const (
	// PCM16 scales by 32768, rounds to nearest (half away from zero) and
	// clips to [-32768, 32767], with no dither: reading divides by 32768,
	// so a sample in [-1, 1) comes back within 1/65536, and 1.0 itself
	// within 1/32768.
	PCM16 WAVFormat = iota
	// Float32 writes IEEE float samples unchanged (WAVE_FORMAT_IEEE_FLOAT,
	// with the fact chunk that format requires), so a round trip is exact.
	Float32
)

// WriteWAV writes a to path in format f. It writes to a temporary file in
// the same directory and renames it, so a reader (a cache lookup) never sees
// a half-written file.
func WriteWAV(path string, a *Audio, f WAVFormat) error {
	if err := a.check(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if f != PCM16 && f != Float32 {
		return fmt.Errorf("writing %s: unknown format %d", path, f)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	w := bufio.NewWriterSize(tmp, 1<<16)
	if err := encodeWAV(w, a, f); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// EncodeWAV is WriteWAV into memory.
func EncodeWAV(a *Audio, f WAVFormat) ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := encodeWAV(&b, a, f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func encodeWAV(w io.Writer, a *Audio, f WAVFormat) error {
	nch, frames := a.NumChannels(), a.Len()
	bps, tag, fmtSize := 2, formatPCM, 16
	if f == Float32 {
		bps, tag, fmtSize = 4, formatFloat, 18 // cbSize = 0 for non-PCM
	}
	data := int64(frames) * int64(nch) * int64(bps)
	riff := 4 + (8 + int64(fmtSize)) + (8 + data + data&1)
	if f == Float32 {
		riff += 12 // fact chunk
	}
	if riff > math.MaxUint32 {
		return fmt.Errorf("%d bytes of samples do not fit a RIFF file (4 GiB)", data)
	}
	le := binary.LittleEndian
	h := []byte("RIFF")
	h = le.AppendUint32(h, uint32(riff))
	h = append(h, "WAVEfmt "...)
	h = le.AppendUint32(h, uint32(fmtSize))
	h = le.AppendUint16(h, uint16(tag))
	h = le.AppendUint16(h, uint16(nch))
	h = le.AppendUint32(h, uint32(a.SampleRate))
	h = le.AppendUint32(h, uint32(a.SampleRate*nch*bps))
	h = le.AppendUint16(h, uint16(nch*bps))
	h = le.AppendUint16(h, uint16(8*bps))
	if f == Float32 {
		h = le.AppendUint16(h, 0)
		h = append(h, "fact"...)
		h = le.AppendUint32(h, 4)
		h = le.AppendUint32(h, uint32(frames))
	}
	h = append(h, "data"...)
	h = le.AppendUint32(h, uint32(data))
	if _, err := w.Write(h); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<16)
	for i := 0; i < frames; i++ {
		for c := 0; c < nch; c++ {
			x := a.Channels[c][i]
			if f == Float32 {
				buf = le.AppendUint32(buf, math.Float32bits(x))
			} else {
				buf = le.AppendUint16(buf, uint16(quantize16(x)))
			}
		}
		if len(buf) >= 1<<16-64 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if data&1 == 1 {
		buf = append(buf, 0)
	}
	_, err := w.Write(buf)
	return err
}

// quantize16 is PCM16's conversion: round(x*32768) clipped, NaN to 0.
func quantize16(x float32) int16 {
	v := math.Round(float64(x) * 32768)
	switch {
	case v != v:
		return 0
	case v > 32767:
		return 32767
	case v < -32768:
		return -32768
	}
	return int16(v)
}
