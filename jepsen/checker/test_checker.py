"""test_checker.py: the checker on hand-made histories: a clean one passes, each anomaly kind is caught.

Run: python3 -m unittest jepsen/checker/test_checker.py   (from the repository root; a second or so)
"""

import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402


class History:
    """Builds a history line by line; every add returns the line number (1-based) it got."""

    def __init__(self):
        self.lines = []
        self.t = 100.0

    def add(self, **op):
        self.t += 0.01
        op.setdefault("time", round(self.t, 6))
        self.lines.append(json.dumps(op))
        return len(self.lines)

    def invoke(self, proc, part, value):
        return self.add(process=proc, type="invoke", f="send", partition=part, value=value)

    def ok(self, proc, part, value, offset):
        return self.add(process=proc, type="ok", f="send", partition=part, value=value, offset=offset)

    def send(self, proc, part, value, offset, outcome="ok", error=None):
        """invoke + outcome; returns (invoke line, outcome line)."""
        a = self.invoke(proc, part, value)
        fields = dict(process=proc, type=outcome, f="send", partition=part, value=value)
        if outcome == "ok":
            fields["offset"] = offset
        else:
            fields["error"] = error or "_TIMED_OUT: local timeout"
        return a, self.add(**fields)

    def poll(self, proc, records, mode="assign"):
        return self.add(process=proc, type="ok", f="poll", mode=mode, group=None, records=records)

    def final(self, part, records, replicas=(0, 1, 2), typ="ok"):
        return self.add(process="final", type=typ, f="final-read", source="cluster", partition=part,
                        records=records, log_start=0, high_watermark=len(records), leader=0,
                        replicas=list(replicas))

    def replica(self, node, part, records, **extra):
        return self.add(process="final", type="ok", f="replica-read", source="n%d" % node, node_id=node,
                        partition=part, records=records, **extra)

    def gpoll(self, proc, group, records):
        return self.add(process=proc, type="ok", f="poll", mode="group", group=group, records=records)

    def commit(self, group, offsets, typ="ok", proc="g1", invoke=True, error=None, **extra):
        """A group member's commit: invoke + outcome (invoke=False: the outcome line only, as a commit the
        library made on its own); returns (invoke line or None, outcome line)."""
        a = self.add(process=proc, type="invoke", f="commit", group=group, kind="periodic",
                     offsets=offsets) if invoke else None
        if typ != "ok":
            extra["error"] = error or "OFFSET_BEHIND_COMMITTED: below the committed offset"
        return a, self.add(process=proc, type=typ, f="commit", group=group, kind="periodic" if invoke else "auto",
                           offsets=offsets, **extra)

    def committed(self, group, offsets, typ="ok"):
        return self.add(process="final", type=typ, f="committed", group=group, offsets=offsets)

    def assign(self, proc, group, event, parts, assignment):
        return self.add(process=proc, type="ok", f="assign", mode="group", group=group, event=event,
                        partitions=parts, assignment=assignment)

    def check(self, **kw):
        return checker.check(checker.load(self.lines), **kw)


