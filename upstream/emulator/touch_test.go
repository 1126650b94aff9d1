package emulator_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestTouch: Touch moves a secret's updated_at, as GET and the list report
// it, keeps its value, and fails for a secret that does not exist.
func TestTouch(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	const value = "touched-value"
	e.want(e.put(envStage, "TOUCHED", value, nil), http.StatusCreated)
	at := time.Date(2031, 2, 3, 4, 5, 6, 789, time.UTC)
	if err := e.emu.Touch(envStage, "touched", at); err != nil {
		t.Fatal(err)
	}
	var sec secretJSON
	e.want(e.do("GET", "/"+envStage+"/secrets/TOUCHED", nil), http.StatusOK).json(t, &sec)
	if sec.UpdatedAt != "2031-02-03T04:05:06Z" {
		t.Errorf("updated_at %q, want 2031-02-03T04:05:06Z", sec.UpdatedAt)
	}
	var list secretList
	e.want(e.do("GET", "/"+envStage+"/secrets", nil), http.StatusOK).json(t, &list)
	if len(list.Secrets) != 1 || list.Secrets[0].UpdatedAt != sec.UpdatedAt {
		t.Errorf("list %+v", list)
	}
	if got, err := e.emu.Open(envStage, "TOUCHED"); err != nil || string(got) != value {
		t.Errorf("value after Touch: %v", err)
	}
	for _, tc := range []struct{ scope, name string }{{envStage, "MISSING"}, {"nowhere", "TOUCHED"}} {
		if err := e.emu.Touch(tc.scope, tc.name, at); err == nil {
			t.Errorf("Touch(%q, %q) succeeded", tc.scope, tc.name)
		}
	}
}
