package torchmods

import (
	"fmt"
	"math"
	"math/bits"
	"os"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Param is one named parameter, named as PyTorch's state_dict names it.
type Param struct {
	Name    string
	Tensor  *ts.Tensor
	NoDecay bool // norms, biases and other 1-D parameters: no weight decay
}

// Store owns a model's parameters. Parameters are persistent: a model built
// inside a ts.Scope survives it.
type Store struct {
	Device gotch.Device
	// MaxBytes bounds the store's parameters and buffers (counted at 4
	// bytes an element, before they are allocated), so a config with an
	// absurd size (depth 1e6, width 1e9) is refused with the tensor that
	// crosses it instead of exhausting memory or dying in C++. NewStore
	// sets it to a quarter of the memory available on a CPU device (training
	// holds the weights, their gradients and AdamW's two moments); a program
	// that only runs inference may raise it. 0 means no bound.
	MaxBytes int64
	bytes    int64
	params   []*Param
	byName   map[string]*Param
}

// NewStore makes an empty store whose parameters live on dev.
func NewStore(dev gotch.Device) *Store {
	s := &Store{Device: dev, byName: map[string]*Param{}}
	if !dev.IsCuda() {
		s.MaxBytes = memAvailable() / 4
	}
	return s
}

// memAvailable is the kernel's estimate of the memory available to a new
// allocation (MemAvailable in /proc/meminfo), or 0 if unknown.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// reserve counts a new tensor's bytes against MaxBytes, refusing shapes
// with a zero or negative dimension (a size key left at 0) and sizes that
// overflow or do not fit.
func (s *Store) reserve(name string, shape []int64) {
	elems := uint64(1)
	for _, d := range shape {
		if d <= 0 {
			panic(fmt.Errorf("torchmods: parameter %q would have shape %v: every dimension must be positive (is a size in the model's config 0?)", name, shape))
		}
		hi, lo := bits.Mul64(elems, uint64(d))
		if hi != 0 || lo > math.MaxInt64/4 {
			panic(fmt.Errorf("torchmods: parameter %q of shape %v is too large to exist (check the model's size keys)", name, shape))
		}
		elems = lo
	}
	need := int64(elems) * 4
	if s.MaxBytes > 0 && s.bytes+need > s.MaxBytes {
		panic(fmt.Errorf("torchmods: parameter %q of shape %v would bring the model to %.3g GB, more than the %.3g GB available on %v; check the model's size keys (depth, width, vocabulary)",
			name, shape, float64(s.bytes+need)/1e9, float64(s.MaxBytes)/1e9, s.Device))
	}
	s.bytes += need
}

// Path is a position in the store's name hierarchy ("encoder.layer.0").
type Path struct {
	store  *Store
	prefix string
}

// Root is the empty path.
func (s *Store) Root() Path { return Path{store: s} }

// Sub is the child path p.name.
func (p Path) Sub(name string) Path { return Path{store: p.store, prefix: p.join(name)} }

// Prefix is the path's name ("encoder.layer.0"; "" at the root).
func (p Path) Prefix() string { return p.prefix }

// Store is the store the path names into.
func (p Path) Store() *Store { return p.store }

func (p Path) join(name string) string {
	if p.prefix == "" {
		return name
	}
	return p.prefix + "." + name
}

// New creates and registers a trainable parameter.
func (p Path) New(name string, shape []int64, init Init, noDecay bool) *ts.Tensor {
	return p.add(name, shape, init, noDecay, true)
}

// NewBuffer registers a tensor that is saved and loaded with the
// parameters but never trained (requires_grad off, so optimizers skip it):
// fixed position tables, BatchNorm's running statistics. Unlike a
// parameter, a buffer may have any dtype (BatchNorm's int64
// num_batches_tracked) and no dimensions.
func (p Path) NewBuffer(name string, shape []int64, init Init) *ts.Tensor {
	t := p.add(name, shape, init, true, false)
	if s := t.MustSize(); !equalShape(s, shape) {
		panic(fmt.Sprintf("torchmods: buffer %q initialised with shape %v, declared %v", p.join(name), s, shape))
	}
	return t
}

func (p Path) add(name string, shape []int64, init Init, noDecay, trainable bool) *ts.Tensor {
	full := p.join(name)
	if _, dup := p.store.byName[full]; dup {
		panic(fmt.Sprintf("torchmods: parameter %q registered twice", full))
	}
	if len(shape) > 0 { // 0-D buffers (a batch count) need no check
		p.store.reserve(full, shape)
	}
	var t *ts.Tensor
	ts.NoGrad(func() { t = init(shape, p.store.Device) })
	if trainable {
		t.MustRequiresGrad_(true)
	}
	ts.Persist(t)
	prm := &Param{Name: full, Tensor: t, NoDecay: noDecay}
	p.store.params = append(p.store.params, prm)
	p.store.byName[full] = prm
	return t
}

// Drop frees every parameter now rather than leaving them to the finalizer.
func (s *Store) Drop() {
	for _, p := range s.params {
		p.Tensor.MustDrop()
	}
	s.params, s.byName = nil, map[string]*Param{}
}

// Params lists the parameters in creation order.
func (s *Store) Params() []*Param { return s.params }

// Param returns the named parameter.
func (s *Store) Param(name string) (*Param, bool) { p, ok := s.byName[name]; return p, ok }

// Freeze stops training every parameter whose name starts with one of the
// prefixes (all parameters when none is given) and returns how many it
// froze. Create optimizers after freezing: they take trainable ones only.
func (s *Store) Freeze(prefixes ...string) int {
	n := 0
	for _, p := range s.params {
		match := len(prefixes) == 0
		for _, pre := range prefixes {
			match = match || strings.HasPrefix(p.Name, pre)
		}
		if match {
			p.Tensor.MustRequiresGrad_(false)
			n++
		}
	}
	return n
}

// Groups splits the trainable parameters into those that take weight decay
// and those that do not (norms, biases, 1-D parameters), as optimizers'
// parameter groups want them.
func (s *Store) Groups() (decay, noDecay []*Param) {
	for _, p := range s.params {
		if !p.Tensor.MustRequiresGrad() {
			continue // frozen (a LoRA base, say)
		}
		if p.NoDecay || len(p.Tensor.MustSize()) <= 1 {
			noDecay = append(noDecay, p)
		} else {
			decay = append(decay, p)
		}
	}
	return decay, noDecay
}

// WithParams runs fn with the named parameters replaced by the given
// tensors ("fast weights", as in MAML and other meta-learning): the model's
// layers compute with them, and gradients flow to them and through them to
// whatever they were computed from. Names and shapes must match; the
// parameters are restored when fn returns or panics, and a panic becomes
// the returned error. The fast tensors must not be used inside fn.
func (s *Store) WithParams(fast map[string]*ts.Tensor, fn func()) (err error) {
	var swapped []*Param
	for name, t := range fast {
		p, ok := s.byName[name]
		if !ok {
			return fmt.Errorf("WithParams: no parameter %q", name)
		}
		if !equalShape(p.Tensor.MustSize(), t.MustSize()) {
			return fmt.Errorf("WithParams: %s has shape %v, fast weight %v", name, p.Tensor.MustSize(), t.MustSize())
		}
	}
	defer func() {
		for _, p := range swapped {
			ts.SwapHandles(p.Tensor, fast[p.Name])
		}
	}()
	for name, t := range fast {
		p := s.byName[name]
		ts.SwapHandles(p.Tensor, t)
		swapped = append(swapped, p)
	}
	return Try(fn)
}

// LoadReport says what a load did, like PyTorch's load_state_dict result.
type LoadReport struct {
	Loaded     []string
	Missing    []string // in the model, not in the weights
	Unexpected []string // in the weights, not in the model
	Mismatched []string // "name: model [..] weights [..]"
}

func (r LoadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "loaded %d tensors", len(r.Loaded))
	for _, l := range []struct {
		what  string
		names []string
	}{{"missing", r.Missing}, {"unexpected", r.Unexpected}, {"shape mismatch", r.Mismatched}} {
		if len(l.names) > 0 {
			fmt.Fprintf(&b, "; %s (%d): %s", l.what, len(l.names), strings.Join(l.names, ", "))
		}
	}
	return b.String()
}

