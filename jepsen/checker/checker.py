#!/usr/bin/env python3
"""checker.py: the Jepsen suite's checker: a history (JSON Lines) in, a verdict out (docs/jepsen-checker.md).

Usage: checker.py HISTORY [--out DIR] [--no-final-read] [--allow-replica-lag] [--quiet]
Writes DIR/verdict.json and DIR/verdict.txt (DIR defaults to the history's folder), prints the
readable verdict, and exits 0 (valid), 1 (anomalies) or 2 (bad input).

Every anomaly names its partition, the values and offsets involved, and "ops": the line numbers
(1-based, in the history file given) of the operations that show it. Python standard library only.
"""

import argparse
import bisect
import collections
import json
import os
import sys

# Every anomaly kind, in report order (docs/jepsen-checker.md defines each).
KINDS = [
    "lost",
    "unseen",
    "duplicate",
    "inconsistent-offset",
    "replica-divergence",
    "non-monotonic-send",
    "non-monotonic-poll",
    "skip",
    "aborted-read",
    "commit-backwards",
    "commit-beyond-end",
    "group-skip",
    "phantom-read",
    "incomplete-final-read",
]

MAX_OPS = 20  # line numbers listed per anomaly (the count is always given in full)
MAX_LIST = 50  # values listed per aggregated anomaly


class BadInput(Exception):
    """The history cannot be checked (malformed line, missing field, reused value)."""


def _need(op, lineno, *fields):
    for f in fields:
        if f not in op:
            raise BadInput("line %d: %s operation without %r" % (lineno, op.get("f"), f))


def _records(op, lineno, width):
    recs = op.get("records")
    if not isinstance(recs, list):
        raise BadInput("line %d: records is not a list" % lineno)
    for r in recs:
        if not isinstance(r, list) or len(r) != width or not all(isinstance(x, int) for x in r[:-1]):
            raise BadInput("line %d: bad record %r (expected %d fields)" % (lineno, r, width))
    return recs


def _offsets(op, lineno):
    offs = op["offsets"]
    if not isinstance(offs, list) or not all(
            isinstance(x, list) and len(x) == 2 and all(isinstance(y, int) for y in x) for x in offs):
        raise BadInput("line %d: offsets is not a list of [partition, offset]" % lineno)
    return offs


def load(lines):
    """Parses history lines into [(lineno, op)], sorted by time (stable). Raises BadInput."""
    ops = []
    for lineno, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            op = json.loads(text)
        except ValueError as e:
            raise BadInput("line %d: not JSON: %s" % (lineno, e))
        if not isinstance(op, dict):
            raise BadInput("line %d: not a JSON object" % lineno)
        _need(op, lineno, "time", "process", "type", "f")
        if not isinstance(op["time"], (int, float)):
            raise BadInput("line %d: time is not a number" % lineno)
        f = op["f"]
        if f == "send":
            _need(op, lineno, "partition", "value")
        elif f == "poll":
            if op["type"] == "ok":
                _records(op, lineno, 3)
        elif f in ("final-read", "replica-read"):
            _need(op, lineno, "partition", "records")
            _records(op, lineno, 2)
        elif f in ("commit", "reset") or (f == "committed" and op["type"] == "ok"):
            _need(op, lineno, "group", "offsets")
            _offsets(op, lineno)
        elif f == "committed":
            _need(op, lineno, "group")
        ops.append((lineno, op))
    ops.sort(key=lambda x: x[1]["time"])
    return ops


def _ops(*lists):
    out = sorted(set(x for l in lists for x in l if x is not None))
    return out[:MAX_OPS]


class Commit:
    """A successful commit of one (group, partition), or a read of its committed offset ("committed" op).
    invoke_t is the earliest it can have taken effect, done_t the latest."""
    __slots__ = ("offset", "invoke_t", "done_t", "line", "invoke_line", "final")

    def __init__(self, offset, invoke_t, done_t, line, invoke_line, final=False):
        self.offset, self.invoke_t, self.done_t = offset, invoke_t, done_t
        self.line, self.invoke_line, self.final = line, invoke_line, final


