package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// tornWriter writes the first half of the next Write's bytes and fails
// it while torn is set (a disk that filled up in the middle of a line),
// then writes whole.
type tornWriter struct {
	buf  bytes.Buffer
	torn bool
}

func (w *tornWriter) Write(p []byte) (int, error) {
	if w.torn {
		w.torn = false
		n, _ := w.buf.Write(p[:len(p)/2])
		return n, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

// TestTornLineDoesNotSpoilTheNext: a record that could be written only
// in part (refused to its caller) leaves a fragment without its newline;
// the next record, which Write reports written, must still be a line of
// its own that decodes, not glued to the fragment.
func TestTornLineDoesNotSpoilTheNext(t *testing.T) {
	w := &tornWriter{torn: true}
	l := NewWriter(w, nil)
	if err := l.Write(Record{Phase: PhaseIntent, Resource: "repos/o/r/actions/secrets/TORN"}); err == nil {
		t.Fatal("a record written in part returned nil")
	}
	if err := l.Write(Record{Phase: PhaseIntent, Resource: "repos/o/r/actions/secrets/NEXT"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Record{Phase: PhaseOutcome, Resource: "repos/o/r/actions/secrets/NEXT", Outcome: "OK"}); err != nil {
		t.Fatal(err)
	}
	var decoded []string
	for line := range strings.Lines(w.buf.String()) {
		var r Record
		if json.Unmarshal([]byte(line), &r) == nil {
			decoded = append(decoded, r.Phase+" "+r.Resource)
		}
	}
	want := []string{"intent repos/o/r/actions/secrets/NEXT", "outcome repos/o/r/actions/secrets/NEXT"}
	if strings.Join(decoded, "|") != strings.Join(want, "|") {
		t.Fatalf("records that decode: %q, want %q; trail:\n%s", decoded, want, w.buf.String())
	}
	if l.Failures() != 1 {
		t.Errorf("Failures = %d, want 1", l.Failures())
	}
}
