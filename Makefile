# Ferry: build, test and benchmark everything. `make help` lists the targets.
#
# Layout of the build (see docs/design.md):
#   build/libferrywire.a    broker/proto + broker/net: wire formats and the TLS transport,
#                           shared by the broker and the client (one implementation of the protocol)
#   build/libferrybroker.a  the rest of broker/ except main.c (so tests can link it)
#   build/ferryd            the broker
#   build/libferry.{a,so}   the client library (client/src + the wire objects, exports controlled)
#   build/ferryctl          the CLI (ops/ferryctl), linked against libferry
#   build/tests/...         one Criterion binary per tests/{unit,integration}/test_*.c
#
# SANITIZE=1 builds into build-san/ with AddressSanitizer + UndefinedBehaviorSanitizer.

PREFIX     ?= /usr/local
CC         ?= cc
SANITIZE   ?= 0
ifeq ($(SANITIZE),1)
BUILD      ?= build-san
OPT        := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SANLD      := -fsanitize=address,undefined
else
BUILD      ?= build
OPT        := -O2 -g -D_FORTIFY_SOURCE=2
SANLD      :=
endif

PKGS       := libuv msgpack openssl liblz4 libzstd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wpointer-arith -Wvla -Wmissing-prototypes \
           -Wstrict-prototypes -Wold-style-definition -Wno-missing-field-initializers
HARDEN  := -fstack-protector-strong -fPIC -fno-strict-overflow -fno-delete-null-pointer-checks
CFLAGS  ?=
CFLAGS  += -std=gnu11 $(OPT) $(WARN) $(HARDEN) -pthread -D_GNU_SOURCE \
           -Ibroker -Iclient/include -Iclient/src -Itests/lib $(PKG_CFLAGS) -MMD -MP
LDFLAGS += -pthread -Wl,-z,relro,-z,now $(SANLD)
LIBS    := $(PKG_LIBS) -lm

