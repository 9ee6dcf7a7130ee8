# pgpool-operator: build, test and run the two operators.
# `make` alone lists the targets.

CARGO ?= cargo
# Image names of `make images` and `make e2e`: $(REGISTRY)/pgpool-provisioner:$(IMAGE_TAG).
REGISTRY ?= ghcr.io/pgpool-operator
IMAGE_TAG ?= dev
.DEFAULT_GOAL := help

.PHONY: help build test lint fmt crds bench images charts-check e2e e2e-up e2e-clean e2e-local e2e-sim

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

images: ## Build both operator images as REGISTRY/<binary>:IMAGE_TAG (needs Docker)
	REGISTRY=$(REGISTRY) IMAGE_TAG=$(IMAGE_TAG) scripts/images.sh

charts-check: ## helm lint + helm template both charts (default and ci/ values), parse every manifest strictly
	CARGO=$(CARGO) scripts/charts-check.sh

e2e: ## kind cluster, images, both charts, PostgreSQL, then the e2e tests (needs docker, kind, kubectl, helm)
	REGISTRY=$(REGISTRY) CARGO=$(CARGO) scripts/e2e.sh run

e2e-up: ## Like e2e without running the tests: cluster, images, charts and PostgreSQL ready
	REGISTRY=$(REGISTRY) CARGO=$(CARGO) scripts/e2e.sh up

e2e-clean: ## Delete the kind cluster of make e2e
	scripts/e2e.sh clean

e2e-local: ## UpdateVersion and day-2 operations under client load on one machine: local node, real pgpool-II pods and PostgreSQL (root)
	CARGO=$(CARGO) scripts/e2e-local.sh

e2e-sim: ## The e2e scenario's control flow without root: testkit API server, both binaries, simulated kubelet
	CARGO=$(CARGO) scripts/e2e-sim.sh
