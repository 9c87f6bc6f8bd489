# jepsen.mk: make targets of the Jepsen-style fault-injection suite (docs/jepsen.md); included by the Makefile.
#
#   make jepsen            the bounded CI profile: 3 nodes, every fault kind once, a few minutes; fails on
#                          any anomaly (ARGS="--seed N" replays a schedule)
#   make jepsen-soak ARGS="--duration 600 --nodes 5 --faults kill,partition-ring --seed N"
#   make jepsen-unit       the checker's unit tests and the nemesis's own (no root, no brokers)
#   make jepsen-selftest   the testbed's self-test (namespaces, a cut, a heal, nothing left behind)
#   make jepsen-bugs       one short run per broker bug switch (build-bugs/ferryd); each must be caught
#   make jepsen-clean      remove what an interrupted run left (processes by PID, namespaces)
# Needs root (network namespaces, nft, iptables). Reports: run/jepsen/<time>-seed<N>/index.html.

JEPSEN_BIN   := $(BUILD)/jepsen
JEPSEN_NFQ   := $(JEPSEN_BIN)/nfq_delay
JEPSEN_SHIM  := $(JEPSEN_BIN)/sync_shim.so
JEPSEN_CERTS := $(JEPSEN_BIN)/certs/ca.crt
JEPSEN_BUGS  := ack-before-commit drop-entry no-dedupe
ARGS         ?=

include jepsen/workload/workload.mk

.PHONY: jepsen jepsen-soak jepsen-unit jepsen-selftest jepsen-bugs jepsen-clean jepsen-build

# The NFQUEUE delay helper: the generic object rule gives it the project's warnings.
$(JEPSEN_NFQ): $(BUILD)/obj/jepsen/nemesis/nfq_delay.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libnetfilter_queue 2>/dev/null || echo -lnetfilter_queue)

# The power-cut test's fsync-recording shim, reused as is (jepsen/nemesis/nemesis.py cut_unsynced).
$(JEPSEN_SHIM): tests/lib/shim/sync_shim.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O1 -Wall -Wextra -Werror -o $@ $< -ldl

# Certificates whose SANs carry the testbed's node addresses (peers verify each other's host).
$(JEPSEN_CERTS): ops/gen-certs.sh
	rm -rf $(JEPSEN_BIN)/certs
	FERRY_CERT_SANS="$$(seq -s, -f 'IP:10.77.0.%g' 10 18)" ops/gen-certs.sh $(JEPSEN_BIN)/certs

jepsen-build: $(FERRYD) $(FERRYCTL) $(JP_WORKLOAD) $(JEPSEN_NFQ) $(JEPSEN_SHIM) $(JEPSEN_CERTS)

jepsen: deps
	@$(MAKE) --no-print-directory jepsen-build
	python3 -B jepsen/run.py --profile ci --build-dir $(BUILD) $(ARGS)

jepsen-soak: deps
	@$(MAKE) --no-print-directory jepsen-build
	python3 -B jepsen/run.py --profile soak --build-dir $(BUILD) $(ARGS)

jepsen-unit:
	python3 -B -m unittest -v jepsen/checker/test_checker.py jepsen/nemesis/test_nemesis.py

jepsen-selftest:
	jepsen/testbed/netns.sh selftest

# Each bug switch must make the suite report anomalies (run.py exits 1); a clean verdict fails the target.
jepsen-bugs: deps
	@$(MAKE) --no-print-directory jepsen-build build-bugs/ferryd
	@set -e; for b in $(JEPSEN_BUGS); do \
	    echo "== jepsen with debug.bug=$$b (must be caught)"; \
	    rc=0; python3 -B jepsen/run.py --profile ci --bug $$b --build-dir $(BUILD) $(ARGS) || rc=$$?; \
	    if [ $$rc -ne 1 ]; then echo "jepsen-bugs: $$b was not caught (exit $$rc)"; exit 1; fi; \
	    echo "jepsen-bugs: $$b caught"; done

jepsen-clean:
	python3 -B jepsen/run.py --cleanup
