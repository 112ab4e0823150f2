# slurm/amos-prep.sbatch. sbatch_signals: the script's own logic without Slurm (usage, arguments, USR1 forwarded
# through mpirun, exit codes). sbatch_pipeline: a real throw-away Slurm on localhost (private munged, slurmctld,
# slurmd): the job's outputs equal a direct run's; a USR1 stop exits 75 and a resubmission completes; a requeueable
# job requeues itself and resumes. Skipped (77) without slurm-wlm/munge or root.
add_test(NAME slurm.sbatch_signals
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/slurm/sbatch_signals.sh ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME slurm.sbatch_pipeline
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tests/slurm/sbatch_pipeline.sh $<TARGET_FILE:amos-prep> ${AMOSPREP_PYTHON}
                 ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(slurm.sbatch_signals slurm.sbatch_pipeline
                     PROPERTIES LABELS slurm SKIP_RETURN_CODE 77 TIMEOUT 300 RUN_SERIAL TRUE)
