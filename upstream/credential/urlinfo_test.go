package credential

import (
	"net/url"
	"testing"
)

func TestMisreadUserInfo(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want bool
	}{
		{"https://host/keys", false},
		{"https://u:pw@host/keys", false},
		{"https://u:p@ss@host/keys", false},         // the last "@" of the authority ends the user information
		{"https://me@corp:pw@host:443/keys", false}, // read as written
		{"redis://default:p%40ss@redis:6379/0", false},
		{"https://u:4321/pw@host/keys", true}, // "/" in the password: no user information left
		{"https://u:4321?pw@host/keys", true},
		{"https://u:4321#pw@host/keys", true},
		{"https://@:4321#pw@host", true},            // user information "", the password's start a port
		{"https://me@corp:4321/pw@host/keys", true}, // user "me", the password a path
		{"https://me@corp:4321?pw@host", true},
		{"https://host/keys@v1", true}, // no user information, an "@": cannot be told apart
		{"https://u:pw@host/keys?to=a@b", true},
		{"https://[::1]:8443/keys", false},
		{"https://u:pw@[::1]:8443/keys", false},
	} {
		u, err := url.Parse(tt.raw)
		if err != nil {
			t.Fatalf("%s: %v", tt.raw, err)
		}
		if got := MisreadUserInfo(tt.raw, u); got != tt.want {
			t.Errorf("MisreadUserInfo(%q) = %t, want %t", tt.raw, got, tt.want)
		}
	}
}
