"""adb's RSA authentication, device side (facts from AOSP's adb auth and the libmincrypt
public-key layout; the code is this project's own).

The device sends AUTH(TOKEN, 20 random bytes); the host answers AUTH(SIGNATURE, sig): an
RSA PKCS#1 v1.5 signature made as if the token were a SHA-1 digest. The device accepts it
if one of its authorised keys (adbd's /data/misc/adb/adb_keys: lines of `adbkey.pub`, i.e.
base64 of {uint32 words, uint32 n0inv, uint32 n[words] LE, uint32 rr[words] LE, uint32 e}
then ` user@host`) verifies it.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from pathlib import Path

SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


@dataclass(frozen=True)
class PublicKey:
    n: int
    e: int
    comment: str = ""

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8


def parse_adb_pubkey(line: str) -> PublicKey:
    """One `adbkey.pub` line -> PublicKey; ValueError if it is not one."""
    b64, _, comment = line.strip().partition(" ")
    try:
        raw = base64.b64decode(b64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None
    if len(raw) < 12:
        raise ValueError("too short for an adb public key")
    (words,) = struct.unpack_from("<I", raw)
    if not 1 <= words <= 1024 or len(raw) != 4 * (3 + 2 * words):
        raise ValueError(f"size {len(raw)} does not fit a {words}-word modulus")
    n = int.from_bytes(raw[8:8 + 4 * words], "little")
    (e,) = struct.unpack_from("<I", raw, 8 + 8 * words)
    return PublicKey(n=n, e=e, comment=comment.strip())


def load_keys(path: Path) -> list[PublicKey]:
    keys = []
    for no, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            try:
                keys.append(parse_adb_pubkey(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{no}: {exc}") from None
    return keys


def verify(key: PublicKey, token: bytes, signature: bytes) -> bool:
    """True if `signature` is key's PKCS#1 v1.5 SHA-1 signature of `token` (taken as the digest)."""
    k = key.size
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    em = pow(s, key.e, key.n).to_bytes(k, "big")
    suffix = b"\x00" + SHA1_DIGEST_INFO + token
    pad = k - 2 - len(suffix)
    return pad >= 8 and em == b"\x00\x01" + b"\xff" * pad + suffix
