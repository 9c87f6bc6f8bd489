# raft/raft.mk: the Raft library (cowsql/raft 0.22, fetched by ops/raft-lib.sh) and the tests that use it.
# Included by the top-level Makefile after its variables (BUILD, CC, CFLAGS, LDFLAGS, LIBS, obj).
#
#   make raft-lib          fetch libraft.a + headers into $(RAFT_DIR) (idempotent, no root needed)
#   make raft-tests        build every tests/raft/test_*.c into $(BUILD)/tests/raft/
#   make raft-test         build and run them
#
#   $(BUILD)/libferryraft.a  raft/*.c (ferry_raft.h: many groups over one peer connection per broker pair)
#
# Only raft/*.c and tests/raft/*.c are compiled with RAFT_CFLAGS: nothing else may include raft.h.
# One fetch serves build/ and build-san/ (the library is not instrumented; our code around it is).

RAFT_DIR    ?= build/third_party/raft
RAFT_STAMP  := $(RAFT_DIR)/VERSION
RAFT_LIB    := $(RAFT_DIR)/lib/libraft.a
RAFT_CFLAGS := -isystem $(RAFT_DIR)/include
RAFT_COMPAT := $(BUILD)/obj/raft/compat_glibc.o $(BUILD)/obj/raft/libraft_wraps.o
# Link line for anything that uses the library: the compat object first (it defines what libraft.a lacks).
# libraft_wraps.c replaces two library internals on the hot path (io_destroy off the loop, a sliced CRC).
RAFT_WRAPS  := -Wl,--wrap=UvOsIoDestroy -Wl,--wrap=byteCrc32
RAFT_LIBS   := $(RAFT_COMPAT) $(RAFT_LIB) $(RAFT_WRAPS) -luv -llz4

RAFT_TEST_SRCS := $(wildcard tests/raft/test_*.c)
RAFT_TEST_BINS := $(patsubst tests/raft/%.c,$(BUILD)/tests/raft/%,$(RAFT_TEST_SRCS))
# tests/raft/*.c that are not test_*.c: the shared cluster harness, linked into every raft test.
RAFT_TLIB_OBJS := $(call obj,$(filter-out $(RAFT_TEST_SRCS),$(wildcard tests/raft/*.c)))
# Our multi-group layer (ferry_raft.h): raft/*.c except the compat shim, as one archive, with the
# wire library it sends through (broker/net). Linked into every raft test and, later, into ferryd.
RAFT_OBJS   := $(call obj,$(filter-out raft/compat_glibc.c raft/libraft_wraps.c,$(wildcard raft/*.c)))
RAFT_FR_LIB := $(BUILD)/libferryraft.a

.PHONY: raft-lib raft-tests raft-test

raft-lib: $(RAFT_STAMP)
$(RAFT_STAMP):
	ops/raft-lib.sh $(RAFT_DIR)
$(RAFT_LIB): $(RAFT_STAMP)

$(BUILD)/obj/raft/%.o: raft/%.c | $(RAFT_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(RAFT_CFLAGS) -c $< -o $@
$(BUILD)/obj/tests/raft/%.o: tests/raft/%.c | $(RAFT_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(RAFT_CFLAGS) -c $< -o $@

$(RAFT_FR_LIB): $(RAFT_OBJS)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^

$(BUILD)/tests/raft/%: $(BUILD)/obj/tests/raft/%.o $(RAFT_TLIB_OBJS) $(RAFT_FR_LIB) $(WIRE_LIB) $(RAFT_COMPAT) $(RAFT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(RAFT_TLIB_OBJS) $(RAFT_FR_LIB) $(WIRE_LIB) $(RAFT_LIBS) $(LIBS) -lcriterion

raft-tests: $(RAFT_TEST_BINS)
raft-test: $(RAFT_TEST_BINS)
	@tests/run-all.sh $(BUILD) $(RAFT_TEST_BINS)

# Objects reached only through the pattern rules above: keep them (make would delete intermediates).
.SECONDARY: $(RAFT_TLIB_OBJS) $(RAFT_OBJS) $(RAFT_COMPAT) $(patsubst tests/raft/%.c,$(BUILD)/obj/tests/raft/%.o,$(RAFT_TEST_SRCS))
