# Prints TestSealLibsodiumVector's vector: libsodium's own crypto_box_seal
# (the system's libsodium, through ctypes; Debian package libsodium23) with
# its random source replaced by one that yields a fixed ephemeral secret key.
# Run: python3 service/sealedbox/testdata/libsodium_vector.py
import base64
import ctypes

so = ctypes.CDLL("libsodium.so.23")
so.sodium_version_string.restype = ctypes.c_char_p

EPHEMERAL = bytes(range(0x20, 0x40))

NAME = ctypes.CFUNCTYPE(ctypes.c_char_p)
RANDOM = ctypes.CFUNCTYPE(ctypes.c_uint32)
STIR = ctypes.CFUNCTYPE(None)
UNIFORM = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint32)
BUF = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)
CLOSE = ctypes.CFUNCTYPE(ctypes.c_int)


def fill(p, n):
    # crypto_box_seal draws the ephemeral secret key, 32 bytes, and nothing
    # else; any other draw gets zeros.
    ctypes.memmove(p, EPHEMERAL if n == 32 else bytes(n), n)


class Implementation(ctypes.Structure):
    _fields_ = [("name", NAME), ("random", RANDOM), ("stir", STIR),
                ("uniform", UNIFORM), ("buf", BUF), ("close", CLOSE)]


callbacks = [NAME(lambda: b"fixed"), RANDOM(lambda: 0), STIR(lambda: None),
             UNIFORM(lambda u: 0), BUF(fill), CLOSE(lambda: 0)]
impl = Implementation(*callbacks)
assert so.randombytes_set_implementation(ctypes.byref(impl)) == 0
assert so.sodium_init() >= 0

pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
assert so.crypto_box_seed_keypair(pk, sk, bytes(range(32))) == 0
msg = "hunter2 \u2713 sealed for GitHub".encode()
out = ctypes.create_string_buffer(len(msg) + 48)
assert so.crypto_box_seal(out, msg, ctypes.c_ulonglong(len(msg)), pk) == 0
opened = ctypes.create_string_buffer(len(msg))
assert so.crypto_box_seal_open(opened, out, ctypes.c_ulonglong(len(out.raw)), pk, sk) == 0
assert opened.raw == msg

print("libsodium", so.sodium_version_string().decode())
print("recipient pk", pk.raw.hex())
print("recipient sk", sk.raw.hex())
print("ephemeral sk", EPHEMERAL.hex())
print("sealed", base64.b64encode(out.raw).decode())
