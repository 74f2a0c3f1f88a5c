# Thin wrappers around scripts/ (the scripts are the source of truth and work without make).
.PHONY: run test setup

run:
	./scripts/run.sh

test:
	./scripts/test.sh

setup:
	./scripts/setup.sh --with-peers
