#pragma once
// The driver: raw Task folder -> crop -> fingerprint -> plan -> preprocess -> nnU-Net v1 exports + HDF5 store.
// Runs as one process or under mpirun; results do not depend on the number of ranks or threads.
#include <cstdint>
#include <string>

#include "amosprep/npz_writer.hpp"
#include "amosprep/planner.hpp"

namespace amosprep {

struct PipelineOptions {
  std::string raw_base;       ///< nnUNet_raw_data_base
  std::string preprocessed;   ///< nnUNet_preprocessed
  int task_id = 216;
  PlannerKind planner = PlannerKind::v21;
  NpzCompression npz_compression = NpzCompression::fast;
  uint32_t seed = 1234;                ///< RandomState seed of class_locations (nnU-Net: 1234)
  bool write_cropped = false;          ///< also write nnU-Net's nnUNet_cropped_data folder
  std::string h5_layout = "chunked";   ///< "none" | "chunked" | "deflate"
  bool verify_integrity = false;       ///< run the dataset integrity checks first
  bool force = false;                  ///< ignore the manifest, redo every case
  bool quiet = false;
  int64_t mem_per_rank = 0;            ///< bytes; 0 = derive from the machine / SLURM
  std::string log_json;                ///< machine-readable log path ("" = <task>/amos-prep/log.json)
};

/// Runs nnU-Net v1's plan_and_preprocess for one 3-D planner. Throws amosprep::Error subclasses.
void plan_and_preprocess(const PipelineOptions& options);

/// Path helpers shared by the pipeline, tests and the QA tool.
std::string raw_task_dir(const std::string& raw_base, int task_id);
std::string preprocessed_task_dir(const std::string& preprocessed, int task_id);

}  // namespace amosprep
