package sealedbox

import "filippo.io/edwards25519/field"

// x25519 writes X25519(scalar, point) (RFC 7748, section 5) to dst; an
// all-zero dst means point is of low order. sealInto uses ladder directly;
// this is its reference form.
func x25519(dst, scalar, point *[32]byte) {
	x, z := ladder(scalar, point)
	z.Invert(&z)
	x.Multiply(&x, &z)
	copy(dst[:], x.Bytes())
}

// ladder returns X25519(scalar, point) in projective form, u = x/z (z = 0
// for a low-order point): the constant-time Montgomery ladder of
// crypto/ecdh (x25519ScalarMult, Go 1.26) over the same field arithmetic,
// without the final inversion. It exists because crypto/ecdh and
// curve25519.X25519 take the scalar as an ecdh.PrivateKey, whose
// construction runs a second ladder for a public key this use never reads.
// As in RFC 7748 the scalar is clamped and the point's top bit ignored.
func ladder(scalar, point *[32]byte) (x, z field.Element) {
	var e [32]byte
	defer clear(e[:])
	copy(e[:], scalar[:])
	e[0] &= 248
	e[31] &= 127
	e[31] |= 64

	var x1, x2, z2, x3, z3, tmp0, tmp1 field.Element
	if _, err := x1.SetBytes(point[:]); err != nil {
		panic("sealedbox: a 32-byte point does not decode: " + err.Error()) // SetBytes fails only on length
	}
	x2.One()
	x3.Set(&x1)
	z3.One()

	swap := 0
	for pos := 254; pos >= 0; pos-- {
		b := e[pos/8] >> uint(pos&7)
		b &= 1
		swap ^= int(b)
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = int(b)

		tmp0.Subtract(&x3, &z3)
		tmp1.Subtract(&x2, &z2)
		x2.Add(&x2, &z2)
		z2.Add(&x3, &z3)
		z3.Multiply(&tmp0, &x2)
		z2.Multiply(&z2, &tmp1)
		tmp0.Square(&tmp1)
		tmp1.Square(&x2)
		x3.Add(&z3, &z2)
		z2.Subtract(&z3, &z2)
		x2.Multiply(&tmp1, &tmp0)
		tmp1.Subtract(&tmp1, &tmp0)
		z2.Square(&z2)

		z3.Mult32(&tmp1, 121666)
		x3.Square(&x3)
		tmp0.Add(&tmp0, &z3)
		z3.Multiply(&x1, &z2)
		z2.Multiply(&tmp1, &tmp0)
	}

	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	return x2, z2
}
