"""nemesis.py: the fault kinds of the Jepsen suite, their seeded schedule, and the network/clock/disk tools they use.

The orchestrator (jepsen/run.py) owns the brokers; a fault reaches them only through the `cluster`
object it is given, which provides:
  n, node_ns(i), addr(i), sw_ns, run_dir, nfq_bin
  alive(i), kill(i), restart(i), pause(i), resume(i), terminate(i) (SIGTERM: graceful stop with
  leadership transfer), lose_unsynced(i) (after a kill: cut un-fsynced segment bytes), set_clock(i, s)
  leaders() -> {partition: node id} and controller() -> node id (asked through ferryctl; may be None)
Every fault is a class with start(rng) -> detail, an optional tick(rng, elapsed) -> detail|None that the
schedule calls every 0.25 s while the fault is on, and stop() -> detail; all of them undo themselves in
stop(), and heal_all() undoes anything left over after the schedule (an interrupted run is torn down
instead: its namespaces, with every rule in them, are deleted).

Network faults (see jepsen/testbed/netns.sh for the topology):
  partitions and loss: nft rules in the bridge namespace (`table bridge jepsen`, chains `partition` and
  `links`), each change one atomic `nft -f` transaction;
  delay / reordering: packets a node sends to chosen peers go to an NFQUEUE (iptables NFQUEUE target with
  --queue-bypass in that node's namespace: nft's own queue expression is not available on this kernel)
  and jepsen/nemesis/nfq_delay.c, run in the same namespace, holds each for a seeded random delay.
Clock faults: every ferryd runs under libfaketime with FAKETIME_TIMESTAMP_FILE (one file a node,
FAKETIME_NO_CACHE=1, FAKETIME_DONT_FAKE_MONOTONIC=1): writing "+S" / "-S" into it moves that node's wall
clock by S seconds at once; the monotonic clock (Raft timers, the history's "time") never moves.
"""

import json
import os
import random
import signal
import subprocess
import time

# Every fault kind (the CI profile runs each once, in a seeded order). Combined regression scenarios last.
KINDS = [
    "partition-one", "partition-majority", "partition-ring", "partition-oneway",
    "loss", "delay", "reorder",
    "kill", "kill-leader", "kill-controller", "lose-unsynced", "power-cut",
    "pause", "pause-leader",
    "clock-skew", "clock-bump", "clock-strobe",
    "transfer-leader",
    "kill-during-partition", "pause-then-kill", "transfer-during-loss",
]


