package hub

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// fileMeta is what the hub's metadata response says about one file.
type fileMeta struct {
	commit string // X-Repo-Commit: the commit the revision resolved to
	etag   string // X-Linked-Etag or ETag, normalized: the blob's name
	size   int64  // X-Linked-Size or Content-Length; -1 when not given
}

// fetchAll is the online half of Resolve. It pins the revision to one
// commit with the first metadata request and then asks for every other
// file by that commit, the way snapshot_download does, so the files
// returned together always come from the same commit even if the branch
// moves meanwhile. Files already in that commit's snapshot are skipped
// without a request; if the branch moved since the cache was filled, the
// rest are linked into the new snapshot, downloading only blobs that
// changed.
func (r *resolver) fetchAll(files, missing []string) (string, error) {
	first, err := r.head(missing[0], r.ref.Revision)
	if err != nil {
		return "", err
	}
	commit := first.commit
	if r.ref.IsCommit() && commit != r.ref.Revision {
		return "", fmt.Errorf("hub: %q: %s: the hub answered commit %s for commit %s", r.spec, missing[0], commit, r.ref.Revision)
	}
	if !r.ref.IsCommit() {
		if err := r.writeRef(commit); err != nil {
			return "", err
		}
	}
	metas := map[string]fileMeta{missing[0]: first}
	for _, f := range files {
		if r.present(commit, f) {
			continue
		}
		m, ok := metas[f]
		if !ok {
			if m, err = r.head(f, commit); err != nil {
				return "", err
			}
			if m.commit != commit {
				return "", fmt.Errorf("hub: %q: %s: asked for commit %s, the hub answered %s", r.spec, f, commit, m.commit)
			}
			metas[f] = m
		}
		if err := r.fetch(f, m); err != nil {
			return "", err
		}
	}
	return r.snapshotDir(commit), nil
}

// newRequest sets the headers every hub request carries. Accept-Encoding
// identity keeps Go's transport from asking for gzip: the hub would then
// send a compressed body whose length matches neither the announced size
// nor the byte offsets a resumed download relies on.
func (r *resolver) newRequest(method, u string) (*http.Request, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "reprolab-repro-hub/1 (go)")
	req.Header.Set("Accept-Encoding", "identity")
	if t := r.token(); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	return req, nil
}

// maxRelativeRedirects bounds the same-host redirects head follows.
const maxRelativeRedirects = 10

