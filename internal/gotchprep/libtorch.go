package gotchprep

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Libtorch describes one libtorch installation as the build needs it.
type Libtorch struct {
	// Root is the LIBTORCH directory, or "system" for Debian's packages.
	Root string `json:"root"`
	// Version is the release, e.g. "1.13.1" or "2.11.0+cu130".
	Version string `json:"version"`
	// VersionSource says where Version was read, since Debian's header
	// says 1.13.0 for its 1.13.1 package.
	VersionSource string   `json:"version_source"`
	IncludeDirs   []string `json:"include_dirs"`
	LibDir        string   `json:"lib_dir"`
	CUDA          bool     `json:"cuda"`
	// CXXStd is the -std= value: gotch needs C++17, and a libtorch whose
	// headers demand a newer standard gets that.
	CXXStd string `json:"cxx_std"`
	// CXX11ABI is the value of _GLIBCXX_USE_CXX11_ABI the library was built
	// with. A mismatch links but fails at run time on std::string symbols.
	CXX11ABI int `json:"cxx11_abi"`
}

// DetectDir inspects a LIBTORCH directory: an unpacked official libtorch zip
// or a PyTorch install's torch/ folder, each with include/ and lib/.
func DetectDir(dir string) (*Libtorch, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	inc := filepath.Join(abs, "include")
	lib := filepath.Join(abs, "lib")
	for _, p := range []string{inc, lib} {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("LIBTORCH=%s: %s is missing; expected an unpacked libtorch zip or a PyTorch torch/ folder with include/ and lib/", dir, p)
		}
	}
	lt := &Libtorch{
		Root:        abs,
		IncludeDirs: []string{inc, filepath.Join(inc, "torch", "csrc", "api", "include")},
		LibDir:      lib,
	}
	if err := lt.checkFiles(); err != nil {
		return nil, fmt.Errorf("LIBTORCH=%s: %w", dir, err)
	}
	lt.Version, lt.VersionSource = versionFromDir(abs)
	if lt.Version == "" {
		lt.Version, lt.VersionSource, err = versionFromHeader(lt.IncludeDirs[1])
		if err != nil {
			return nil, fmt.Errorf("LIBTORCH=%s: %w", dir, err)
		}
	}
	return lt, lt.detectLibs()
}

// DetectSystem describes Debian's libtorch-dev: headers under /usr/include,
// libraries in the multiarch directory.
func DetectSystem() (*Libtorch, error) {
	multiarch := "x86_64-linux-gnu"
	if out, err := exec.Command("gcc", "-print-multiarch").Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		multiarch = strings.TrimSpace(string(out))
	}
	lt := &Libtorch{
		Root: "system",
		// /usr/include itself is a default search path; naming it with -I
		// breaks libstdc++'s #include_next, so only the API dir is listed.
		IncludeDirs: []string{"/usr/include/torch/csrc/api/include"},
		LibDir:      filepath.Join("/usr/lib", multiarch),
	}
	if err := lt.checkFiles(); err != nil {
		return nil, fmt.Errorf("system libtorch: %w (install Debian's libtorch-dev, or set LIBTORCH=<dir>)", err)
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "libtorch-dev").Output(); err == nil && len(out) > 0 {
		lt.Version, lt.VersionSource = debianUpstreamVersion(string(out)), "dpkg libtorch-dev"
	} else {
		lt.Version, lt.VersionSource, err = versionFromHeader(lt.IncludeDirs[0])
		if err != nil {
			return nil, err
		}
	}
	return lt, lt.detectLibs()
}

func (lt *Libtorch) checkFiles() error {
	api := lt.IncludeDirs[len(lt.IncludeDirs)-1]
	if _, err := os.Stat(filepath.Join(api, "torch", "torch.h")); err != nil {
		return fmt.Errorf("torch/torch.h not found under %s", api)
	}
	for _, l := range []string{"libtorch.so", "libtorch_cpu.so", "libc10.so"} {
		if _, err := os.Stat(filepath.Join(lt.LibDir, l)); err != nil {
			return fmt.Errorf("%s not found in %s", l, lt.LibDir)
		}
	}
	return nil
}

func (lt *Libtorch) detectLibs() error {
	lt.CXXStd = requiredStd(lt.IncludeDirs[len(lt.IncludeDirs)-1])
	_, err := os.Stat(filepath.Join(lt.LibDir, "libtorch_cuda.so"))
	lt.CUDA = err == nil
	abi, err := DetectCXX11ABI(filepath.Join(lt.LibDir, "libc10.so"))
	if err != nil {
		return err
	}
	lt.CXX11ABI = abi
	return nil
}

// DetectCXX11ABI reads the dynamic symbols of a libtorch library: one built
// with the C++11 ABI defines std::__cxx11 symbols (std::string in c10's
// error messages), one built with the old ABI defines none.
func DetectCXX11ABI(lib string) (int, error) {
	f, err := elf.Open(lib)
	if err != nil {
		return 0, fmt.Errorf("reading %s to detect the C++ ABI: %w", lib, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return 0, fmt.Errorf("reading the dynamic symbols of %s: %w", lib, err)
	}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && strings.Contains(s.Name, "__cxx11") {
			return 1, nil
		}
	}
	return 0, nil
}

var cplusplusRE = regexp.MustCompile(`__cplusplus < (\d{6})L`)

// requiredStd reads the standard libtorch's umbrella headers insist on
// ("#if __cplusplus < 201703L #error ..."), never below gotch's C++17.
func requiredStd(apiInclude string) string {
	std := "c++17"
	for _, h := range []string{"torch/torch.h", "torch/all.h"} {
		b, err := os.ReadFile(filepath.Join(apiInclude, h))
		if err != nil {
			continue
		}
		for _, m := range cplusplusRE.FindAllSubmatch(b, -1) {
			switch v := string(m[1]); {
			case v > "202002":
				std = "c++23"
			case v > "201703" && std != "c++23":
				std = "c++20"
			}
		}
	}
	return std
}

var pyVersionRE = regexp.MustCompile(`(?m)^__version__\s*=\s*['"]([^'"]+)['"]`)

func versionFromDir(dir string) (version, source string) {
	if b, err := os.ReadFile(filepath.Join(dir, "build-version")); err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, "build-version"
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "version.py")); err == nil {
		if m := pyVersionRE.FindSubmatch(b); m != nil {
			return string(m[1]), "version.py"
		}
	}
	return "", ""
}

var headerRE = regexp.MustCompile(`#define TORCH_VERSION_(MAJOR|MINOR|PATCH) (\d+)`)

func versionFromHeader(apiInclude string) (version, source string, err error) {
	p := filepath.Join(apiInclude, "torch", "version.h")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", "", fmt.Errorf("cannot tell the libtorch version: %w", err)
	}
	parts := map[string]string{}
	for _, m := range headerRE.FindAllSubmatch(b, -1) {
		parts[string(m[1])] = string(m[2])
	}
	if len(parts) != 3 {
		return "", "", errors.New("cannot tell the libtorch version: " + p + " lacks TORCH_VERSION_MAJOR/MINOR/PATCH")
	}
	return parts["MAJOR"] + "." + parts["MINOR"] + "." + parts["PATCH"], "torch/version.h", nil
}

// debianUpstreamVersion turns "1.13.1+dfsg-4" into "1.13.1".
func debianUpstreamVersion(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.Index(v, ":"); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndex(v, "-"); i >= 0 {
		v = v[:i]
	}
	if i := strings.Index(v, "+dfsg"); i >= 0 {
		v = v[:i]
	}
	return v
}
