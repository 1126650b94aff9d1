package deploy

import (
	"encoding/base64"
	"fmt"
	"math/big"
	"regexp"
)

// quantity matches a Kubernetes resource quantity: a decimal number and
// an optional suffix.
var quantity = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$`)

// quantityScale is each suffix's multiplier.
var quantityScale = map[string]*big.Rat{
	"":   big.NewRat(1, 1),
	"m":  big.NewRat(1, 1000),
	"k":  big.NewRat(1e3, 1),
	"M":  big.NewRat(1e6, 1),
	"G":  big.NewRat(1e9, 1),
	"T":  big.NewRat(1e12, 1),
	"P":  big.NewRat(1e15, 1),
	"E":  big.NewRat(1e18, 1),
	"Ki": big.NewRat(1<<10, 1),
	"Mi": big.NewRat(1<<20, 1),
	"Gi": big.NewRat(1<<30, 1),
	"Ti": big.NewRat(1<<40, 1),
	"Pi": big.NewRat(1<<50, 1),
	"Ei": big.NewRat(1<<60, 1),
}

// parseQuantity parses a Kubernetes quantity ("512Mi", "100m", "1.5Gi").
func parseQuantity(s string) (*big.Rat, error) {
	m := quantity.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("quantity %q: want a number and one of Ki Mi Gi Ti Pi Ei m k M G T P E", s)
	}
	n, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return nil, fmt.Errorf("quantity %q: bad number", s)
	}
	return n.Mul(n, quantityScale[m[2]]), nil
}

// goMemLimit matches GOMEMLIMIT's syntax (runtime/debug.SetMemoryLimit):
// an integer and an optional B, KiB, MiB, GiB or TiB.
var goMemLimit = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// parseGoMemLimit parses a GOMEMLIMIT value into bytes.
func parseGoMemLimit(s string) (*big.Rat, error) {
	m := goMemLimit.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("GOMEMLIMIT %q: want an integer and one of B KiB MiB GiB TiB", s)
	}
	n, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return nil, fmt.Errorf("GOMEMLIMIT %q: bad number", s)
	}
	scale := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	return n.Mul(n, new(big.Rat).SetInt64(scale)), nil
}

// decodeBase64 decodes a Secret's data value.
func decodeBase64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("base64: %w", err)
	}
	return string(b), nil
}