// head fetches a file's metadata like huggingface_hub's
// get_hf_file_metadata: a HEAD request that does not follow redirects,
// because for LFS files the hub answers with a redirect to its CDN and the
// headers that matter (X-Repo-Commit, X-Linked-Etag, X-Linked-Size) are on
// that first response, not on the CDN's. Only relative redirects, which
// the hub uses for renamed repos, are followed, as huggingface_hub does.
func (r *resolver) head(file, rev string) (fileMeta, error) {
	u := r.fileURL(rev, file)
	c := *r.client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for hops := 0; ; hops++ {
		req, err := r.newRequest(http.MethodHead, u)
		if err != nil {
			return fileMeta{}, fmt.Errorf("hub: %q: %s: %w", r.spec, file, err)
		}
		resp, err := c.Do(req)
		if err != nil {
			return fileMeta{}, fmt.Errorf("hub: %q: %s: HEAD %s: %w (set HF_HUB_OFFLINE=1 to use only the cache)", r.spec, file, u, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && hops < maxRelativeRedirects {
			if loc, err := url.Parse(resp.Header.Get("Location")); err == nil && loc.Scheme == "" && loc.Host == "" && loc.Path != "" {
				u = req.URL.ResolveReference(loc).String()
				continue
			}
		}
		if resp.StatusCode >= 400 {
			return fileMeta{}, r.statusError(file, "HEAD", u, resp)
		}
		return r.parseMeta(file, u, resp.Header)
	}
}

// parseMeta reads the headers huggingface_hub reads, and checks that the
// commit and etag are safe to use as names in the cache: they come from
// the network and become path components.
func (r *resolver) parseMeta(file, u string, h http.Header) (fileMeta, error) {
	m := fileMeta{commit: h.Get("X-Repo-Commit"), size: -1}
	etag := h.Get("X-Linked-Etag")
	if etag == "" {
		etag = h.Get("ETag")
	}
	m.etag = normalizeEtag(etag)
	sz := h.Get("X-Linked-Size")
	if sz == "" {
		sz = h.Get("Content-Length")
	}
	if sz != "" {
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || n < 0 {
			return m, fmt.Errorf("hub: %q: %s: HEAD %s: bad size %q", r.spec, file, u, sz)
		}
		m.size = n
	}
	if m.commit == "" || m.etag == "" {
		return m, fmt.Errorf("hub: %q: %s: HEAD %s: no X-Repo-Commit or ETag header; %s does not answer like a Hugging Face hub (check HF_ENDPOINT and any proxy)", r.spec, file, u, r.endpoint())
	}
	if !isCommit(m.commit) {
		return m, fmt.Errorf("hub: %q: %s: HEAD %s: X-Repo-Commit %q is not a commit hash", r.spec, file, u, m.commit)
	}
	if !safeName(m.etag) {
		return m, fmt.Errorf("hub: %q: %s: HEAD %s: etag %q cannot name a blob", r.spec, file, u, m.etag)
	}
	return m, nil
}

// normalizeEtag is huggingface_hub's _normalize_etag: drop the weak
// validator prefix W/ and the quotes, leaving the hash the hub uses (git
// sha1 for regular files, sha256 for LFS files).
func normalizeEtag(e string) string {
	e = strings.TrimSpace(e)
	e = strings.TrimPrefix(e, "W/")
	return strings.Trim(e, `"`)
}

func safeName(s string) bool {
	if s == "" || s[0] == '.' || len(s) > 200 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// statusError explains an HTTP error in the hub's terms. The hub puts the
// precise cause in X-Error-Code (and X-Error-Message), which
// huggingface_hub's hf_raise_for_status also reads; the status code alone
// is the fallback.
func (r *resolver) statusError(file, method, u string, resp *http.Response) error {
	code := resp.Header.Get("X-Error-Code")
	var kind, kind2 error
	var what string
	switch {
	case code == "GatedRepo":
		kind, what = ErrAccess, "the repo is gated: accept its conditions on its hub page, then set HF_TOKEN to a token of that account"
	case code == "DisabledRepo":
		kind, what = ErrAccess, "the repo has been disabled on the hub"
	case code == "RepoNotFound" && resp.StatusCode == http.StatusUnauthorized:
		// The hub answers so for a missing repo and for a private one
		// alike, to not reveal which exists; so the error is both.
		kind, kind2, what = ErrNotFound, ErrAccess, "repository not found, or private or gated: check the name, or set HF_TOKEN to a token that may read it"
	case code == "RepoNotFound":
		kind, what = ErrNotFound, "repository not found"
	case code == "RevisionNotFound":
		kind, what = ErrNotFound, fmt.Sprintf("revision %q not found in the repo", r.ref.Revision)
	case code == "EntryNotFound":
		kind, what = ErrNotFound, fmt.Sprintf("file %q not found in revision %q of the repo", file, r.ref.Revision)
	case resp.StatusCode == http.StatusUnauthorized:
		kind, what = ErrAccess, "not authorized: the repo is private or gated (set HF_TOKEN, or check that it is valid), or it does not exist"
	case resp.StatusCode == http.StatusForbidden:
		kind, what = ErrAccess, "forbidden: the token may not read this repo (a gated repo whose conditions were not accepted, or another account's private repo)"
	case resp.StatusCode == http.StatusNotFound:
		kind, what = ErrNotFound, fmt.Sprintf("not found: the repo, revision %q or file %q does not exist", r.ref.Revision, file)
	case resp.StatusCode == http.StatusTooManyRequests:
		what = "rate limited by the hub; retry later or set HF_TOKEN"
	default:
		what = "unexpected answer"
	}
	if msg := resp.Header.Get("X-Error-Message"); msg != "" {
		what += " (hub: " + msg + ")"
	}
	if kind == nil {
		return fmt.Errorf("hub: %q: %s: %s %s: %s: %s", r.spec, file, method, u, resp.Status, what)
	}
	if kind2 != nil {
		return fmt.Errorf("hub: %q: %s: %s %s: %s: %w or %w: %s", r.spec, file, method, u, resp.Status, kind, kind2, what)
	}
	return fmt.Errorf("hub: %q: %s: %s %s: %s: %w: %s", r.spec, file, method, u, resp.Status, kind, what)
}

// fetch makes snapshots/<commit>/<file> point at the blob m names,
// downloading the blob unless another file or an earlier commit already
// brought it (blobs are shared by content).
func (r *resolver) fetch(file string, m fileMeta) error {
	blob := filepath.Join(r.repoDir, "blobs", m.etag)
	if _, err := os.Stat(blob); err != nil {
		if err := r.download(file, m, blob); err != nil {
			return err
		}
	}
	return r.link(m.commit, file, blob)
}

// download fetches a blob into blob+".incomplete", huggingface_hub's name
// for a partial file, resuming one left by an interrupted run with a Range
// request, and renames it into place only once it is verified, so a blob
// that exists is always whole.
//
// The GET follows redirects (the hub sends LFS files to a CDN) and asks by
// commit, so it fetches exactly the version the metadata described.
// Concurrent downloads of the same blob by two processes are not locked
// against each other; the checksum catches LFS files they would mangle.
func (r *resolver) download(file string, m fileMeta, blob string) error {
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return fmt.Errorf("hub: %q: %s: %w", r.spec, file, err)
	}
	inc := blob + ".incomplete"
	u := r.fileURL(m.commit, file)
	fail := func(format string, a ...any) error {
		return fmt.Errorf("hub: %q: %s: GET %s: "+format, append([]any{r.spec, file, u}, a...)...)
	}
	announced := false
	var h hash.Hash
	// Restarts happen when the server cannot continue the partial file
	// (ignores Range, answers 416, or starts elsewhere); two are plenty.
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			return fail("the server would not serve the file from a consistent offset")
		}
		have := fileSize(inc)
		if m.size >= 0 && have > m.size {
			// Longer than the file: not a prefix of it, start over.
			os.Remove(inc)
			have = 0
		}
		if !announced && r.opt.Out != nil {
			line := fmt.Sprintf("hub: %s: downloading %s (%s)", r.ref, file, formatSize(m.size))
			if have > 0 {
				line += fmt.Sprintf(", resuming at byte %d", have)
			}
			fmt.Fprintln(r.opt.Out, line)
			announced = true
		}
		if m.size >= 0 && have == m.size {
			// An earlier run got every byte but stopped before the
			// rename; only verification is left.
			f, err := os.OpenFile(inc, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return fail("%w", err)
			}
			f.Close()
			h = nil
			break
		}
		req, err := r.newRequest(http.MethodGet, u)
		if err != nil {
			return fail("%w", err)
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := r.client().Do(req)
		if err != nil {
			return fail("%w (partial download kept in %s; run again to resume)", err, inc)
		}
		var f *os.File
		switch {
		case resp.StatusCode == http.StatusPartialContent:
			if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
				resp.Body.Close()
				os.Remove(inc)
				continue
			}
			f, err = os.OpenFile(inc, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err == nil {
				// Hash the kept prefix now, so the finished file needs
				// no second read.
				h, err = hashFile(inc)
			}
		case resp.StatusCode == http.StatusOK:
			// The whole file: a fresh download, or a server that
			// ignored Range; either way the partial file is dropped.
			f, err = os.OpenFile(inc, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			h = sha256.New()
			have = 0
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
			resp.Body.Close()
			os.Remove(inc)
			continue
		default:
			err := r.statusError(file, "GET", u, resp)
			resp.Body.Close()
			return err
		}
		if err != nil {
			resp.Body.Close()
			if f != nil {
				f.Close()
			}
			return fail("%w", err)
		}
		n, cerr := io.Copy(io.MultiWriter(f, h), resp.Body)
		resp.Body.Close()
		if err := f.Close(); cerr == nil {
			cerr = err
		}
		if cerr != nil {
			total := "?"
			if m.size >= 0 {
				total = strconv.FormatInt(m.size, 10)
			}
			return fail("interrupted after %d of %s bytes: %w (partial download kept in %s; run again to resume)",
				have+n, total, cerr, inc)
		}
		break
	}
	return r.verify(file, u, m, inc, blob, h)
}

// verify checks the finished partial file before it becomes a blob: its
// size against the announced size, and, for LFS files, whose etag is the
// sha256 of the content, the hash. A mismatch deletes the file, since
// resuming it would only extend the damage; a file merely too short is
// kept for the next run to resume.
func (r *resolver) verify(file, u string, m fileMeta, inc, blob string, h hash.Hash) error {
	got := fileSize(inc)
	if m.size >= 0 && got < m.size {
		return fmt.Errorf("hub: %q: %s: GET %s: the body ended after %d of %d bytes (partial download kept in %s; run again to resume)",
			r.spec, file, u, got, m.size, inc)
	}
	if m.size >= 0 && got != m.size {
		os.Remove(inc)
		return fmt.Errorf("hub: %q: %s: GET %s: %w: expected %d bytes, got %d; the download was deleted",
			r.spec, file, u, ErrIntegrity, m.size, got)
	}
	if isHex(m.etag, 64) {
		if h == nil {
			var err error
			if h, err = hashFile(inc); err != nil {
				return fmt.Errorf("hub: %q: %s: %w", r.spec, file, err)
			}
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != m.etag {
			os.Remove(inc)
			return fmt.Errorf("hub: %q: %s: GET %s: %w: sha256 expected %s, got %s; the download was deleted",
				r.spec, file, u, ErrIntegrity, m.etag, sum)
		}
	}
	if err := os.Rename(inc, blob); err != nil {
		return fmt.Errorf("hub: %q: %s: %w", r.spec, file, err)
	}
	return nil
}

// link points snapshots/<commit>/<file> at the blob with a relative
// symlink, as huggingface_hub does (../../blobs/<etag>, one more ../ per
// subfolder), so the cache can be moved or mounted elsewhere. Where
// symlinks are not allowed it copies the blob instead, which the cache
// lookup accepts too. Either is created under a temporary name and renamed
// over any dangling link, so readers never see a half-made file.
func (r *resolver) link(commit, file, blob string) error {
	dst := r.snapshotPath(commit, file)
	fail := func(err error) error {
		return fmt.Errorf("hub: %q: %s: linking into the snapshot: %w", r.spec, file, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail(err)
	}
	rel, err := filepath.Rel(filepath.Dir(dst), blob)
	if err != nil {
		return fail(err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", dst, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err != nil {
		if err := copyFile(blob, tmp); err != nil {
			os.Remove(tmp)
			return fail(err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func hashFile(p string) (hash.Hash, error) {
	h := sha256.New()
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h, nil
}

// fileSize is the size of p, 0 when it does not exist.
func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// contentRangeStart parses the first byte of "bytes START-END/TOTAL".
func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil
}

// formatSize gives a size in binary units for a progress line, with the
// exact byte count beside it so it can be compared with the hub's listing.
func formatSize(n int64) string {
	if n < 0 {
		return "size unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s, %d bytes", v, []string{"KiB", "MiB", "GiB", "TiB"}[i], n)
}
