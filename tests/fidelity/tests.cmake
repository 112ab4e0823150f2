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
# Our own phantom outputs load the way nnU-Net v1's trainer loads them (all four planners; no ../shared needed).
foreach(pair "ExperimentPlanner3D_v21|nnUNetPlansv2.1_plans_3D.pkl"
             "ExperimentPlanner3D_residual_v21_bfnnUNet|nnUNetPlans_bfnnUNet_fabresnet_plans_3D.pkl"
             "ExperimentPlanner3D_residual_v21_bfnnUNet_31|nnUNetPlans_bfnnUNet_fabresnet_31_plans_3D.pkl"
             "ExperimentPlanner3D_residual_v21_bfnnUNet_31_spRegnnU|nnUNetPlans_bfnnUNet_fabresnet_31_spnnU_plans_3D.pkl")
  string(REPLACE "|" ";" parts "${pair}")
  list(GET parts 0 planner)
  list(GET parts 1 plans)
  add_test(NAME fidelity.nnunet_loader.${planner}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/fidelity/loader.sh $<TARGET_FILE:amos-prep> ${AMOSPREP_PYTHON}
                   ${planner} ${plans})
  set_tests_properties(fidelity.nnunet_loader.${planner} PROPERTIES LABELS fidelity SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
