// Package tensorboard writes and reads TensorBoard event files: scalars
// logged during training, in the files TensorBoard's own writers produce
// (events.out.tfevents.<unix>.<host>), so `tensorboard --logdir runs/`
// shows a repro run next to PyTorch and TensorFlow runs.
//
// An event file is a sequence of TFRecords: the data's length as a
// little-endian uint64, the masked CRC32C of those 8 bytes, the data, and the
// masked CRC32C of the data. Each record's data is an Event protocol buffer
// (tensorflow/core/util/event.proto): the first holds file_version
// "brain.Event:2", each later one a wall time, a step and a Summary with one
// simple_value per tag. The protos are encoded by hand with protowire; only
// the fields used here are written and read.
package tensorboard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// FileVersion is the first event of every file.
const FileVersion = "brain.Event:2"

// Field numbers of tensorflow.Event, tensorflow.Summary and Summary.Value.
const (
	eventWallTime    protowire.Number = 1 // double
	eventStep        protowire.Number = 2 // int64
	eventFileVersion protowire.Number = 3 // string
	eventSummary     protowire.Number = 5 // Summary
	summaryValue     protowire.Number = 1 // repeated Value
	valueTag         protowire.Number = 1 // string
	valueSimpleValue protowire.Number = 2 // float
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's masked CRC32C.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

// Writer appends scalar events to one event file. It is safe for
// concurrent use.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	path string
}

// NewWriter creates dir if needed and a new event file in it, named
// events.out.tfevents.<unix seconds>.<host> (with a .N suffix if that name
// is taken, as when a run resumes within the same second), and writes the
// file-version event.
func NewWriter(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	now := time.Now()
	base := filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%d.%s", now.Unix(), host))
	path := base
	var f *os.File
	for i := 1; ; i++ {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i > 1000 {
			return nil, err
		}
		path = fmt.Sprintf("%s.%d", base, i)
	}
	w := &Writer{f: f, w: bufio.NewWriter(f), path: path}
	var ev []byte
	ev = protowire.AppendTag(ev, eventWallTime, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, math.Float64bits(wallSeconds(now)))
	ev = protowire.AppendTag(ev, eventFileVersion, protowire.BytesType)
	ev = protowire.AppendString(ev, FileVersion)
	if err := w.record(ev); err != nil {
		f.Close()
		return nil, err
	}
	if err := w.w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

func wallSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Scalar appends one scalar: tag's value at step, logged at wall. TensorBoard
// stores simple values as float32, so value is rounded to float32.
func (w *Writer) Scalar(tag string, step int64, value float64, wall time.Time) error {
	var v []byte
	v = protowire.AppendTag(v, valueTag, protowire.BytesType)
	v = protowire.AppendString(v, tag)
	v = protowire.AppendTag(v, valueSimpleValue, protowire.Fixed32Type)
	v = protowire.AppendFixed32(v, math.Float32bits(float32(value)))
	var sum []byte
	sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
	sum = protowire.AppendBytes(sum, v)
	var ev []byte
	ev = protowire.AppendTag(ev, eventWallTime, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, math.Float64bits(wallSeconds(wall)))
	ev = protowire.AppendTag(ev, eventStep, protowire.VarintType)
	ev = protowire.AppendVarint(ev, uint64(step))
	ev = protowire.AppendTag(ev, eventSummary, protowire.BytesType)
	ev = protowire.AppendBytes(ev, sum)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("tensorboard: write to a closed writer")
	}
	return w.record(ev)
}

