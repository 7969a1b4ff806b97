# The two commands of the README. Each does its own set-up.
.PHONY: test

# Runs the whole test suite against real PostgreSQL and MariaDB servers (installed and
# started by scripts/services.sh when missing or stopped).
test:
	eval "$$(bash scripts/services.sh)" && cargo test --workspace
