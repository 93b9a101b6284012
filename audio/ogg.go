package audio

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Source is one Ogg Vorbis file: Path on disk, or, when Member is set, a
// member of the zip archive at Path (Nexuiz ships its music inside
// data/music.pk3, a zip).
type Source struct {
	Path   string
	Member string
}

func (s Source) String() string {
	if s.Member == "" {
		return s.Path
	}
	return s.Path + ":" + s.Member
}

// OggInfo is what an Ogg Vorbis stream's headers say.
type OggInfo struct {
	SampleRate int
	Channels   int
	// Frames is the granule position of the last page: the stream's length
	// in samples per channel (for a stream that starts at granule 0, as
	// every file here does).
	Frames int64
}

// Duration is the length in seconds.
func (o OggInfo) Duration() float64 { return float64(o.Frames) / float64(o.SampleRate) }

// ReadOggInfo reads a source's Vorbis identification header and its last
// page's granule position, without decoding: enough to list durations.
func ReadOggInfo(s Source) (OggInfo, error) {
	info, err := withReaderAt(s, parseOggInfo)
	if err != nil {
		return OggInfo{}, fmt.Errorf("%s: %w", s, err)
	}
	return info, nil
}

// withReaderAt opens a source for random access. A zip member must be
// stored uncompressed (as pk3 music is); a compressed one is read whole.
func withReaderAt(s Source, f func(io.ReaderAt, int64) (OggInfo, error)) (OggInfo, error) {
	if s.Member == "" {
		fh, err := os.Open(s.Path)
		if err != nil {
			return OggInfo{}, err
		}
		defer fh.Close()
		st, err := fh.Stat()
		if err != nil {
			return OggInfo{}, err
		}
		return f(fh, st.Size())
	}
	z, err := zip.OpenReader(s.Path)
	if err != nil {
		return OggInfo{}, err
	}
	defer z.Close()
	for _, m := range z.File {
		if m.Name != s.Member {
			continue
		}
		if m.Method == zip.Store {
			off, err := m.DataOffset()
			if err != nil {
				return OggInfo{}, err
			}
			fh, err := os.Open(s.Path)
			if err != nil {
				return OggInfo{}, err
			}
			defer fh.Close()
			return f(io.NewSectionReader(fh, off, int64(m.UncompressedSize64)), int64(m.UncompressedSize64))
		}
		rc, err := m.Open()
		if err != nil {
			return OggInfo{}, err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return OggInfo{}, err
		}
		return f(bytes.NewReader(b), int64(len(b)))
	}
	return OggInfo{}, errors.New("no such member in the archive")
}

// parseOggInfo reads the first page, which must hold the Vorbis
// identification packet (0x01 "vorbis", version, channels, rate), and
// scans the file's tail backwards for the last page's granule position.
func parseOggInfo(r io.ReaderAt, size int64) (OggInfo, error) {
	var head [27 + 255 + 30]byte
	n, _ := r.ReadAt(head[:], 0)
	if n < 27 || string(head[0:4]) != "OggS" {
		return OggInfo{}, errors.New("not an Ogg file")
	}
	nseg := int(head[26])
	body := 27 + nseg
	if n < body+16 {
		return OggInfo{}, errors.New("truncated first Ogg page")
	}
	p := head[body:n]
	switch {
	case len(p) >= 8 && string(p[0:8]) == "OpusHead":
		return OggInfo{}, errors.New("an Ogg Opus stream, not Vorbis (oggdec decodes only Vorbis)")
	case len(p) < 16 || p[0] != 1 || string(p[1:7]) != "vorbis":
		return OggInfo{}, errors.New("the first Ogg packet is not a Vorbis identification header")
	}
	info := OggInfo{Channels: int(p[11]), SampleRate: int(binary.LittleEndian.Uint32(p[12:16]))}
	if info.Channels == 0 || info.SampleRate == 0 {
		return OggInfo{}, fmt.Errorf("Vorbis header with %d channels at %d Hz", info.Channels, info.SampleRate)
	}
	// A page is at most 27+255+255*255 bytes: the last one starts in the
	// last 64 KiB plus a margin.
	tail := min(size, 70000)
	buf := make([]byte, tail)
	if _, err := r.ReadAt(buf, size-tail); err != nil && !errors.Is(err, io.EOF) {
		return OggInfo{}, err
	}
	for i := len(buf) - 27; i >= 0; i-- {
		if buf[i] != 'O' || string(buf[i:i+4]) != "OggS" || buf[i+4] != 0 {
			continue
		}
		if !validPage(buf[i:]) { // "OggS" by chance inside a packet
			continue
		}
		g := int64(binary.LittleEndian.Uint64(buf[i+6 : i+14]))
		if g >= 0 { // -1: no packet ends on this page
			info.Frames = g
			return info, nil
		}
	}
	return OggInfo{}, errors.New("no Ogg page with a granule position in the last 70 kB (truncated?)")
}

