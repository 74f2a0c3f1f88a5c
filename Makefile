# Thin wrappers around scripts/ (the scripts are the source of truth and work without make).
.PHONY: run test setup fuzz

run:
	./scripts/run.sh

test:
	./scripts/test.sh

setup:
	./scripts/setup.sh --with-peers

# Every fuzz target for FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)