WIRE_SRCS   := $(wildcard broker/proto/*.c broker/net/*.c)
BROKER_SRCS := $(filter-out broker/main.c $(WIRE_SRCS),$(wildcard broker/*.c broker/*/*.c))
CLIENT_SRCS := $(wildcard client/src/*.c)
CTL_SRCS    := $(wildcard ops/ferryctl/*.c)
TLIB_SRCS   := $(wildcard tests/lib/*.c)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
INTEG_SRCS  := $(wildcard tests/integration/test_*.c)
BENCH_SRCS  := $(wildcard tests/bench/*.c)
EXAMPLE_SRCS:= $(wildcard client/examples/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

WIRE_LIB   := $(BUILD)/libferrywire.a
BROKER_LIB := $(BUILD)/libferrybroker.a
CLIENT_A   := $(BUILD)/libferry.a
CLIENT_SO  := $(BUILD)/libferry.so.0
FERRYD     := $(BUILD)/ferryd
FERRYCTL   := $(BUILD)/ferryctl
TLIB       := $(BUILD)/libferrytest.a
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
INTEG_BINS := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRCS))
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
EXAMPLES   := $(patsubst client/examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))

.PHONY: all deps test unit integration bench certs demo install clean help docs sanitize
.DEFAULT_GOAL := all

all: $(FERRYD) $(FERRYCTL) $(CLIENT_SO) $(CLIENT_A) $(EXAMPLES) $(BUILD)/ferry.pc

help:
	@echo "make deps            install the Debian packages the build, tests and bench need (idempotent)"
	@echo "make                 build ferryd, ferryctl, libferry and the examples into $(BUILD)/"
	@echo "make demo            the main job: a local TLS broker and the orders example (Ctrl-C stops it)"
	@echo "make test            run every test (unit + integration); SANITIZE=1 for ASan+UBSan"
	@echo "make bench           run the benchmark and print figures"
	@echo "make raft-test       run the Raft library tests (Figure 8, elections, snapshots) on raft_fixture"
	@echo "make jepsen          fault-injection suite, bounded CI profile (root; docs/jepsen.md)"
	@echo "make jepsen-soak     longer runs: ARGS=\"--duration 600 --nodes 5 --faults ... --seed N\""
	@echo "make docs            regenerate docs/configuration.md from the configuration table"
	@echo "make install         install library, header, pkg-config file and binaries under PREFIX"

# One idempotent install step for every Debian package we need (root or sudo).
deps:
	@ops/deps.sh
	@ops/raft-lib.sh build/third_party/raft >/dev/null

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# libferry's own objects are compiled with hidden visibility; FERRY_API marks the exports.
$(BUILD)/obj/client/%.o: client/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fvisibility=hidden -DFERRY_BUILDING_LIB -c $< -o $@
# Examples are ordinary programs using the public API (the shortest-stem rule wins over client/%).
$(BUILD)/obj/client/examples/%.o: client/examples/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/objh/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fvisibility=hidden -c $< -o $@

$(WIRE_LIB): $(call obj,$(WIRE_SRCS))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(BROKER_LIB): $(call obj,$(BROKER_SRCS))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^ $(if $^,,)
$(CLIENT_A): $(call obj,$(CLIENT_SRCS)) $(patsubst %.c,$(BUILD)/objh/%.o,$(WIRE_SRCS))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(CLIENT_SO): $(call obj,$(CLIENT_SRCS)) $(patsubst %.c,$(BUILD)/objh/%.o,$(WIRE_SRCS))
	$(CC) -shared -Wl,-soname,libferry.so.0 -Wl,--no-undefined $(LDFLAGS) -o $@ $^ $(LIBS)
	ln -sf libferry.so.0 $(BUILD)/libferry.so
$(TLIB): $(call obj,$(TLIB_SRCS))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^

$(FERRYD): $(call obj,broker/main.c) $(BROKER_LIB) $(WIRE_LIB)
	$(CC) $(LDFLAGS) -o $@ $(call obj,broker/main.c) $(BROKER_LIB) $(RAFT_FR_LIB) $(WIRE_LIB) $(RAFT_LIBS) $(LIBS)
$(FERRYCTL): $(call obj,$(CTL_SRCS)) $(CLIENT_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BUILD)/examples/%: $(BUILD)/obj/client/examples/%.o $(CLIENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

TEST_LINK = $(TLIB) $(BROKER_LIB) $(CLIENT_A) $(WIRE_LIB)
$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(TEST_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_LINK) $(LIBS) -lcriterion
$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(TEST_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_LINK) $(LIBS) -lcriterion
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(TEST_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_LINK) $(LIBS)

$(BUILD)/ferry.pc: client/ferry.pc.in
	@mkdir -p $(dir $@)
	sed 's|@PREFIX@|$(PREFIX)|g' $< > $@

# Development CA and certificates (openssl CLI) used by the demo and the tests.
CERTS := $(BUILD)/certs
certs: $(CERTS)/ca.crt
$(CERTS)/ca.crt: ops/gen-certs.sh
	ops/gen-certs.sh $(CERTS)

docs: $(FERRYD)
	$(FERRYD) --print-config-doc > docs/configuration.md

# Tests: every Criterion binary; integration tests find the binaries and certs through the environment.
export FERRY_BUILD := $(abspath $(BUILD))
unit: deps $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t --jobs=2; done
integration: deps all $(INTEG_BINS) certs
	@set -e; for t in $(INTEG_BINS); do echo "== $$t"; $$t --jobs=1; done
test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(RAFT_TEST_BINS) $(INTEG_BINS) certs
	@echo "== jepsen checker and nemesis unit tests (python3)"
	@python3 -B -m unittest -q jepsen/checker/test_checker.py jepsen/nemesis/test_nemesis.py
	@tests/run-all.sh $(BUILD) $(UNIT_BINS) $(RAFT_TEST_BINS) $(INTEG_BINS)

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS) certs
	@tests/bench/run.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all certs
	@ops/demo.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(FERRYD) $(FERRYCTL) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(CLIENT_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(CLIENT_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libferry.so.0 $(DESTDIR)$(PREFIX)/lib/libferry.so
	install -m 644 client/include/ferry.h client/include/ferry_errors.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/ferry.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

clean:
	rm -rf build build-san build-bugs

# build-bugs/ferryd: ferryd with the fault-injection suite's deliberate bugs (config key debug.bug,
# docs/jepsen.md), so the suite can show it catches them. Never shipped: the key does not exist elsewhere.
ifneq ($(BUILD),build-bugs)
.PHONY: build-bugs/ferryd
build-bugs/ferryd:
	@CFLAGS=-DFERRY_BUG_SWITCHES $(MAKE) --no-print-directory BUILD=build-bugs build-bugs/ferryd
endif

include raft/raft.mk
include jepsen/jepsen.mk
# ferryd links the Raft layer (defined in raft.mk, hence after the include).
$(FERRYD): $(RAFT_FR_LIB) $(RAFT_COMPAT) $(RAFT_LIB)

-include $(shell find $(BUILD)/obj $(BUILD)/objh -name '*.d' 2>/dev/null)
