package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns a new pseudo-terminal's controller (what a terminal
// emulator writes keystrokes and pastes to) and its terminal (the
// command's standard input), both blocking files.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	ptm = os.NewFile(uintptr(m), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		_ = ptm.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		_ = ptm.Close()
		t.Fatalf("ptsname: %v", err)
	}
	s, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = ptm.Close()
		t.Fatalf("open the terminal: %v", err)
	}
	pts = os.NewFile(uintptr(s), fmt.Sprintf("/dev/pts/%d", n))
	t.Cleanup(func() {
		// The controller first: a read of the terminal still blocked
		// then ends (EIO).
		_ = ptm.Close()
		_ = pts.Close()
	})
	return ptm, pts
}

// TestPromptOnATerminal types or pastes input at a real (pseudo-)terminal
// once the prompt has turned echo off, and reads the value as put does.
// In the terminal's canonical mode, where golang.org/x/term reads, Linux
// cut a line at 4,095 bytes (a longer value pasted was stored cut, exit
// 0), and a value of several lines pasted was stored as its first line,
// exit 0, the rest left for the shell to read as commands.
func TestPromptOnATerminal(t *testing.T) {
	long := strings.Repeat("A", 6000)
	for _, tc := range []struct {
		name, input string
		want        string
		wantErr     error
	}{
		{name: "typed", input: "s3cr3t-typed\r", want: "s3cr3t-typed"},
		{name: "typed with an erase and a kill", input: "wrong\x15abcx\x7fd\r", want: "abcd"},
		{name: "longer than a canonical line", input: long + "\n", want: long},
		{name: "pasted with a CRLF", input: "s3cr3t-pasted\r\n", want: "s3cr3t-pasted"},
		{name: "several lines pasted", input: "-----BEGIN KEY-----\nMIIBsecretline2\n-----END KEY-----\n", wantErr: errMoreThanALine},
		{name: "a line and part of another", input: "first\nsecond-without-its-end", wantErr: errMoreThanALine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ptm, pts := openPTY(t)
			before, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			hidden := make(chan struct{})
			written := make(chan error, 1)
			go func() {
				<-hidden
				_, err := ptm.Write([]byte(tc.input))
				written <- err
			}()
			got, err := osTerminal{hidden: func() { close(hidden) }}.ReadPassword(t.Context(), pts)
			if werr := <-written; werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if !errors.Is(err, tc.wantErr) || string(got) != tc.want {
				t.Errorf("ReadPassword = %d bytes %.40q, %v; want %d bytes %.40q, %v", len(got), got, err, len(tc.want), tc.want, tc.wantErr)
			}
			// The terminal's modes are as they were (echo on, canonical),
			// and nothing is left for the next reader (the shell), not
			// even part of a line (read without waiting).
			after, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			if *after != *before {
				t.Errorf("the terminal's modes changed:\nbefore %+v\nafter  %+v", before, after)
			}
			raw := *before
			raw.Lflag &^= unix.ICANON | unix.ECHO
			raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 0, 0
			if err := unix.IoctlSetTermios(int(pts.Fd()), unix.TCSETS, &raw); err != nil {
				t.Fatal(err)
			}
			if n, err := unix.Read(int(pts.Fd()), make([]byte, 8192)); n != 0 {
				t.Errorf("left for the next reader: %d bytes (%v)", n, err)
			}
		})
	}
}
