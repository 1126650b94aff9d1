package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestGatewayRepositoryNames selects repositories by name through the JSON
// gateway, with the broker pointed at the emulator as at GitHub: names are
// resolved (each once, then from the cache), mixed with ids, taken as the
// last path segment of Add/RemoveSelectedRepository, and a missing name is
// a 400 naming it with nothing sent to GitHub.
func TestGatewayRepositoryNames(t *testing.T) {
	const token = "ghp_PLANTEDnamesTOKEN0123456789abcdefgh"
	emu := emulator.New(emulator.Options{Token: token})
	demo := emu.SeedDemo()
	id := map[string]int64{}
	for _, r := range demo.Repos {
		id[r.Name] = r.ID
	}
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + hs.URL, "--upstream-token-file=" + tokenFile, "--upstream-write-interval=10ms",
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	const secret = "/v1/orgs/octo-org/actions/secrets/NAMED"
	ids := func(names ...string) []int64 {
		var out []int64
		for _, n := range names {
			out = append(out, id[n])
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range []struct {
		name, method, path, body string
		wantStatus               int
		wantMsg                  string // in a failure's message
		want                     []int64
		// lookups is how many GET /repos/{owner}/{repo} the step sends;
		// writes how many PUTs and DELETEs.
		lookups, writes int
	}{
		{"create with names", http.MethodPut, secret, `{"value":"v","visibility":"selected","selected_repositories":["hello-world","docs"]}`,
			http.StatusCreated, "", ids("hello-world", "docs"), 2, 1},
		{"update with names and ids, from the cache", http.MethodPut, secret,
			`{"value":"v","visibility":"selected","selected_repositories":["docs"],"selected_repository_ids":["` + itoa(id["secret-sauce"]) + `"]}`,
			http.StatusOK, "", ids("docs", "secret-sauce"), 0, 1},
		{"a missing name", http.MethodPut, secret, `{"value":"v","visibility":"selected","selected_repositories":["docs","no-such-repo"]}`,
			http.StatusBadRequest, `selected_repositories: repository "no-such-repo" was not found in organization "octo-org"`,
			ids("docs", "secret-sauce"), 1, 0},
		{"set by name", http.MethodPut, secret + "/repositories", `{"selected_repositories":["hello-world"]}`,
			http.StatusNoContent, "", ids("hello-world"), 0, 1},
		{"add by name in the path", http.MethodPut, secret + "/repositories/secret-sauce", "",
			http.StatusNoContent, "", ids("hello-world", "secret-sauce"), 1, 1},
		{"add by id in the path", http.MethodPut, secret + "/repositories/" + itoa(id["docs"]), "",
			http.StatusNoContent, "", ids("hello-world", "secret-sauce", "docs"), 0, 1},
		{"remove by name in the path", http.MethodDelete, secret + "/repositories/Hello-World", "",
			http.StatusNoContent, "", ids("secret-sauce", "docs"), 0, 1},
		{"add a missing name in the path", http.MethodPut, secret + "/repositories/nowhere", "",
			http.StatusBadRequest, `repository: repository "nowhere" was not found in organization "octo-org"`,
			ids("secret-sauce", "docs"), 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lookups := emu.Count(emulator.RouteGetRepo)
			writes := emu.Count(emulator.RoutePutOrgSecret) + emu.Count(emulator.RouteSetSelectedRepos) +
				emu.Count(emulator.RouteAddSelectedRepo) + emu.Count(emulator.RouteRemoveSelectedRepo)
			code, body := b.do(t, tt.method, tt.path, tt.body)
			if code != tt.wantStatus {
				t.Fatalf("%s %s = %d %v, want %d", tt.method, tt.path, code, body, tt.wantStatus)
			}
			if msg, _ := body["message"].(string); tt.wantMsg != "" && !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q, want it to hold %q", msg, tt.wantMsg)
			}
			if n := emu.Count(emulator.RouteGetRepo) - lookups; n != tt.lookups {
				t.Errorf("%d repository lookups, want %d", n, tt.lookups)
			}
			n := emu.Count(emulator.RoutePutOrgSecret) + emu.Count(emulator.RouteSetSelectedRepos) +
				emu.Count(emulator.RouteAddSelectedRepo) + emu.Count(emulator.RouteRemoveSelectedRepo) - writes
			if n != tt.writes {
				t.Errorf("%d writes to GitHub, want %d", n, tt.writes)
			}
			got, err := emu.SelectedRepositoryIDs("orgs/octo-org/actions", "NAMED")
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("selection %v (%v), want %v", got, err, tt.want)
			}
		})
	}
	for _, planted := range []string{token} {
		if strings.Contains(b.logs.String(), planted) {
			t.Error("the token reached the broker's logs")
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