class Send:
    __slots__ = ("value", "process", "partition", "invoke_line", "time", "type", "line", "offset", "error")

    def __init__(self, value, process, partition, invoke_line, time):
        self.value, self.process, self.partition = value, process, partition
        self.invoke_line, self.time = invoke_line, time
        self.type, self.line, self.offset, self.error = None, None, None, None


def check(ops, require_final=True, allow_replica_lag=False):
    """Checks a loaded history; returns the verdict dict {"valid","anomalies","stats"}."""
    anomalies = {k: [] for k in KINDS}
    stats = {"ops": len(ops), "by_f_type": collections.Counter()}
    sends = {}  # value -> Send
    # reads[(partition, value)] -> list of (offset, line, source label)
    reads = collections.defaultdict(list)
    at_offset = collections.defaultdict(lambda: collections.defaultdict(list))  # (p, o) -> value -> lines
    poll_seqs = collections.defaultdict(list)  # (process, partition) -> [(offset, value, line)]
    final_ok = {}  # partition -> (line, op)
    final_other = collections.defaultdict(list)
    replicas = collections.defaultdict(list)  # partition -> [(line, op)]
    commits = collections.defaultdict(list)  # (group, partition) -> [Commit] (ok commits and final reads)
    resets = collections.defaultdict(list)  # (group, partition) -> [time of an ok explicit reset]
    pending_commit = {}  # process -> (time, line) of its commit invoke without an outcome yet
    delivered = collections.defaultdict(set)  # (group, partition) -> values polled by its members
    groups = collections.defaultdict(lambda: {"members": set(), "commits": collections.Counter(),
                                              "assign_events": 0, "records_polled": 0, "final_committed": None})
    read_counts = collections.Counter()
    partitions = set()

    def observe(p, o, v, line, label):
        reads[(p, v)].append((o, line, label))
        at_offset[(p, o)][v].append(line)
        partitions.add(p)

    for lineno, op in ops:
        f, t = op["f"], op["type"]
        stats["by_f_type"]["%s:%s" % (f, t)] += 1
        if f == "send":
            v, p = op["value"], op["partition"]
            partitions.add(p)
            if t == "invoke":
                if v in sends:
                    raise BadInput("line %d: value %r invoked twice (values must be unique)" % (lineno, v))
                sends[v] = Send(v, op["process"], p, lineno, op["time"])
            else:
                s = sends.get(v)
                if s is None:
                    raise BadInput("line %d: %s of %r without an invoke" % (lineno, t, v))
                if s.type is not None:
                    raise BadInput("line %d: second outcome of %r (first on line %d)" % (lineno, v, s.line))
                if t not in ("ok", "fail", "info"):
                    raise BadInput("line %d: send type %r" % (lineno, t))
                s.type, s.line, s.offset, s.error = t, lineno, op.get("offset"), op.get("error")
        elif f == "poll":
            if t != "ok":
                continue
            mode = op.get("mode", "assign")
            g = op.get("group")
            if mode == "group":
                groups[g]["members"].add(op["process"])
                groups[g]["records_polled"] += len(op["records"])
            for p, o, v in op["records"]:
                observe(p, o, v, lineno, "poll by " + op["process"])
                read_counts["poll_records"] += 1
                if mode == "assign":
                    poll_seqs[(op["process"], p)].append((o, v, lineno))
                else:
                    delivered[(g, p)].add(v)
        elif f == "final-read":
            p = op["partition"]
            partitions.add(p)
            for o, v in op["records"]:
                observe(p, o, v, lineno, "final read")
                read_counts["final_records"] += 1
            if t == "ok":
                final_ok[p] = (lineno, op)
                start = op.get("log_start", 0)
                seq = [(start - 1, None, None)] if isinstance(start, int) and start >= 0 else []
                poll_seqs[(op["process"] + " (final read)", p)] = seq + [(o, v, lineno) for o, v in op["records"]]
            else:
                final_other[p].append((lineno, op.get("error")))
        elif f == "replica-read":
            p = op["partition"]
            for o, v in op["records"]:
                observe(p, o, v, lineno, "replica " + str(op.get("source")))
                read_counts["replica_records"] += 1
            replicas[p].append((lineno, op))
            if op.get("torn_bytes"):
                read_counts["torn_tails"] += 1
        elif f == "commit":
            g = op["group"]
            if t == "invoke":
                pending_commit[op["process"]] = (op["time"], lineno)
                continue
            inv = pending_commit.pop(op["process"], None)
            groups[g]["commits"][t] += 1
            if t == "ok":
                # the earliest the commit can have been applied: its invoke, else "since" (a commit the
                # library made on its own, logged when reported), else only its own line is known
                invoke_t, invoke_line = (inv if inv is not None and "since" not in op
                                         else (op.get("since", op["time"]), None))
                for p, o in op["offsets"]:
                    commits[(g, p)].append(Commit(o, invoke_t, op["time"], lineno, invoke_line))
        elif f == "committed":
            g = op["group"]
            if t == "ok":
                groups[g]["final_committed"] = {p: o for p, o in op["offsets"]}
                for p, o in op["offsets"]:
                    if o >= 0:
                        commits[(g, p)].append(Commit(o, op["time"], op["time"], lineno, None, final=True))
            else:
                groups[g]["final_committed_error"] = op.get("error", "committed offsets not read")
        elif f == "reset":
            if t == "ok":
                for p, _ in op["offsets"]:
                    resets[(op["group"], p)].append(op["time"])
        elif f == "assign":
            groups[op.get("group")]["assign_events"] += 1
            groups[op.get("group")]["members"].add(op["process"])
        else:
            stats["by_f_type"]["ignored"] += 1

    # ---- sends: outcomes and phases ----
    outcome = collections.Counter()
    for s in sends.values():
        outcome[s.type or "unresolved"] += 1
    stats["sends"] = {"invoke": len(sends), "ok": outcome["ok"], "fail": outcome["fail"],
                      "info": outcome["info"], "unresolved": outcome["unresolved"]}
    times = [s.time for s in sends.values()]
    t0, t1 = (min(times), max(times)) if times else (0.0, 0.0)

    def phase(t):
        if t1 <= t0:
            return "start"
        x = (t - t0) / (t1 - t0)
        return "start" if x < 1 / 3 else "middle" if x < 2 / 3 else "end"

    final_values = {}
    for p, (line, op) in final_ok.items():
        final_values[p] = set(v for _, v in op["records"])

    lost_by_phase = collections.Counter()
    for s in sends.values():
        seen = reads.get((s.partition, s.value), [])
        if s.type == "ok":
            if not seen:
                ph = phase(s.time)
                lost_by_phase[ph] += 1
                anomalies["lost"].append({"partition": s.partition, "value": s.value, "offset": s.offset,
                                          "process": s.process, "phase": ph, "ops": [s.invoke_line, s.line]})
            elif s.partition in final_values and s.value not in final_values[s.partition]:
                anomalies["unseen"].append({
                    "partition": s.partition, "value": s.value, "offset": s.offset, "process": s.process,
                    "seen_in": sorted(set(lbl for _, _, lbl in seen)),
                    "ops": _ops([s.invoke_line, s.line, final_ok[s.partition][0]], [l for _, l, _ in seen])})
        elif s.type == "fail" and seen:
            anomalies["aborted-read"].append({
                "partition": s.partition, "value": s.value, "error": s.error, "process": s.process,
                "read_offsets": sorted(set(o for o, _, _ in seen)),
                "ops": _ops([s.invoke_line, s.line], [l for _, l, _ in seen])})
    stats["lost_by_phase"] = {k: lost_by_phase[k] for k in ("start", "middle", "end")}

    # ---- reads: duplicates, phantoms, acknowledged offsets ----
    for (p, v), obs in sorted(reads.items(), key=lambda x: (x[0][0], str(x[0][1]))):
        offsets = sorted(set(o for o, _, _ in obs))
        s = sends.get(v)
        if s is None or s.partition != p:
            anomalies["phantom-read"].append({
                "partition": p, "value": v, "offsets": offsets,
                "sent_to": s.partition if s is not None else None, "ops": _ops([l for _, l, _ in obs])})
        if len(offsets) > 1:
            anomalies["duplicate"].append({"partition": p, "value": v, "offsets": offsets,
                                           "ops": _ops([l for _, l, _ in obs])})
        if s is not None and s.partition == p and s.type == "ok" and isinstance(s.offset, int) \
                and s.offset not in offsets:
            anomalies["inconsistent-offset"].append({
                "partition": p, "value": v, "acked_offset": s.offset, "read_offsets": offsets,
                "ops": _ops([s.line], [l for _, l, _ in obs])})

    # ---- offsets: one offset, one value (reads and acknowledgements) ----
    for s in sends.values():
        if s.type == "ok" and isinstance(s.offset, int):
            at_offset[(s.partition, s.offset)][s.value].append(s.line)
    for (p, o), vals in sorted(at_offset.items(), key=lambda x: x[0]):
        if len(vals) > 1:
            anomalies["inconsistent-offset"].append({
                "partition": p, "offset": o, "values": {str(v): _ops(l) for v, l in vals.items()},
                "ops": _ops(*vals.values())})

    # ---- replicas ----
    _check_replicas(anomalies, sends, reads, replicas, final_ok, allow_replica_lag)

    # ---- per consumer: order and skips; per producer: acknowledged offsets in send order ----
    for (proc, p), seq in sorted(poll_seqs.items(), key=lambda x: (str(x[0][0]), x[0][1])):
        prev = None if not seq or seq[0][2] is not None else seq[0]
        body = seq if prev is None else seq[1:]
        if prev is None and body and "(final read)" not in proc:
            prev = (-1, None, None)  # assign mode reads from the beginning: offset 0 comes first
        for cur in body:
            if prev is not None:
                if cur[0] <= prev[0]:
                    anomalies["non-monotonic-poll"].append({
                        "process": proc, "partition": p, "offsets": [prev[0], cur[0]],
                        "values": [prev[1], cur[1]], "ops": _ops([prev[2], cur[2]])})
                elif cur[0] > prev[0] + 1:
                    missing = list(range(prev[0] + 1, cur[0]))
                    anomalies["skip"].append({
                        "process": proc, "partition": p, "after": prev[0], "to": cur[0],
                        "missing": missing[:MAX_LIST], "missing_count": len(missing),
                        "ops": _ops([prev[2], cur[2]])})
            if prev is None or cur[0] > prev[0]:
                prev = cur  # after a rewind, order and skips are judged against the furthest offset read

    by_producer = collections.defaultdict(list)
    for s in sends.values():
        if s.type == "ok" and isinstance(s.offset, int):
            by_producer[(s.process, s.partition)].append(s)
    for (proc, p), ss in sorted(by_producer.items()):
        ss.sort(key=lambda s: (s.time, s.invoke_line))
        for a, b in zip(ss, ss[1:]):
            if b.offset <= a.offset:
                anomalies["non-monotonic-send"].append({
                    "process": proc, "partition": p, "values": [a.value, b.value],
                    "offsets": [a.offset, b.offset], "ops": [a.invoke_line, b.invoke_line, a.line, b.line]})

    # ---- commits (group mode) ----
    _check_commits(anomalies, commits, resets, delivered, sends, reads, final_ok)

    # ---- final reads present and complete ----
    if require_final:
        for p in sorted(partitions):
            if p not in final_ok:
                others = final_other.get(p, [])
                errors = [e for _, e in others if e]
                anomalies["incomplete-final-read"].append({
                    "partition": p, "ops": _ops([l for l, _ in others]),
                    "error": errors[-1] if errors else "no final read of this partition"})

    anomalies = {k: v for k, v in anomalies.items() if v}
    stats["by_f_type"] = dict(sorted(stats["by_f_type"].items()))
    stats["reads"] = {k: read_counts[k] for k in ("poll_records", "final_records", "replica_records")}
    stats["torn_tails"] = read_counts["torn_tails"]
    stats["partitions"] = len(partitions)
    stats["anomaly_counts"] = {k: len(v) for k, v in anomalies.items()}
    stats["groups"] = {str(g): {"members": sorted(x["members"]), "commits": dict(sorted(x["commits"].items())),
                                "assign_events": x["assign_events"], "records_polled": x["records_polled"],
                                "final_committed": x["final_committed"],
                                **({"final_committed_error": x["final_committed_error"]}
                                   if "final_committed_error" in x else {})}
                       for g, x in sorted(groups.items(), key=lambda kv: str(kv[0]))}
    return {"valid": not anomalies, "anomalies": anomalies, "stats": stats}


