# Fidelity: amos-prep vs the real nnU-Net v1 outputs in ../shared/fixtures (skipped where ../shared is absent).
foreach(fixture phantom-tiny aniso-2stage real-ct)
  foreach(planner ExperimentPlanner3D_v21 ExperimentPlanner3D_residual_v21_bfnnUNet_31)
    set(name fidelity.${fixture}.${planner})
    add_test(NAME ${name}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/fidelity/run_fixture.sh $<TARGET_FILE:amos-prep>
                     ${AMOSPREP_PYTHON} ${AMOSPREP_SHARED_DIR} ${fixture} ${planner} 1)
    set_tests_properties(${name} PROPERTIES LABELS fidelity SKIP_RETURN_CODE 77 TIMEOUT 900)
  endforeach()
endforeach()
# The compare tool must also pass when the work is spread over 4 ranks.
add_test(NAME fidelity.phantom-tiny.v21.4ranks
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/fidelity/run_fixture.sh $<TARGET_FILE:amos-prep>
                 ${AMOSPREP_PYTHON} ${AMOSPREP_SHARED_DIR} phantom-tiny ExperimentPlanner3D_v21 4)
set_tests_properties(fidelity.phantom-tiny.v21.4ranks PROPERTIES LABELS "fidelity;mpi" SKIP_RETURN_CODE 77 TIMEOUT 900)
