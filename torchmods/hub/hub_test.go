package hub

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	commitA = "0123456789abcdef0123456789abcdef01234567"
	commitB = "89abcdef0123456789abcdef0123456789abcdef"
)

// setup points every variable Resolve reads at test-owned values, so the
// developer's real cache, token and offline setting never leak in.
func setup(t *testing.T) string {
	t.Helper()
	cache := t.TempDir()
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("TRANSFORMERS_OFFLINE", "")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", filepath.Join(cache, "no-token"))
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1")
	return cache
}

func sha256hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// gitBlobSHA is the etag the hub gives a regular (non-LFS) file.
func gitBlobSHA(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

type fakeFile struct {
	data  []byte
	lfs   bool
	serve []byte // when set, the CDN sends this instead of data
}

// fakeHub serves the hub's resolve endpoint with its headers: regular
// files answer directly with ETag = git sha1; LFS files answer with a 302
// to /cdn/<sha256> on the same server, carrying X-Linked-Etag and
// X-Linked-Size, like the real hub's redirect to its CDN.
type fakeHub struct {
	t       *testing.T
	srv     *httptest.Server
	commit  string
	repos   map[string]map[string]*fakeFile
	renamed map[string]string

	mu          sync.Mutex
	log         []string
	cutAfter    int  // cut the next CDN body after this many bytes
	ignoreRange bool // answer Range requests with the whole file
}

func newFakeHub(t *testing.T) *fakeHub {
	h := &fakeHub{t: t, commit: commitA, repos: map[string]map[string]*fakeFile{}, renamed: map[string]string{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	t.Setenv("HF_ENDPOINT", h.srv.URL)
	return h
}

func (h *fakeHub) record(r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := r.Method + " " + r.URL.Path
	if v := r.Header.Get("Range"); v != "" {
		e += " range=" + v
	}
	if v := r.Header.Get("Authorization"); v != "" {
		e += " auth=" + v
	}
	h.log = append(h.log, e)
}

func (h *fakeHub) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	if sha, ok := strings.CutPrefix(r.URL.Path, "/cdn/"); ok {
		h.serveCDN(w, r, sha)
		return
	}
	i := strings.Index(r.URL.Path, "/resolve/")
	if i < 0 {
		http.NotFound(w, r)
		return
	}
	repo := r.URL.Path[1:i]
	rev, file, _ := strings.Cut(r.URL.Path[i+len("/resolve/"):], "/")
	if to, ok := h.renamed[repo]; ok {
		w.Header().Set("Location", "/"+to+"/resolve/"+rev+"/"+file)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	files, ok := h.repos[repo]
	if !ok {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		w.Header().Set("X-Error-Message", "Repository not found")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if rev != "main" && rev != h.commit {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", h.commit)
	f, ok := files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		w.Header().Set("X-Error-Message", "Entry not found")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if f.lfs {
		sha := sha256hex(f.data)
		w.Header().Set("X-Linked-Etag", `"`+sha+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.data)))
		w.Header().Set("ETag", `W/"redirect-body"`) // must not win over X-Linked-Etag
		w.Header().Set("Location", h.srv.URL+"/cdn/"+sha)
		w.Header().Set("Content-Length", "27")
		w.WriteHeader(http.StatusFound)
		if r.Method == http.MethodGet {
			w.Write([]byte("Found. Redirecting to cdn."))
		}
		return
	}
	w.Header().Set("ETag", `W/"`+gitBlobSHA(f.data)+`"`)
	http.ServeContent(w, r, "", zeroTime, bytes.NewReader(f.data))
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request, sha string) {
	if r.Method == http.MethodHead {
		h.t.Errorf("HEAD reached the CDN: metadata must come from the first response")
	}
	var f *fakeFile
	for _, files := range h.repos {
		for _, ff := range files {
			if ff.lfs && sha256hex(ff.data) == sha {
				f = ff
			}
		}
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	data := f.data
	if f.serve != nil {
		data = f.serve
	}
	h.mu.Lock()
	cut, ignore := h.cutAfter, h.ignoreRange
	h.cutAfter = 0
	h.mu.Unlock()
	if cut > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	if ignore {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
		return
	}
	http.ServeContent(w, r, "", zeroTime, bytes.NewReader(data))
}

// zeroTime leaves Last-Modified out of ServeContent answers.
var zeroTime time.Time

// failClient fails the test on any request: for checks that the cache
// alone answered.
func failClient(t *testing.T) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		return nil, errors.New("no network in this test")
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// writeCache lays out a repo in the cache as huggingface_hub leaves it:
// refs/<ref> (when ref is set), blobs named by etag and snapshot entries
// that are relative symlinks, or plain copies when copies is set.
func writeCache(t *testing.T, cache, repo, ref, commit string, files map[string][]byte, copies bool) {
	t.Helper()
	dir := filepath.Join(cache, RepoFolderName(repo))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if ref != "" {
		must(os.MkdirAll(filepath.Join(dir, "refs"), 0o755))
		must(os.WriteFile(filepath.Join(dir, "refs", ref), []byte(commit), 0o644))
	}
	for name, data := range files {
		dst := filepath.Join(dir, "snapshots", commit, filepath.FromSlash(name))
		must(os.MkdirAll(filepath.Dir(dst), 0o755))
		if copies {
			must(os.WriteFile(dst, data, 0o644))
			continue
		}
		blob := filepath.Join(dir, "blobs", sha256hex(data))
		must(os.MkdirAll(filepath.Dir(blob), 0o755))
		must(os.WriteFile(blob, data, 0o644))
		rel, err := filepath.Rel(filepath.Dir(dst), blob)
		must(err)
		must(os.Symlink(rel, dst))
	}
}

// checkLayout asserts the cache holds repo exactly as huggingface_hub
// would after downloading files at commit through ref: the ref file with
// the bare hash, one blob per etag and no leftovers, and each snapshot
// entry a relative symlink to ../../blobs/<etag> (one more ../ per
// subfolder).
func checkLayout(t *testing.T, cache, repo, ref, commit string, files map[string]*fakeFile) {
	t.Helper()
	dir := filepath.Join(cache, RepoFolderName(repo))
	if got, err := os.ReadFile(filepath.Join(dir, "refs", ref)); err != nil || string(got) != commit {
		t.Errorf("refs/%s = %q, %v; want %q", ref, got, err, commit)
	}
	wantBlobs := map[string]bool{}
	for name, f := range files {
		etag := gitBlobSHA(f.data)
		if f.lfs {
			etag = sha256hex(f.data)
		}
		wantBlobs[etag] = true
		if got, err := os.ReadFile(filepath.Join(dir, "blobs", etag)); err != nil || !bytes.Equal(got, f.data) {
			t.Errorf("blobs/%s: %v, content equal %v", etag, err, bytes.Equal(got, f.data))
		}
		link := filepath.Join(dir, "snapshots", commit, filepath.FromSlash(name))
		target, err := os.Readlink(link)
		want := strings.Repeat("../", 2+strings.Count(name, "/")) + "blobs/" + etag
		if err != nil || target != filepath.FromSlash(want) {
			t.Errorf("snapshots/%s/%s -> %q, %v; want %q", commit[:7], name, target, err, want)
		}
		if got, err := os.ReadFile(link); err != nil || !bytes.Equal(got, f.data) {
			t.Errorf("reading %s through its link: %v", name, err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !wantBlobs[e.Name()] {
			t.Errorf("unexpected file blobs/%s", e.Name())
		}
	}
	if len(entries) != len(wantBlobs) {
		t.Errorf("%d blobs, want %d", len(entries), len(wantBlobs))
	}
}

func TestParseSpec(t *testing.T) {
	good := []struct {
		spec, repo, rev string
	}{
		{"hf:bert-base-uncased", "bert-base-uncased", "main"},
		{"hf:facebook/vit-mae-base", "facebook/vit-mae-base", "main"},
		{"hf:facebook/vit-mae-base@main", "facebook/vit-mae-base", "main"},
		{"hf:google-bert/bert-base-uncased@v1.0", "google-bert/bert-base-uncased", "v1.0"},
		{"hf:org/name@refs/pr/1", "org/name", "refs/pr/1"},
		{"hf:org/name@" + commitA, "org/name", commitA},
		{"hf:Org_1/Name.v2", "Org_1/Name.v2", "main"},
	}
	for _, c := range good {
		r, err := ParseSpec(c.spec)
		if err != nil || r.RepoID != c.repo || r.Revision != c.rev {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %s@%s", c.spec, r, err, c.repo, c.rev)
		}
	}
	if r, _ := ParseSpec("hf:org/name@" + commitA); !r.IsCommit() {
		t.Error("a 40-hex revision should be a commit")
	}
	if r, _ := ParseSpec("hf:org/name@" + strings.ToUpper(commitA)); r.IsCommit() {
		t.Error("commits are lowercase hex, as in huggingface_hub")
	}
	bad := []string{
		"", "bert-base-uncased", "hf:", "hf:/name", "hf:org/", "hf:a/b/c",
		"hf:org/name@", "hf:org--x/name", "hf:org/na..me", "hf:-org/name",
		"hf:org/name.", "hf:org/name.git", "hf:org/na me", "hf:org/name@../x",
		"hf:org/name@a//b", "hf:org/name@a b", "hf:org/name@a:b", "hf:" + strings.Repeat("a", 97),
	}
	for _, spec := range bad {
		_, err := ParseSpec(spec)
		if err == nil {
			t.Errorf("ParseSpec(%q) accepted", spec)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(spec)) {
			t.Errorf("ParseSpec(%q) error %q does not quote the spec", spec, err)
		}
	}
	if !IsSpec("hf:x") || IsSpec("runs/x") {
		t.Error("IsSpec")
	}
}

func TestCacheDir(t *testing.T) {
	for _, v := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", "/home/u")
	if got := CacheDir(); got != "/home/u/.cache/huggingface/hub" {
		t.Errorf("default: %s", got)
	}
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got := CacheDir(); got != "/xdg/huggingface/hub" {
		t.Errorf("XDG_CACHE_HOME: %s", got)
	}
	t.Setenv("HF_HOME", "~/hf")
	if got := CacheDir(); got != "/home/u/hf/hub" {
		t.Errorf("HF_HOME: %s", got)
	}
	t.Setenv("HUGGINGFACE_HUB_CACHE", "/legacy")
	if got := CacheDir(); got != "/legacy" {
		t.Errorf("HUGGINGFACE_HUB_CACHE: %s", got)
	}
	t.Setenv("HF_HUB_CACHE", "/hub")
	if got := CacheDir(); got != "/hub" {
		t.Errorf("HF_HUB_CACHE: %s", got)
	}
	if got := RepoFolderName("facebook/vit-mae-base"); got != "models--facebook--vit-mae-base" {
		t.Error(got)
	}
	if got := RepoFolderName("bert-base-uncased"); got != "models--bert-base-uncased" {
		t.Error(got)
	}
}

func TestResolveFromCacheOffline(t *testing.T) {
	cache := setup(t)
	cfg, weights, onnx := []byte(`{"hidden_size": 8}`), payload(1000), payload(64)
	writeCache(t, cache, "facebook/vit-mae-base", "main", commitA,
		map[string][]byte{"config.json": cfg, "model.safetensors": weights, "onnx/model.onnx": onnx}, false)
	// A legacy single-name repo, its snapshot holding plain copies and
	// known only by commit (no refs/ file).
	writeCache(t, cache, "bert-base-uncased", "", commitB, map[string][]byte{"config.json": cfg}, true)
	opt := Options{Client: failClient(t)}

	dir, err := Resolve("hf:facebook/vit-mae-base", []string{"config.json", "model.safetensors", "onnx/model.onnx"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "models--facebook--vit-mae-base", "snapshots", commitA); dir != want {
		t.Errorf("dir %s, want %s", dir, want)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "model.safetensors")); !bytes.Equal(got, weights) {
		t.Error("weights differ")
	}
	if _, err := Resolve("hf:facebook/vit-mae-base@"+commitA, []string{"config.json"}, opt); err != nil {
		t.Error(err)
	}
	dir, err = Resolve("hf:bert-base-uncased@"+commitB, []string{"config.json"}, opt)
	if err != nil || filepath.Base(dir) != commitB {
		t.Errorf("copies by commit: %s, %v", dir, err)
	}
}

func TestDownloadIntoEmptyCache(t *testing.T) {
	cache := setup(t)
	h := newFakeHub(t)
	files := map[string]*fakeFile{
		"config.json":       {data: []byte(`{"model_type": "vit_mae"}`)},
		"model.safetensors": {data: payload(5000), lfs: true},
		"onnx/model.onnx":   {data: payload(3000)[1000:], lfs: true},
	}
	h.repos["facebook/vit-mae-base"] = files
	var out bytes.Buffer
	names := []string{"config.json", "model.safetensors", "onnx/model.onnx"}
	dir, err := Resolve("hf:facebook/vit-mae-base", names, Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "models--facebook--vit-mae-base", "snapshots", commitA); dir != want {
		t.Errorf("dir %s, want %s", dir, want)
	}
	checkLayout(t, cache, "facebook/vit-mae-base", "main", commitA, files)

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(out.String(), "downloading model.safetensors (4.9 KiB, 5000 bytes)") {
		t.Errorf("progress:\n%s", out.String())
	}
	// The first HEAD asks by branch, later ones by the commit it named;
	// GETs ask by commit and follow the LFS redirects to the CDN.
	want := []string{
		"HEAD /facebook/vit-mae-base/resolve/main/config.json",
		"GET /facebook/vit-mae-base/resolve/" + commitA + "/config.json",
		"HEAD /facebook/vit-mae-base/resolve/" + commitA + "/model.safetensors",
		"GET /facebook/vit-mae-base/resolve/" + commitA + "/model.safetensors",
		"GET /cdn/" + sha256hex(files["model.safetensors"].data),
		"HEAD /facebook/vit-mae-base/resolve/" + commitA + "/onnx/model.onnx",
		"GET /facebook/vit-mae-base/resolve/" + commitA + "/onnx/model.onnx",
		"GET /cdn/" + sha256hex(files["onnx/model.onnx"].data),
	}
	if got := h.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Everything cached now: no request at all, even online.
	n := len(h.requests())
	if _, err := Resolve("hf:facebook/vit-mae-base", names, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(h.requests()) != n {
		t.Errorf("cached resolve made requests: %v", h.requests()[n:])
	}
}

func TestResumeInterruptedDownload(t *testing.T) {
	cache := setup(t)
	h := newFakeHub(t)
	data := payload(100000)
	files := map[string]*fakeFile{"model.safetensors": {data: data, lfs: true}}
	h.repos["org/model"] = files
	const cut = 30000
	h.cutAfter = cut

	_, err := Resolve("hf:org/model", []string{"model.safetensors"}, Options{})
	if err == nil || !strings.Contains(err.Error(), "model.safetensors") || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("interrupted download: %v", err)
	}
	inc := filepath.Join(cache, "models--org--model", "blobs", sha256hex(data)+".incomplete")
	if got := fileSize(inc); got != cut {
		t.Fatalf("partial file has %d bytes, want %d", got, cut)
	}

	var out bytes.Buffer
	dir, err := Resolve("hf:org/model", []string{"model.safetensors"}, Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "resuming at byte 30000") {
		t.Errorf("progress: %q", out.String())
	}
	reqs := h.requests()
	if last := reqs[len(reqs)-1]; last != fmt.Sprintf("GET /cdn/%s range=bytes=%d-", sha256hex(data), cut) {
		t.Errorf("resume request %q", last)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "model.safetensors")); !bytes.Equal(got, data) {
		t.Error("resumed file differs")
	}
	checkLayout(t, cache, "org/model", "main", commitA, files)
}

func TestResumeWhenServerIgnoresRange(t *testing.T) {
	cache := setup(t)
	h := newFakeHub(t)
	data := payload(20000)
	files := map[string]*fakeFile{"model.safetensors": {data: data, lfs: true}}
	h.repos["org/model"] = files
	h.ignoreRange = true
	// A partial file that is not even a prefix: a server answering 200 to
	// the Range request must make Resolve start over, not append.
	blobs := filepath.Join(cache, "models--org--model", "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blobs, sha256hex(data)+".incomplete"), bytes.Repeat([]byte{0xff}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve("hf:org/model", []string{"model.safetensors"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if reqs := h.requests(); !strings.HasSuffix(reqs[len(reqs)-1], "range=bytes=5000-") {
		t.Errorf("no Range request: %v", reqs)
	}
	checkLayout(t, cache, "org/model", "main", commitA, files)
}

func TestCorruptDownloadRefused(t *testing.T) {
	cache := setup(t)
	h := newFakeHub(t)
	data := payload(4096)
	bad := append([]byte(nil), data...)
	bad[100] ^= 1
	h.repos["org/model"] = map[string]*fakeFile{"model.safetensors": {data: data, lfs: true, serve: bad}}

	_, err := Resolve("hf:org/model", []string{"model.safetensors"}, Options{})
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("corrupt download: %v", err)
	}
	for _, s := range []string{"model.safetensors", "expected " + sha256hex(data), "got " + sha256hex(bad)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	repo := filepath.Join(cache, "models--org--model")
	for _, p := range []string{
		filepath.Join(repo, "blobs", sha256hex(data)),
		filepath.Join(repo, "blobs", sha256hex(data)+".incomplete"),
		filepath.Join(repo, "snapshots", commitA, "model.safetensors"),
	} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestLFSRedirectAndToken(t *testing.T) {
	cache := setup(t)
	h := newFakeHub(t)
	t.Setenv("HF_TOKEN", "hf_secret")
	files := map[string]*fakeFile{"model.safetensors": {data: payload(777), lfs: true}}
	h.repos["org/gated"] = files
	if _, err := Resolve("hf:org/gated@main", []string{"model.safetensors"}, Options{}); err != nil {
		t.Fatal(err)
	}
	sha := sha256hex(files["model.safetensors"].data)
	want := []string{
		"HEAD /org/gated/resolve/main/model.safetensors auth=Bearer hf_secret",
		"GET /org/gated/resolve/" + commitA + "/model.safetensors auth=Bearer hf_secret",
		// Same host, so Go's client keeps the token across the redirect.
		"GET /cdn/" + sha + " auth=Bearer hf_secret",
	}
	if got := h.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The blob is named by X-Linked-Etag, not the redirect's own ETag.
	checkLayout(t, cache, "org/gated", "main", commitA, files)
}

func TestRenamedRepoFollowsRelativeRedirect(t *testing.T) {
	cache := setup(t)
	h := newFakeHub(t)
	files := map[string]*fakeFile{"config.json": {data: []byte("{}")}}
	h.repos["neworg/model"] = files
	h.renamed["oldorg/model"] = "neworg/model"
	dir, err := Resolve("hf:oldorg/model", []string{"config.json"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Cached under the name asked for, as huggingface_hub does.
	if want := filepath.Join(cache, "models--oldorg--model", "snapshots", commitA); dir != want {
		t.Errorf("dir %s, want %s", dir, want)
	}
	checkLayout(t, cache, "oldorg/model", "main", commitA, files)
}

func TestHTTPErrors(t *testing.T) {
	setup(t)
	h := newFakeHub(t)
	h.repos["org/model"] = map[string]*fakeFile{"config.json": {data: []byte("{}")}}
	cases := []struct {
		spec, file string
		kind       error
		says       string
	}{
		{"hf:org/model", "model.safetensors", ErrNotFound, `file "model.safetensors" not found in revision "main"`},
		{"hf:org/model@v9", "config.json", ErrNotFound, `revision "v9" not found`},
		{"hf:org/private", "config.json", ErrAccess, "private or gated"},
		{"hf:org/private", "config.json", ErrNotFound, "set HF_TOKEN"},
	}
	for _, c := range cases {
		_, err := Resolve(c.spec, []string{c.file}, Options{})
		if !errors.Is(err, c.kind) {
			t.Errorf("%s %s: %v, want %v", c.spec, c.file, err, c.kind)
			continue
		}
		for _, s := range []string{strconv.Quote(c.spec), c.file, h.srv.URL + "/", c.says} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q lacks %q", err, s)
			}
		}
	}
}

func TestOfflineMissingFile(t *testing.T) {
	cache := setup(t)
	t.Setenv("HF_HUB_OFFLINE", "1")
	writeCache(t, cache, "org/model", "main", commitA, map[string][]byte{"config.json": []byte("{}")}, false)
	opt := Options{Client: failClient(t)}
	_, err := Resolve("hf:org/model", []string{"config.json", "model.safetensors"}, opt)
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "offline") || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("missing file offline: %v", err)
	}
	_, err = Resolve("hf:org/model@dev", []string{"config.json"}, opt)
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "refs/dev") {
		t.Errorf("unknown revision offline: %v", err)
	}
	t.Setenv("HF_HUB_OFFLINE", "")
	if _, err := Resolve("hf:org/model", []string{"config.json"}, Options{Offline: true, Client: failClient(t)}); err != nil {
		t.Errorf("cached file with Options.Offline: %v", err)
	}
}

// When the branch has moved since the cache was filled, the new snapshot
// gets every requested file, reusing unchanged blobs, and refs/main moves.
func TestBranchMovedRelinksIntoNewSnapshot(t *testing.T) {
	cache := setup(t)
	cfg := []byte(`{"v": 1}`)
	writeCache(t, cache, "org/model", "main", commitB, map[string][]byte{"config.json": cfg}, false)
	// writeCache names blobs by sha256; rename to the git etag the hub uses.
	blobs := filepath.Join(cache, "models--org--model", "blobs")
	if err := os.Rename(filepath.Join(blobs, sha256hex(cfg)), filepath.Join(blobs, gitBlobSHA(cfg))); err != nil {
		t.Fatal(err)
	}
	h := newFakeHub(t)
	files := map[string]*fakeFile{"config.json": {data: cfg}, "model.safetensors": {data: payload(2048), lfs: true}}
	h.repos["org/model"] = files
	dir, err := Resolve("hf:org/model", []string{"config.json", "model.safetensors"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir) != commitA {
		t.Errorf("dir %s, want snapshot %s", dir, commitA)
	}
	checkLayout(t, cache, "org/model", "main", commitA, files)
	for _, r := range h.requests() {
		if strings.HasPrefix(r, "GET") && strings.Contains(r, "config.json") {
			t.Errorf("unchanged blob downloaded again: %s", r)
		}
	}
}

func TestBadRequests(t *testing.T) {
	setup(t)
	for _, files := range [][]string{nil, {"../x"}, {"/etc/passwd"}, {"a//b"}, {`a\b`}} {
		_, err := Resolve("hf:org/model", files, Options{Client: failClient(t)})
		if err == nil || !strings.Contains(err.Error(), `"hf:org/model"`) {
			t.Errorf("files %q: %v", files, err)
		}
	}
	if _, err := Resolve("hf:org//model", []string{"x"}, Options{}); err == nil {
		t.Error("bad spec accepted")
	}
}

func TestFileURL(t *testing.T) {
	t.Setenv("HF_ENDPOINT", "https://mirror.example/")
	r := &resolver{ref: Ref{RepoID: "org/model", Revision: "refs/pr/1"}}
	got := r.fileURL(r.ref.Revision, "sub dir/a+b.json")
	if want := "https://mirror.example/org/model/resolve/refs%2Fpr%2F1/sub%20dir/a%2Bb.json"; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	for in, want := range map[string]string{`"abc"`: "abc", `W/"abc"`: "abc", "abc": "abc"} {
		if got := normalizeEtag(in); got != want {
			t.Errorf("normalizeEtag(%s) = %s", in, got)
		}
	}
}

// A partial file that already has every byte (a run stopped between the
// last write and the rename) is verified and kept, not fetched again.
func TestCompletePartialFileIsVerifiedNotRefetched(t *testing.T) {
	cache := setup(t)
	h := newFakeHub(t)
	data := payload(3000)
	files := map[string]*fakeFile{"model.safetensors": {data: data, lfs: true}}
	h.repos["org/model"] = files
	blobs := filepath.Join(cache, "models--org--model", "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blobs, sha256hex(data)+".incomplete"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve("hf:org/model", []string{"model.safetensors"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := h.requests(); len(got) != 1 || !strings.HasPrefix(got[0], "HEAD ") {
		t.Errorf("requests %v, want the HEAD only", got)
	}
	checkLayout(t, cache, "org/model", "main", commitA, files)
}