def _check_commits(anomalies, commits, resets, delivered, sends, reads, final_ok):
    """commit-backwards, commit-beyond-end and group-skip, per (group, partition)."""
    # the furthest offset + 1 each partition ever had: acknowledged offsets and every read
    readable = collections.defaultdict(int)
    for s in sends.values():
        if s.type == "ok" and isinstance(s.offset, int):
            readable[s.partition] = max(readable[s.partition], s.offset + 1)
    for (p, _), obs in reads.items():
        readable[p] = max([readable[p]] + [o + 1 for o, _, _ in obs])
    for (g, p), cs in sorted(commits.items(), key=lambda x: (str(x[0][0]), x[0][1])):
        rs = sorted(resets.get((g, p), []))
        # Backwards: b is below a commit a that had completed before b can have been applied (a.done_t <
        # b.invoke_t) and after the last explicit reset before b. Concurrent commits are not ordered.
        done = sorted((c for c in cs if not c.final), key=lambda c: c.done_t)
        done_ts = [c.done_t for c in done]
        best = []  # best[i]: the highest commit among done[0..i]
        for c in done:
            best.append(c if not best or c.offset > best[-1].offset else best[-1])
        for b in cs:
            k = bisect.bisect_left(done_ts, b.invoke_t)  # done[0..k) completed before b's invoke
            since_reset = max([r for r in rs if r < b.invoke_t], default=None)
            if since_reset is None:
                a = best[k - 1] if k > 0 else None
            else:
                a = max((c for c in done[:k] if c.invoke_t > since_reset), key=lambda c: c.offset, default=None)
            if a is not None and b.offset < a.offset:
                anomalies["commit-backwards"].append({
                    "group": g, "partition": p, "offsets": [a.offset, b.offset], "final_read": b.final,
                    "ops": _ops([a.invoke_line, a.line, b.invoke_line, b.line])})
        # Beyond the end: a committed offset past every record the partition ever had, or past the log's end
        # as the complete final read found it.
        hw = final_ok[p][1].get("high_watermark") if p in final_ok else None
        for c in cs:
            why = None
            if c.offset > readable[p]:
                why = {"reason": "never-readable", "bound": readable[p]}
            elif isinstance(hw, int) and c.offset > hw:
                why = {"reason": "past-log-end", "bound": hw}
            if why:
                anomalies["commit-beyond-end"].append(dict(
                    {"group": g, "partition": p, "offset": c.offset, "final_read": c.final,
                     "ops": _ops([c.invoke_line, c.line])}, **why))
        # At least once: every acknowledged record (and every record of the complete final read) below the
        # group's committed offset was polled by some member of the group.
        top = max(cs, key=lambda c: c.offset)
        got = delivered.get((g, p), set())
        below = {}
        for s in sends.values():
            if s.partition != p or s.type != "ok":
                continue
            seen = reads.get((p, s.value))
            if not seen:
                continue  # read nowhere: reported as lost
            pos = s.offset if isinstance(s.offset, int) else min(o for o, _, _ in seen)
            if pos < top.offset:
                below[s.value] = (pos, s.line)
        if p in final_ok:
            for o, v in final_ok[p][1]["records"]:
                if o < top.offset and v not in below:
                    below[v] = (o, final_ok[p][0])
        missing = sorted((o, v, line) for v, (o, line) in below.items() if v not in got)
        if missing:
            anomalies["group-skip"].append({
                "group": g, "partition": p, "committed": top.offset, "count": len(missing),
                "offsets": [o for o, _, _ in missing][:MAX_LIST], "values": [v for _, v, _ in missing][:MAX_LIST],
                "ops": _ops([top.line], [l for _, _, l in missing])})


