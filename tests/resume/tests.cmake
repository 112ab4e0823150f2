# Interruptions: SIGKILL of one rank, SIGTERM/SIGUSR1 of the job, SIGTERM of a single process; each followed by a
# rerun that must end byte-identical to an uninterrupted run.
foreach(mode sigkill_rank sigterm_job sigusr1_job sigterm_single)
  add_test(NAME faults.resume.${mode}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/resume/kill_and_resume.sh $<TARGET_FILE:amos-prep>
                   ${AMOSPREP_PYTHON} ${mode})
  set_tests_properties(faults.resume.${mode} PROPERTIES LABELS faults SKIP_RETURN_CODE 77 TIMEOUT 300 RUN_SERIAL TRUE)
endforeach()
foreach(mode tmpfs inject)
  add_test(NAME faults.disk_full.${mode}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/resume/disk_full.sh $<TARGET_FILE:amos-prep> ${AMOSPREP_PYTHON} ${mode})
  set_tests_properties(faults.disk_full.${mode} PROPERTIES LABELS faults SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
add_test(NAME faults.concurrent_run COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/resume/concurrent_run.sh $<TARGET_FILE:amos-prep>)
set_tests_properties(faults.concurrent_run PROPERTIES LABELS faults TIMEOUT 300)