// Load copies weights (by name, converted to the parameter's dtype and
// device) into the store. Strict loading fails, changing nothing, unless
// every parameter is present with its shape and nothing else is; partial
// loading copies what matches and reports the rest.
func (s *Store) Load(weights map[string]*ts.Tensor, strict bool) (LoadReport, error) {
	var r LoadReport
	for _, p := range s.params {
		w, ok := weights[p.Name]
		if !ok {
			r.Missing = append(r.Missing, p.Name)
			continue
		}
		if !equalShape(w.MustSize(), p.Tensor.MustSize()) {
			r.Mismatched = append(r.Mismatched, fmt.Sprintf("%s: model %v weights %v", p.Name, p.Tensor.MustSize(), w.MustSize()))
		}
	}
	for name := range weights {
		if _, ok := s.byName[name]; !ok {
			r.Unexpected = append(r.Unexpected, name)
		}
	}
	sort.Strings(r.Unexpected)
	if strict && (len(r.Missing)+len(r.Unexpected)+len(r.Mismatched) > 0) {
		return r, fmt.Errorf("strict load refused, nothing changed: %s", r)
	}
	bad := map[string]bool{}
	for _, m := range r.Mismatched {
		bad[m[:strings.Index(m, ":")]] = true
	}
	err := Try(func() {
		ts.NoGrad(func() {
			for _, p := range s.params {
				w, ok := weights[p.Name]
				if !ok || bad[p.Name] {
					continue
				}
				c := w.MustTo(s.Device, false).MustTotype(p.Tensor.DType(), true)
				p.Tensor.Copy_(c)
				c.MustDrop()
				r.Loaded = append(r.Loaded, p.Name)
			}
		})
	})
	return r, err
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Try runs f and returns the error f panicked with: the boundary where the
// panics of tensor code (a Must op's libtorch error, a layer's shape check)
// become an error (see the package doc). Only a panic whose value is an
// error is converted. A runtime error (nil dereference, index out of range),
// a string or any other value is a bug: it panics on, from Try's deferred
// call, so the traceback still shows where it was raised.
func Try(f func()) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return // no panic, or runtime.Goexit, which goes on
		}
		e, isErr := r.(error)
		if _, isRuntime := r.(interface{ RuntimeError() }); !isErr || isRuntime { // runtime.Error
			panic(r)
		}
		err = e
	}()
	f()
	return nil
}
