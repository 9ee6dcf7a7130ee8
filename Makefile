# pgpool-operator: build, test and run the two operators.
# `make` alone lists the targets.

CARGO ?= cargo
.DEFAULT_GOAL := help

.PHONY: help build test lint fmt crds bench

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build both operators (debug)
	$(CARGO) build --workspace --bins

test: ## Run every test (unit, controller, scenario, chart, real pgpool where installed)
	$(CARGO) test --workspace

lint: ## Check formatting and clippy (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crds: ## Regenerate the CRD YAML in the charts from the Rust types
	$(CARGO) run -q -p pgpool-api --bin crdgen -- --write .

bench: ## Benchmark both operators against the in-memory API server (release build; prints tables)
	$(CARGO) build --release -p pgpool-provisioner -p pgpool-ops-manager --bins
	$(CARGO) run --release -p bench -- $(BENCH_ARGS)