def clean_history(n=6, finals=True, replicas=True):
    """Producer p1 writes p1-1..p1-n to partition 0 at offsets 0..n-1; c1 polls them in two polls;
    the final read and three replicas hold them all."""
    h = History()
    recs = []
    for i in range(n):
        v = "p1-%d" % (i + 1)
        h.send("p1", 0, v, i)
        recs.append([i, v])
    h.poll("c1", [[0, o, v] for o, v in recs[: n // 2]])
    h.poll("c1", [[0, o, v] for o, v in recs[n // 2:]])
    if finals:
        h.final(0, recs)
    if replicas:
        for node in range(3):
            h.replica(node, 0, recs)
    return h, recs


def clean_group_history():
    """clean_history's six records on partition 0 plus four on partition 1 (p2-1..p2-4), read by group G:
    g1 owns both, hands partition 1 over to g2 at a rebalance (its library commits before the hand-over),
    both commit as they go, the final read of the committed offsets: 6 and 4."""
    h, recs = clean_history(finals=False, replicas=False)
    recs1 = []
    for i in range(4):
        v = "p2-%d" % (i + 1)
        h.send("p2", 1, v, i)
        recs1.append([i, v])
    h.assign("g1", "G", "assigned", [0, 1], [0, 1])
    h.gpoll("g1", "G", [[0, 0, "p1-1"], [0, 1, "p1-2"], [1, 0, "p2-1"]])
    h.commit("G", [[0, 2], [1, 1]])
    t = h.t
    h.assign("g1", "G", "revoking", [1], [0])
    h.gpoll("g1", "G", [[0, 2, "p1-3"], [0, 3, "p1-4"], [1, 1, "p2-2"]])  # polled before the revocation
    h.commit("G", [[1, 2]], invoke=False, since=t)  # libferry's commit before acknowledging it
    h.assign("g2", "G", "assigned", [1], [1])
    h.gpoll("g2", "G", [[1, 2, "p2-3"], [1, 3, "p2-4"]])
    h.gpoll("g1", "G", [[0, 4, "p1-5"], [0, 5, "p1-6"]])
    h.commit("G", [[0, 6]])
    h.commit("G", [[1, 4]], proc="g2")
    h.commit("G", [[1, 3]], typ="fail", proc="g2")  # refused: a failed commit never counts
    h.final(0, recs)
    h.final(1, recs1)
    h.committed("G", [[0, 6], [1, 4]])
    return h


class CheckerTest(unittest.TestCase):
    def kinds(self, verdict):
        return set(verdict["anomalies"])

    def assertOnly(self, verdict, kind):
        self.assertFalse(verdict["valid"])
        self.assertEqual(self.kinds(verdict), {kind}, json.dumps(verdict["anomalies"], indent=1))
        return verdict["anomalies"][kind]

    def test_clean_history_is_valid(self):
        h, _ = clean_history()
        # unknown and failed sends that were never read are fine
        h.send("p1", 0, "p1-7", None, outcome="info")
        h.send("p1", 0, "p1-8", None, outcome="fail", error="BATCH_TOO_LARGE: too big")
        v = h.check()
        self.assertTrue(v["valid"], v["anomalies"])
        self.assertEqual(v["stats"]["sends"], {"invoke": 8, "ok": 6, "fail": 1, "info": 1, "unresolved": 0})
        self.assertEqual(v["stats"]["reads"], {"poll_records": 6, "final_records": 6, "replica_records": 18})

    def test_info_send_that_was_read_is_fine(self):
        h, recs = clean_history(finals=False, replicas=False)
        h.send("p1", 0, "p1-7", None, outcome="info")
        h.final(0, recs + [[6, "p1-7"]])
        self.assertTrue(h.check()["valid"])

    def test_lost_write_split_by_phase(self):
        h = History()
        # offsets unknown (acknowledged as DUPLICATE_SEQUENCE), so nothing but the loss shows
        a, b = h.send("p1", 0, "p1-1", None)
        h.send("p1", 0, "p1-2", 0)
        c, d = h.send("p1", 0, "p1-3", None)
        h.final(0, [[0, "p1-2"]])
        lost = self.assertOnly(h.check(), "lost")
        self.assertEqual([(x["value"], x["phase"], x["ops"]) for x in lost],
                         [("p1-1", "start", [a, b]), ("p1-3", "end", [c, d])])
        self.assertEqual(h.check()["stats"]["lost_by_phase"], {"start": 1, "middle": 0, "end": 1})

    def test_unseen_acknowledged_read_by_a_poll_but_not_in_the_final_read(self):
        h = History()
        h.send("p1", 0, "p1-1", 0)
        h.send("p1", 0, "p1-2", 1)
        pl = h.poll("c1", [[0, 0, "p1-1"], [0, 1, "p1-2"]])
        fl = h.final(0, [[0, "p1-1"]])
        unseen = self.assertOnly(h.check(), "unseen")
        self.assertEqual(len(unseen), 1)
        self.assertEqual(unseen[0]["value"], "p1-2")
        self.assertIn(pl, unseen[0]["ops"])
        self.assertIn(fl, unseen[0]["ops"])
        self.assertEqual(unseen[0]["seen_in"], ["poll by c1"])

    def test_duplicate_value_at_two_offsets(self):
        h = History()
        h.send("p1", 0, "p1-1", 0)
        h.send("p1", 0, "p1-2", 1)
        fl = h.final(0, [[0, "p1-1"], [1, "p1-2"], [2, "p1-1"]])
        dup = self.assertOnly(h.check(), "duplicate")
        self.assertEqual(dup, [{"partition": 0, "value": "p1-1", "offsets": [0, 2], "ops": [fl]}])

    def test_inconsistent_offset_across_consumer_and_final_read(self):
        h = History()
        h.send("p1", 0, "p1-1", None)
        h.send("p2", 0, "p2-1", None)
        pl = h.poll("c1", [[0, 0, "p1-1"]])
        fl = h.final(0, [[0, "p2-1"], [1, "p1-1"]])
        v = h.check()
        self.assertEqual(self.kinds(v), {"inconsistent-offset", "duplicate"})  # p1-1 also moved offset
        inc = v["anomalies"]["inconsistent-offset"]
        self.assertEqual(inc, [{"partition": 0, "offset": 0, "values": {"p1-1": [pl], "p2-1": [fl]},
                                "ops": [pl, fl]}])

    def test_inconsistent_offset_against_the_acknowledgement(self):
        h = History()
        _, ok1 = h.send("p1", 0, "p1-1", 5)
        fl = h.final(0, [[0, "p1-1"]])
        inc = self.assertOnly(h.check(), "inconsistent-offset")
        self.assertEqual(inc[0]["acked_offset"], 5)
        self.assertEqual(inc[0]["read_offsets"], [0])
        self.assertEqual(inc[0]["ops"], [ok1, fl])

    def test_replica_divergence_mismatch_in_common_prefix(self):
        h, recs = clean_history(replicas=False)
        r0 = h.replica(0, 0, recs)
        r1 = h.replica(1, 0, recs[:2] + [[2, "p9-9"]] + recs[3:])
        h.replica(2, 0, recs)
        v = h.check()
        # the replica's foreign value is also an inconsistent offset and a phantom; divergence names the pair
        div = v["anomalies"]["replica-divergence"]
        mism = [d for d in div if d["kind"] == "mismatch"]
        self.assertEqual(len(mism), 2)  # n1 differs from n0 and from n2
        self.assertEqual(mism[0]["ops"], [r0, r1])
        self.assertEqual(mism[0]["first"], {"offset": 2, "values": ["p1-3", "p9-9"]})

    def test_replica_divergence_missing_acknowledged_records(self):
        h, recs = clean_history(replicas=False)
        h.replica(0, 0, recs)
        h.replica(1, 0, recs)
        short = h.replica(2, 0, recs[:4])
        div = self.assertOnly(h.check(), "replica-divergence")
        self.assertEqual([(d["kind"], d["source"], d["values"]) for d in div],
                         [("missing-acknowledged-tail", "n2", ["p1-5", "p1-6"])])
        self.assertIn(short, div[0]["ops"])
        # a lagging replica's tail may be allowed; a hole never is
        self.assertTrue(h.check(allow_replica_lag=True)["valid"])
        h2, recs2 = clean_history(replicas=False)
        h2.replica(0, 0, recs2)
        h2.replica(1, 0, recs2)
        h2.replica(2, 0, recs2[:1] + recs2[2:])
        div = self.assertOnly(h2.check(allow_replica_lag=True), "replica-divergence")
        self.assertEqual(sorted(d["kind"] for d in div), ["gap", "missing-acknowledged"])

    def test_non_replicas_are_not_held_to_acknowledged_records(self):
        h, recs = clean_history(finals=False, replicas=False)
        h.final(0, recs, replicas=[0, 1, 2])
        for node in range(3):
            h.replica(node, 0, recs)
        h.replica(3, 0, [])  # node 3 does not replicate partition 0: its log stays empty
        self.assertTrue(h.check()["valid"])

    def test_non_monotonic_send(self):
        h = History()
        a1, o1 = h.send("p1", 0, "p1-1", 1)
        a2, o2 = h.send("p1", 0, "p1-2", 0)
        h.final(0, [[0, "p1-2"], [1, "p1-1"]])
        nm = self.assertOnly(h.check(), "non-monotonic-send")
        self.assertEqual(nm, [{"process": "p1", "partition": 0, "values": ["p1-1", "p1-2"],
                               "offsets": [1, 0], "ops": [a1, a2, o1, o2]}])

    def test_non_monotonic_poll(self):
        h, recs = clean_history()
        l1 = h.poll("c2", [[0, 0, "p1-1"], [0, 1, "p1-2"], [0, 2, "p1-3"]])
        l2 = h.poll("c2", [[0, 1, "p1-2"], [0, 3, "p1-4"]])
        nm = self.assertOnly(h.check(), "non-monotonic-poll")
        self.assertEqual(nm, [{"process": "c2", "partition": 0, "offsets": [2, 1], "values": ["p1-3", "p1-2"],
                               "ops": [l1, l2]}])

    def test_skip_in_a_poll_and_in_the_final_read(self):
        h, recs = clean_history(finals=False)
        l1 = h.poll("c2", [[0, 0, "p1-1"]])
        l2 = h.poll("c2", [[0, 3, "p1-4"]])
        h.final(0, recs)
        sk = self.assertOnly(h.check(), "skip")
        self.assertEqual(sk, [{"process": "c2", "partition": 0, "after": 0, "to": 3, "missing": [1, 2],
                               "missing_count": 2, "ops": [l1, l2]}])
        # group mode may legitimately skip (another member read it): not judged
        h2, recs2 = clean_history()
        h2.poll("c3", [[0, 4, "p1-5"]], mode="group")
        self.assertTrue(h2.check()["valid"])
        # a final read that starts late is a skip too
        h3, recs3 = clean_history(finals=False)
        h3.final(0, recs3[1:])
        self.assertEqual(self.kinds(h3.check()), {"skip", "unseen"})  # p1-1 was polled, then not in it

    def test_aborted_read(self):
        h, recs = clean_history(finals=False, replicas=False)
        a, f = h.send("p1", 0, "p1-7", None, outcome="fail", error="CORRUPT_BATCH: bad crc")
        fl = h.final(0, recs + [[6, "p1-7"]])
        ab = self.assertOnly(h.check(), "aborted-read")
        self.assertEqual(ab, [{"partition": 0, "value": "p1-7", "error": "CORRUPT_BATCH: bad crc",
                               "process": "p1", "read_offsets": [6], "ops": [a, f, fl]}])

    def test_clean_group_history_is_valid(self):
        h = clean_group_history()
        v = h.check()
        self.assertTrue(v["valid"], json.dumps(v["anomalies"], indent=1))
        g = v["stats"]["groups"]["G"]
        self.assertEqual(g["members"], ["g1", "g2"])
        self.assertEqual(g["commits"], {"fail": 1, "ok": 4})
        self.assertEqual((g["assign_events"], g["records_polled"], g["final_committed"]), (3, 10, {0: 6, 1: 4}))

    def test_commit_backwards(self):
        h = clean_group_history()
        a, c1 = h.commit("H", [[0, 4]], proc="g3")
        b, c3 = h.commit("H", [[0, 3]], proc="g3")
        h.gpoll("g3", "H", [[0, 0, "p1-1"], [0, 1, "p1-2"], [0, 2, "p1-3"], [0, 3, "p1-4"]])  # group H read them
        cb = self.assertOnly(h.check(), "commit-backwards")
        self.assertEqual(cb, [{"group": "H", "partition": 0, "offsets": [4, 3], "final_read": False,
                               "ops": [a, c1, b, c3]}])
        # an explicit reset between the two explains it
        h.lines.insert(b - 1, json.dumps({"time": json.loads(h.lines[b - 1])["time"] - 0.001, "process": "admin",
                                          "type": "ok", "f": "reset", "group": "H", "offsets": [[0, 0]]}))
        self.assertTrue(h.check()["valid"])

    def test_concurrent_commits_are_not_ordered(self):
        h = clean_group_history()
        h.gpoll("k1", "K", [[0, i, "p1-%d" % (i + 1)] for i in range(6)])
        # k1's commit of 5 completes after k2's commit of 4 was invoked: either may have been applied first
        a = h.add(process="k1", type="invoke", f="commit", group="K", kind="periodic", offsets=[[0, 5]])
        h.add(process="k2", type="invoke", f="commit", group="K", kind="periodic", offsets=[[0, 4]])
        b = h.add(process="k1", type="ok", f="commit", group="K", kind="periodic", offsets=[[0, 5]])
        h.add(process="k2", type="ok", f="commit", group="K", kind="periodic", offsets=[[0, 4]])
        self.assertTrue(h.check()["valid"])
        # ... but a commit invoked after the other's ok is ordered after it
        c, d = h.commit("K", [[0, 3]], proc="k2")
        cb = self.assertOnly(h.check(), "commit-backwards")
        self.assertEqual(cb, [{"group": "K", "partition": 0, "offsets": [5, 3], "final_read": False,
                               "ops": [a, b, c, d]}])
        # a commit the library reported without an invoke is ordered from its "since"
        h2 = clean_group_history()
        h2.gpoll("k1", "K", [[0, i, "p1-%d" % (i + 1)] for i in range(6)])
        t = h2.t
        h2.commit("K", [[0, 5]], proc="k1")
        h2.commit("K", [[0, 4]], proc="k2", invoke=False, since=t)  # may have been sent before k1's commit
        self.assertTrue(h2.check()["valid"])
        h2.commit("K", [[0, 4]], proc="k2", invoke=False, since=h2.t)
        self.assertEqual([x["offsets"] for x in self.assertOnly(h2.check(), "commit-backwards")], [[5, 4]])

    def test_commit_backwards_in_the_final_committed_read(self):
        h = clean_group_history()
        fc = h.committed("G", [[0, 5], [1, 4]])  # the cluster forgot the commit of 6
        cb = self.assertOnly(h.check(), "commit-backwards")
        self.assertEqual([(x["offsets"], x["final_read"], fc in x["ops"]) for x in cb], [([6, 5], True, True)])

    def test_commit_beyond_end(self):
        h = clean_group_history()
        _, c = h.commit("G", [[0, 9]])  # only offsets 0..5 ever existed
        be = self.assertOnly(h.check(), "commit-beyond-end")
        self.assertEqual([(x["offset"], x["reason"], x["bound"], x["ops"][-1]) for x in be],
                         [(9, "never-readable", 6, c)])
        # readable once (a member polled offsets up to 5 and committed 6), but the log after healing ends at 4
        h2 = History()
        for i in range(6):
            h2.send("p1", 0, "p1-%d" % (i + 1), None)
        h2.gpoll("g1", "G", [[0, i, "p1-%d" % (i + 1)] for i in range(6)])
        h2.commit("G", [[0, 6]])
        h2.final(0, [[i, "p1-%d" % (i + 1)] for i in range(4)])
        v = h2.check()
        self.assertEqual(self.kinds(v), {"commit-beyond-end", "unseen"})
        self.assertEqual([(x["reason"], x["bound"]) for x in v["anomalies"]["commit-beyond-end"]],
                         [("past-log-end", 4)])

    def test_group_skip(self):
        h, recs = clean_history(finals=False, replicas=False)
        h.send("p1", 0, "p1-7", None, outcome="info")  # stored after all: in the final read
        h.gpoll("g1", "G", [[0, 0, "p1-1"], [0, 1, "p1-2"]])
        h.gpoll("g1", "G", [[0, 4, "p1-5"]])  # nobody in G polled offsets 2, 3 and 6
        _, c = h.commit("G", [[0, 7]])
        fl = h.final(0, recs + [[6, "p1-7"]])
        h.committed("G", [[0, 7]])
        gs = self.assertOnly(h.check(), "group-skip")
        self.assertEqual([(x["offsets"], x["values"], x["committed"], x["count"]) for x in gs],
                         [([2, 3, 5, 6], ["p1-3", "p1-4", "p1-6", "p1-7"], 7, 4)])
        self.assertIn(fl, gs[0]["ops"])
        # records at or past the committed offset need not have been delivered yet; other groups' polls
        # and assign-mode polls do not count
        h2, recs2 = clean_history(finals=False, replicas=False)
        h2.gpoll("g1", "G", [[0, 0, "p1-1"], [0, 1, "p1-2"]])
        h2.gpoll("x1", "X", [[0, 2, "p1-3"]])
        h2.commit("G", [[0, 2]])
        h2.final(0, recs2)
        self.assertTrue(h2.check()["valid"])
        h2.commit("G", [[0, 3]])
        gs = self.assertOnly(h2.check(), "group-skip")
        self.assertEqual(gs[0]["offsets"], [2])

    def test_bad_commit_lines(self):
        for line, why in [
            ('{"time":1,"process":"g1","type":"ok","f":"commit","group":"G"}', "offsets"),
            ('{"time":1,"process":"g1","type":"ok","f":"commit","group":"G","offsets":[[0]]}', "partition, offset"),
            ('{"time":1,"process":"final","type":"ok","f":"committed","group":"G","offsets":{"0":1}}', "offsets"),
        ]:
            with self.assertRaises(checker.BadInput) as cm:
                checker.check(checker.load([line]))
            self.assertIn(why, str(cm.exception))
        # an unread committed read is recorded, not an error
        v = checker.check(checker.load(['{"time":1,"process":"final","type":"info","f":"committed","group":"G",'
                                        '"offsets":[],"error":"_TIMED_OUT: local timeout"}']))
        self.assertEqual(v["stats"]["groups"]["G"]["final_committed_error"], "_TIMED_OUT: local timeout")

    def test_phantom_read(self):
        h, recs = clean_history(finals=False, replicas=False)
        h.send("p1", 1, "p1-9", 0)
        fl = h.final(0, recs + [[6, "p1-9"]])
        h.final(1, [[0, "p1-9"]])
        ph = self.assertOnly(h.check(), "phantom-read")
        self.assertEqual(ph, [{"partition": 0, "value": "p1-9", "offsets": [6], "sent_to": 1, "ops": [fl]}])

    def test_incomplete_final_read(self):
        h, recs = clean_history(finals=False, replicas=False)
        bad = h.final(0, recs[:3], typ="info")
        h.lines[-1] = h.lines[-1][:-1] + ', "error": "watermarks: _TIMED_OUT: local timeout"}'
        inc = self.assertOnly(h.check(), "incomplete-final-read")
        self.assertEqual(inc, [{"partition": 0, "ops": [bad], "error": "watermarks: _TIMED_OUT: local timeout"}])
        self.assertTrue(h.check(require_final=False)["valid"])

    def test_unreadable_replica_log(self):
        h, recs = clean_history(replicas=False)
        h.replica(0, 0, recs)
        h.replica(1, 0, recs)
        bad = h.replica(2, 0, recs, error="00000000000000000000.log: bad batch at byte 64")
        div = self.assertOnly(h.check(), "replica-divergence")
        self.assertEqual([(d["kind"], d["ops"]) for d in div], [("unreadable", [bad])])

    def test_torn_tail_is_counted_not_an_anomaly(self):
        h, recs = clean_history(replicas=False)
        for node in range(3):
            h.replica(node, 0, recs, torn_bytes=17 if node == 1 else 0)
        v = h.check()
        self.assertTrue(v["valid"])
        self.assertEqual(v["stats"]["torn_tails"], 1)

    def test_bad_input(self):
        for lines, why in [
            (["{not json"], "not JSON"),
            (['{"time":1,"process":"p1","type":"invoke","f":"send","partition":0}'], "value"),
            (['{"time":1,"process":"p1","type":"ok","f":"send","partition":0,"value":"p1-1","offset":0}'],
             "without an invoke"),
            (['{"time":1,"process":"p1","type":"invoke","f":"send","partition":0,"value":"v"}'] * 2, "twice"),
            (['{"time":1,"process":"c1","type":"ok","f":"poll","records":[[0,"x"]]}'], "bad record"),
        ]:
            with self.assertRaises(checker.BadInput) as cm:
                checker.check(checker.load(lines))
            self.assertIn(why, str(cm.exception))

    def test_cli_exit_status_and_files(self):
        h, _ = clean_history()
        bad_h, _ = clean_history(finals=False)
        with tempfile.TemporaryDirectory() as d:
            paths = {}
            for name, lines in (("good", h.lines), ("anomalous", bad_h.lines), ("bad", ["[1]"])):
                paths[name] = os.path.join(d, name + ".jsonl")
                with open(paths[name], "w") as fh:
                    fh.write("\n".join(lines) + "\n")
            out = io.StringIO()
            with redirect_stdout(out), redirect_stderr(io.StringIO()):
                self.assertEqual(checker.main([paths["good"], "--out", os.path.join(d, "g")]), 0)
                self.assertEqual(checker.main([paths["anomalous"], "--out", os.path.join(d, "a")]), 1)
                self.assertEqual(checker.main([paths["bad"], "--out", os.path.join(d, "b")]), 2)
            with open(os.path.join(d, "g", "verdict.json")) as fh:
                self.assertTrue(json.load(fh)["valid"])
            with open(os.path.join(d, "a", "verdict.json")) as fh:
                self.assertEqual(list(json.load(fh)["anomalies"]), ["incomplete-final-read"])
            with open(os.path.join(d, "a", "verdict.txt")) as fh:
                self.assertTrue(fh.read().startswith("INVALID"))
            self.assertFalse(os.path.exists(os.path.join(d, "b")))


if __name__ == "__main__":
    unittest.main()
