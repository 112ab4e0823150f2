#!/usr/bin/python3
"""Prints a pickle (as nnU-Net writes them) as typed JSON that the C++ tests decode into a py::Value tree.

Usage: /usr/bin/python3 pickle_to_typed_json.py FILE.pkl [FILE.pkl ...]   (prints a JSON list, one entry per file)
Encoding: {"t": "None"|"bool"|"int"|"float"|"str"|"list"|"tuple"|"dict"|"odict"|"nd"|"np", ...}; floats, ndarrays and
numpy scalars carry their exact little-endian bytes as hex (dtype as numpy's descr, e.g. "<f8", "|b1").
"""
import collections
import json
import pickle
import sys

import numpy as np


def enc(v):
    if v is None:
        return {'t': 'None'}
    if isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        return {'t': 'nd', 'dtype': a.dtype.str, 'shape': list(a.shape), 'hex': a.astype(a.dtype.newbyteorder('<')).tobytes().hex()}
    if isinstance(v, np.generic):
        return {'t': 'np', 'dtype': v.dtype.str, 'hex': np.array(v).astype(v.dtype.newbyteorder('<')).tobytes().hex()}
    if isinstance(v, bool):
        return {'t': 'bool', 'v': v}
    if isinstance(v, int):
        return {'t': 'int', 'v': v}
    if isinstance(v, float):
        return {'t': 'float', 'hex': np.array(v, '<f8').tobytes().hex()}
    if isinstance(v, str):
        return {'t': 'str', 'v': v}
    if isinstance(v, list):
        return {'t': 'list', 'items': [enc(x) for x in v]}
    if isinstance(v, tuple):
        return {'t': 'tuple', 'items': [enc(x) for x in v]}
    if isinstance(v, collections.OrderedDict):
        return {'t': 'odict', 'items': [[enc(k), enc(x)] for k, x in v.items()]}
    if isinstance(v, dict):
        return {'t': 'dict', 'items': [[enc(k), enc(x)] for k, x in v.items()]}
    raise TypeError('cannot encode %r' % type(v))


def load(path):
    with open(path, 'rb') as f:
        return enc(pickle.load(f))


if __name__ == '__main__':
    json.dump([load(p) for p in sys.argv[1:]], sys.stdout)
