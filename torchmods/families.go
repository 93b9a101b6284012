package torchmods

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods/safetensors"
)

// A Family is what repro knows about one Hugging Face model_type: how its
// checkpoints name their weights, how to read its config.json, and which
// of its classes (architectures) repro can build. Everything HF-specific
// about a family is here, so that loading, exporting and `repro hf run`
// are written once; adding a family (Llama, CLIP, ...) is one Family value
// registered from the package that holds the model.
type Family struct {
	// ModelType is config.json's model_type ("bert", "vit_mae").
	ModelType string
	// Variants are the spellings of the family's weight names that files
	// in the wild use. Variants[0] is the canonical one, the names the
	// hub's checkpoints carry and the exporter writes; the others say how
	// to recognise them and map them onto it.
	Variants []NamingVariant
	// Import maps canonical HF names onto the names the repro model
	// registers (empty when it registers HF's own names, as BERT does).
	Import RenameTable
	// Export maps the model's names back to canonical HF names.
	Export RenameTable
	// Ignore are canonical names that HF files may hold but the model
	// does not (tied copies, non-persistent buffers); patterns as in
	// RenameTable. They are dropped and reported, never loaded.
	Ignore []string
	// Architectures are the HF classes repro builds, the default first
	// (used when config.json names none).
	Architectures []*Architecture
}

// A NamingVariant is one spelling of a family's weight names, such as the
// names one transformers version writes.
type NamingVariant struct {
	Name string // for load reports: "transformers 5.x state_dict"
	// Detect matches a name only this variant uses; nil for the canonical
	// variant, which is what a file matching no other variant is taken to be.
	Detect *regexp.Regexp
	// ToCanonical maps the variant's names onto the canonical ones.
	ToCanonical RenameTable
}

// An Architecture is one HF model class of a family.
type Architecture struct {
	Name string // the class, as config.json's architectures names it
	// Inputs are forward's arguments that repro accepts, named as HF's
	// (input_ids, pixel_values, ...); Required those it cannot run without.
	Inputs, Required []string
	// Outputs are the names of what forward returns, as HF's ModelOutput.
	Outputs []string
	// Build reads the family's keys from cfg (reporting assumptions to w)
	// and registers the model in store under its repro names.
	Build func(store *Store, cfg *HFConfig, w io.Writer) (HFModel, error)
}

// An HFModel is a model built from a HF config.
type HFModel interface {
	// Forward runs HF's forward in eval mode: inputs and outputs named as
	// HF names them. Inputs have been checked against the Architecture's.
	Forward(inputs map[string]*ts.Tensor) (map[string]*ts.Tensor, error)
	// HFConfig is the config.json content that rebuilds the model in
	// Python (model_type and architectures are added by the exporter).
	HFConfig() map[string]any
}

var (
	familiesMu sync.RWMutex
	families   = map[string]*Family{}
)

// RegisterFamily adds a family to the registry; packages call it from
// init. A second family of the same model_type is a programming error.
func RegisterFamily(f *Family) {
	familiesMu.Lock()
	defer familiesMu.Unlock()
	if f.ModelType == "" || len(f.Variants) == 0 || f.Variants[0].Detect != nil {
		panic(fmt.Sprintf("torchmods: family %q needs a model_type and a canonical naming variant first", f.ModelType))
	}
	if _, dup := families[f.ModelType]; dup {
		panic(fmt.Sprintf("torchmods: family %q registered twice", f.ModelType))
	}
	families[f.ModelType] = f
}

// SupportedFamilies lists the registered families as "model_type
// (Class, Class)", sorted, for help texts and errors.
func SupportedFamilies() []string {
	familiesMu.RLock()
	defer familiesMu.RUnlock()
	var out []string
	for t, f := range families {
		var names []string
		for _, a := range f.Architectures {
			names = append(names, a.Name)
		}
		out = append(out, fmt.Sprintf("%s (%s)", t, strings.Join(names, ", ")))
	}
	sort.Strings(out)
	return out
}

// LookupFamily returns the family of a model_type, or an error that lists
// the supported ones.
func LookupFamily(modelType string) (*Family, error) {
	familiesMu.RLock()
	f, ok := families[modelType]
	familiesMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("model_type %q is not supported; supported: %s", modelType, strings.Join(SupportedFamilies(), "; "))
	}
	return f, nil
}

