#!/usr/bin/python3
"""Random dataset fingerprints and their nnU-Net v1 plans, for tests/unit/test_planner.cpp.

The expected stages come from the numpy-only reference planner of the spec (nnunet_planner.py, which agreed with
the real nnU-Net v1 planners on 520 random fingerprints). Run once:
    /usr/bin/python3 tests/python/gen_planner_cases.py [path/to/nnunet-v1-reference] > tests/data/planner_cases.json
The default reference path is ../shared/docs/nnunet-v1-reference relative to the repository root.
"""
import json
import os
import random
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', '..', '..', 'shared', 'docs', 'nnunet-v1-reference')
sys.path.insert(0, REF)
import nnunet_planner as NP  # noqa: E402

PLANNERS = ['v21', 'bfnnUNet', 'bfnnUNet_31', 'bfnnUNet_31_spRegnnU']
rng = random.Random(20240611)


def f32(x):
    return float(np.float32(x))


def amos_like(n):
    sp, sz = [], []
    for _ in range(n):
        z = rng.choice([0.625, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0, 5.0, 5.0])
        xy = f32(rng.uniform(0.55, 0.98))
        sp.append([f32(z), xy, xy])
        extent = rng.uniform(150, 550)
        inplane = 512 if rng.random() < 0.6 else rng.randint(250, 512)
        sz.append([max(8, int(extent / z)), inplane, inplane if rng.random() < 0.8 else rng.randint(250, 512)])
    return sp, sz


def anisotropic(n):
    """Mostly thick-slice cases: the v21 anisotropy rule (10th percentile of z) fires."""
    sp, sz = [], []
    for _ in range(n):
        thin = rng.random() < 0.2
        z = rng.choice([0.8, 1.0, 1.25, 2.0, 2.5]) if thin else rng.choice([4.0, 5.0, 5.0, 6.0, 7.5])
        xy = f32(rng.uniform(0.55, 1.2))
        sp.append([f32(z), xy, xy])
        sz.append([rng.randint(20, 90) if not thin else rng.randint(100, 400), rng.randint(200, 600), rng.randint(200, 600)])
    return sp, sz


def small(n):
    """Small volumes in many cases: the VRAM estimate leaves room for batch sizes above 2."""
    sp, sz = [], []
    for _ in range(n):
        s = f32(rng.uniform(0.7, 2.5))
        sp.append([f32(s * rng.uniform(0.8, 1.6)), s, s])
        sz.append([rng.randint(12, 60), rng.randint(16, 90), rng.randint(16, 90)])
    return sp, sz


def wild(n):
    sp = [[f32(rng.uniform(0.3, 8.0)) for _ in range(3)] for _ in range(n)]
    sz = [[rng.randint(8, 600) for _ in range(3)] for _ in range(n)]
    return sp, sz


def permuted(n):
    sp, sz = (amos_like if rng.random() < 0.5 else anisotropic)(n)
    perm = rng.choice([[1, 0, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0]])
    return [[s[p] for p in perm] for s in sp], [[s[p] for p in perm] for s in sz]


PROFILES = [('amos', amos_like, (3, 40)), ('aniso', anisotropic, (3, 40)), ('small', small, (20, 100)),
            ('wild', wild, (1, 20)), ('permuted', permuted, (3, 30))]


def f32_json(x):
    """A float32 value as its shortest float32 decimal; the C++ side reads it as double, then rounds to float."""
    text = repr(np.float32(x))
    text = text[len('np.float32('):-1] if text.startswith('np.float32(') else text
    value = float(text)
    assert float(np.float32(value)) == x, (x, text)
    return value


def kernels_json(kernels):
    """[[1,2,2],[2,2,2]] -> "122.222" (kernel entries are single digits)."""
    return '.'.join(''.join(str(k) for k in kernel) for kernel in kernels)


STAGE_FIELDS = ['batch_size', 'num_pool_per_axis', 'patch_size', 'median_patient_size_in_voxels', 'current_spacing',
                'original_spacing', 'do_dummy_2D_data_aug', 'pool_op_kernel_sizes', 'conv_kernel_sizes']


def stage_json(st):
    """The stage as a list in STAGE_FIELDS order; kernel lists compacted, the residual block tuples left out (they
    are a prefix of FabiansUNet's defaults with the length of pool_op_kernel_sizes, checked by the C++ test)."""
    out = {}
    for k, v in st.items():
        if k in ('pool_op_kernel_sizes', 'conv_kernel_sizes'):
            v = kernels_json(v)
        elif k in ('num_blocks_encoder', 'num_blocks_decoder'):
            assert list(v) == list(getattr(NP, 'ENC_BLOCKS' if k.endswith('encoder') else 'DEC_BLOCKS')[:len(v)])
            assert len(v) == len(st['pool_op_kernel_sizes']) - (k.endswith('decoder'))
            continue
        out[k] = v
    assert sorted(out) == sorted(STAGE_FIELDS)
    return [out[k] for k in STAGE_FIELDS]


def main():
    cases = []
    stats = {'two_stage': 0, 'aniso_rule': 0, 'batch_gt_2': 0, 'transposed': 0, 'plans': 0}
    for i in range(300):
        name, fn, (lo, hi) = PROFILES[i % len(PROFILES)]
        n = rng.randint(lo, hi)
        spacings, sizes = fn(n)
        num_classes = 15 if rng.random() < 0.7 else rng.randint(1, 30)
        num_modalities = 1 if rng.random() < 0.85 else 2
        entry = {'id': i, 'profile': name, 'num_classes': num_classes, 'num_modalities': num_modalities,
                 'spacings_f32': [[f32_json(v) for v in s] for s in spacings], 'sizes': sizes, 'plans': {}}
        tgt = NP.target_spacing_v21([list(s) for s in spacings], sizes)
        med = [NP.percentile_linear([s[a] for s in spacings], 50) for a in range(3)]
        stats['aniso_rule'] += tgt != med
        for planner in PLANNERS:
            stages, tf = NP.plan([list(s) for s in spacings], sizes, planner, num_classes + 1, num_modalities)
            entry['plans'][planner] = {'transpose_forward': tf, 'stages': [stage_json(s) for s in stages]}
            stats['plans'] += 1
            stats['two_stage'] += len(stages) == 2
            stats['batch_gt_2'] += any(s['batch_size'] > 2 for s in stages)
            stats['transposed'] += tf != [0, 1, 2]
        cases.append(entry)
    json.dump({'generator': 'tests/python/gen_planner_cases.py', 'numpy': np.__version__, 'stage_fields': STAGE_FIELDS,
               'cases': cases},
              sys.stdout, separators=(',', ':'))
    sys.stdout.write('\n')
    print(stats, file=sys.stderr)


if __name__ == '__main__':
    main()
