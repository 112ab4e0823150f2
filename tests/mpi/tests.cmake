# Rank/thread invariance and HDF5 == npz, on our own phantom data (needs no ../shared).
add_test(NAME mpi.rank_invariance.v21.chunked
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/mpi/rank_invariance.sh $<TARGET_FILE:amos-prep> ${AMOSPREP_PYTHON}
                 ExperimentPlanner3D_v21 chunked "1x1 2x1 4x1 1x2 2x1s 2x1l")
add_test(NAME mpi.rank_invariance.bfnnUNet_31.deflate
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/mpi/rank_invariance.sh $<TARGET_FILE:amos-prep> ${AMOSPREP_PYTHON}
                 ExperimentPlanner3D_residual_v21_bfnnUNet_31 deflate "1x1 2x1 4x2 2x1s 2x1c")
set_tests_properties(mpi.rank_invariance.v21.chunked mpi.rank_invariance.bfnnUNet_31.deflate
                     PROPERTIES LABELS mpi SKIP_RETURN_CODE 77 TIMEOUT 900 RUN_SERIAL TRUE)
add_test(NAME mpi.h5_example_random_patch
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/mpi/h5_example.sh $<TARGET_FILE:amos-prep> ${AMOSPREP_PYTHON}
                 ${CMAKE_CURRENT_SOURCE_DIR}/docs/examples/h5_random_patch.py)
set_tests_properties(mpi.h5_example_random_patch PROPERTIES LABELS mpi SKIP_RETURN_CODE 77 TIMEOUT 300)
