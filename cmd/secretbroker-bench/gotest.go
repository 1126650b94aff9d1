package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// benchPackage is this command's package, relative to the module root.
const benchPackage = "./cmd/secretbroker-bench"

// tablesTest is the test that runs the scenarios in synctest bubbles.
const tablesTest = "TestTables"

// runTablesTest runs TestTables through the go tool, from the module root,
// with args (the command's own flags, already checked) after "-tables --",
// and copies the tables it writes to stdout as they come. The rest of the
// test's output (build errors, failures) goes to stderr when the test
// does not pass.
func runTablesTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	goArgs := append([]string{"test", "-json", "-run", "^" + tablesTest + "$", "-count=1", "-timeout=0",
		benchPackage, "-args", "-tables", "--"}, args...)
	cmd := exec.CommandContext(ctx, "go", goArgs...)
	cmd.Dir = root
	cmd.Stderr = stderr
	stopWithGroup(cmd)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running the go tool (the scenarios run under go test): %w", err)
	}
	var rest bytes.Buffer
	copyErr := copyTables(out, stdout, &rest)
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		_, _ = io.Copy(stderr, &rest)
		return fmt.Errorf("go %s: %w", strings.Join(goArgs, " "), err)
	}
	return copyErr
}

// moduleRoot is the directory of the go.mod of the module the working
// directory is in.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD (the scenarios run under go test): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the secretbroker module: run the command from its checkout, or pass --real-time")
	}
	return filepath.Dir(gomod), nil
}

// testEvent is the part of a "go test -json" event that copyTables reads
// (see go doc cmd/test2json; build output comes as "build-output").
type testEvent struct {
	Action string
	Test   string
	Output string
}

// copyTables reads the events of "go test -json" from r and writes to
// tables the lines TestTables printed itself, as they come, and
// everything else (the test framework's "=== RUN" and "--- PASS" lines,
// t.Log and t.Error lines, which are indented, the package's PASS/FAIL
// and build output, lines that are not events) to rest. A line may come
// in several events; it goes where its first part went.
func copyTables(r io.Reader, tables, rest io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	midLine, toTables := false, false
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			fmt.Fprintf(rest, "%s\n", sc.Bytes())
			continue
		}
		if ev.Action == "build-output" {
			_, _ = io.WriteString(rest, ev.Output)
			continue
		}
		if ev.Action != "output" {
			continue
		}
		if !midLine {
			toTables = ev.Test == tablesTest && !isFraming(ev.Output)
		}
		w := rest
		if toTables {
			w = tables
		}
		if _, err := io.WriteString(w, ev.Output); err != nil {
			return err
		}
		midLine = !strings.HasSuffix(ev.Output, "\n")
	}
	return sc.Err()
}

// isFraming reports whether a line of a test's output is the test
// framework's rather than the test's: "=== RUN", "--- PASS: ...", or an
// indented t.Log or t.Error line. A markdown line starts with none of
// these.
func isFraming(line string) bool {
	return strings.HasPrefix(line, "=== ") || strings.HasPrefix(line, "--- ") ||
		strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t")
}
