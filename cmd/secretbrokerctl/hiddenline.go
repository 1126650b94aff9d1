package main

import (
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// errMoreThanALine is the answer of a prompt for a value when more than
// the line came at once: the rest of a value of several lines pasted at
// it, which must neither become part of the next command the shell reads
// nor leave the secret cut to its first line.
var errMoreThanALine = errors.New("more than one line came at the prompt (a value of several lines pasted?); all of it was discarded and nothing was sent: at the prompt a value is one line: give one of several lines with --from-file, or on standard input from a pipe")

// lineKeys are a terminal's editing characters (its termios VERASE, VKILL
// and VEOF); 0 is none.
type lineKeys struct {
	erase, kill, eof byte
}

// readLine reads one line of a value typed or pasted at a terminal in
// non-canonical mode, where the kernel edits nothing (nor limits the
// line: in canonical mode Linux cuts a line at 4,095 bytes, and other
// systems at their MAX_CANON): "\n" or "\r" ends it, without being part
// of it; the erase character, DEL or backspace removes the last
// character, the kill character the whole line; the end-of-file character
// (^D) ends a line begun, and on an empty one is io.EOF. A line longer
// than limit bytes is an error.
func readLine(r io.Reader, k lineKeys, limit int) ([]byte, error) {
	var (
		line []byte
		b    [1]byte
	)
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			switch c := b[0]; {
			case c == '\n' || c == '\r':
				return line, nil
			case c == '\b' || c == 0x7f || (c == k.erase && c != 0):
				_, size := utf8.DecodeLastRune(line)
				line = line[:len(line)-size]
			case c == k.kill && c != 0:
				clear(line)
				line = line[:0]
			case c == k.eof && c != 0:
				if len(line) == 0 {
					return nil, io.EOF
				}
				return line, nil
			default:
				if len(line) == limit {
					clear(line)
					return nil, fmt.Errorf("larger than %d KiB", limit>>10)
				}
				line = append(line, c)
			}
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				return line, nil
			}
			clear(line)
			return nil, err
		}
	}
}