def _check_replicas(anomalies, sends, reads, replicas, final_ok, allow_replica_lag):
    """Replica divergence: mismatches in common offsets, holes, unreadable logs, missing acknowledged records."""
    out = anomalies["replica-divergence"]
    for p, reps in sorted(replicas.items()):
        maps = []
        for line, op in reps:
            m = {}
            for o, v in op["records"]:
                m[o] = v
            maps.append((line, op, m))
            if op.get("error"):
                out.append({"partition": p, "kind": "unreadable", "source": op.get("source"),
                            "error": op["error"], "ops": [line]})
            offs = sorted(m)
            if offs and offs[-1] - offs[0] + 1 != len(offs):
                holes = sorted(set(range(offs[0], offs[-1] + 1)) - set(offs))
                out.append({"partition": p, "kind": "gap", "source": op.get("source"),
                            "offsets": holes[:MAX_LIST], "count": len(holes), "ops": [line]})
        for i in range(len(maps)):
            for j in range(i + 1, len(maps)):
                (la, oa, ma), (lb, ob, mb) = maps[i], maps[j]
                diff = sorted(o for o in set(ma) & set(mb) if ma[o] != mb[o])
                if diff:
                    o = diff[0]
                    out.append({"partition": p, "kind": "mismatch",
                                "sources": [oa.get("source"), ob.get("source")],
                                "offsets": diff[:MAX_LIST], "count": len(diff),
                                "first": {"offset": o, "values": [ma[o], mb[o]]}, "ops": [la, lb]})
        # Which replica reads must hold every acknowledged record of p.
        holders = None
        if p in final_ok and final_ok[p][1].get("replicas"):
            holders = set(final_ok[p][1]["replicas"])
        acked = []
        for s in sends.values():
            if s.partition != p or s.type != "ok":
                continue
            pos = s.offset if isinstance(s.offset, int) else None
            if pos is None:
                seen = reads.get((p, s.value))
                pos = min(o for o, _, _ in seen) if seen else None
            if pos is not None:  # a record read nowhere is reported as lost
                acked.append((pos, s))
        for line, op, m in maps:
            if holders is not None and op.get("node_id") not in holders:
                continue
            if holders is None and op.get("missing"):
                continue
            have = set(m.values())
            end = max(m) + 1 if m else 0
            hole = [(o, s) for o, s in acked if s.value not in have and o < end]
            tail = [(o, s) for o, s in acked if s.value not in have and o >= end]
            for kind, miss in (("missing-acknowledged", hole), ("missing-acknowledged-tail", tail)):
                if not miss or (kind.endswith("tail") and allow_replica_lag):
                    continue
                miss.sort(key=lambda x: x[0])
                out.append({"partition": p, "kind": kind, "source": op.get("source"),
                            "node_id": op.get("node_id"), "replica_end": end, "count": len(miss),
                            "values": [s.value for _, s in miss][:MAX_LIST],
                            "offsets": [o for o, _ in miss][:MAX_LIST],
                            "ops": _ops([line], [s.line for _, s in miss])})


