# TucDesk developer entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# Builds go outside the clone by default so every checkout (and CI) reuses one cache.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tucdesk/target

.PHONY: help build test lint fmt bench bench-rendezvous bench-relay bench-ssh bench-paths bench-audit deps demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## Build every crate, tests and benches included
	$(CARGO) build --workspace --all-targets

test: ## Run every test against the real Postgres, Redis and NATS on this machine
	$(CARGO) test --workspace --no-fail-fast
	@# The 100 000-entry audit export roundtrip, at full size (optimised: ~1 min, not ~20).
	$(CARGO) test --release -p tucdesk-audit --test roundtrip

lint: deps ## Formatting, clippy with warnings as errors, duplicate dependencies
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Criterion benchmarks of the crypto core (figures go into docs/BENCHMARKS.md)
	$(CARGO) bench -p tucdesk-crypto

bench-rendezvous: ## Rendezvous load tools, release: registrations (in-process cache, Redis), 10 000 simulated agents
	$(CARGO) build --release -p tucdesk-bench -p tucdesk-rendezvous
	$(CARGO_TARGET_DIR)/release/tucdesk-bench registrations --cache memory
	$(CARGO_TARGET_DIR)/release/tucdesk-bench registrations --cache redis
	$(CARGO_TARGET_DIR)/release/tucdesk-bench agent-load --agents 10000

bench-relay: ## Relay load tool, release: throughput, round trips and idle memory of a tucdesk-relay process vs TCP baselines
	$(CARGO) build --release -p tucdesk-bench -p tucdesk-relay
	$(CARGO_TARGET_DIR)/release/tucdesk-bench relay --sessions 100 --seconds 10 --idle-sessions 1000

bench-ssh: ## TucDesk sessions vs OpenSSH on loopback, release: setup, keystroke echo, throughput (needs openssh-server, openssh-client)
	$(CARGO) build --release -p tucdesk-bench -p tucdesk-standalone -p tucdesk-agent -p tucdesk-viewer
	$(CARGO_TARGET_DIR)/release/tucdesk-bench ssh --runs 10 --samples 300 --file-mb 100 --streams 3
	$(CARGO_TARGET_DIR)/release/tucdesk-bench ssh --runs 10 --samples 300 --file-mb 100 --streams 3 --lean-shell

bench-paths: ## Sessions over each path (direct, TURN through the stack's coturn, WebSocket relay) vs OpenSSH, release: setup, keystroke echo, throughput (needs openssh-server, openssh-client, coturn)
	$(CARGO) build --release -p tucdesk-bench -p tucdesk-standalone -p tucdesk-agent -p tucdesk-viewer
	$(CARGO_TARGET_DIR)/release/tucdesk-bench ssh --paths direct,turn,ws --runs 10 --samples 300 --file-mb 100 --streams 3 --lean-shell

bench-audit: ## Audit log load tool, release: entries appended per second on Postgres and SQLite (batch 1, 100, 1000), export verification speed
	$(CARGO) build --release -p tucdesk-bench
	$(CARGO_TARGET_DIR)/release/tucdesk-bench audit --entries 20000 --seconds 10 --export-entries 100000

deps: ## Fail if a crate appears in two versions that is not on the upstream allowlist
	@.ci/check-duplicates

demo: ## Run the whole system on embedded defaults: stack, agent, login, encrypted session, audit events
	@scripts/demo.sh

# Fuzzing needs nightly and cargo-fuzz (`cargo install cargo-fuzz --locked`); see
# docs/fuzzing.md. The fuzz crate is its own workspace with its own target dir, so the
# sanitizer builds never mix with the cache above.
FUZZ_SECONDS ?= 30
FUZZ_CARGO ?= cargo +nightly
FUZZ_ENV := CARGO_TARGET_DIR=$(CURDIR)/fuzz/target

.PHONY: fuzz fuzz-check

fuzz: ## Run every fuzz target for FUZZ_SECONDS (default 30) each, seeds and regressions first
	@failed=""; \
	for t in $$($(FUZZ_ENV) $(FUZZ_CARGO) fuzz list); do \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		mkdir -p fuzz/corpus/$$t; \
		regressions=""; [ -d fuzz/regressions/$$t ] && regressions=fuzz/regressions/$$t; \
		$(FUZZ_ENV) $(FUZZ_CARGO) fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t $$regressions -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failing targets:$$failed (inputs in fuzz/artifacts/)" >&2; exit 1; fi

fuzz-check: ## Build every fuzz target without running it (nightly + cargo-fuzz)
	$(FUZZ_ENV) $(FUZZ_CARGO) fuzz build
