package gotchprep

import (
	"bufio"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// GeneratedFile is gotch's generated C++ wrapper file, relative to libtch/.
// Each of its functions wraps one ATen op; libtorch releases add and remove
// ops, so a wrapper written for one release may not compile against another.
const GeneratedFile = "torch_api_generated.cpp.h"

// Wrapper is one generated C++ wrapper function and where it sits in the file.
// Lines are 1-based and inclusive.
type Wrapper struct {
	Name         string
	Start, End   int // the signature line and the closing brace
	ProtectStart int // the "PROTECT(" line
	ProtectEnd   int // the line that closes PROTECT
}

var signatureRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_ ]*[ *]+(atg_[A-Za-z0-9_]+)\(.*\)\s*\{\s*$`)

// ParseWrappers finds every wrapper function in the generated file. The
// generator writes each one in the same shape: a signature at column 0 ending
// in "{", a body whose work sits inside "  PROTECT(" ... "  )", and "}" at
// column 0. Anything else is reported, since stubbing relies on that shape.
func ParseWrappers(src string) ([]Wrapper, error) {
	lines := strings.Split(src, "\n")
	var out []Wrapper
	for i := 0; i < len(lines); i++ {
		m := signatureRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		w := Wrapper{Name: m[1], Start: i + 1}
		for j := i + 1; j < len(lines); j++ {
			switch {
			case lines[j] == "  PROTECT(" && w.ProtectStart == 0:
				w.ProtectStart = j + 1
			case lines[j] == "  )" && w.ProtectStart != 0 && w.ProtectEnd == 0:
				w.ProtectEnd = j + 1
			case lines[j] == "}":
				w.End = j + 1
			}
			if w.End != 0 {
				i = j
				break
			}
		}
		if w.End == 0 || w.ProtectStart == 0 || w.ProtectEnd == 0 {
			return nil, fmt.Errorf("%s:%d: wrapper %s does not have the generator's shape (signature, PROTECT( ... ), closing brace)", GeneratedFile, w.Start, w.Name)
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no wrapper functions found", GeneratedFile)
	}
	return out, nil
}

// diagRE matches any compiler diagnostic that points into the generated file:
// the error itself, or a "required from here" line of an instantiation chain
// whose error lands inside a libtorch or standard header.
var diagRE = regexp.MustCompile(regexp.QuoteMeta(GeneratedFile) + `:(\d+):(\d+:)?`)

// FailingWrappers maps the diagnostics of a compiler log (run with warnings
// off) to the wrappers they point into, sorted by name. Lines of the log
// that point into the generated file but outside every wrapper are returned
// as orphans, so the caller can refuse to guess.
func FailingWrappers(log string, wrappers []Wrapper) (names []string, orphans []int) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		for _, m := range diagRE.FindAllStringSubmatch(sc.Text(), -1) {
			line, _ := strconv.Atoi(m[1])
			w := findWrapper(wrappers, line)
			if w == nil {
				orphans = append(orphans, line)
				continue
			}
			seen[w.Name] = true
		}
	}
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, orphans
}

func findWrapper(ws []Wrapper, line int) *Wrapper {
	i := sort.Search(len(ws), func(i int) bool { return ws[i].End >= line })
	if i < len(ws) && ws[i].Start <= line {
		return &ws[i]
	}
	return nil
}

// StubMessage is the text a stubbed op raises. It is what a Go caller sees
// in the error returned by gotch's wrapper.
func StubMessage(op, libtorchVersion string) string {
	return fmt.Sprintf("op %s is not available: gotch v0.9.1's wrapper does not compile against libtorch %s, so scripts/install_libtorch.sh stubbed it", strings.TrimPrefix(op, "atg_"), libtorchVersion)
}

// Stub replaces the body inside PROTECT of each named wrapper with a throw,
// keeping the signature and the fallback return that follows PROTECT. The
// Go side is untouched: the op's Go function still exists, and calling it
// returns the error through gotch's usual last-error path.
func Stub(src string, wrappers []Wrapper, names []string, libtorchVersion string) (string, error) {
	byName := map[string]Wrapper{}
	for _, w := range wrappers {
		byName[w.Name] = w
	}
	replace := map[int]Wrapper{} // ProtectStart line -> wrapper
	for _, n := range names {
		w, ok := byName[n]
		if !ok {
			return "", fmt.Errorf("cannot stub %s: no such wrapper in %s", n, GeneratedFile)
		}
		replace[w.ProtectStart] = w
	}
	lines := strings.Split(src, "\n")
	var b strings.Builder
	b.Grow(len(src))
	for i := 0; i < len(lines); i++ {
		b.WriteString(lines[i])
		if i < len(lines)-1 {
			b.WriteByte('\n')
		}
		w, ok := replace[i+1]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "    throw std::runtime_error(%s);\n", strconv.Quote(StubMessage(w.Name, libtorchVersion)))
		i = w.ProtectEnd - 2 // resume at the line that closes PROTECT
	}
	return b.String(), nil
}
