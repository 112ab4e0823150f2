#!/usr/bin/env python3
"""Loads an amos-prep output folder the way nnU-Net v1's trainer does and asserts what it relies on.

usage: nnunet_loader_check.py TASK_DIR PLANS_FILE_NAME

Mirrors nnunet.training.dataloading.dataset_loading (load_dataset, unpack_dataset) and the trainer's use of the
plans: the plans keys the trainer reads, every stage folder, np.load(npz)['data'] of shape (C+1, *size_after_
resampling), the properties it reads (class_locations in particular) and the npy an unpacked dataset uses.
"""
import os
import pickle
import sys

import numpy as np


def main():
    task, plans_name = sys.argv[1], sys.argv[2]
    with open(os.path.join(task, plans_name), "rb") as f:
        plans = pickle.load(f)
    # what nnUNetTrainer.process_plans / initialize read
    for key in ("num_stages", "num_modalities", "normalization_schemes", "plans_per_stage", "num_classes",
                "all_classes", "use_mask_for_norm", "keep_only_largest_region", "min_region_size_per_class",
                "transpose_forward", "transpose_backward", "data_identifier", "base_num_features",
                "conv_per_stage", "preprocessor_name", "dataset_properties", "original_spacings", "original_sizes"):
        assert key in plans, f"plans lack {key}"
    assert plans["num_stages"] == len(plans["plans_per_stage"])
    classes = plans["all_classes"]
    assert plans["num_classes"] == len(classes)
    n_cases = None
    for stage, sp in plans["plans_per_stage"].items():
        for key in ("batch_size", "num_pool_per_axis", "patch_size", "median_patient_size_in_voxels",
                    "current_spacing", "original_spacing", "do_dummy_2D_data_aug", "pool_op_kernel_sizes",
                    "conv_kernel_sizes"):
            assert key in sp, f"stage {stage} lacks {key}"
        assert len(sp["pool_op_kernel_sizes"]) + 1 == len(sp["conv_kernel_sizes"]) or "num_blocks_encoder" in sp
        folder = os.path.join(task, f"{plans['data_identifier']}_stage{stage}")
        # load_dataset: case identifiers from the npz files, data_file / properties_file per case
        ids = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz") and "segFromPrevStage" not in f)
        assert ids, f"no cases in {folder}"
        n_cases = n_cases or len(ids)
        assert len(ids) == n_cases, "stages hold different case sets"
        for cid in ids:
            with open(os.path.join(folder, cid + ".pkl"), "rb") as f:
                props = pickle.load(f)
            data = np.load(os.path.join(folder, cid + ".npz"))["data"]
            assert data.dtype == np.float32
            assert data.shape[0] == plans["num_modalities"] + 1, data.shape
            assert tuple(data.shape[1:]) == tuple(props["size_after_resampling"]), (data.shape, props["size_after_resampling"])
            assert np.allclose(props["spacing_after_resampling"], sp["current_spacing"])
            seg = data[-1]
            assert set(np.unique(seg).tolist()) <= set([-1.0, 0.0] + [float(c) for c in classes])
            locs = props["class_locations"]
            assert list(locs.keys()) == list(classes), "class_locations keys not in all_classes order"
            for c, rows in locs.items():
                n = int((seg == c).sum())
                if n == 0:
                    assert isinstance(rows, list) and rows == [], f"{cid}: empty class {c} must be []"
                    continue
                rows = np.asarray(rows)
                assert rows.dtype == np.int64 and rows.shape == (max(min(10000, n), int(np.ceil(n * 0.01))), 3)
                assert (seg[rows[:, 0], rows[:, 1], rows[:, 2]] == c).all(), f"{cid}: class_locations[{c}] off class"
            for key in ("original_size_of_raw_data", "original_spacing", "list_of_data_files", "seg_file",
                        "itk_origin", "itk_spacing", "itk_direction", "crop_bbox", "classes", "size_after_cropping",
                        "use_nonzero_mask_for_norm"):
                assert key in props, f"{cid}: properties lack {key}"
            # unpack_dataset: np.save(npy, np.load(npz)['data']); the loader then memory-maps the npy
            npy = os.path.join(folder, cid + ".npy")
            np.save(npy, data)
            mm = np.load(npy, mmap_mode="r")
            assert mm.shape == data.shape and np.array_equal(mm[:, :2], data[:, :2])
            os.remove(npy)
    print(f"OK: {plans['num_stages']} stage(s), {n_cases} cases load as nnU-Net v1's data loader reads them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