// oggdec is the decoder's command name; tests point it elsewhere.
var oggdec = "oggdec"

// errNoOggdec names the package that provides oggdec.
var errNoOggdec = errors.New("oggdec not found on PATH: install Debian's vorbis-tools (apt-get install vorbis-tools, or REPRO_MUSIC=1 scripts/install_libtorch.sh), which decodes the Ogg Vorbis music")

// DecodeOgg decodes an Ogg Vorbis source into a 16-bit PCM WAV file at dst
// by running oggdec (Debian's vorbis-tools): repro has no Go Vorbis
// decoder. A zip member is first copied out next to dst. dst appears only
// when decoding succeeded.
func DecodeOgg(s Source, dst string) error {
	bin, err := exec.LookPath(oggdec)
	if err != nil {
		return fmt.Errorf("decoding %s: %w", s, errNoOggdec)
	}
	src := s.Path
	if s.Member != "" {
		tmp, err := extractMember(s, filepath.Dir(dst))
		if err != nil {
			return fmt.Errorf("decoding %s: %w", s, err)
		}
		defer os.Remove(tmp)
		src = tmp
	} else if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("decoding %s: %w", s, err)
	}
	tmp := dst + ".part.wav"
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--quiet", "--bits", "16", "--output", tmp, src)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 500 {
			msg = "..." + msg[len(msg)-500:]
		}
		return fmt.Errorf("decoding %s: oggdec: %v: %s", s, err, msg)
	}
	if _, err := ReadWAVInfo(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("decoding %s: oggdec wrote a bad WAV: %w", s, err)
	}
	return os.Rename(tmp, dst)
}

// extractMember copies a zip member into dir and returns its path.
func extractMember(s Source, dir string) (string, error) {
	z, err := zip.OpenReader(s.Path)
	if err != nil {
		return "", err
	}
	defer z.Close()
	for _, m := range z.File {
		if m.Name != s.Member {
			continue
		}
		rc, err := m.Open()
		if err != nil {
			return "", err
		}
		defer rc.Close()
		out, err := os.CreateTemp(dir, ".member-*.ogg")
		if err != nil {
			return "", err
		}
		if _, err := io.Copy(out, rc); err != nil {
			out.Close()
			os.Remove(out.Name())
			return "", err
		}
		return out.Name(), out.Close()
	}
	return "", errors.New("no such member in the archive")
}

// validPage reports whether b starts with a whole Ogg page whose CRC
// matches.
func validPage(b []byte) bool {
	if len(b) < 27 {
		return false
	}
	nseg := int(b[26])
	if len(b) < 27+nseg {
		return false
	}
	n := 27 + nseg
	for _, l := range b[27 : 27+nseg] {
		n += int(l)
	}
	if len(b) < n {
		return false
	}
	want := binary.LittleEndian.Uint32(b[22:26])
	var crc uint32
	for i, c := range b[:n] {
		if i >= 22 && i < 26 {
			c = 0
		}
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc == want
}

// oggCRCTable is Ogg's CRC-32: polynomial 0x04c11db7, unreflected, initial
// value 0.
var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return
}()
