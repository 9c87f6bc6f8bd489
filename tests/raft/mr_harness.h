/* mr_harness.h: several fr_node brokers on one libuv loop in one test process, with recording state machines. */
#ifndef FERRY_TESTS_RAFT_MR_HARNESS_H
#define FERRY_TESTS_RAFT_MR_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../raft/ferry_raft.h"

/*
 * Every node runs on the same loop and thread (the simplest deterministic-enough setup: no locks,
 * and a node "crash" is fr_node_stop, which closes its sockets so the others see the peer go).
 * Each node has its own data dir under one temp dir; each (node, group) has a state machine that
 * records every applied entry (index, 8-byte id) and snapshots/restores that whole record, so
 * "every replica applied the same entries in the same order" is a comparison of records.
 */

#define MR_MAX_NODES 5
#define MR_MAX_GROUPS 1024 /* the scale test runs 1,000 groups */

struct mr_applied {
    uint64_t index;
    uint64_t id;
};

struct mr_sm {
    struct mr_applied *log;
    unsigned n, cap;
    uint64_t last_index; /* highest index applied or restored */
    unsigned restores;
    char violation[160]; /* first ordering violation seen, "" if none */
};

struct mr_node {
    struct fr_node *node;
    uint64_t id;
    bool up;
    char dir[512];
    int port;
    struct fr_group *groups[MR_MAX_GROUPS]; /* by group index; NULL if not open here */
    struct mr_sm sm[MR_MAX_GROUPS];
};

struct mr_cluster {
    uv_loop_t loop;
    uv_timer_t wake;
    char dir[256];
    unsigned n_nodes;
    struct mr_node nodes[MR_MAX_NODES];
    bool tls;
    struct ferry_tls_ctx *tls_server, *tls_client;
    struct fr_group_config gcfg; /* template for every group (fsm is filled per replica) */
    uint64_t next_id;
    unsigned stopping;
    bool no_quiesce; /* start nodes with fr_node_config.disable_quiescence set */
};

/* n_nodes nodes (ids 1..n), not started. tls: mutual TLS with the dev certificates. */
void mr_init(struct mr_cluster *c, unsigned n_nodes, bool tls);
/* Stops every node that is up, checks uv_loop_close == 0, removes the temp dir. */
void mr_teardown(struct mr_cluster *c);

/* Starts node i (index 0..n-1) and exchanges addresses with every node that is up. */
void mr_node_start(struct mr_cluster *c, unsigned i);
/* Stops node i and runs the loop until it is fully closed (its state machines are reset). */
void mr_node_stop(struct mr_cluster *c, unsigned i);
/* Opens groups [first, first+count) on node i; bootstraps them with members (node indexes) when
 * n_members > 0 (EXISTS is fine: a restart), then starts them. */
void mr_open_groups(struct mr_cluster *c, unsigned i, unsigned first, unsigned count, const unsigned *members,
                    unsigned n_members);

/* Cuts node i off (on = true) or reconnects it: every frame between it and the other nodes that
 * are up vanishes, sockets stay open (fr_node_test_mute_peer on both ends): a firewall cut, or a
 * SIGSTOPped process as its peers see it. */
void mr_isolate(struct mr_cluster *c, unsigned i, bool on);
/* Removes node i's data dir (the node must be stopped): a replica wiped and restarted empty. */
void mr_node_wipe(struct mr_cluster *c, unsigned i);
/* Number of groups quiet on node i now (fr_node_stats.groups_quiescent). */
unsigned mr_quiet(struct mr_cluster *c, unsigned i);

/* Runs the loop until pred(c, arg) or timeout_ms (scaled by FERRY_TEST_TIMEOUT_MULT) pass. */
bool mr_run_until(struct mr_cluster *c, bool (*pred)(struct mr_cluster *, void *), void *arg, int timeout_ms);
void mr_run_for(struct mr_cluster *c, int ms);

/* Index of the up node that leads group gi with the highest term, or -1. */
int mr_leader(struct mr_cluster *c, unsigned gi);
bool mr_wait_leader(struct mr_cluster *c, unsigned gi, int timeout_ms);
/* Every group in [first, first+count) has a leader. */
bool mr_wait_leaders(struct mr_cluster *c, unsigned first, unsigned count, int timeout_ms);

/* Proposes count entries on group gi's leader (retrying on leader changes) and waits until they
 * are all committed and applied there; returns how many succeeded. */
unsigned mr_propose(struct mr_cluster *c, unsigned gi, unsigned count, int timeout_ms);
/* Waits until every up node that has group gi open applied exactly the same record as the
 * others, at least min_entries long. */
bool mr_wait_converged(struct mr_cluster *c, unsigned gi, unsigned min_entries, int timeout_ms);
/* Asserts (Criterion) that no state machine saw an ordering violation and that every pair of
 * replicas agrees on the common prefix of their records. */
void mr_check_prefixes(struct mr_cluster *c, unsigned gi);

#endif