// Architecture picks the first of names (config.json's architectures)
// that the family builds, or its default when names is empty.
func (f *Family) Architecture(names []string) (*Architecture, error) {
	if len(names) == 0 {
		return f.Architectures[0], nil
	}
	for _, n := range names {
		for _, a := range f.Architectures {
			if a.Name == n {
				return a, nil
			}
		}
	}
	var have []string
	for _, a := range f.Architectures {
		have = append(have, a.Name)
	}
	return nil, fmt.Errorf("%s: architectures %v: repro builds %s only", f.ModelType, names, strings.Join(have, ", "))
}

// DetectVariant says which naming variant a file's names use: the first
// non-canonical variant with a name that matches its Detect, else the
// canonical one.
func (f *Family) DetectVariant(tensors []safetensors.Tensor) *NamingVariant {
	for i := range f.Variants[1:] {
		v := &f.Variants[i+1]
		for _, t := range tensors {
			if v.Detect.MatchString(t.Name) {
				return v
			}
		}
	}
	return &f.Variants[0]
}

// Imported is a HF file's tensors under the repro model's names.
type Imported struct {
	Tensors []safetensors.Tensor
	Variant string   // the naming variant the file uses
	Dropped []string // names in Ignore (tied copies, buffers), sorted
}

// ImportNames maps a HF file's tensors onto the repro model's names: the
// detected variant's names to canonical ones, Ignore dropped, then Import.
func (f *Family) ImportNames(tensors []safetensors.Tensor) (*Imported, error) {
	v := f.DetectVariant(tensors)
	out, err := v.ToCanonical.Apply(tensors)
	if err != nil {
		return nil, fmt.Errorf("%s names (%s): %w", f.ModelType, v.Name, err)
	}
	ignore := make([]pattern, len(f.Ignore))
	for i, p := range f.Ignore {
		ignore[i] = compile(p)
	}
	im := &Imported{Variant: v.Name}
	kept := out[:0]
	for _, t := range out {
		drop := false
		for _, p := range ignore {
			if _, ok := p.match(t.Name); ok {
				drop = true
				break
			}
		}
		if drop {
			im.Dropped = append(im.Dropped, t.Name)
		} else {
			kept = append(kept, t)
		}
	}
	sort.Strings(im.Dropped)
	if im.Tensors, err = f.Import.Apply(kept); err != nil {
		return nil, fmt.Errorf("%s names: %w", f.ModelType, err)
	}
	return im, nil
}

// LoadOptions say how strictly LoadHFWeights checks a file against the
// model.
type LoadOptions struct {
	// Strict refuses tensors that the model does not have.
	Strict bool
	// NewParams are name prefixes of parameters the file need not have: a
	// task head added for fine-tuning ("classifier."), which keeps its
	// initialisation. Any other parameter the file lacks is an error.
	NewParams []string
}

// LoadHFWeights loads a HF weight file (anything ReadWeights reads) into
// store through the family's names. A missing parameter (outside
// o.NewParams) or a shape mismatch is an error naming the tensors: HF
// would initialise it at random and go on, giving wrong outputs without a
// word. Unexpected tensors are an error with o.Strict, else reported. The
// report line, naming the naming variant found, goes to w.
func (f *Family) LoadHFWeights(store *Store, file string, o LoadOptions, w io.Writer) (LoadReport, error) {
	wf, err := ReadWeights(file)
	if err != nil {
		return LoadReport{}, err
	}
	im, err := f.ImportNames(wf.Tensors)
	if err != nil {
		return LoadReport{}, fmt.Errorf("%s: %w", file, err)
	}
	weights := make(map[string]*ts.Tensor, len(im.Tensors))
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	for _, t := range im.Tensors {
		x, err := FromSafetensors(t, store.Device)
		if err != nil {
			return LoadReport{}, fmt.Errorf("%s: %w", file, err)
		}
		weights[t.Name] = x
	}
	rep, err := store.Load(weights, false)
	line := fmt.Sprintf("%s (%s, %s names): %s", file, wf.Format, im.Variant, rep)
	if len(im.Dropped) > 0 {
		line += fmt.Sprintf("; dropped as tied copies or buffers: %s", strings.Join(im.Dropped, ", "))
	}
	fmt.Fprintln(w, line)
	var missing []string
	for _, m := range rep.Missing {
		isNew := false
		for _, p := range o.NewParams {
			isNew = isNew || strings.HasPrefix(m, p)
		}
		if !isNew {
			missing = append(missing, m)
		}
	}
	switch {
	case err != nil:
		return rep, fmt.Errorf("%s: %w", file, err)
	case len(rep.Mismatched) > 0:
		return rep, fmt.Errorf("%s: shapes differ from the model built from the config: %s", file, strings.Join(rep.Mismatched, "; "))
	case len(rep.Loaded) == 0:
		return rep, fmt.Errorf("%s: no tensor matched the %s model's names (the file has %s, ...)", file, f.ModelType, firstNames(im.Tensors, 3))
	case len(missing) > 0:
		return rep, fmt.Errorf("%s: the model needs tensors the file lacks: %s", file, strings.Join(missing, ", "))
	case o.Strict && len(rep.Unexpected) > 0:
		return rep, fmt.Errorf("%s: tensors the model does not have: %s", file, strings.Join(rep.Unexpected, ", "))
	}
	return rep, nil
}

