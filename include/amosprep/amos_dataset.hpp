#pragma once
// The AMOS22 dataset layout, nnU-Net v1's Task216/Task217 conversion (spec §2) and the raw task's case list (§3).
#include <cstdint>
#include <string>
#include <vector>

namespace amosprep {

/// One entry of dataset.json "labels", in file order: key as written (e.g. "10") and its name.
struct AmosLabel {
  std::string key;
  std::string name;
};

/// One case: its identifier, one image path per modality (`<id>_0000.nii.gz`, ...) and its label path
/// (empty for test cases).
struct CaseFiles {
  std::string id;
  std::vector<std::string> images;
  std::string label;
};

/// The nnU-Net raw task folder as nnU-Net reads it: name, modalities (by index), labels in FILE order, training
/// cases in dataset.json order, test cases in dataset.json order. Paths are absolute.
struct RawTask {
  std::string dir, name;
  int task_id = 0;
  std::vector<std::string> modalities;
  std::vector<AmosLabel> labels;
  std::vector<CaseFiles> training, test;
};

/// nnU-Net's task folder name: 216 -> "Task216_AMOS2022_task1", 217 -> "Task217_AMOS2022_task2".
/// Throws UsageError for other ids.
std::string task_folder_name(int task_id);

/// Python's os.path.join(a, b) for POSIX paths (b absolute replaces a; no doubled '/').
std::string py_path_join(const std::string& a, const std::string& b);

/// Converts an AMOS22 folder (`task1_dataset.json` for 216, `task2_dataset.json` for 217, imagesTr/, labelsTr/,
/// imagesTs/) into `<raw_base>/nnUNet_raw_data/TaskXXX_.../` exactly as nnU-Net v1's conversion script does:
/// `imagesTr/<id>_0000.nii.gz`, `labelsTr/<id>.nii.gz`, `imagesTs/<id>_0000.nii.gz` as atomic byte copies, and
/// `dataset.json` (modality "CT" for 216, "nonCT" for 217) whose case lists are re-derived from the folders' file
/// names, byte-identical to Python's output. A copy whose destination already has the source's size and
/// modification time is skipped (copies get the source's mtime). Returns the task dir. Throws InputError naming
/// a missing or unreadable source file or a malformed source JSON, IoError when writing fails.
std::string convert_amos(const std::string& amos_dir, const std::string& raw_base, int task_id);
/// The copying half of convert_amos for the files with index % parts == part, so that ranks share the copies.
void convert_amos_copy(const std::string& amos_dir, const std::string& raw_base, int task_id, int part, int parts);
/// The second half: dataset.json from the output folders, once every part is copied. Returns the task dir.
std::string convert_amos_finish(const std::string& amos_dir, const std::string& raw_base, int task_id);

/// Reads `<raw_base>/nnUNet_raw_data/TaskXXX_.../dataset.json` (labels in file order) and builds the case lists:
/// training images `<dir>/imagesTr/<basename(image) minus ".nii.gz">_%04d.nii.gz` per modality, label
/// `<dir>/labelsTr/<basename(label)>`, id = image basename up to the first ".nii.gz" minus its last 5 characters
/// (nnU-Net's get_case_identifier). Throws InputError when dataset.json is missing/malformed or a training image
/// or label file does not exist.
RawTask read_raw_task(const std::string& raw_base, int task_id);

/// all_classes as nnU-Net derives it: `[int(k) for k in labels if int(k) > 0]` in file order.
/// Throws InputError when a key is not an integer.
std::vector<int64_t> all_classes_of(const RawTask& t);

}  // namespace amosprep