def render_text(verdict, max_per_kind=10):
    """The readable verdict (verdict.txt)."""
    st = verdict["stats"]
    out = ["VALID" if verdict["valid"] else "INVALID: anomalies found", ""]
    s = st.get("sends", {})
    out.append("operations: %d; partitions: %d" % (st["ops"], st.get("partitions", 0)))
    out.append("sends: %d invoked, %d ok, %d fail, %d info, %d without outcome" % (
        s.get("invoke", 0), s.get("ok", 0), s.get("fail", 0), s.get("info", 0), s.get("unresolved", 0)))
    r = st.get("reads", {})
    out.append("records read: %d by polls, %d by final reads, %d from replica logs (%d torn tails)" % (
        r.get("poll_records", 0), r.get("final_records", 0), r.get("replica_records", 0), st.get("torn_tails", 0)))
    out.append("ops by f:type: " + ", ".join("%s=%d" % kv for kv in st["by_f_type"].items()))
    lp = st.get("lost_by_phase", {})
    out.append("lost by phase: start %d, middle %d, end %d" % (lp.get("start", 0), lp.get("middle", 0),
                                                               lp.get("end", 0)))
    for g, x in st.get("groups", {}).items():
        fc = x.get("final_committed")
        out.append("group %s: members %s; commits %s; %d assignment changes; %d records polled; final committed %s"
                   % (g, ",".join(x["members"]), json.dumps(x["commits"], sort_keys=True), x["assign_events"],
                      x["records_polled"], json.dumps(fc, sort_keys=True) if fc is not None
                      else "not read (%s)" % x.get("final_committed_error", "no committed op")))
    out.append("")
    for kind in KINDS:
        items = verdict["anomalies"].get(kind)
        if not items:
            continue
        out.append("%s: %d" % (kind, len(items)))
        for a in items[:max_per_kind]:
            out.append("  " + json.dumps(a, sort_keys=True))
        if len(items) > max_per_kind:
            out.append("  ... %d more in verdict.json" % (len(items) - max_per_kind))
    if verdict["valid"]:
        out.append("no anomalies (%s checked)" % ", ".join(KINDS))
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check a Ferry Jepsen history (docs/jepsen-checker.md).")
    ap.add_argument("history", help="JSON Lines history ('-' = stdin)")
    ap.add_argument("--out", help="folder for verdict.json and verdict.txt (default: the history's folder)")
    ap.add_argument("--no-final-read", action="store_true",
                    help="do not require a complete final read of every partition")
    ap.add_argument("--allow-replica-lag", action="store_true",
                    help="a replica may miss acknowledged records past its end (it had not caught up)")
    ap.add_argument("--quiet", action="store_true", help="print only the first line of the verdict")
    args = ap.parse_args(argv)
    try:
        if args.history == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.history, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        verdict = check(load(lines), require_final=not args.no_final_read,
                        allow_replica_lag=args.allow_replica_lag)
    except (BadInput, OSError, UnicodeDecodeError) as e:
        print("checker: bad input: %s" % e, file=sys.stderr)
        return 2
    out = args.out or (os.path.dirname(os.path.abspath(args.history)) if args.history != "-" else None)
    text = render_text(verdict)
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "verdict.json"), "w", encoding="utf-8") as fh:
            json.dump(verdict, fh, indent=1, sort_keys=True)
            fh.write("\n")
        with open(os.path.join(out, "verdict.txt"), "w", encoding="utf-8") as fh:
            fh.write(text)
    sys.stdout.write(text.splitlines()[0] + "\n" if args.quiet else text)
    return 0 if verdict["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
