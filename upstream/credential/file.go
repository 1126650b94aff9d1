package credential

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// watchedFile is a small file read again when it changes. A cheap stat on
// each use notices a change (another file behind the path, as when a
// Kubernetes Secret update swaps a symlink, another size or another
// modification time); then the content is read and its SHA-256 compared,
// so that a touch without a change parses nothing again.
type watchedFile struct {
	path string

	mu   sync.Mutex
	info os.FileInfo
	sum  [sha256.Size]byte
}

// changed reports whether the file's content differs from what was read
// last, and returns it when it does (or when force is set and it is
// readable). The first call always returns the content.
func (w *watchedFile) changed(force bool) ([]byte, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path)
	if err != nil {
		return nil, false, WithoutPath(err)
	}
	if !force && w.info != nil && os.SameFile(w.info, fi) && fi.Size() == w.info.Size() && fi.ModTime().Equal(w.info.ModTime()) {
		return nil, false, nil
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return nil, false, WithoutPath(err)
	}
	sum := sha256.Sum256(b)
	first := w.info == nil
	w.info = fi
	if !first && sum == w.sum {
		return nil, false, nil
	}
	w.sum = sum
	return b, true, nil
}

// TokenFile is a token Credential and Source read from a file: one word,
// surrounding white space ignored. It notices a changed file on each use
// (a stat) and reads it again; a 401 makes it read the file once more
// (Renew). Its label is "token".
type TokenFile struct {
	file watchedFile

	mu  sync.Mutex
	tok string
}

// NewTokenFile reads the token from path. It fails when the file cannot be
// read, is empty or holds more than one word; its errors never hold the
// token.
func NewTokenFile(path string) (*TokenFile, error) {
	f := &TokenFile{file: watchedFile{path: path}}
	if _, err := f.reload(false); err != nil {
		return nil, err
	}
	return f, nil
}

// reload reads the file when it changed (or when force is set) and
// reports whether the token changed.
func (f *TokenFile) reload(force bool) (bool, error) {
	b, changed, err := f.file.changed(force)
	if err != nil {
		return false, fmt.Errorf("credential: token file: %w", err)
	}
	if !changed {
		return false, nil
	}
	tok, err := parseToken(f.file.path, b)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if tok == f.tok {
		return false, nil
	}
	f.tok = tok
	return true, nil
}

// parseToken checks a token file's content; its errors never hold it.
func parseToken(path string, b []byte) (string, error) {
	tok := string(bytes.TrimSpace(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("credential: token file %s is empty", path)
	case len(strings.Fields(tok)) != 1:
		return "", fmt.Errorf("credential: token file %s holds more than one word; it must hold the token alone", path)
	case !httpguts.ValidHeaderFieldValue(tok):
		// net/http would refuse every request that sends it ("invalid
		// header field value"): a NUL, another control character, DEL.
		return "", fmt.Errorf("credential: token file %s holds a control character; an HTTP header cannot carry the token", path)
	}
	return tok, nil
}

// Label returns "token".
func (*TokenFile) Label() string { return LabelToken }

// Token returns the file's token, read again when the file changed. When
// the file became unreadable or invalid, it keeps the token it had and
// returns it: a Secret update in progress must not fail calls.
func (f *TokenFile) Token(context.Context) (string, error) {
	_, err := f.reload(false)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tok == "" {
		return "", err
	}
	return f.tok, nil
}

// Renew reads the file again after GitHub refused refused. It returns nil
// when the file now holds another token than refused (another caller may
// have read it already), and an error when it does not.
func (f *TokenFile) Renew(_ context.Context, refused string) error {
	if _, err := f.reload(true); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tok == refused {
		return errors.New("credential: GitHub refused the token and the token file holds the same token")
	}
	return nil
}

// For returns f: a token serves every owner.
func (f *TokenFile) For(context.Context, string, string) (Credential, error) { return f, nil }

// Probe returns f and ProbeRateLimit.
func (f *TokenFile) Probe() (Credential, string) { return f, ProbeRateLimit }

// String hides the token from %v, and the file's path, which may be the
// token itself given by mistake (WithoutPath).
func (f *TokenFile) String() string { return "credential.TokenFile" }

// GoString hides the token from %#v.
func (f *TokenFile) GoString() string { return f.String() }

// WithoutPath is err without the path an *fs.PathError names ("open: no
// such file or directory"): the path given for a file that holds a
// credential (a token, a key, the callers file, a JWKS) may be the
// secret itself, given by mistake (a Kubernetes secretKeyRef filling the
// variable meant for the mounted file's path), and an error must not
// print it. Every reader of such a file passes its errors through it.
func WithoutPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
