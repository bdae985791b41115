# WDS — make targets. `make run` starts the embedded dev cell; `make test` is
# what CI runs (.ci/run). Nothing here downloads binaries: Go tools come from
# go.mod.

GO        ?= go
BIN       ?= bin
PKGS      ?= ./...
TEST_FLAGS ?= -race -timeout 15m
BENCH     ?= .
BENCH_COUNT ?= 5

.PHONY: all build run test test-short chaos-cell chaos-federation chaos-federation-roll bench proto proto-check lint vet fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/wds ./cmd/wds

run: build
	$(BIN)/wds dev --demo

# The cell's fake-time tests (cell/faketime_test.go) are built without the
# race detector: under -race the Go runtime crashes now and then in a timer
# of a synctest bubble (SIGSEGV in runtime.(*timer).modify from bufconn's
# time.AfterFunc), so they run in a pass of their own.
test:
	$(GO) vet $(PKGS)
	$(GO) run ./internal/tools/protogen -check
	$(GO) test $(TEST_FLAGS) $(PKGS)
	$(GO) test -count=1 -run '^TestFakeTime' ./cell

test-short:
	$(GO) test -short $(PKGS)

# The long version of the real-process leader-loss test (three `wds server`
# and five `wds consume` processes; the default suite runs 3 kills).
KILLS ?= 20
chaos-cell:
	WDS_PROC_KILLS=$(KILLS) $(GO) test ./cmd/wds -run '^TestServerProcessesLeaderLoss$$' -count=1 -v -timeout 30m

# The long version of the real-process federation test (three regions of one
# `wds server` each, every node a global voter, and their `wds consume`
# processes; the default suite kills one non-leader region, checks its
# regional failover, restarts it and checks the fail-back): per seed of SEEDS,
# FED_KILLS kill -9s of a whole region, alternating a non-leader region and
# the global leader's, the dead region restarted (and failed back) after each.
# FED_TTL is the domains' TTL; FED_NODES=3 makes every region a 3-node cell
# (nine `wds server`s; a kill takes a region's three). WDS_FED_SEED=N replays
# one run.
SEEDS ?= 1 2 3
FED_KILLS ?= 4
FED_TTL ?= 3s
FED_NODES ?= 1
chaos-federation:
	@set -e; for seed in $(SEEDS); do \
		echo "== seed $$seed: $(FED_KILLS) kills, T = $(FED_TTL), $(FED_NODES) node(s) per region"; \
		WDS_FED_SEED=$$seed WDS_FED_KILLS=$(FED_KILLS) WDS_FED_TTL=$(FED_TTL) WDS_FED_NODES=$(FED_NODES) $(GO) test ./chaos -run '^TestFederationProcessesRegionLoss$$' -count=1 -v -timeout 60m; \
	done

# The long version of the real-process rolling restart (3 regions × 3 `wds
# server`s restarted one by one with SIGTERM, zero churn asserted); the
# default suite rolls the federation once.
ROLL_ROUNDS ?= 5
chaos-federation-roll:
	WDS_ROLL_ROUNDS=$(ROLL_ROUNDS) $(GO) test ./chaos -run '^TestFederationProcessesRollingRestart$$' -count=1 -v -timeout 60m

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) $(PKGS)

proto:
	$(GO) run ./internal/tools/protogen

proto-check:
	$(GO) run ./internal/tools/protogen -check

vet:
	$(GO) vet $(PKGS)

lint: vet proto-check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fuzz:
	$(GO) test ./topology -run '^$$' -fuzz FuzzParse -fuzztime 30s
	$(GO) test ./topology -run '^$$' -fuzz FuzzKeyspace -fuzztime 30s
	$(GO) test ./chaos -run '^$$' -fuzz FuzzParseEvents -fuzztime 30s

clean:
	rm -rf $(BIN)
