#!/usr/bin/python3
"""Golden values for tests/unit/test_np_reductions.cpp, computed with the real numpy (Debian numpy 1.24).

The vectors come from a small integer hash that the C++ test reproduces (test_vector_f32 / test_vector_f64 there).
Run once: /usr/bin/python3 tests/python/gen_np_reductions_vectors.py > table.inc, then paste the rows into the test.
"""
import numpy as np

F32 = np.float32
M32 = 0xFFFFFFFF


def mix(i, seed):
    h = (i * 2654435761 + seed * 97531 + 12345) & M32
    h ^= h >> 13
    h = (h * 1274126177) & M32
    h ^= h >> 16
    return h


def vector_f32(kind, n, seed):
    out = np.empty(n, F32)
    for i in range(n):
        h = mix(i, seed)
        if kind == 0:    # CT-like integer HU values
            out[i] = F32(int(h % 4096) - 1024)
        elif kind == 1:  # fractional values, one float32 product each
            out[i] = F32(int(h % 200001) - 100000) * F32(0.0371)
        else:            # mixed magnitudes
            out[i] = F32(int(h % 20001) - 10000) * F32(1.0 / (1 + (h >> 24) % 17))
    return out


def vector_f64(n, seed):
    return np.array([(int(mix(i, seed) % 100001) - 50000) / 1024.0 + 0.1 * (i % 3) for i in range(n)], np.float64)


SIZES_F32 = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 100, 127, 128, 129, 130, 255, 256, 257, 1000, 1023, 4096, 8191,
             8192, 8193, 12289, 16383, 16384, 16385, 24581, 40000, 65537, 100000, 1100003]
SIZES_F64 = [1, 2, 3, 4, 5, 10, 11, 12, 100, 101]
Q_F64 = [0.0, 0.5, 10.0, 50.0, 99.5, 100.0]


def hf(x):
    return float(x).hex()


def main():
    print('// n, kind, seed, sum, mean, std, median, min, max, P_0.5, P_10, P_50, P_99.5   (numpy %s)' % np.__version__)
    for idx, n in enumerate(SIZES_F32):
        kind, seed = idx % 3, idx
        a = vector_f32(kind, n, seed)
        vals = [np.add.reduce(a), np.mean(a), np.std(a), np.median(a), np.min(a), np.max(a)]
        assert all(type(v) == F32 for v in vals)
        pct = [np.percentile(a, q) for q in (0.5, 10, 50, 99.5)]
        assert all(type(v) == np.float64 for v in pct)
        print('    {%d, %d, %d, %s, %s},' % (n, kind, seed, ', '.join(hf(v) + 'f' for v in vals), ', '.join(hf(v) for v in pct)))
    print('// n, seed, median, P_q for q in', Q_F64)
    for idx, n in enumerate(SIZES_F64):
        a = vector_f64(n, 100 + idx)
        print('    {%d, %d, %s, {%s}},' % (n, 100 + idx, hf(np.median(a)), ', '.join(hf(np.percentile(a, q)) for q in Q_F64)))


if __name__ == '__main__':
    main()
