//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// stopWithGroup starts the go tool in a process group of its own and,
// when the command's context ends, interrupts the whole group: the go
// tool does not pass an interrupt on to the test binary it runs (a
// terminal's Ctrl-C reaches both through their process group).
func stopWithGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
}