// record writes one TFRecord; the caller holds mu (or owns w).
func (w *Writer) record(data []byte) error {
	var head [12]byte
	binary.LittleEndian.PutUint64(head[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(head[8:], maskedCRC(head[:8]))
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], maskedCRC(data))
	for _, b := range [][]byte{head[:], data, tail[:]} {
		if _, err := w.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes buffered events to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	return w.w.Flush()
}

// Close flushes and closes the file; closing twice is harmless.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.w.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// Event is one decoded event: the file-version event has Version set, a
// scalar event Values.
type Event struct {
	WallTime float64
	Step     int64
	Version  string
	Values   []Value
}

// Value is one tag's simple value.
type Value struct {
	Tag   string
	Value float32
}

// Scalar is one logged scalar, as ReadScalars returns it.
type Scalar struct {
	Tag      string
	Step     int64
	Value    float32
	WallTime time.Time
}

// ReadEvents decodes every record of an event file, checking both CRCs of
// each. A record cut short at the end (a writer killed mid-write) is an
// error naming its offset, as is any corruption.
func ReadEvents(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var events []Event
	var off int64
	for {
		var head [12]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if err == io.EOF {
				return events, nil
			}
			return events, fmt.Errorf("%s: record at byte %d: truncated header", path, off)
		}
		if got, want := binary.LittleEndian.Uint32(head[8:]), maskedCRC(head[:8]); got != want {
			return events, fmt.Errorf("%s: record at byte %d: length CRC %#x, want %#x", path, off, got, want)
		}
		n := binary.LittleEndian.Uint64(head[:8])
		if n > 1<<30 {
			return events, fmt.Errorf("%s: record at byte %d: implausible length %d", path, off, n)
		}
		data := make([]byte, n+4)
		if _, err := io.ReadFull(r, data); err != nil {
			return events, fmt.Errorf("%s: record at byte %d: truncated data", path, off)
		}
		data, tail := data[:n], data[n:]
		if got, want := binary.LittleEndian.Uint32(tail), maskedCRC(data); got != want {
			return events, fmt.Errorf("%s: record at byte %d: data CRC %#x, want %#x", path, off, got, want)
		}
		ev, err := decodeEvent(data)
		if err != nil {
			return events, fmt.Errorf("%s: record at byte %d: %w", path, off, err)
		}
		events = append(events, ev)
		off += 12 + int64(n) + 4
	}
}

// ReadScalars reads every scalar of an event file in order; the first event
// must be the file version.
func ReadScalars(path string) ([]Scalar, error) {
	events, err := ReadEvents(path)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 || events[0].Version != FileVersion {
		return nil, fmt.Errorf("%s: the first event is not file_version %q", path, FileVersion)
	}
	var out []Scalar
	for _, ev := range events[1:] {
		sec, frac := math.Modf(ev.WallTime)
		wall := time.Unix(int64(sec), int64(frac*1e9))
		for _, v := range ev.Values {
			out = append(out, Scalar{Tag: v.Tag, Step: ev.Step, Value: v.Value, WallTime: wall})
		}
	}
	return out, nil
}

// EventFiles lists the event files in dir (events.out.tfevents.*), oldest
// name first.
func EventFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), "events.out.tfevents.") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// fields walks a message's fields, calling fn with each field's number,
// type and raw value (the varint/fixed value or the bytes).
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, bytes []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var bs []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			bs, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, bs); err != nil {
			return err
		}
	}
	return nil
}

func decodeEvent(b []byte) (Event, error) {
	var ev Event
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch {
		case num == eventWallTime && typ == protowire.Fixed64Type:
			ev.WallTime = math.Float64frombits(v)
		case num == eventStep && typ == protowire.VarintType:
			ev.Step = int64(v)
		case num == eventFileVersion && typ == protowire.BytesType:
			ev.Version = string(bs)
		case num == eventSummary && typ == protowire.BytesType:
			return fields(bs, func(num protowire.Number, typ protowire.Type, _ uint64, vb []byte) error {
				if num != summaryValue || typ != protowire.BytesType {
					return nil
				}
				var val Value
				err := fields(vb, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
					switch {
					case num == valueTag && typ == protowire.BytesType:
						val.Tag = string(bs)
					case num == valueSimpleValue && typ == protowire.Fixed32Type:
						val.Value = math.Float32frombits(uint32(v))
					}
					return nil
				})
				ev.Values = append(ev.Values, val)
				return err
			})
		}
		return nil
	})
	return ev, err
}
