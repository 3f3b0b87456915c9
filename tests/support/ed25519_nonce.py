"""Ed25519 signatures with a nonce of the signer's choosing (RFC 8032 arithmetic, tests only).

RFC 8032 derives the nonce from the key and the message, so the usual signer
gives one signature per message; but any nonce gives a signature every
verifier accepts. A client with another signer (a hardware key, another
library) may therefore send the same envelope with other signature bytes.
"""

from __future__ import annotations

import hashlib

from p2p_energy_client.crypto import KeyPair

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, -1, _P) % _P
_GY = 4 * pow(5, -1, _P) % _P


def _x_of(y: int, sign: int) -> int:
    xx = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    return _P - x if x & 1 != sign else x


_B = (_x_of(_GY, 0), _GY, 1, _x_of(_GY, 0) * _GY % _P)


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int, int]:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _times_base(n: int) -> bytes:
    result: tuple[int, ...] = (0, 1, 1, 0)
    point: tuple[int, ...] = _B
    while n:
        if n & 1:
            result = _add(result, point)
        point = _add(point, point)
        n >>= 1
    x, y, z, _t = result
    zi = pow(z, -1, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def sign_with_nonce(keys: KeyPair, message: bytes, nonce: int) -> bytes:
    """A valid Ed25519 signature of ``message`` by ``keys`` with nonce ``nonce``."""
    digest = hashlib.sha512(keys.seed).digest()
    a = int.from_bytes(digest[:32], "little")
    a = (a & ~7 & ~(1 << 255)) | (1 << 254)
    r = nonce % _L
    big_r = _times_base(r)
    h = int.from_bytes(hashlib.sha512(big_r + keys.public_key + message).digest(), "little")
    s = (r + h * a) % _L
    return big_r + s.to_bytes(32, "little")


__all__ = ["sign_with_nonce"]
