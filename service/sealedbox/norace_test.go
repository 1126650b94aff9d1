//go:build !race

package sealedbox

const raceEnabled = false
