# TucDesk developer entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# Builds go outside the clone by default so every checkout (and CI) reuses one cache.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tucdesk/target

.PHONY: help build test lint fmt bench deps demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## Build every crate, tests and benches included
	$(CARGO) build --workspace --all-targets

test: ## Run every test against the real Postgres, Redis and NATS on this machine
	$(CARGO) test --workspace --no-fail-fast

lint: deps ## Formatting, clippy with warnings as errors, duplicate dependencies
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Criterion benchmarks of the crypto core (figures go into docs/BENCHMARKS.md)
	$(CARGO) bench -p tucdesk-crypto

deps: ## Fail if a crate appears in two versions that is not on the upstream allowlist
	@.ci/check-duplicates

demo: ## Run the whole system on embedded defaults (arrives with the agent/viewer issue)
	@echo "make demo: the standalone stack (tucdesk-standalone, agent, viewer) is not built yet;" >&2
	@echo "it lands with the agent and viewer issue. Today: 'make test' runs everything that exists." >&2
	@exit 2
