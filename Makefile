# voxsync — see `make help`.
GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
BENCHCOUNT ?= 6
BENCHSTAT := $(shell go env GOPATH)/bin/benchstat
PKGS      := ./...
BIN       := bin

.PHONY: help build test fuzz bench run run-client fmt-check tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/gameserver and bin/gameclient
	$(GO) build -o $(BIN)/ ./cmd/gameserver ./cmd/gameclient

test: fmt-check tools ## vet, then every test with the race detector
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 8m $(TEST_FIRST) $(PKGS)

# The two slowest test packages (session ~225 s, cmd/gameclient ~150-180 s,
# mostly waiting on timers) start first: go test runs 2 packages at a time in
# the order given, and the rest fit beside them (as does the MinIO build below)
# instead of queueing in front of the slowest.
TEST_FIRST := ./session ./cmd/gameclient

# What the tests need beyond Go, as command:Debian-package. The race
# detector needs cgo and so a C compiler; the full-disk test mounts a tmpfs;
# promtool checks /metrics; Chromium shows /status; tmux is the terminal
# the progress line is checked in; nginx serves published mirrors. Installed
# from Debian when missing, with one apt-get update. Where that is impossible
# (no root) the tests that need a tool skip with a message, and fail under
# CI=true.
TOOLS := gcc:gcc mount:mount promtool:prometheus chromium:chromium tmux:tmux nginx:nginx

# The MinIO server that publish tests upload to: built from its Go module,
# pinned (internal/mirrortest.MinIOVersion names the same version). On a fresh
# 2-core machine the build takes 2-3.5 minutes (215 CPU-seconds, cold module
# and build caches). Built before the tests, it pushed a cold `make test` to 10
# minutes; so it runs in the background at the lowest CPU priority, taking what
# the compiler and the tests leave idle (much: the long tests wait on timers)
# without slowing their timing, and the tests that need MinIO wait for it under
# a lock (MINIO_LOCK). Afterwards it is a 150 MB binary in GOBIN or GOPATH/bin,
# and nothing is built again.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO := $(or $(shell $(GO) env GOBIN),$(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin)/minio
MINIO_LOCK := $(MINIO).build.lock
MINIO_LOG := $(MINIO).build.log

tools: ## install what the tests need beyond Go (Debian packages, the MinIO server)
	@missing=""; for t in $(TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } || \
	    echo "could not install$$missing: tests that need them skip (and fail under CI=true)"; \
	fi
	@command -v minio >/dev/null || test -x $(MINIO) || { \
	  mkdir -p $(dir $(MINIO)) && \
	  echo "building the MinIO server into $(MINIO) in the background for the tests that need it (2-3 minutes, once; log $(MINIO_LOG))" && \
	  nohup nice -n 19 flock -n $(MINIO_LOCK) sh -c 'test -x $(MINIO) || { $(GO) install github.com/minio/minio@$(MINIO_VERSION) && echo "minio build: done" || echo "minio build: failed"; }' \
	    </dev/null >>$(MINIO_LOG) 2>&1 & \
	}

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

fuzz: ## run every fuzz target for FUZZTIME each (default 10s); fails only on a written crasher
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$t"; \
	    before=$$(ls $$dir/testdata/fuzz/$$t 2>/dev/null | wc -l); \
	    if ! $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg; then \
	      after=$$(ls $$dir/testdata/fuzz/$$t 2>/dev/null | wc -l); \
	      if [ "$$after" -gt "$$before" ]; then echo "crasher written to $$dir/testdata/fuzz/$$t"; exit 1; fi; \
	      echo "no crasher written: Go 1.26's fuzz deadline race (go.dev/issue/75804); running $$t again"; \
	      $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	    fi; \
	  done; \
	done

bench: tools ## run every benchmark BENCHCOUNT times; bench.txt has the runs, benchstat prints medians
	@test -x $(BENCHSTAT) || $(GO) install golang.org/x/perf/cmd/benchstat@latest
	@command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; } # the cold-sync baseline
	$(GO) test -run='^$$' -bench=. -benchtime=$(BENCHTIME) -count=$(BENCHCOUNT) -timeout 60m $(PKGS) | tee bench.txt
	$(BENCHSTAT) bench.txt

# Overrides for run and run-client, e.g.
#   make run PORT=31000 PACKS=path/to/pack ARGS=-hot-reload
#   make run-client PORT=31000 CACHE=/tmp/cache ARGS=-json
HOST       ?= 127.0.0.1
PORT       ?= 30000
ADMIN_PORT ?= 30001
PACKS      ?=
CACHE      ?= Cache
ARGS       ?=

run: build ## start the game server (PORT, ADMIN_PORT, PACKS=dir[,dir], ARGS=more flags)
	$(BIN)/gameserver -listen $(HOST):$(PORT) -admin-listen $(HOST):$(ADMIN_PORT)$(if $(PACKS), -packs $(PACKS)) $(ARGS)

run-client: build ## sync a client against a server (HOST, PORT, CACHE, PACKS=the player's packs, ARGS)
	$(BIN)/gameclient -server ws://$(HOST):$(PORT)/ws -cache $(CACHE) -until-synced$(if $(PACKS), -packs $(PACKS)) $(ARGS)

clean: ## remove build output
	rm -rf $(BIN)
