#!/usr/bin/env python3
"""Verifies the whole-file checksum ("seal") of HDF5 files written by ei (datasets, checkpoints)
without parsing HDF5: the 512-byte header of core/ei_seal.h and docs/reliability.md, XXH64 of the
bytes after it. Usage: scripts/seal_check.py FILE...  Exit status 0 when every file is sealed and
intact, 1 otherwise (2: no seal). Python 3 standard library only."""
import struct
import sys

P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
M = (1 << 64) - 1
MAGIC = b"\x89EISEAL\n"


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def rnd(acc, v):
    return (rotl((acc + v * P2) & M, 31) * P1) & M


def xxh64(data, seed=0):
    n = len(data)
    i = 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            for k in range(4):
                v[k] = rnd(v[k], struct.unpack_from("<Q", data, i + 8 * k)[0])
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for k in range(4):
            h = (((h ^ rnd(0, v[k])) * P1) + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h = (rotl(h ^ rnd(0, struct.unpack_from("<Q", data, i)[0]), 27) * P1 + P4) & M
        i += 8
    if i + 4 <= n:
        h = (rotl(h ^ ((struct.unpack_from("<I", data, i)[0] * P1) & M), 23) * P2 + P3) & M
        i += 4
    while i < n:
        h = (rotl(h ^ ((data[i] * P5) & M), 11) * P1) & M
        i += 1
    h ^= h >> 33
    h = (h * P2) & M
    h ^= h >> 29
    h = (h * P3) & M
    h ^= h >> 32
    return h


def check(path):
    data = open(path, "rb").read()
    if data[:8] != MAGIC:
        return 2, "no seal"
    if len(data) < 512:
        return 1, "truncated header"
    version, hsize, size, digest = struct.unpack_from("<IIQQ", data, 8)
    kind = data[32:48].rstrip(b"\0").decode("ascii", "replace")
    if struct.unpack_from("<Q", data, 48)[0] != xxh64(data[:48]):
        return 1, "corrupt header"
    if version != 1 or hsize != 512:
        return 1, "unknown seal version %d" % version
    if size != len(data) - hsize:
        return 1, "size %d, header says %d" % (len(data) - hsize, size)
    got = xxh64(data[hsize:])
    if got != digest:
        return 1, "checksum mismatch (%016x, header %016x)" % (got, digest)
    return 0, "ok (%s, %d bytes, XXH64 %016x)" % (kind, size, digest)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    codes = set()
    for p in sys.argv[1:]:
        rc, msg = check(p)
        print("%s: %s" % (p, msg))
        codes.add(rc)
    return 1 if 1 in codes else 2 if 2 in codes else 0


if __name__ == "__main__":
    sys.exit(main())
