//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package main

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// readHiddenLine reads a value's line from the terminal fd without echo,
// in non-canonical mode (readLine), so that no line limit of the kernel's
// cuts a long value short; signals stay on (Ctrl-C interrupts). Then
// whatever else is already there (the rest of a paste of several lines)
// is read and discarded, and the line refused (errMoreThanALine): it would
// otherwise be a value cut to its first line, and the rest of the secret
// input to the shell. The terminal's modes are put back before it
// returns. hidden, when set, is called once echo is off (tests).
func readHiddenLine(fd int, limit int, hidden func()) ([]byte, error) {
	old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	t := *old
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.IEXTEN
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &t); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	defer func() { _ = unix.IoctlSetTermios(fd, ioctlSetTermios, old) }()
	if hidden != nil {
		hidden()
	}
	keys := lineKeys{erase: old.Cc[unix.VERASE], kill: old.Cc[unix.VKILL], eof: old.Cc[unix.VEOF]}
	line, err := readLine(fdReader(fd), keys, limit)
	if err != nil {
		return nil, err
	}
	// What is there already, without waiting for more.
	t.Cc[unix.VMIN] = 0
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &t); err != nil {
		clear(line)
		return nil, fmt.Errorf("terminal: %w", err)
	}
	if more := discardPending(fd, limit); more {
		clear(line)
		return nil, errMoreThanALine
	}
	return line, nil
}

// discardPending reads what the terminal fd (with VMIN and VTIME 0) holds
// already, up to about limit bytes, and reports whether any of it is more
// than line endings.
func discardPending(fd int, limit int) bool {
	var (
		buf  [512]byte
		more bool
	)
	for read := 0; read <= limit; {
		n, err := unix.Read(fd, buf[:])
		if n <= 0 || err != nil {
			return more
		}
		more = more || !onlyLineEndings(buf[:n])
		clear(buf[:n])
		read += n
	}
	return more
}

// fdReader reads a file descriptor with read(2), as it is (blocking).
type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n < 0 {
			n = 0
		}
		if n == 0 && err == nil && len(b) > 0 {
			return 0, io.EOF
		}
		return n, err
	}
}

// onlyLineEndings reports whether b holds nothing but "\r" and "\n": what
// may follow a line's end without being more input ("\r\n" pasted, with
// the terminal turning "\r" into "\n").
func onlyLineEndings(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}
