# The two commands of the README. Each does its own set-up.
.PHONY: demo test

# Runs the demo: private PostgreSQL and MariaDB servers started from the machine's own
# binaries (the packages are installed when missing), simulated bureaus, the live
# pipeline for 60 s, and a summary. Pass options with ARGS="--enterprises 10000 --keep".
demo:
	bash scripts/services.sh --install-only
	cargo run --release --quiet -- demo $(ARGS)

# Runs the whole test suite against real PostgreSQL and MariaDB servers (installed and
# started by scripts/services.sh when missing or stopped).
test:
	eval "$$(bash scripts/services.sh)" && cargo test --workspace
