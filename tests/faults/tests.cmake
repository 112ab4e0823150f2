# Fault injection ("never lose work"): one corrupted copy of a tiny AMOS22 dataset per fault; each must be reported
# by `amos-prep verify` (exit code, case, file, reason) and, for a subset, make `amos-prep run` fail cleanly
# (documented exit code, error line, nothing half-written). Faults are declared in fault_suite.py (@fault lines).
set(AMOSPREP_FAULTS_SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/tests/faults/fault_suite.py)
set(AMOSPREP_FAULTS_WORK ${CMAKE_BINARY_DIR}/faults-work)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${AMOSPREP_FAULTS_SCRIPT})
file(READ ${AMOSPREP_FAULTS_SCRIPT} _amosprep_faults_text)
string(REGEX MATCHALL "\n@fault\\(\"[a-z0-9_]+\"" _amosprep_fault_decls "${_amosprep_faults_text}")

add_test(NAME faults.generate COMMAND ${AMOSPREP_PYTHON} ${AMOSPREP_FAULTS_SCRIPT} generate ${AMOSPREP_FAULTS_WORK})
set_tests_properties(faults.generate PROPERTIES LABELS faults FIXTURES_SETUP amosprep_faults
                     SKIP_RETURN_CODE 77 TIMEOUT 300)
foreach(_decl ${_amosprep_fault_decls})
  string(REGEX REPLACE "^\n@fault\\(\"([a-z0-9_]+)\"$" "\\1" _fault "${_decl}")
  add_test(NAME faults.${_fault}
           COMMAND ${AMOSPREP_PYTHON} ${AMOSPREP_FAULTS_SCRIPT} check $<TARGET_FILE:amos-prep> ${AMOSPREP_FAULTS_WORK}
                   ${_fault})
  set_tests_properties(faults.${_fault} PROPERTIES LABELS faults FIXTURES_REQUIRED amosprep_faults
                       SKIP_RETURN_CODE 77 TIMEOUT 900)
endforeach()
