# Shortcuts for the scripts, which stay the commands CI and the README use.
# Arguments for a script go in ARGS: make bench ARGS="--size 1GiB", make check ARGS="tests/unit -q".
ARGS ?=

.PHONY: check test serve bench

# Lint and the whole test suite, as CI runs them.
check:
	scripts/test $(ARGS)

test: check

# The service on http://127.0.0.1:8000, with an embedded local S3 store when none is configured.
serve:
	scripts/serve $(ARGS)

# The benchmark (docs/benchmarks.md).
bench:
	scripts/bench $(ARGS)
