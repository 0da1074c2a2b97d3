# Sourced by build.sh (and mirrored by amicable_testing.podman): how podman runs on hosts like
# the CI machine, where the default crun fails on cgroups and the ulimits must stay at or under
# the shell's hard limits.
# (fd 9 is build.sh's lock: nothing podman leaves running may hold it)
amicable_podman() { podman --runtime "${AMICABLE_OCI_RUNTIME:-runc}" "$@" 9>&-; }
_hard_nofile=$(ulimit -Hn); [ "$_hard_nofile" = unlimited ] && _hard_nofile=1048576
_nofile=$(( _hard_nofile < 16384 ? _hard_nofile : 16384 ))
AMICABLE_ULIMITS=(--ulimit "nofile=$_nofile:$_nofile" --ulimit "nproc=4096:4096")
