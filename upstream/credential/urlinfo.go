package credential

import (
	"net/url"
	"strings"
)

// MisreadUserInfo reports whether rawURL, parsed as u, has an "@" outside
// its user information, so that a password in it may be shown as if it
// were the host, path, query or fragment. A user name or password with an
// unescaped "/", "?" or "#" ends the authority early (url.Parse ends it at
// the first of them after "//"): the password's start becomes the host's
// port and its rest the path, query or fragment, where the "@" that
// should have ended the user information lands. Within the authority
// url.Parse ends the user information at the last "@", so one in a user
// name or password ("me@corp:pw@host", "u:p@ss@host") is read as written.
// A URL with no user information and an "@" anywhere (in its path, say)
// counts as misread: it cannot be told apart from one whose user
// information became its path. Whoever prints or dials a URL that may
// hold a credential refuses or hides it whole when this is true.
func MisreadUserInfo(rawURL string, u *url.URL) bool {
	if u.User == nil {
		return strings.Contains(rawURL, "@")
	}
	_, rest, _ := strings.Cut(rawURL, "//") // the scheme holds no "/": the authority's start
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		return strings.Contains(rest[end:], "@")
	}
	return false
}
