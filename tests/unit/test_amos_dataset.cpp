// Python-compatible JSON, the Task216/217 conversion against nnU-Net's real output, and the raw task case list.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "amosprep/amos_dataset.hpp"
#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/pyjson.hpp"
#include "test_support.hpp"

namespace amosprep {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

using test::shared_dir;
using test::TempDir;

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// ---- python_json_dumps (expected strings from Python 3.11's json / repr) ----------------------------------------

TEST(PyJson, FloatReprMatchesPython) {
  const std::pair<double, const char*> cases[] = {
      {1.0, "1.0"}, {0.1, "0.1"}, {1e-05, "1e-05"}, {0.0001, "0.0001"}, {1e16, "1e+16"},
      {1e15, "1000000000000000.0"}, {123456789012345678.0, "1.2345678901234568e+17"}, {-0.0, "-0.0"},
      {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"}, {0.3, "0.3"}, {2.5, "2.5"},
      {100.0, "100.0"}, {1.5e-7, "1.5e-07"}, {0.000123, "0.000123"}, {12345.678, "12345.678"},
      {0.800000011920929, "0.800000011920929"}, {2.2250738585072014e-308, "2.2250738585072014e-308"},
      {9007199254740992.0, "9007199254740992.0"}, {1e22, "1e+22"}, {0.7346090078353882, "0.7346090078353882"},
      {-1024.0, "-1024.0"}, {3.0000000000000004, "3.0000000000000004"}, {0.0, "0.0"}};
  for (const auto& [v, s] : cases) EXPECT_EQ(python_float_repr(v), s) << s;
  EXPECT_EQ(python_float_repr(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(python_float_repr(-std::numeric_limits<double>::infinity()), "-Infinity");
}

TEST(PyJson, DumpsLikePython) {
  ojson obj = ojson::object();
  obj["b"] = ojson::array({1, 2.5, ojson::object({{"z", ojson::array()}, {"a", ojson::object()}})});
  obj["a"] = "\u00e9\u65e5\U0001F600\x7f\x01\t\"\\/";
  obj["10"] = nullptr;
  obj["2"] = true;
  obj["\u00e9"] = false;
  obj["1"] = -3;
  EXPECT_EQ(python_json_dumps(obj),
            "{\n    \"1\": -3,\n    \"10\": null,\n    \"2\": true,\n    \"a\": \"\\u00e9\\u65e5\\ud83d\\ude00\\u007f"
            "\\u0001\\t\\\"\\\\/\",\n    \"b\": [\n        1,\n        2.5,\n        {\n            \"a\": {},\n     "
            "       \"z\": []\n        }\n    ],\n    \"\\u00e9\": false\n}");
  EXPECT_EQ(python_json_dumps(obj, 4, false),
            "{\n    \"b\": [\n        1,\n        2.5,\n        {\n            \"z\": [],\n            \"a\": {}\n  "
            "      }\n    ],\n    \"a\": \"\\u00e9\\u65e5\\ud83d\\ude00\\u007f\\u0001\\t\\\"\\\\/\",\n    \"10\": "
            "null,\n    \"2\": true,\n    \"\\u00e9\": false,\n    \"1\": -3\n}");
  EXPECT_EQ(python_json_dumps(obj, -1, false),
            "{\"b\": [1, 2.5, {\"z\": [], \"a\": {}}], \"a\": \"\\u00e9\\u65e5\\ud83d\\ude00\\u007f\\u0001\\t\\\"\\\\/"
            "\", \"10\": null, \"2\": true, \"\\u00e9\": false, \"1\": -3}");
  const ojson special = ojson::array({std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity()});
  EXPECT_EQ(python_json_dumps(special, 2), "[\n  NaN,\n  Infinity,\n  -Infinity\n]");
  EXPECT_EQ(python_json_dumps(ojson::object()), "{}");
  EXPECT_THROW(python_json_dumps(ojson(std::string("\xff"))), InternalError);
}

// ---- conversion ------------------------------------------------------------------------------------------------

TEST(AmosDataset, TaskFolderNames) {
  EXPECT_EQ(task_folder_name(216), "Task216_AMOS2022_task1");
  EXPECT_EQ(task_folder_name(217), "Task217_AMOS2022_task2");
  EXPECT_THROW(task_folder_name(215), UsageError);
  EXPECT_EQ(py_path_join("/a/b", "c"), "/a/b/c");
  EXPECT_EQ(py_path_join("/a/b/", "c"), "/a/b/c");
  EXPECT_EQ(py_path_join("/a/b", "/c"), "/c");
  EXPECT_EQ(py_path_join("", "c"), "c");
}

TEST(AmosDataset, ConvertsFixturesLikeNnunet) {
  const char* sets[] = {"phantom-tiny", "real-ct", "aniso-2stage"};
  for (const char* set : sets) {
    SCOPED_TRACE(set);
    const std::string fixture = shared_dir() + "/fixtures/" + set;
    const std::string golden = fixture +
                               "/nnunet-v1/ExperimentPlanner3D_v21/nnUNet_raw_data_base/nnUNet_raw_data/"
                               "Task216_AMOS2022_task1/dataset.json";
    if (!fs::exists(golden)) GTEST_SKIP() << "shared fixtures not found at " << shared_dir() << "/fixtures";
    TempDir tmp;
    const std::string amos = fixture + "/amos";
    const std::string task = convert_amos(amos, tmp / "raw", 216);
    EXPECT_EQ(task, tmp / "raw/nnUNet_raw_data/Task216_AMOS2022_task1");
    EXPECT_EQ(read_file(task + "/dataset.json"), read_file(golden));

    const ojson src = ojson::parse(read_file(amos + "/task1_dataset.json"));
    std::set<std::string> want_images, want_labels, want_test;
    for (const auto& e : src["training"]) {
      const std::string id = fs::path(e["image"].get<std::string>()).filename().string().substr(0, 9);
      want_images.insert(id + "_0000.nii.gz");
      want_labels.insert(id + ".nii.gz");
      EXPECT_EQ(read_file(task + "/imagesTr/" + id + "_0000.nii.gz"), read_file(amos + "/imagesTr/" + id + ".nii.gz"));
      EXPECT_EQ(read_file(task + "/labelsTr/" + id + ".nii.gz"), read_file(amos + "/labelsTr/" + id + ".nii.gz"));
    }
    for (const auto& e : src["test"])
      want_test.insert(fs::path(e.get<std::string>()).filename().string().substr(0, 9) + "_0000.nii.gz");
    EXPECT_EQ(names_in(task + "/imagesTr"), want_images);
    EXPECT_EQ(names_in(task + "/labelsTr"), want_labels);
    EXPECT_EQ(names_in(task + "/imagesTs"), want_test);
    EXPECT_EQ(names_in(task), (std::set<std::string>{"dataset.json", "imagesTr", "imagesTs", "labelsTr"}));

    // Second run: copies are skipped (same size and mtime), the result is the same.
    const auto before = fs::last_write_time(task + "/imagesTr/" + *want_images.begin());
    EXPECT_EQ(before, fs::last_write_time(amos + "/imagesTr/" + want_images.begin()->substr(0, 9) + ".nii.gz"));
    convert_amos(amos, tmp / "raw", 216);
    EXPECT_EQ(read_file(task + "/dataset.json"), read_file(golden));
    EXPECT_EQ(before, fs::last_write_time(task + "/imagesTr/" + *want_images.begin()));

    const RawTask t = read_raw_task(tmp / "raw", 216);
    EXPECT_EQ(t.name, "Task216_AMOS2022_task1");
    EXPECT_EQ(t.dir, task);
    EXPECT_EQ(t.modalities, std::vector<std::string>{"CT"});
    ASSERT_EQ(t.training.size(), want_labels.size());
    std::vector<std::string> ids;
    for (const CaseFiles& c : t.training) {
      ids.push_back(c.id);
      ASSERT_EQ(c.images.size(), 1u);
      EXPECT_EQ(c.images[0], task + "/imagesTr/" + c.id + "_0000.nii.gz");
      EXPECT_EQ(c.label, task + "/labelsTr/" + c.id + ".nii.gz");
    }
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(t.test.size(), want_test.size());
    ASSERT_EQ(t.labels.size(), 16u);
    EXPECT_EQ(t.labels[0].key, "0");
    EXPECT_EQ(t.labels[0].name, "background");
    EXPECT_EQ(t.labels[2].key, "10");
    EXPECT_EQ(t.labels[2].name, "pancreas");
    EXPECT_EQ(t.labels[15].name, "postcava");
    EXPECT_EQ(all_classes_of(t), (std::vector<int64_t>{1, 10, 11, 12, 13, 14, 15, 2, 3, 4, 5, 6, 7, 8, 9}));
  }
}

void write_text(const std::string& path, const std::string& text) {
  make_dirs(fs::path(path).parent_path().string());
  write_file_atomic(path, text);
}

TEST(AmosDataset, ConvertsTask217AndKeepsNnunetQuirks) {
  TempDir tmp;
  const std::string amos = tmp / "AMOS22";
  write_text(amos + "/task2_dataset.json", R"({
    "labels": {"0": "background", "2": "right kidney", "1": "spleen", "10": "pancr\u00e9as"},
    "training": [{"image": "./imagesTr/amos_0507.nii.gz", "label": "./labelsTr/amos_0507.nii.gz"},
                 {"image": "./imagesTr/amos_0008.nii.gz", "label": "./labelsTr/amos_0008.nii.gz"}],
    "validation": [{"image": "./imagesVa/amos_0777.nii.gz"}],
    "test": ["./imagesTs/amos_0600.nii.gz"]})");
  for (const char* id : {"amos_0507", "amos_0008"}) {
    write_text(amos + "/imagesTr/" + id + ".nii.gz", std::string("image of ") + id);
    write_text(amos + "/labelsTr/" + id + ".nii.gz", std::string("label of ") + id);
  }
  write_text(amos + "/imagesTs/amos_0600.nii.gz", "test image");
  // A stale file already in the output folder is listed, like nnU-Net's generate_dataset_json does.
  const std::string task = tmp / "raw/nnUNet_raw_data/Task217_AMOS2022_task2";
  write_text(task + "/imagesTr/amos_0999_0000.nii.gz", "stale");
  write_text(task + "/imagesTr/notes.txt", "not listed");

  EXPECT_EQ(convert_amos(amos, tmp / "raw", 217), task);
  EXPECT_EQ(read_file(task + "/dataset.json"),
            "{\n    \"description\": \"\",\n    \"labels\": {\n        \"0\": \"background\",\n        \"1\": "
            "\"spleen\",\n        \"10\": \"pancr\\u00e9as\",\n        \"2\": \"right kidney\"\n    },\n    "
            "\"licence\": \"hands off!\",\n    \"modality\": {\n        \"0\": \"nonCT\"\n    },\n    \"name\": "
            "\"Task217_AMOS2022_task2\",\n    \"numTest\": 1,\n    \"numTraining\": 3,\n    \"reference\": \"\",\n "
            "   \"release\": \"0.0\",\n    \"tensorImageSize\": \"4D\",\n    \"test\": [\n        "
            "\"./imagesTs/amos_0600.nii.gz\"\n    ],\n    \"training\": [\n        {\n            \"image\": "
            "\"./imagesTr/amos_0008.nii.gz\",\n            \"label\": \"./labelsTr/amos_0008.nii.gz\"\n        },\n "
            "       {\n            \"image\": \"./imagesTr/amos_0507.nii.gz\",\n            \"label\": "
            "\"./labelsTr/amos_0507.nii.gz\"\n        },\n        {\n            \"image\": "
            "\"./imagesTr/amos_0999.nii.gz\",\n            \"label\": \"./labelsTr/amos_0999.nii.gz\"\n        }\n "
            "   ]\n}");
  EXPECT_EQ(read_file(task + "/imagesTr/amos_0507_0000.nii.gz"), "image of amos_0507");
  EXPECT_EQ(read_file(task + "/labelsTr/amos_0008.nii.gz"), "label of amos_0008");
  EXPECT_EQ(read_file(task + "/imagesTs/amos_0600_0000.nii.gz"), "test image");

  // The stale case has no label: reading the task names it.
  try {
    read_raw_task(tmp / "raw", 217);
    FAIL() << "missing label accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.case_id(), "amos_0999");
    EXPECT_EQ(e.file(), task + "/labelsTr/amos_0999.nii.gz");
  }
  write_text(task + "/labelsTr/amos_0999.nii.gz", "now present");
  const RawTask t = read_raw_task(tmp / "raw", 217);
  EXPECT_EQ(t.modalities, std::vector<std::string>{"nonCT"});
  ASSERT_EQ(t.training.size(), 3u);
  EXPECT_EQ(t.training[1].id, "amos_0507");
  ASSERT_EQ(t.test.size(), 1u);
  EXPECT_EQ(t.test[0].id, "amos_0600");
  EXPECT_EQ(t.test[0].images, std::vector<std::string>{task + "/imagesTs/amos_0600_0000.nii.gz"});
  EXPECT_TRUE(t.test[0].label.empty());
  EXPECT_EQ(all_classes_of(t), (std::vector<int64_t>{1, 10, 2}));
}

TEST(AmosDataset, MissingAndMalformedInputsAreInputErrors) {
  TempDir tmp;
  const std::string amos = tmp / "AMOS22";
  EXPECT_THROW(convert_amos(amos, tmp / "raw", 216), InputError);  // no task1_dataset.json
  write_text(amos + "/task1_dataset.json", "{\"labels\": {}, \"training\": [");
  EXPECT_THROW(convert_amos(amos, tmp / "raw", 216), InputError);  // not JSON
  write_text(amos + "/task1_dataset.json",
             R"({"labels": {"0": "background"}, "test": [],
                 "training": [{"image": "./imagesTr/amos_0001.nii.gz", "label": "./labelsTr/amos_0001.nii.gz"}]})");
  try {
    convert_amos(amos, tmp / "raw", 216);
    FAIL() << "missing image accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.case_id(), "amos_0001");
    EXPECT_EQ(e.file(), amos + "/imagesTr/amos_0001.nii.gz");
  }
  write_text(amos + "/imagesTr/amos_0001.nii.gz", "x");
  write_text(amos + "/labelsTr/amos_0001.nii.gz", "y");
  write_text(amos + "/task1_dataset.json",
             R"({"labels": {"0": "background"}, "test": [{"image": "./imagesTs/amos_0002.nii.gz"}],
                 "training": [{"image": "./imagesTr/amos_0001.nii.gz", "label": "./labelsTr/amos_0001.nii.gz"}]})");
  EXPECT_THROW(convert_amos(amos, tmp / "raw", 216), InputError);  // test entries must be strings
  EXPECT_THROW(convert_amos(amos, tmp / "raw", 300), UsageError);
  EXPECT_THROW(read_raw_task(tmp / "nowhere", 216), InputError);

  RawTask t;
  t.labels = {{"0", "background"}, {" 3 ", "a"}, {"+4", "b"}, {"1_0", "c"}, {"-2", "d"}};
  EXPECT_EQ(all_classes_of(t), (std::vector<int64_t>{3, 4, 10}));
  t.labels.push_back({"x1", "bad"});
  EXPECT_THROW(all_classes_of(t), InputError);
}

TEST(AmosDataset, ConvertCopiesEveryFileAndSkipsThemOnRerun) {
  // 25 training cases (50 copies), every byte and modification time carried over.
  TempDir tmp;
  const std::string amos = tmp / "AMOS22";
  std::string training;
  for (int c = 1; c <= 25; ++c) {
    char id[16];
    std::snprintf(id, sizeof id, "amos_%04d", c);
    write_text(amos + "/imagesTr/" + id + ".nii.gz", std::string(1000 + static_cast<size_t>(c), static_cast<char>(c)));
    write_text(amos + "/labelsTr/" + id + ".nii.gz", "label " + std::string(id));
    training += std::string(c > 1 ? "," : "") + R"({"image": "./imagesTr/)" + id + R"(.nii.gz", "label": "./labelsTr/)" +
                id + R"(.nii.gz"})";
  }
  write_text(amos + "/task1_dataset.json", R"({"labels": {"0": "background", "1": "spleen"}, "test": [], "training": [)" +
                                               training + "]}");
  const std::string raw = tmp / "raw";
  convert_amos(amos, raw, 216);
  const std::string task = raw + "/nnUNet_raw_data/Task216_AMOS2022_task1";
  EXPECT_EQ(names_in(task + "/imagesTr").size(), 25u);
  EXPECT_EQ(names_in(task + "/labelsTr").size(), 25u);
  EXPECT_EQ(read_file(task + "/imagesTr/amos_0025_0000.nii.gz"), std::string(1025, static_cast<char>(25)));
  EXPECT_EQ(read_file(task + "/labelsTr/amos_0013.nii.gz"), "label amos_0013");
  EXPECT_EQ(fs::last_write_time(task + "/imagesTr/amos_0007_0000.nii.gz"),
            fs::last_write_time(amos + "/imagesTr/amos_0007.nii.gz"));
  // A rerun copies nothing again: an unchanged copy keeps its inode.
  struct stat before {};
  ASSERT_EQ(::stat((task + "/imagesTr/amos_0001_0000.nii.gz").c_str(), &before), 0);
  convert_amos(amos, raw, 216);
  struct stat after {};
  ASSERT_EQ(::stat((task + "/imagesTr/amos_0001_0000.nii.gz").c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

}  // namespace
}  // namespace amosprep
