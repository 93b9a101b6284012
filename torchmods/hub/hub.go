// Package hub resolves "hf:ORG/NAME[@REV]" references, as in a config's
// pretrained = "hf:facebook/vit-mae-base", to a local folder holding the
// requested files of a Hugging Face hub model repo.
//
// It reads and writes the cache exactly as Python's huggingface_hub does
// (the library behind transformers, timm and diffusers), so a model that
// one side downloaded is found by the other without a second copy:
//
//	$HF_HUB_CACHE/models--ORG--NAME/
//	    refs/main                      the commit hash "main" pointed to
//	    blobs/<etag>                   file contents, named by their etag
//	    snapshots/<commit>/<file>      relative symlink to ../../blobs/<etag>
//
// Resolve looks in the cache first and touches the network only when a
// requested file is missing there (and never when HF_HUB_OFFLINE is set),
// so runs on machines without internet access work from a warmed cache.
package hub

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Prefix marks a hub reference in a config value, telling it apart from a
// local path.
const Prefix = "hf:"

// DefaultRevision is the revision a spec without @REV means, as on the hub.
const DefaultRevision = "main"

// DefaultEndpoint is the hub used when neither Options.Endpoint nor
// $HF_ENDPOINT says otherwise.
const DefaultEndpoint = "https://huggingface.co"

// Errors that Resolve wraps, so callers can tell a setup problem (offline,
// no access) from a typo (not found) or a broken transfer (integrity) with
// errors.Is.
var (
	// ErrOffline: a file is not cached and HF_HUB_OFFLINE (or
	// Options.Offline) forbids downloading it.
	ErrOffline = errors.New("offline")
	// ErrNotFound: the hub has no such repo, revision or file (404).
	ErrNotFound = errors.New("not found")
	// ErrAccess: the hub refused access (401/403): a private or gated repo
	// without a token that may read it.
	ErrAccess = errors.New("access denied")
	// ErrIntegrity: a downloaded file's sha256 or size is not what the hub
	// announced; the partial file has been deleted.
	ErrIntegrity = errors.New("integrity check failed")
)

// Ref is a parsed hub reference.
type Ref struct {
	// RepoID is "ORG/NAME", or just "NAME" for the legacy repos that
	// predate organizations (bert-base-uncased, gpt2).
	RepoID string
	// Revision is a branch, a tag or a 40-hex commit; "main" by default.
	Revision string
}

// String gives the reference back in spec form, revision included.
func (r Ref) String() string { return Prefix + r.RepoID + "@" + r.Revision }

// IsCommit reports whether Revision is a full commit hash; such a
// revision names an immutable snapshot, so the cache needs no refs/ file
// to find it.
func (r Ref) IsCommit() bool { return isCommit(r.Revision) }

// IsSpec reports whether s is meant as a hub reference (starts with "hf:"),
// so callers can route it here and everything else to the file system.
func IsSpec(s string) bool { return strings.HasPrefix(s, Prefix) }

// ParseSpec parses "hf:ORG/NAME[@REV]" or "hf:NAME[@REV]". It applies the
// hub's own repo-name rules so a typo fails here, with the spec quoted,
// rather than as a puzzling 401 from the server.
func ParseSpec(spec string) (Ref, error) {
	bad := func(why string) (Ref, error) {
		return Ref{}, fmt.Errorf("hub: bad spec %q: %s (want hf:ORG/NAME[@REV])", spec, why)
	}
	rest, ok := strings.CutPrefix(spec, Prefix)
	if !ok {
		return bad("no hf: prefix")
	}
	// Repo ids cannot contain '@', so the first one starts the revision.
	repo, rev, hasRev := strings.Cut(rest, "@")
	if err := checkRepoID(repo); err != nil {
		return bad(err.Error())
	}
	if !hasRev {
		rev = DefaultRevision
	}
	if err := checkRevision(rev); err != nil {
		return bad(err.Error())
	}
	return Ref{RepoID: repo, Revision: rev}, nil
}

// checkRepoID applies huggingface_hub's validate_repo_id: one or two
// names of [A-Za-z0-9_.-], not starting or ending in '-' or '.', without
// "--" (it would make the cache folder name ambiguous) or "..".
func checkRepoID(repo string) error {
	if repo == "" {
		return errors.New("missing repo name")
	}
	if len(repo) > 96 {
		return errors.New("repo id longer than 96 characters")
	}
	parts := strings.Split(repo, "/")
	if len(parts) > 2 {
		return errors.New("repo id has more than one '/'")
	}
	for _, p := range parts {
		if p == "" {
			return errors.New("empty organization or name")
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return fmt.Errorf("repo id has %q (only letters, digits, '_', '-' and '.' are allowed)", c)
			}
		}
		if strings.ContainsAny(p[:1], "-.") || strings.ContainsAny(p[len(p)-1:], "-.") {
			return errors.New("repo id parts cannot start or end with '-' or '.'")
		}
	}
	if strings.Contains(repo, "--") || strings.Contains(repo, "..") {
		return errors.New("repo id cannot contain \"--\" or \"..\"")
	}
	if strings.HasSuffix(repo, ".git") {
		return errors.New("repo id cannot end in .git")
	}
	return nil
}

