//go:build !unix

package main

import "os/exec"

// stopWithGroup leaves exec's default, killing the go tool, where there
// are no Unix process groups.
func stopWithGroup(*exec.Cmd) {}
