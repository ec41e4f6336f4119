# voxsync — see `make help`.
GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
BENCHCOUNT ?= 6
BENCHSTAT := $(shell go env GOPATH)/bin/benchstat
PKGS      := ./...
BIN       := bin

.PHONY: help build test fuzz bench run run-client fmt-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/gameserver and bin/gameclient
	$(GO) build -o $(BIN)/ ./cmd/gameserver ./cmd/gameclient

test: fmt-check ## vet, then every test with the race detector
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

fuzz: ## run every fuzz target for FUZZTIME each (default 10s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$t"; $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

bench: ## run every benchmark BENCHCOUNT times; bench.txt has the runs, benchstat prints medians
	@test -x $(BENCHSTAT) || $(GO) install golang.org/x/perf/cmd/benchstat@latest
	$(GO) test -run='^$$' -bench=. -benchtime=$(BENCHTIME) -count=$(BENCHCOUNT) -timeout 60m $(PKGS) | tee bench.txt
	$(BENCHSTAT) bench.txt

run: build ## start the game server on its built-in pack
	$(BIN)/gameserver

run-client: build ## sync a client against a local server
	$(BIN)/gameclient -server ws://127.0.0.1:30000/ws -until-synced

clean: ## remove build output
	rm -rf $(BIN)
