/* cluster.h: a raft_fixture cluster whose state machines record what they apply, checked after every step. */
#ifndef FERRY_TESTS_RAFT_CLUSTER_H
#define FERRY_TESTS_RAFT_CLUSTER_H

#include <raft.h>
#include <raft/fixture.h>
#include <stdbool.h>
#include <stdint.h>

#define RC_MAX_SERVERS 5
#define RC_MAX_INDEX 512     /* log indexes a test may reach; checked, never overrun */
#define RC_MAX_PROPOSALS 256 /* raft_apply requests a test may make */

/* Our command payload: the term its leader proposed it in (= the entry's term) and a unique id. */
struct rc_entry {
    uint64_t index;
    uint64_t term;
    uint64_t id;
};

/* One server's state machine: every command it applied, in order. */
struct rc_fsm_state {
    struct rc_cluster *cluster;
    unsigned i;
    struct rc_entry applied[RC_MAX_INDEX];
    unsigned n_applied;
    unsigned n_restores; /* snapshots installed into this state machine */
};

struct rc_proposal {
    struct raft_apply req;
    int status; /* 1 while pending, then the callback's status */
};

struct rc_cluster {
    struct raft_fixture f; /* first member: the step hook finds the cluster from the fixture */
    unsigned n;
    struct raft_fsm fsms[RC_MAX_SERVERS];
    struct rc_fsm_state sm[RC_MAX_SERVERS];
    /* The record of everything ever applied anywhere: record[index] (valid if recorded[index]). */
    struct rc_entry record[RC_MAX_INDEX];
    unsigned recorded_by[RC_MAX_INDEX];
    bool recorded[RC_MAX_INDEX];
    raft_index max_commit_seen[RC_MAX_SERVERS];
    struct rc_proposal proposals[RC_MAX_PROPOSALS];
    unsigned n_proposals;
    uint64_t next_id;
    unsigned long steps;
    char violation[512]; /* first safety violation seen, "" if none */
    bool verbose;        /* FERRY_RAFT_VERBOSE=1: the library's trace and every apply on stderr */
};

/* A new cluster of n (<= RC_MAX_SERVERS) voting servers, bootstrapped and started, with the invariant
 * hook on. Server i's randomized election timeout is timeouts[i] ms (1000..2000; the library's
 * default is 1000 + 100 * i when timeouts is NULL): the lowest one stands for election first.
 * Fails the test (Criterion) on any setup error. rc_teardown closes the fixture and frees c. */
struct rc_cluster *rc_setup(unsigned n, const unsigned *timeouts);
void rc_teardown(struct rc_cluster *c);

/* Propose a command on server i, which must be the leader; returns its payload id. */
uint64_t rc_propose(struct rc_cluster *c, unsigned i);

/* One fixture step (the hook checks invariants after it). */
void rc_step(struct rc_cluster *c);
/* Step until pred(c, arg) holds or max_ms of virtual time pass; returns whether pred held. */
bool rc_step_until(struct rc_cluster *c, bool (*pred)(struct rc_cluster *, void *), void *arg,
                   unsigned max_ms);
void rc_step_for(struct rc_cluster *c, unsigned ms);
bool rc_step_until_leader(struct rc_cluster *c, unsigned i, unsigned max_ms);
/* A revived server keeps the state it had when killed: a stale leader steps down only on contact. */
bool rc_step_until_not_leader(struct rc_cluster *c, unsigned i, unsigned max_ms);
bool rc_step_until_stored(struct rc_cluster *c, unsigned i, raft_index index, unsigned max_ms);
bool rc_step_until_committed(struct rc_cluster *c, unsigned i, raft_index index, unsigned max_ms);

/* Heal everything (revive, reconnect, desaturate), then step until every server has applied the
 * same commands; returns whether that happened within max_ms. */
bool rc_heal_and_converge(struct rc_cluster *c, unsigned max_ms);

/* Cut (or restore) messages from server i to every other server, dropped silently. */
void rc_mute(struct rc_cluster *c, unsigned i, bool mute);

/* Index of the server that is in leader state with the highest term among the alive ones, or n. */
unsigned rc_leader(struct rc_cluster *c);
/* True if some server applied (or restored) command id at this index. */
bool rc_applied_somewhere(const struct rc_cluster *c, raft_index index, uint64_t id);
/* The index at which some server applied command id, or 0 if none ever did. */
raft_index rc_applied_index(const struct rc_cluster *c, uint64_t id);

/* Same across 0.15 (legacy) and 0.22: both expose these struct raft fields. */
#define rc_raft(c, i) raft_fixture_get(&(c)->f, (i))
#define rc_term(c, i) (rc_raft(c, i)->current_term)
#define rc_commit(c, i) (rc_raft(c, i)->commit_index)

#endif
