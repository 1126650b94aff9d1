package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// Runs in synctest bubbles hold the targets the benchmark reports on, with
// exact fake times: the broker sends one PUT per write and one key fetch
// per scope, causes no violation, loses nothing and takes exactly the
// least time its limits allow; the naive client pays a key fetch per
// write, and the emulator answers it in no time.
func TestMeasureTargets(t *testing.T) {
	spaced := upstream.DefaultPacing()
	unspaced := spaced
	unspaced.WriteInterval = 0
	tests := []struct {
		name    string
		pacing  upstream.Pacing
		latency time.Duration
		n, k    int
		least   time.Duration
		// broker and naive are the runs' times; brokerPeak and naivePeak
		// their peak in flight, checked only with a latency (without, it
		// is how the goroutines happened to overlap).
		broker, naive         time.Duration
		brokerPeak, naivePeak int
	}{
		// Writes go 1 s apart: the 40th starts 39 s after the first.
		{name: "spaced, 1 scope", pacing: spaced, n: 40, k: 1, least: 39 * time.Second, broker: 39 * time.Second},
		{name: "spaced, 4 scopes", pacing: spaced, n: 40, k: 4, least: 39 * time.Second, broker: 39 * time.Second},
		// Unspaced, GitHub's content-creation limit of 80 writes a minute
		// binds before the points budget (80 writes are 400 points): 80
		// writes at once, 80 a minute later, the last 40 two minutes in.
		{name: "content budget", pacing: unspaced, n: 200, k: 1, least: 2 * time.Minute, broker: 2 * time.Minute},
		// With 50 ms answers: the broker fetches the 4 keys at once, then
		// writes from 50 ms on, the last done 39.1 s in, then reads the
		// 4 scopes back one after another (service/record.go), 39.3 s;
		// the naive client does 4 rounds of 10 writes, each a key fetch
		// and a PUT.
		{name: "latency", pacing: spaced, latency: 50 * time.Millisecond, n: 40, k: 4, least: 39 * time.Second,
			broker: 39*time.Second + 300*time.Millisecond, naive: 400 * time.Millisecond, brokerPeak: 4, naivePeak: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config{naiveConcurrency: 10, latency: tt.latency, pacing: tt.pacing}
			n, k := tt.n, tt.k
			if got := leastTime(c.pacing, n, k); got != tt.least {
				t.Fatalf("leastTime = %v, want %v", got, tt.least)
			}
			synctest.Test(t, func(t *testing.T) {
				broker, err := measure(t.Context(), c, "broker", n, k)
				if err != nil {
					t.Fatal(err)
				}
				if broker.written != n || broker.lost != 0 || broker.failed != 0 {
					t.Errorf("broker: written %d, lost %d, failed %d of %d", broker.written, broker.lost, broker.failed, n)
				}
				// A key fetch per scope, a PUT per write, and since issue 11
				// a listing of each scope at the end (a page per 100
				// secrets) to read GitHub's updated_at back.
				want := brokerRequests(n, k, 1)
				if broker.requests != want {
					t.Errorf("broker: %d requests for %d writes over %d scopes, want %d", broker.requests, n, k, want)
				}
				if reads := want - n; broker.points != 5*n+reads {
					t.Errorf("broker: %d points, want %d", broker.points, 5*n+reads)
				}
				if broker.violations != 0 || broker.retries != 0 {
					t.Errorf("broker: %d violations, %d retries", broker.violations, broker.retries)
				}
				// The pacer upstream.Client ran before upstream/pace frees
				// a minute's points 1 ns after the minute; pace frees them
				// at the minute, as the emulator does.
				if broker.minimum != tt.least || (broker.elapsed != tt.broker && broker.elapsed != tt.broker+time.Nanosecond) {
					t.Errorf("broker: took %v, least time %v, want %v and %v", broker.elapsed, broker.minimum, tt.broker, tt.least)
				}
				if tt.latency > 0 && broker.peakInFlight != tt.brokerPeak {
					t.Errorf("broker: peak in flight %d, want %d", broker.peakInFlight, tt.brokerPeak)
				}
			})
			synctest.Test(t, func(t *testing.T) {
				naive, err := measure(t.Context(), c, "naive", n, k)
				if err != nil {
					t.Fatal(err)
				}
				if naive.elapsed != tt.naive {
					t.Errorf("naive: took %v, want %v", naive.elapsed, tt.naive)
				}
				if tt.latency > 0 && naive.peakInFlight != tt.naivePeak {
					t.Errorf("naive: peak in flight %d, want %d", naive.peakInFlight, tt.naivePeak)
				}
				if naive.lost != 0 || naive.written+naive.failed != n || naive.retries != 0 {
					t.Errorf("naive: written %d, failed %d, lost %d, retries %d of %d", naive.written, naive.failed, naive.lost, naive.retries, n)
				}
				// Each failed write stopped at its one refusal.
				if naive.violations != naive.failed {
					t.Errorf("naive: %d violations for %d failed writes", naive.violations, naive.failed)
				}
				if 6*n <= 900 {
					if naive.written != n || naive.requests != 2*n {
						t.Errorf("naive: %d written, %d requests for %d writes, want all written with a key fetch and a PUT each", naive.written, naive.requests, n)
					}
				} else if naive.failed == 0 {
					t.Errorf("naive: %d writes (%d points) all written within a minute's 900 points", n, 6*n)
				}
			})
		})
	}
}