func firstNames(ts []safetensors.Tensor, n int) string {
	var names []string
	for i := 0; i < len(ts) && i < n; i++ {
		names = append(names, ts[i].Name)
	}
	return strings.Join(names, ", ")
}

// OpenedHF is a model OpenHF built and loaded.
type OpenedHF struct {
	Model        HFModel
	Family       *Family
	Architecture *Architecture
	Config       *HFConfig
	Source       *WeightSource
	Report       LoadReport
	device       gotch.Device
}

// OpenHF builds the model a HF folder's config.json names (model_type,
// architectures) and loads its weights: spec is anything Resolve accepts
// that has a config.json (a HF folder, hf:ORG/NAME). What it read and
// assumed goes to w.
func OpenHF(spec string, store *Store, w io.Writer) (*OpenedHF, error) {
	src, err := Resolve(spec)
	if err != nil {
		return nil, err
	}
	if src.Config == "" {
		return nil, fmt.Errorf("%s: no config.json beside %s; a HF model folder has one (it says which model to build)", spec, src.File)
	}
	cfg, err := ReadHFConfig(src.Config)
	if err != nil {
		return nil, err
	}
	if cfg.ModelType == "" {
		return nil, fmt.Errorf("%s: no model_type; supported: %s", cfg.Path, strings.Join(SupportedFamilies(), "; "))
	}
	fam, err := LookupFamily(cfg.ModelType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	arch, err := fam.Architecture(cfg.Architectures)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	var m HFModel
	if err := Try(func() { m, err = arch.Build(store, cfg, w) }); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", cfg.Path, arch.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", cfg.Path, arch.Name, err)
	}
	if sp := cfg.Spellings(); len(sp) > 0 {
		fmt.Fprintf(w, "%s: keys read under other spellings: %s\n", cfg.Path, strings.Join(sp, ", "))
	}
	rep, err := fam.LoadHFWeights(store, src.File, LoadOptions{}, w)
	if err != nil {
		return nil, err
	}
	return &OpenedHF{Model: m, Family: fam, Architecture: arch, Config: cfg, Source: src, Report: rep, device: store.Device}, nil
}

// Run checks inputs against the architecture (a missing required input or
// an unknown one is an error naming it), converts them to the dtypes HF's
// forward takes (integer ids to int64, floats to float32), and runs the
// forward pass without gradients.
func (o *OpenedHF) Run(inputs map[string]*ts.Tensor) (map[string]*ts.Tensor, error) {
	a := o.Architecture
	for _, r := range a.Required {
		if _, ok := inputs[r]; !ok {
			return nil, fmt.Errorf("%s needs input %q (inputs: %s)", a.Name, r, strings.Join(a.Inputs, ", "))
		}
	}
	accepted := map[string]bool{}
	for _, n := range a.Inputs {
		accepted[n] = true
	}
	var names []string
	for n := range inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	in := map[string]*ts.Tensor{}
	for _, n := range names {
		if !accepted[n] {
			return nil, fmt.Errorf("%s does not take input %q (inputs: %s)", a.Name, n, strings.Join(a.Inputs, ", "))
		}
		var x *ts.Tensor
		if err := Try(func() { x = castInput(inputs[n], o.device) }); err != nil {
			return nil, fmt.Errorf("input %q: %w", n, err)
		}
		in[n] = x
	}
	var out map[string]*ts.Tensor
	var ferr error
	err := Try(func() {
		ts.NoGrad(func() { out, ferr = o.Model.Forward(in) })
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("%s forward: %w", a.Name, err)
	}
	return out, nil
}

// castInput gives an input the dtype HF's forward expects on dev: ids,
// masks and labels as int64, pixels and noise as float32.
func castInput(x *ts.Tensor, dev gotch.Device) *ts.Tensor {
	switch x.DType() {
	case gotch.Float, gotch.Double, gotch.Half, gotch.BFloat16:
		return x.MustTotype(gotch.Float, false).MustTo(dev, true)
	}
	return x.MustTotype(gotch.Int64, false).MustTo(dev, true)
}