// checkRevision accepts git branch and tag names (including slashed ones
// like refs/pr/1) but nothing that could step outside refs/ once the
// revision becomes a path in the cache.
func checkRevision(rev string) error {
	if rev == "" {
		return errors.New("empty revision after '@'")
	}
	for _, c := range rev {
		if c <= ' ' || c == 0x7f || strings.ContainsRune(`~^:?*[\`, c) {
			return fmt.Errorf("revision has %q", c)
		}
	}
	for _, seg := range strings.Split(rev, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("revision %q has an empty, '.' or '..' path segment", rev)
		}
	}
	return nil
}

// checkFile rejects file names that would escape the snapshot folder; the
// hub's names are slash-separated relative paths like "onnx/model.onnx".
func checkFile(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("bad file name %q (want a relative slash-separated path)", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("bad file name %q (empty, '.' or '..' path segment)", name)
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isCommit matches huggingface_hub's REGEX_COMMIT_HASH: 40 lowercase hex.
func isCommit(s string) bool { return isHex(s, 40) }

// CacheDir is the hub cache root, chosen as huggingface_hub chooses it so
// both share one cache: $HF_HUB_CACHE, else the legacy
// $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
func CacheDir() string {
	for _, v := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		if d := os.Getenv(v); d != "" {
			return expandHome(d)
		}
	}
	return filepath.Join(hfHome(), "hub")
}

// hfHome is $HF_HOME with huggingface_hub's default; the token file lives
// there too.
func hfHome() string {
	if d := os.Getenv("HF_HOME"); d != "" {
		return expandHome(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(expandHome(d), "huggingface")
	}
	return filepath.Join(expandHome("~"), ".cache", "huggingface")
}

// expandHome does what Python's os.path.expanduser does for "~" and
// "~/...", which huggingface_hub applies to every cache variable.
func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[1:])
}

// RepoFolderName is the repo's folder in the cache: "models--" then the
// repo id with '/' replaced by "--" (huggingface_hub's repo_folder_name).
func RepoFolderName(repoID string) string {
	return "models--" + strings.ReplaceAll(repoID, "/", "--")
}

// Options tune Resolve; the zero value follows the environment like
// huggingface_hub does.
type Options struct {
	// CacheDir overrides CacheDir().
	CacheDir string
	// Endpoint overrides $HF_ENDPOINT (default https://huggingface.co),
	// e.g. for a mirror.
	Endpoint string
	// Token overrides $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN and the token
	// file ($HF_TOKEN_PATH, default $HF_HOME/token) that `hf auth login`
	// writes; it is sent as "Authorization: Bearer" for gated and private
	// repos.
	Token string
	// Offline forbids the network like HF_HUB_OFFLINE=1.
	Offline bool
	// Client makes the requests; http.DefaultClient when nil. Its redirect
	// policy applies to downloads; metadata requests never follow
	// redirects to other hosts.
	Client *http.Client
	// Out, when set, gets one line per file that is downloaded, with its
	// size, so a long first run is not silent.
	Out io.Writer
}

// resolver carries one Resolve call's settings so that every error can
// name the spec it came from.
type resolver struct {
	spec    string
	ref     Ref
	repoDir string
	opt     Options
}

// Resolve returns the snapshot folder, snapshots/<commit> in the cache,
// that holds every one of files for spec, downloading those the cache
// lacks.
//
// The cache is consulted first: a commit revision names its snapshot
// directly, any other revision is looked up in refs/<rev>. When every file
// is there, Resolve returns without any network access, so it is cheap to
// call on each run and works offline; the price is that a branch like
// "main" is not re-checked for new commits while the cached files satisfy
// the request (pin a commit, or clear refs/<rev>, to move on).
//
// Otherwise, unless offline, it asks the hub which commit the revision
// points to and fetches the missing files of that commit (resuming partial
// downloads, verifying sha256 for LFS files), updating refs/<rev>.
func Resolve(spec string, files []string, opt Options) (string, error) {
	ref, err := ParseSpec(spec)
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("hub: %q: no files requested", spec)
	}
	for _, f := range files {
		if err := checkFile(f); err != nil {
			return "", fmt.Errorf("hub: %q: %w", spec, err)
		}
	}
	cache := opt.CacheDir
	if cache == "" {
		cache = CacheDir()
	}
	// Absolute, so the relative symlink targets computed later are right
	// whatever the working directory.
	cache, err = filepath.Abs(cache)
	if err != nil {
		return "", fmt.Errorf("hub: %q: cache dir: %w", spec, err)
	}
	r := &resolver{spec: spec, ref: ref, repoDir: filepath.Join(cache, RepoFolderName(ref.RepoID)), opt: opt}

	commit := r.cachedCommit()
	var missing []string
	for _, f := range files {
		if commit == "" || !r.present(commit, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return r.snapshotDir(commit), nil
	}
	if r.offline() {
		why := fmt.Sprintf("not in the cache %s: %s", r.repoDir, strings.Join(missing, ", "))
		if commit == "" {
			if ref.IsCommit() {
				why = fmt.Sprintf("commit %s is not in the cache %s", ref.Revision, r.repoDir)
			} else {
				why = fmt.Sprintf("revision %q has never been resolved into the cache %s (no refs/%s)", ref.Revision, r.repoDir, ref.Revision)
			}
		}
		who := "HF_HUB_OFFLINE is set"
		if opt.Offline {
			who = "Options.Offline is set"
		}
		return "", fmt.Errorf("hub: %q: %w (%s, so nothing is downloaded): %s", spec, ErrOffline, who, why)
	}
	return r.fetchAll(files, missing)
}

// cachedCommit is the commit the cache says the revision means, or "".
func (r *resolver) cachedCommit() string {
	if r.ref.IsCommit() {
		return r.ref.Revision
	}
	b, err := os.ReadFile(r.refPath())
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(b))
	if !isCommit(c) {
		return ""
	}
	return c
}

func (r *resolver) refPath() string {
	return filepath.Join(r.repoDir, "refs", filepath.FromSlash(r.ref.Revision))
}

func (r *resolver) snapshotDir(commit string) string {
	return filepath.Join(r.repoDir, "snapshots", commit)
}

func (r *resolver) snapshotPath(commit, file string) string {
	return filepath.Join(r.snapshotDir(commit), filepath.FromSlash(file))
}

// present reports whether the snapshot has file: a symlink whose blob
// exists (a dangling one, left by a deleted blob, does not count) or a
// plain file, as copies on file systems without symlinks are.
func (r *resolver) present(commit, file string) bool {
	st, err := os.Stat(r.snapshotPath(commit, file))
	return err == nil && st.Mode().IsRegular()
}

// writeRef records which commit the revision pointed to, as
// huggingface_hub does (the bare hash, no newline), so later offline runs
// can find the snapshot. The temporary file and rename keep a concurrent
// reader from seeing a half-written hash.
func (r *resolver) writeRef(commit string) error {
	p := r.refPath()
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("hub: %q: %w", r.spec, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+path.Base(r.ref.Revision)+".tmp*")
	if err != nil {
		return fmt.Errorf("hub: %q: %w", r.spec, err)
	}
	_, err = tmp.WriteString(commit)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hub: %q: writing refs/%s: %w", r.spec, r.ref.Revision, err)
	}
	return nil
}

// offline follows huggingface_hub: Options.Offline, or HF_HUB_OFFLINE (or
// the older TRANSFORMERS_OFFLINE) set to 1, ON, YES or TRUE.
func (r *resolver) offline() bool {
	return r.opt.Offline || isTrue(os.Getenv("HF_HUB_OFFLINE")) || isTrue(os.Getenv("TRANSFORMERS_OFFLINE"))
}

func isTrue(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

func (r *resolver) endpoint() string {
	e := r.opt.Endpoint
	if e == "" {
		e = os.Getenv("HF_ENDPOINT")
	}
	if e == "" {
		e = DefaultEndpoint
	}
	return strings.TrimRight(e, "/")
}

// token looks where huggingface_hub's get_token looks, in its order.
func (r *resolver) token() string {
	if r.opt.Token != "" {
		return r.opt.Token
	}
	for _, v := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if t := strings.TrimSpace(os.Getenv(v)); t != "" {
			return t
		}
	}
	p := os.Getenv("HF_TOKEN_PATH")
	if p == "" {
		p = filepath.Join(hfHome(), "token")
	}
	b, err := os.ReadFile(expandHome(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (r *resolver) client() *http.Client {
	if r.opt.Client != nil {
		return r.opt.Client
	}
	return http.DefaultClient
}

// fileURL is the hub's resolve URL, built like huggingface_hub's
// hf_hub_url: the revision escaped whole (refs/pr/1 becomes
// refs%2Fpr%2F1), the file name escaped but keeping its slashes.
func (r *resolver) fileURL(rev, file string) string {
	return r.endpoint() + "/" + r.ref.RepoID + "/resolve/" + quote(rev, "") + "/" + quote(file, "/")
}

// quote is Python's urllib.parse.quote: everything but letters, digits,
// "_.-~" and safe is percent-encoded.
func quote(s, safe string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.-~", c) >= 0 || strings.IndexByte(safe, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
