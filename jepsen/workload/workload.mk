# workload.mk: the Jepsen workload programs (jepsen/workload/README.md), included through jepsen/jepsen.mk.
# Uses the top-level Makefile's BUILD, CFLAGS, LDFLAGS, LIBS, CLIENT_A and WIRE_LIB; objects come from its
# generic $(BUILD)/obj/%.o rule, so they get the same warnings (-Wall -Wextra -Werror ...).
#   make jepsen-workload      builds $(BUILD)/jepsen/jp_{producer,consumer,final_read,replica_dump}
#   make jepsen-smoke         runs them and the checker against 3 local brokers (jepsen/workload/smoke.sh)

JP_DIR         := jepsen/workload
JP_BIN         := $(BUILD)/jepsen
JP_COMMON_OBJ  := $(BUILD)/obj/$(JP_DIR)/jp_common.o
JP_CLIENT_BINS := $(JP_BIN)/jp_producer $(JP_BIN)/jp_consumer $(JP_BIN)/jp_final_read
JP_WORKLOAD    := $(JP_CLIENT_BINS) $(JP_BIN)/jp_replica_dump

.PHONY: jepsen-workload
jepsen-workload: $(JP_WORKLOAD)

# The client programs use only libferry's public API (the real client).
$(JP_CLIENT_BINS): $(JP_BIN)/%: $(BUILD)/obj/$(JP_DIR)/%.o $(JP_COMMON_OBJ) $(CLIENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The replica dump reads segment files offline with the wire library's batch reader (no broker code).
$(JP_BIN)/jp_replica_dump: $(BUILD)/obj/$(JP_DIR)/jp_replica_dump.o $(JP_COMMON_OBJ) $(CLIENT_A) $(WIRE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The workload and the checker end to end on 3 local TLS brokers (no namespaces, one kill -9): see smoke.sh.
.PHONY: jepsen-smoke
jepsen-smoke: $(FERRYD) $(FERRYCTL) certs jepsen-workload
	jepsen/workload/smoke.sh $(BUILD)