def sh(args, check=True, quiet=False):
    """Runs a command; raises RuntimeError with its stderr when check and it fails."""
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    if not quiet and r.returncode != 0:
        print("nemesis: %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()), flush=True)
    return r


class Net:
    """The testbed's network faults: partition grudges and loss in the bridge, delay helpers in nodes."""

    def __init__(self, cluster):
        self.c = cluster
        self.delays = {}  # node -> (Popen of nfq_delay, log file)

    def _nft(self, text):
        r = subprocess.run(["ip", "netns", "exec", self.c.sw_ns, "nft", "-f", "-"], input=text,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError("nft: %s\n%s" % (r.stderr.strip(), text))

    def set_partition(self, drops):
        """Replaces the grudge: drops is a list of (src node, dst node) whose packets are dropped."""
        lines = ["flush chain bridge jepsen partition"]
        for a, b in sorted(set(drops)):
            lines.append("add rule bridge jepsen partition ip saddr %s ip daddr %s drop"
                         % (self.c.addr(a), self.c.addr(b)))
        self._nft("\n".join(lines) + "\n")

    def set_loss(self, links):
        """Replaces the lossy links: a list of (src, dst, percent) dropped at random (nft numgen)."""
        lines = ["flush chain bridge jepsen links"]
        for a, b, pct in links:
            lines.append("add rule bridge jepsen links ip saddr %s ip daddr %s numgen random mod 100 < %d drop"
                         % (self.c.addr(a), self.c.addr(b), pct))
        self._nft("\n".join(lines) + "\n")

    def start_delay(self, node, peers, delay_ms, jitter_ms, reorder_pct, seed):
        """Delays what `node` sends to `peers` (node ids) through an nfq_delay in node's namespace."""
        self.stop_delay(node)
        queue = 10 + node
        log = open(os.path.join(self.c.run_dir, "logs", "nfq_delay-n%d.log" % node), "a")
        p = subprocess.Popen(["ip", "netns", "exec", self.c.node_ns(node), self.c.nfq_bin,
                              "--queue", str(queue), "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
                              "--reorder-pct", str(reorder_pct), "--seed", str(seed)],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.delays[node] = (p, log)
        self.c.track_pid(p.pid, "nfq_delay-n%d" % node)
        time.sleep(0.2)  # bound before the rules send packets to it (bypass lets them through meanwhile)
        for peer in peers:
            sh(["ip", "netns", "exec", self.c.node_ns(node), "iptables", "-w", "-A", "OUTPUT", "-d",
                self.c.addr(peer), "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"])

    def stop_delay(self, node):
        """Removes node's queue rules first, then stops its helper (which lets every held packet go)."""
        sh(["ip", "netns", "exec", self.c.node_ns(node), "iptables", "-w", "-F", "OUTPUT"], check=False, quiet=True)
        entry = self.delays.pop(node, None)
        if entry is None:
            return
        p, log = entry
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
        self.c.untrack_pid(p.pid)

    def heal(self):
        """No partition, no loss, no delay."""
        self.set_partition([])
        self.set_loss([])
        for node in range(self.c.n):
            self.stop_delay(node)


def write_clock(path, offset_s):
    """Sets a libfaketime timestamp file to an offset, atomically (the broker re-reads it at every call)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%+d\n" % offset_s)
    os.replace(tmp, path)


def synced_sizes(shim_log):
    """{path: last size recorded at a successful fsync} from sync_shim's log (tests/lib/shim/sync_shim.c)."""
    sizes = {}
    try:
        with open(shim_log) as f:
            for line in f:
                size, _, path = line.rstrip("\n").partition(" ")
                if path and size.isdigit():
                    sizes[path] = int(size)
    except FileNotFoundError:
        pass
    return sizes


def cut_unsynced(data_dir, shim_log):
    """After a kill -9: cuts every segment .log back to its size at its last fsync, as a power cut would.

    A segment never synced is cut to 0 bytes. Returns [(path, size before, size after)] of the files cut.
    The Raft log is not touched: raft_uv writes it durably (direct I/O / O_DSYNC) before it acknowledges.
    """
    sizes = synced_sizes(shim_log)
    cut = []
    topics = os.path.join(data_dir, "topics")
    if not os.path.isdir(topics):
        return cut
    for part in sorted(os.listdir(topics)):
        pdir = os.path.join(topics, part)
        if not os.path.isdir(pdir):
            continue
        for name in sorted(os.listdir(pdir)):
            if not name.endswith(".log"):
                continue
            path = os.path.realpath(os.path.join(pdir, name))
            size = os.path.getsize(path)
            to = min(sizes.get(path, 0), size)
            if to < size:
                os.truncate(path, to)
                cut.append((os.path.join(part, name), size, to))
    return cut


# ---- the faults -------------------------------------------------------------------------------------------

class Fault:
    kind = "?"

    def __init__(self, cluster, net):
        self.c = cluster
        self.net = net

    def start(self, rng):
        raise NotImplementedError

    def tick(self, rng, elapsed):
        return None

    def stop(self):
        return {}


def majority(n):
    return n // 2 + 1


def pick_leader(c, rng):
    """(node, partition) of a random partition's leader, or a random live node if nobody answers."""
    leaders = c.leaders() or {}
    live = {p: l for p, l in leaders.items() if l is not None and 0 <= l < c.n and c.alive(l)}
    if live:
        p = rng.choice(sorted(live))
        return live[p], p
    nodes = [i for i in range(c.n) if c.alive(i)]
    return (rng.choice(nodes) if nodes else 0), None


class PartitionOne(Fault):
    """Isolates one node from every other node (the clients still reach it: a stale leader is possible)."""
    kind = "partition-one"

    def start(self, rng):
        v = rng.randrange(self.c.n)
        self.net.set_partition([(a, b) for a in range(self.c.n) for b in range(self.c.n)
                                if a != b and v in (a, b)])
        return {"isolated": v}

    def stop(self):
        self.net.set_partition([])
        return {}


class PartitionMajority(Fault):
    """Splits the nodes into a majority and a minority at random."""
    kind = "partition-majority"

    def start(self, rng):
        nodes = list(range(self.c.n))
        rng.shuffle(nodes)
        big, small = sorted(nodes[:majority(self.c.n)]), sorted(nodes[majority(self.c.n):])
        self.net.set_partition([(a, b) for a in big for b in small] + [(b, a) for a in big for b in small])
        return {"majority": big, "minority": small}

    def stop(self):
        self.net.set_partition([])
        return {}


def ring_drops(n, order):
    """Grudge of a majorities ring on nodes in `order`: each node keeps the neighbours within distance m.

    m is the least distance that gives every node a majority (itself and 2m others); with 3 nodes the ring is
    complete, so one pair is cut instead (a bridge: the middle node is in both overlapping majorities).
    """
    if n == 3:
        a, _, c = order
        return [(a, c), (c, a)]
    m = majority(n) // 2  # the least m with 2m >= majority - 1
    drops = []
    for i in range(n):
        for j in range(n):
            d = abs(i - j)
            if i != j and min(d, n - d) > m:
                drops.append((order[i], order[j]))
    return drops


class PartitionRing(Fault):
    """Overlapping majorities: every node sees a majority, no two nodes see the same one."""
    kind = "partition-ring"

    def start(self, rng):
        order = list(range(self.c.n))
        rng.shuffle(order)
        self.net.set_partition(ring_drops(self.c.n, order))
        return {"ring": order}

    def stop(self):
        self.net.set_partition([])
        return {}


class PartitionOneWay(Fault):
    """Asymmetric cut: one node's packets to every other node are dropped (or every packet to it)."""
    kind = "partition-oneway"

    def start(self, rng):
        v = rng.randrange(self.c.n)
        outbound = rng.random() < 0.5
        others = [i for i in range(self.c.n) if i != v]
        self.net.set_partition([(v, o) for o in others] if outbound else [(o, v) for o in others])
        return {"node": v, "direction": "from node" if outbound else "to node"}

    def stop(self):
        self.net.set_partition([])
        return {}


def random_links(c, rng, count):
    pairs = [(a, b) for a in range(c.n) for b in range(c.n) if a < b]
    rng.shuffle(pairs)
    return pairs[:count]


class Loss(Fault):
    """Random packet loss (both directions) on a few links between nodes."""
    kind = "loss"

    def start(self, rng):
        pct = rng.choice([10, 20, 30, 50])
        links = random_links(self.c, rng, max(1, self.c.n // 2))
        self.net.set_loss([(a, b, pct) for a, b in links] + [(b, a, pct) for a, b in links])
        return {"links": links, "percent": pct}

    def stop(self):
        self.net.set_loss([])
        return {}


class Delay(Fault):
    """Delay with jitter on what one node sends to the other nodes."""
    kind = "delay"
    reorder = 0

    def start(self, rng):
        v = rng.randrange(self.c.n)
        delay = rng.choice([50, 100, 200, 400])
        jitter = delay // 2 if not self.reorder else delay
        seed = rng.randrange(1, 2 ** 31)
        peers = [i for i in range(self.c.n) if i != v]
        self.node = v
        self.net.start_delay(v, peers, delay, jitter, self.reorder, seed)
        return {"node": v, "to": peers, "delay_ms": delay, "jitter_ms": jitter, "reorder_pct": self.reorder}

    def stop(self):
        self.net.stop_delay(self.node)
        return {}


class Reorder(Delay):
    """Reordering: a wide jitter, and a quarter of the packets overtaking every held one."""
    kind = "reorder"
    reorder = 25


class Kill(Fault):
    """kill -9 of a random node; restarted with its data at the end of the window."""
    kind = "kill"
    lose = False

    def victim(self, rng):
        return rng.choice([i for i in range(self.c.n) if self.c.alive(i)]), {}

    def start(self, rng):
        v, detail = self.victim(rng)
        self.node = v
        self.c.kill(v)
        if self.lose:
            cut = self.c.lose_unsynced(v)
            detail["files_cut"] = len(cut)
            detail["bytes_lost"] = sum(a - b for _, a, b in cut)
        detail["node"] = v
        return detail

    def stop(self):
        self.c.restart(self.node)
        return {"restarted": self.node}


class KillLeader(Kill):
    kind = "kill-leader"

    def victim(self, rng):
        v, p = pick_leader(self.c, rng)
        return v, {"leader_of": p}


class KillController(Kill):
    kind = "kill-controller"

    def victim(self, rng):
        v = self.c.controller()
        if v is None or not self.c.alive(v):
            return rng.choice([i for i in range(self.c.n) if self.c.alive(i)]), {"controller": "unknown"}
        return v, {"controller": v}


class LoseUnsynced(Kill):
    """kill -9 of a partition leader, then its segment files lose every byte not fsync'd (a power cut)."""
    kind = "lose-unsynced"
    lose = True

    def victim(self, rng):
        v, p = pick_leader(self.c, rng)
        return v, {"leader_of": p}


class PowerCut(Fault):
    """A cluster-wide power cut: kill -9 of every node, each losing its un-fsync'd segment bytes; all are
    restarted at the end. Only what every broker made durable before acknowledging may survive."""
    kind = "power-cut"

    def start(self, rng):
        self.nodes = [i for i in range(self.c.n) if self.c.alive(i)]
        for i in self.nodes:
            self.c.kill(i)
        lost = {}
        for i in self.nodes:
            cut = self.c.lose_unsynced(i)
            lost[i] = sum(a - b for _, a, b in cut)
        return {"nodes": self.nodes, "bytes_lost": lost}

    def stop(self):
        for i in self.nodes:
            self.c.restart(i)
        return {"restarted": self.nodes}


class Pause(Fault):
    """SIGSTOP of a node; SIGCONT at the end of the window."""
    kind = "pause"

    def victim(self, rng):
        return rng.choice([i for i in range(self.c.n) if self.c.alive(i)]), {}

    def start(self, rng):
        v, detail = self.victim(rng)
        self.node = v
        self.c.pause(v)
        detail["node"] = v
        return detail

    def stop(self):
        self.c.resume(self.node)
        return {"resumed": self.node}


class PauseLeader(Pause):
    kind = "pause-leader"

    def victim(self, rng):
        v, p = pick_leader(self.c, rng)
        return v, {"leader_of": p}


class ClockSkew(Fault):
    """Each node's wall clock offset by its own random amount (up to +-10 minutes) for the window."""
    kind = "clock-skew"

    def start(self, rng):
        offsets = {i: rng.randint(-600, 600) for i in range(self.c.n)}
        for i, s in offsets.items():
            self.c.set_clock(i, s)
        return {"offsets_s": offsets}

    def stop(self):
        for i in range(self.c.n):
            self.c.set_clock(i, 0)
        return {}


class ClockBump(Fault):
    """One node's wall clock jumps far forward or back (up to a day) at once."""
    kind = "clock-bump"

    def start(self, rng):
        v = rng.randrange(self.c.n)
        s = rng.choice([-1, 1]) * rng.randint(60, 86400)
        self.node = v
        self.c.set_clock(v, s)
        return {"node": v, "offset_s": s}

    def stop(self):
        self.c.set_clock(self.node, 0)
        return {}


class ClockStrobe(Fault):
    """One node's wall clock flips between two far-apart offsets every tick (0.25 s) during the window."""
    kind = "clock-strobe"

    def start(self, rng):
        self.node = rng.randrange(self.c.n)
        self.delta = rng.randint(5, 300)
        self.flips = 0
        return {"node": self.node, "between_s": [-self.delta, self.delta]}

    def tick(self, rng, elapsed):
        self.flips += 1
        self.c.set_clock(self.node, self.delta if self.flips % 2 else -self.delta)
        return None

    def stop(self):
        self.c.set_clock(self.node, 0)
        return {"flips": self.flips}


class TransferLeader(Fault):
    """Leadership transfer: SIGTERM to a partition's leader (a graceful stop hands every leadership it holds
    to another voter first); restarted at the end. ferryctl has no command that transfers one leadership."""
    kind = "transfer-leader"

    def start(self, rng):
        v, p = pick_leader(self.c, rng)
        self.node = v
        self.c.terminate(v)
        return {"node": v, "leader_of": p}

    def stop(self):
        self.c.restart(self.node)
        return {"restarted": self.node}


class KillDuringPartition(Fault):
    """Regression scenario: isolate one node; halfway through, kill -9 a partition leader on the majority
    side (for 3 nodes that leaves no quorum until the heal); heal and restart at the end."""
    kind = "kill-during-partition"

    def start(self, rng):
        self.isolated = rng.randrange(self.c.n)
        v = self.isolated
        self.net.set_partition([(a, b) for a in range(self.c.n) for b in range(self.c.n)
                                if a != b and v in (a, b)])
        self.killed = None
        self.half = None
        return {"isolated": v}

    def tick(self, rng, elapsed):
        if self.killed is not None or self.half is None or elapsed < self.half:
            return None
        leaders = self.c.leaders() or {}
        side = [l for l in leaders.values() if l is not None and l != self.isolated and self.c.alive(l)]
        if side:
            self.killed = rng.choice(sorted(side))
        else:
            self.killed = rng.choice([i for i in range(self.c.n) if i != self.isolated and self.c.alive(i)])
        self.c.kill(self.killed)
        return {"step": "kill", "node": self.killed}

    def stop(self):
        self.net.set_partition([])
        if self.killed is not None:
            self.c.restart(self.killed)
        return {"restarted": self.killed}


class PauseThenKill(Fault):
    """Regression scenario: SIGSTOP a partition leader; halfway through, kill -9 it while it is stopped;
    restart at the end (its peers saw it go silent, never close its connections, before it died)."""
    kind = "pause-then-kill"

    def start(self, rng):
        self.node, p = pick_leader(self.c, rng)
        self.c.pause(self.node)
        self.killed = False
        self.half = None
        return {"node": self.node, "leader_of": p}

    def tick(self, rng, elapsed):
        if self.killed or self.half is None or elapsed < self.half:
            return None
        self.c.kill(self.node)
        self.killed = True
        return {"step": "kill", "node": self.node}

    def stop(self):
        if not self.killed:
            self.c.kill(self.node)
        self.c.restart(self.node)
        return {"restarted": self.node}


class TransferDuringLoss(Fault):
    """Regression scenario: 20 % loss on every link between nodes; halfway, a leadership transfer (SIGTERM
    to a partition leader) has to complete through the lossy links; heal and restart at the end."""
    kind = "transfer-during-loss"

    def start(self, rng):
        pairs = [(a, b, 20) for a in range(self.c.n) for b in range(self.c.n) if a != b]
        self.net.set_loss(pairs)
        self.node = None
        self.half = None
        return {"percent": 20, "links": "all"}

    def tick(self, rng, elapsed):
        if self.node is not None or self.half is None or elapsed < self.half:
            return None
        self.node, p = pick_leader(self.c, rng)
        self.c.terminate(self.node)
        return {"step": "transfer (SIGTERM)", "node": self.node, "leader_of": p}

    def stop(self):
        self.net.set_loss([])
        if self.node is not None:
            self.c.restart(self.node)
        return {"restarted": self.node}


FAULTS = {cls.kind: cls for cls in [PartitionOne, PartitionMajority, PartitionRing, PartitionOneWay, Loss, Delay,
                                    Reorder, Kill, KillLeader, KillController, LoseUnsynced, PowerCut, Pause, PauseLeader,
                                    ClockSkew, ClockBump, ClockStrobe, TransferLeader, KillDuringPartition,
                                    PauseThenKill, TransferDuringLoss]}
assert set(FAULTS) == set(KINDS)


def make_schedule(seed, kinds, duration, fault_s, quiet_s, every_once):
    """A seeded list of (start offset s, kind, length s) filling `duration` seconds.

    every_once: each kind appears once, in a seeded order (the run is as long as it takes); otherwise kinds
    are drawn at random until the duration is used. Faults never overlap: each is followed by a quiet
    window (healed cluster) of quiet_s. Lengths vary +-30% around fault_s.
    """
    rng = random.Random(seed)
    out = []
    t = quiet_s
    order = list(kinds)
    if every_once:
        rng.shuffle(order)
    while True:
        if every_once:
            if not order:
                break
            kind = order.pop()
        else:
            kind = rng.choice(order)
        length = round(fault_s * rng.uniform(0.7, 1.3), 1)
        if not every_once and t + length > duration:
            break
        out.append((round(t, 1), kind, length))
        t += length + quiet_s
    return out


class Nemesis:
    """Runs a schedule against a cluster, logging every phase to nemesis.jsonl (CLOCK_MONOTONIC times)."""

    def __init__(self, cluster, seed, log_path, echo=True):
        self.c = cluster
        self.echo = echo
        self.net = Net(cluster)
        self.rng = random.Random(seed ^ 0x5EED)
        self.log = open(log_path, "a")
        self.active = None
        self.counts = {}
        self.crashes = []
        self.crashed_nodes = set()  # crashed, not restarted yet (that waits for a healed window)
        self.t0 = time.monotonic()

    def note_crash(self, node, status, during):
        """Records a broker that died by itself (status: exit status, negative = signal) as a crash."""
        text = ("signal %s" % signal.Signals(-status).name) if status is not None and status < 0 else \
            "exit %s" % status
        self.crashes.append({"node": node, "status": status, "status_text": text, "during": during,
                             "at_s": round(time.monotonic() - self.t0, 1)})
        self.record("crash", "info", {"node": node, "status": text, "during": during})

    def check_crashes(self, restart):
        """Records brokers that died by themselves (a "crash" event each); restarts them if asked."""
        for node, status in self.c.crashed():
            self.note_crash(node, status, self.active.kind if self.active is not None else None)
            self.crashed_nodes.add(node)
        if not restart:
            return
        for node in sorted(self.crashed_nodes):
            self.crashed_nodes.discard(node)
            if self.c.alive(node):
                continue  # a fault's own restart brought it back
            try:
                self.c.restart(node)
                self.record("crash", "info", {"node": node, "step": "restarted"})
            except Exception as e:
                self.start_failed(e, "restart after a crash")

    def record(self, fault, phase, detail):
        line = {"time": time.monotonic(), "fault": fault, "phase": phase, "detail": detail}
        self.log.write(json.dumps(line, sort_keys=True) + "\n")
        self.log.flush()
        if self.echo:
            print("nemesis: %-22s %-5s %s" % (fault, phase, json.dumps(detail, sort_keys=True)), flush=True)

    def run(self, schedule, t0, should_stop):
        """Plays the schedule relative to monotonic time t0; returns early when should_stop() is true."""
        self.t0 = t0
        for offset, kind, length in schedule:
            while time.monotonic() < t0 + offset:
                if should_stop():
                    return
                self.check_crashes(restart=True)
                time.sleep(0.1)
            fault = FAULTS[kind](self.c, self.net)
            self.active = fault
            try:
                detail = fault.start(self.rng)
            except Exception as e:  # a fault that cannot start is logged and skipped, never half-applied
                self.record(kind, "error", {"error": str(e)})
                self.safe_stop(fault)
                self.active = None
                continue
            if hasattr(fault, "half"):
                fault.half = length / 2
            detail["planned_s"] = length
            self.record(kind, "start", detail)
            self.counts[kind] = self.counts.get(kind, 0) + 1
            begin = time.monotonic()
            while time.monotonic() < begin + length and not should_stop():
                step = fault.tick(self.rng, time.monotonic() - begin)
                if step:
                    self.record(kind, "info", step)
                self.check_crashes(restart=False)
                time.sleep(0.25)
            self.check_crashes(restart=False)
            self.record(kind, "stop", self.safe_stop(fault))
            self.active = None
            if should_stop():
                return

    def start_failed(self, e, during):
        """A broker that exits while (re)starting is a crash; any other error is returned as text."""
        if hasattr(e, "node") and hasattr(e, "status"):
            self.note_crash(e.node, e.status, during)
        return str(e)

    def safe_stop(self, fault):
        try:
            return fault.stop() or {}
        except Exception as e:
            return {"error": self.start_failed(e, fault.kind + " (restart)")}

    def heal_all(self):
        """Undoes every fault: network healed, clocks reset, paused nodes resumed, dead nodes restarted."""
        self.check_crashes(restart=False)
        if self.active is not None:
            self.record(self.active.kind, "stop", self.safe_stop(self.active))
            self.active = None
        errors = []
        try:
            self.net.heal()
        except Exception as e:
            errors.append("net: %s" % e)
        for i in range(self.c.n):
            try:
                self.c.set_clock(i, 0)
                self.c.resume(i)
                if not self.c.alive(i):
                    self.c.restart(i)
            except Exception as e:
                msg = self.start_failed(e, "heal (restart)")
                if not hasattr(e, "node"):
                    errors.append("n%d: %s" % (i, msg))
        self.record("heal", "info", {"errors": errors} if errors else {})
        return errors

    def close(self):
        self.log.close()
