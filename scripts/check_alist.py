#!/usr/bin/env python3
"""Independent reader for MacKay's alist format (stdlib only).

Usage: check_alist.py FILE [BITS_HEX]
Checks that the column and row lists describe the same matrix and that the degree lines match,
prints "n m edges", and, if BITS_HEX (the codeword bits as little-endian hex bytes, bit i = bit
i%8 of byte i/8) is given, prints the syndrome as hex the same way.
"""
import sys


def main():
    lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
    n, m = map(int, lines[0])
    col_deg = list(map(int, lines[2]))
    row_deg = list(map(int, lines[3]))
    assert len(col_deg) == n and len(row_deg) == m, "degree lines"
    cols = [[int(x) for x in lines[4 + c] if int(x) != 0] for c in range(n)]
    rows = [[int(x) for x in lines[4 + n + r] if int(x) != 0] for r in range(m)]
    assert [len(c) for c in cols] == col_deg, "column degrees"
    assert [len(r) for r in rows] == row_deg, "row degrees"
    from_cols = sorted((r - 1, c) for c in range(n) for r in cols[c])
    from_rows = sorted((r, c - 1) for r in range(m) for c in rows[r])
    assert from_cols == from_rows, "column lists and row lists disagree"
    print(n, m, len(from_rows))
    if len(sys.argv) > 2:
        data = bytes.fromhex(sys.argv[2])
        bit = lambda i: (data[i // 8] >> (i % 8)) & 1
        syn = [0] * m
        for r in range(m):
            for c in rows[r]:
                syn[r] ^= bit(c - 1)
        out = bytearray((m + 7) // 8)
        for r, s in enumerate(syn):
            out[r // 8] |= s << (r % 8)
        print(out.hex())


if __name__ == "__main__":
    main()