func TestLeastTime(t *testing.T) {
	p := upstream.DefaultPacing()
	ghes := p
	ghes.WriteInterval = 0
	ghes.WritesPerMinute, ghes.WritesPerHour = 0, 0 // points only
	content := p
	content.WriteInterval = 0
	tests := []struct {
		p    upstream.Pacing
		n, k int
		want time.Duration
	}{
		{p, 1, 1, 0},
		{p, 100, 10, 99 * time.Second},
		// 500 writes in the first 499 s; the 501st an hour after the
		// first, the last 499 s after it.
		{p, 1000, 1, time.Hour + 499*time.Second},
		{p, 500, 1, 499 * time.Second},
		{ghes, 100, 1, 0},                             // 501 points fit one window
		{ghes, 1000, 10, 5 * time.Minute},             // 5010 points: 6 windows
		{ghes, 180, 0, 0},                             // 900 points exactly
		{ghes, 181, 0, time.Minute},                   // 905 points
		{content, 80, 0, 0},                           // 80 writes a minute
		{content, 81, 0, time.Minute},                 // the 81st a minute later
		{content, 500, 0, 6 * time.Minute},            // 6·80 = 480, then 20
		{content, 1000, 0, time.Hour + 6*time.Minute}, // the second 500 as the first, an hour later
		{p, 1000, 10, time.Hour + 499*time.Second},    // key fetches are no writes
	}
	for _, tt := range tests {
		if got := leastTime(tt.p, tt.n, tt.k); got != tt.want {
			t.Errorf("leastTime(interval %v, %d writes, %d scopes) = %v, want %v", tt.p.WriteInterval, tt.n, tt.k, got, tt.want)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--writes", "0"},
		{"--writes", "1001"},
		{"--scopes", "x"},
		{"--naive-concurrency", "0"},
		{"--latency", "-1ms"},
		{"--scale", "20"}, // the scaled clock is gone
		{"extra"},
	} {
		if err := realMain(t.Context(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	c, err := parseFlags([]string{"--real-time", "--writes", "5,7", "--scopes", "2", "--upstream-write-interval=0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.realTime || len(c.writes) != 2 || c.writes[1] != 7 || c.scopes[0] != 2 || c.pacing.WriteInterval != 0 {
		t.Errorf("parsed %+v", c)
	}
}

// The table TestTables writes: one row per client and run, exact in fake
// time with 50 ms answers, and no secret value in it.
func TestWriteTables(t *testing.T) {
	c, err := parseFlags([]string{"--writes", "2", "--scopes", "1,2", "--latency", "50ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeTables(t.Context(), c, &out, measureInBubble(t)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"answers in 50ms.",
		"Time: fake (testing/synctest), exact.",
		tableHeader,
		// A key fetch, a PUT, 1 s, a PUT, a listing to read updated_at
		// back: 1.15 s; over 2 scopes the 2 listings one after another,
		// 1.2 s.
		"| broker | 2 | 1 | 2 | 0 | 0 | 2.000 | 1.500 | 2.000 | 6.00 | 0 | 0 | 1 | 1.2s | 1s | 87.0% |\n",
		"| naive | 2 | 1 | 2 | 0 | 0 | 2.000 | 1.500 | – | 6.00 | 0 | 0 | 2 | 100ms | 1s | not paced |\n",
		"| broker | 2 | 2 | 2 | 0 | 0 | 3.000 | 2.000 | 3.000 | 7.00 | 0 | 0 | 2 | 1.2s | 1s | 83.3% |\n",
		"| naive | 2 | 2 | 2 | 0 | 0 | 2.000 | 2.000 | – | 6.00 | 0 | 0 | 2 | 100ms | 1s | not paced |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if rows := strings.Count(got, "\n| "); rows != 6 {
		t.Errorf("%d table lines, want a header, a separator and 4 rows:\n%s", rows, got)
	}
	// The values are rand.Text(): 26 characters of base32.
	if v := regexp.MustCompile(`[A-Z2-7]{26}`).FindString(got); v != "" {
		t.Errorf("output holds what looks like a secret value %q", v)
	}
}

func TestCopyTables(t *testing.T) {
	ev := func(action, test, output string) string {
		b, err := json.Marshal(map[string]string{"Action": action, "Package": "p", "Test": test, "Output": output})
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	tests := []struct {
		name             string
		in               string
		tables, restWant string
	}{
		{
			name: "passing run",
			in: `{"Action":"start","Package":"p"}` + "\n" +
				ev("run", "TestTables", "") +
				ev("output", "TestTables", "=== RUN   TestTables\n") +
				ev("output", "TestTables", "Emulator limits: x.\n") +
				ev("output", "TestTables", "| client |\n") +
				ev("output", "TestTables", "| --- |\n") +
				ev("output", "TestTables", "--- PASS: TestTables (1.20s)\n") +
				ev("pass", "TestTables", "") +
				ev("output", "", "PASS\n") +
				ev("output", "", "ok  \tp\t1.3s\n") +
				ev("pass", "", ""),
			tables:   "Emulator limits: x.\n| client |\n| --- |\n",
			restWant: "=== RUN   TestTables\n--- PASS: TestTables (1.20s)\nPASS\nok  \tp\t1.3s\n",
		},
		{
			name: "a line in two events goes where its start went",
			in: ev("output", "TestTables", "| broker | 1") +
				ev("output", "TestTables", "000 |\n") +
				ev("output", "TestTables", "    tables_test.go:9: broken") +
				ev("output", "TestTables", " pipe\n"),
			tables:   "| broker | 1000 |\n",
			restWant: "    tables_test.go:9: broken pipe\n",
		},
		{
			name: "failure, build output and stray lines go to rest",
			in: ev("build-output", "", "# p\nx.go:1: undefined: y\n") +
				"not json\n" +
				ev("output", "TestOther", "| row of another test |\n"),
			tables:   "",
			restWant: "# p\nx.go:1: undefined: y\nnot json\n| row of another test |\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tables, rest bytes.Buffer
			if err := copyTables(strings.NewReader(tt.in), &tables, &rest); err != nil {
				t.Fatal(err)
			}
			if tables.String() != tt.tables {
				t.Errorf("tables = %q, want %q", tables.String(), tt.tables)
			}
			if rest.String() != tt.restWant {
				t.Errorf("rest = %q, want %q", rest.String(), tt.restWant)
			}
		})
	}
}

// A client that gives up while the emulator waits out its latency gets an
// error, as from a dropped connection, rather than the emulator's
// http.ErrAbortHandler panic.
func TestGivingUpDuringLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, 1, time.Minute)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		err := naivePut(ctx, w.hc, emulatorURL, w.items[0])
		if err == nil || !strings.Contains(err.Error(), "the emulator dropped the connection") {
			t.Errorf("naivePut = %v, want the emulator's drop", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("gave up after %v, want 1s", d)
		}
		if _, err := w.emu.Open(w.items[0].scope, w.items[0].name); err == nil {
			t.Error("the secret was written")
		}
	})
}
