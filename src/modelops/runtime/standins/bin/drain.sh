# Sourced by every non-interactive bash a host-mode job starts (the forge sets BASH_ENV to it).
# It stands in for nothing; it works around act's host mode (0.2.x, pkg/container/host_environment.go):
# when a step exits non-zero, act returns before it has copied the step's pty into the log and then
# closes the pty, so the last lines of a fast failing step (an input check's `::error::`) can vanish.
# A failing shell waits 0.3 s before it exits so act has read them; a passing one does not wait.
trap 'modelops_harness_status=$?; [ "$modelops_harness_status" -eq 0 ] || sleep 0.3' EXIT
