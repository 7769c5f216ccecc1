"""Running several instances on one machine, for `make cluster` and the
tests: nginx from the shipped `deploy/` configuration, and the processes
of a local cluster."""
