//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package main

import (
	"fmt"

	"golang.org/x/term"
)

// readHiddenLine reads a value's line from the terminal fd without echo,
// with golang.org/x/term, where the terminal's modes are not set here
// (readHiddenLine of hiddenline_unix.go). hidden, when set, is called
// first (tests).
func readHiddenLine(fd int, limit int, hidden func()) ([]byte, error) {
	if hidden != nil {
		hidden()
	}
	b, err := term.ReadPassword(fd)
	if err == nil && len(b) > limit {
		clear(b)
		return nil, fmt.Errorf("larger than %d KiB", limit>>10)
	}
	return b, err
}
