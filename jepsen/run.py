#!/usr/bin/env python3
"""run.py: the Jepsen-style run: testbed, brokers, workload, seeded nemesis, final reads, checker, report, teardown.

    jepsen/run.py [--profile ci|soak] [--nodes N] [--duration S] [--faults K,K..] [--seed N] [--bug NAME] ...
    jepsen/run.py --cleanup        remove what an interrupted run left (processes by PID, namespaces)

One run (docs/jepsen.md tells the whole story):
  1. jepsen/testbed/netns.sh up N: a namespace per node (10.77.0.10+i) and a control namespace (10.77.0.100)
     on a bridge with no uplink; certificates with those addresses (build/jepsen/certs);
  2. one ferryd per node namespace (TLS clients and mutual-TLS peers, fsync before ack), each under
     libfaketime (its wall clock is the nemesis's to move) and the fsync-recording shim (its un-synced
     segment bytes can be cut after a kill); the topic `jepsen` (--partitions, RF min(3, N));
  3. J2's workload in the control namespace: jp_producer x --producers, jp_consumer x --consumers (assign
     mode) and jp_consumer --group x --group-consumers (one group), each writing its own history file;
  4. the nemesis schedule (jepsen/nemesis/nemesis.py), seeded (the seed is printed first), every fault
     logged to nemesis.jsonl; then everything healed and every node running;
  5. jp_final_read through the cluster, the group's committed offsets (jp_consumer --final-committed),
     replicas given time to converge, brokers stopped (SIGTERM),
     jp_replica_dump of every node's data dir;
  6. the histories merged by "time" into history.jsonl, jepsen/checker/checker.py -> verdict.json/.txt,
     jepsen/report/report.py -> plots and index.html; the namespaces torn down.
Everything started is recorded (PIDs, namespace prefix) in the state file /tmp/ferry-jepsen/state.json as it
happens, and torn down in a `finally` (also on Ctrl-C / SIGTERM); a later run or --cleanup removes what a
killed run left. Exit status: 0 no anomaly, 1 anomalies (or the checker failed), 2 the harness failed.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.join(ROOT, "jepsen", "nemesis"))
import nemesis  # noqa: E402

STATE_DIR = "/tmp/ferry-jepsen"
STATE_FILE = os.path.join(STATE_DIR, "state.json")
NETNS = os.path.join(ROOT, "jepsen", "testbed", "netns.sh")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
TOPIC = "jepsen"
GROUP = "jepsen-g"  # the group-mode consumers' group
CLIENT_PORT = 9092
PEER_PORT = 9093
PROCESS_MARKERS = ("ferryd", "jp_", "nfq_delay", "ferryctl")


class HarnessError(Exception):
    pass


class Interrupted(Exception):
    pass


class BrokerExit(HarnessError):
    """A broker exited while starting (e.g. it refuses its own data after a power cut): a finding, not a harness
    failure; the nemesis records it as a crash."""

    def __init__(self, node, status, msg):
        super().__init__(msg)
        self.node = node
        self.status = status


def log(msg):
    print("jepsen: %s" % msg, flush=True)


# ---- the state file: what to clean up if this process dies ---------------------------------------------

class State:
    def __init__(self, prefix, run_dir):
        self.data = {"prefix": prefix, "run_dir": run_dir, "pids": {}, "owner": os.getpid()}
        os.makedirs(STATE_DIR, exist_ok=True)
        self.save()

    def save(self):
        tmp = STATE_FILE + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, STATE_FILE)

    def add(self, pid, name):
        self.data["pids"][str(pid)] = name
        self.save()

    def remove(self, pid):
        self.data["pids"].pop(str(pid), None)
        self.save()

    def clear(self):
        try:
            os.unlink(STATE_FILE)
        except FileNotFoundError:
            pass


def ours(pid):
    """True if pid is still one of the programs this suite starts (so a recycled PID is never signalled)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return any(m in cmd for m in PROCESS_MARKERS)


def cleanup_stale():
    """Removes what an earlier, interrupted run left: its processes (by PID) and its namespaces."""
    try:
        with open(STATE_FILE) as f:
            st = json.load(f)
    except (FileNotFoundError, ValueError):
        return
    owner = st.get("owner")
    # Another run in progress (the testbed's addresses and names are fixed): wait for it, bounded.
    waited = 0
    while owner and owner != os.getpid() and os.path.exists("/proc/%d" % owner):
        try:
            with open("/proc/%d/cmdline" % owner, "rb") as f:
                if b"run.py" not in f.read():
                    break
        except OSError:
            break
        if waited >= 1800:
            raise HarnessError("another jepsen run (pid %d) is still in progress after %d s" % (owner, waited))
        if waited % 60 == 0:
            log("another jepsen run (pid %d) is in progress: waiting for it" % owner)
        time.sleep(5)
        waited += 5
        try:
            with open(STATE_FILE) as f:
                st = json.load(f)
        except (FileNotFoundError, ValueError):
            return
        owner = st.get("owner")
    for pid_s, name in st.get("pids", {}).items():
        pid = int(pid_s)
        if ours(pid):
            log("stale %s (pid %d) from an interrupted run: killed" % (name, pid))
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
    prefix = st.get("prefix", "fj")
    subprocess.run([NETNS, "down"], env=dict(os.environ, JEPSEN_NS_PREFIX=prefix), check=False)
    os.unlink(STATE_FILE)


# ---- the cluster -------------------------------------------------------------------------------------------

class Cluster:
    """The brokers of one run: one ferryd per node namespace, started, killed, paused and asked by PID."""

    def __init__(self, args, run_dir, state, prefix):
        self.args = args
        self.n = args.nodes
        self.run_dir = run_dir
        self.state = state
        self.prefix = prefix
        self.sw_ns = "%s-sw" % prefix
        self.ctl_ns = "%s-ctl" % prefix
        self.build = args.build_dir
        self.ferryd = os.path.join(ROOT, "build-bugs", "ferryd") if args.bug else os.path.join(self.build, "ferryd")
        self.ferryctl_bin = os.path.join(self.build, "ferryctl")
        self.nfq_bin = os.path.join(self.build, "jepsen", "nfq_delay")
        self.shim = os.path.join(self.build, "jepsen", "sync_shim.so")
        self.certs = os.path.join(self.build, "jepsen", "certs")
        self.procs = {}
        self.paused = set()
        self.logs = {}
        for d in ("logs", "clock", "shim", "conf", "data", "ready"):
            os.makedirs(os.path.join(run_dir, d), exist_ok=True)

    def node_ns(self, i):
        return "%s-n%d" % (self.prefix, i)

    def addr(self, i):
        return "10.77.0.%d" % (10 + i)

    def brokers(self):
        return ",".join("%s:%d" % (self.addr(i), CLIENT_PORT) for i in range(self.n))

    def data_dir(self, i):
        return os.path.join(self.run_dir, "data", "n%d" % i)

    def clock_file(self, i):
        return os.path.join(self.run_dir, "clock", "n%d" % i)

    def shim_log(self, i):
        return os.path.join(self.run_dir, "shim", "n%d.synced" % i)

    def track_pid(self, pid, name):
        self.state.add(pid, name)

    def untrack_pid(self, pid):
        self.state.remove(pid)

    def write_configs(self):
        members = ",".join("%d@%s:%d" % (i, self.addr(i), PEER_PORT) for i in range(self.n))
        c = self.certs
        for i in range(self.n):
            lines = [
                "# written by jepsen/run.py: broker %d of %d in namespace %s" % (i, self.n, self.node_ns(i)),
                "node.id = %d" % i,
                "listen = %s:%d" % (self.addr(i), CLIENT_PORT),
                "data.dir = %s" % self.data_dir(i),
                "ready.file = %s" % os.path.join(self.run_dir, "ready", "n%d" % i),
                "security.protocol = tls",
                "tls.cert.file = %s/server.crt" % c, "tls.key.file = %s/server.key" % c, "tls.ca.file = %s/ca.crt" % c,
                "peer.listen = %s:%d" % (self.addr(i), PEER_PORT),
                "cluster.members = %s" % members,
                "peer.tls.cert.file = %s/server.crt" % c, "peer.tls.key.file = %s/server.key" % c,
                "peer.tls.client.cert.file = %s/client.crt" % c, "peer.tls.client.key.file = %s/client.key" % c,
                # small Raft logs and segments, so snapshots, catch-up and segment rolls happen within a run
                "raft.snapshot.threshold = %d" % self.args.snapshot_threshold,
                "raft.snapshot.trailing = %d" % max(1, self.args.snapshot_threshold // 4),
                "segment.bytes = %d" % self.args.segment_bytes,
            ]
            if self.args.bug:
                lines.append("debug.bug = %s" % self.args.bug)
            with open(os.path.join(self.run_dir, "conf", "n%d.conf" % i), "w") as f:
                f.write("\n".join(lines) + "\n")
            nemesis.write_clock(self.clock_file(i), 0)

    def env(self, i):
        e = dict(os.environ)
        e.update({
            "LD_PRELOAD": "%s:%s" % (FAKETIME_LIB, self.shim),
            "FAKETIME_TIMESTAMP_FILE": self.clock_file(i),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FERRY_SYNC_SHIM_LOG": self.shim_log(i),
        })
        # a sanitizer build (--build-dir build-san) must accept libraries preloaded before its runtime
        e["ASAN_OPTIONS"] = ":".join(x for x in (e.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x)
        return e

    def alive(self, i):
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def start(self, i):
        """Starts broker i and waits (up to 30 s) for its ready file."""
        if self.alive(i):
            return
        ready = os.path.join(self.run_dir, "ready", "n%d" % i)
        if os.path.exists(ready):
            os.unlink(ready)
        logf = open(os.path.join(self.run_dir, "logs", "ferryd-n%d.log" % i), "a")
        p = subprocess.Popen(["ip", "netns", "exec", self.node_ns(i), self.ferryd, "--config",
                              os.path.join(self.run_dir, "conf", "n%d.conf" % i)],
                             env=self.env(i), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        self.procs[i] = p
        self.paused.discard(i)
        self.track_pid(p.pid, "ferryd-n%d" % i)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(ready) and os.path.getsize(ready) > 0:
                return
            if p.poll() is not None:
                self.untrack_pid(p.pid)
                raise BrokerExit(i, p.returncode, "broker n%d exited during start-up (status %s); see "
                                 "logs/ferryd-n%d.log" % (i, p.returncode, i))
            time.sleep(0.05)
        raise HarnessError("broker n%d not ready after 30 s; see logs/ferryd-n%d.log" % (i, i))

    def restart(self, i):
        self.start(i)

    def crashed(self):
        """[(node, exit status)] of brokers that exited by themselves since the last call (each reported once).

        A broker this class killed or stopped was reaped on the spot, so any other exit is the broker's own:
        a crash (negative status = the signal), an assertion, or a refusal to start again."""
        out = []
        for i, p in sorted(self.procs.items()):
            if p.poll() is not None and str(p.pid) in self.state.data["pids"]:
                self.untrack_pid(p.pid)
                self.paused.discard(i)
                out.append((i, p.returncode))
        return out

    def _reap(self, i, timeout):
        p = self.procs.get(i)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.untrack_pid(p.pid)
        self.paused.discard(i)

    def kill(self, i):
        """kill -9 (also of a paused broker)."""
        if not self.alive(i):
            return
        self.procs[i].kill()
        self._reap(i, 10)

    def terminate(self, i, timeout=15):
        """SIGTERM: the broker hands its leaderships over, then stops; SIGKILL after timeout."""
        if not self.alive(i):
            return
        self.resume(i)
        self.procs[i].terminate()
        self._reap(i, timeout)

    def pause(self, i):
        if self.alive(i):
            self.procs[i].send_signal(signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i):
        if i in self.paused and self.alive(i):
            self.procs[i].send_signal(signal.SIGCONT)
        self.paused.discard(i)

    def lose_unsynced(self, i):
        assert not self.alive(i), "cut a live broker's files"
        return nemesis.cut_unsynced(self.data_dir(i), self.shim_log(i))

    def set_clock(self, i, offset_s):
        nemesis.write_clock(self.clock_file(i), offset_s)

    def ferryctl(self, args, timeout_ms=2000):
        """Runs ferryctl in the control namespace; its JSON answer, or None."""
        cmd = ["ip", "netns", "exec", self.ctl_ns, self.ferryctl_bin] + args + [
            "--brokers", self.brokers(), "--ca", os.path.join(self.certs, "ca.crt"), "--format", "json",
            "--timeout", str(timeout_ms)]
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=timeout_ms / 1000 + 3)
        except subprocess.TimeoutExpired:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def describe(self):
        out = self.ferryctl(["topic", "describe", TOPIC])
        if not out or not out.get("topics"):
            return None
        return out["topics"][0]

    def leaders(self):
        t = self.describe()
        if not t or not t.get("partitions"):
            return None
        return {p["partition"]: p.get("leader") for p in t["partitions"]}

    def controller(self):
        out = self.ferryctl(["cluster", "info"])
        return out.get("controller_id") if out else None

    def stop_all(self, timeout=15):
        """SIGTERM to every broker at once, then waits for each; {node: exit status} of those stopped."""
        stopped = []
        for i in range(self.n):
            if self.alive(i):
                self.resume(i)
                self.procs[i].terminate()
                stopped.append(i)
        for i in stopped:
            self._reap(i, timeout)
        return {i: self.procs[i].returncode for i in stopped}

    def kill_all(self):
        for i in range(self.n):
            if self.alive(i):
                self.resume(i)
                self.kill(i)


# ---- the run -----------------------------------------------------------------------------------------------

def wait_until(what, fn, timeout, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise HarnessError("%s: not within %d s" % (what, timeout))


def registered(cluster):
    out = cluster.ferryctl(["cluster", "info"])
    return out and len(out.get("brokers", [])) >= cluster.n


def all_led(cluster):
    """The topic's description once every partition has a leader that answers (else None).

    A leader that is only named is not enough: a broker that does not replicate a partition names its
    first replica whatever Raft elected (docs/jepsen.md, finding 2), so the partition's own
    watermarks, which ferryctl reads from the leader it was told, must have come back without error.
    """
    t = cluster.describe()
    if not t or len(t.get("partitions", [])) != cluster.args.partitions:
        return None
    if all(p.get("leader") is not None and p["leader"] >= 0 and not p.get("error") for p in t["partitions"]):
        return t
    return None


def segment_bytes(cluster, i, partition):
    d = os.path.join(cluster.data_dir(i), "topics", "%s-%d" % (TOPIC, partition))
    try:
        return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".log"))
    except OSError:
        return None


def wait_replicas(cluster, replicas, timeout):
    """Waits until every partition's replicas ({partition: [node]}) hold as many segment bytes as each other
    (and the same for 1 s); False if they still differ after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        now = {p: [segment_bytes(cluster, i, p) for i in rs] for p, rs in replicas.items()}
        if all(len(set(v)) == 1 for v in now.values()) and now == last:
            return True
        last = now
        time.sleep(1)
    log("replicas still differ in size after %d s: %s" % (timeout, last))
    return False


def start_client(cluster, name, argv):
    """Starts a workload program in the control namespace (stderr to logs/NAME.log), tracked by PID."""
    logf = open(os.path.join(cluster.run_dir, "logs", "%s.log" % name), "a")
    p = subprocess.Popen(["ip", "netns", "exec", cluster.ctl_ns] + argv, stdout=logf, stderr=subprocess.STDOUT,
                         start_new_session=True)
    logf.close()
    cluster.track_pid(p.pid, name)
    return p


def merge_histories(run_dir, placement=None):
    """Concatenates history/*.jsonl, sorted by "time" (stable); returns (ops, unparseable lines).

    placement ({partition: [node ids]}, from the cluster) drops the replica reads of nodes that do not
    replicate a partition when they found it empty: every broker keeps an empty log for every partition, and
    with more nodes than the replication factor those are not replicas the checker should compare. A
    non-replica whose log has records is kept (the checker then shows it).
    """
    ops, bad = [], 0
    hdir = os.path.join(run_dir, "history")
    for name in sorted(os.listdir(hdir)):
        with open(os.path.join(hdir, name)) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    op = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if (placement and op.get("f") == "replica-read" and not op.get("records") and
                        op.get("partition") in placement and op.get("node_id") not in placement[op["partition"]]):
                    continue
                ops.append(op)
    ops.sort(key=lambda o: o.get("time", 0))
    with open(os.path.join(run_dir, "history.jsonl"), "w") as f:
        for o in ops:
            f.write(json.dumps(o, separators=(",", ":")) + "\n")
    return ops, bad


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Jepsen-style fault-injection run against a Ferry cluster "
                                             "(docs/jepsen.md). Needs root.")
    ap.add_argument("--profile", choices=["ci", "soak"], default="soak",
                    help="ci: 3 nodes, every fault kind once, short windows; soak: random faults for --duration")
    ap.add_argument("--nodes", type=int, default=None, help="brokers (3 or 5; default 3)")
    ap.add_argument("--duration", type=float, default=120, help="soak: seconds of workload under faults")
    ap.add_argument("--faults", default="all", help="comma-separated fault kinds, or all: " + ",".join(nemesis.KINDS))
    ap.add_argument("--seed", type=int, default=None, help="schedule seed (default: random, printed)")
    ap.add_argument("--fault-s", type=float, default=None, help="mean length of a fault window (s)")
    ap.add_argument("--quiet-s", type=float, default=None, help="healed time between two faults (s)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--rate", type=int, default=40, help="sends per second of each producer")
    ap.add_argument("--consumers", type=int, default=1, help="assign-mode consumers")
    ap.add_argument("--group-consumers", type=int, default=2,
                    help="group-mode consumers, all in group " + GROUP + " (0: none)")
    ap.add_argument("--bug", choices=["ack-before-commit", "drop-entry", "no-dedupe"], default=None,
                    help="run build-bugs/ferryd with debug.bug=NAME (the suite must then report anomalies)")
    ap.add_argument("--snapshot-threshold", type=int, default=128)
    ap.add_argument("--segment-bytes", type=int, default=262144)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--checker", default=os.path.join(ROOT, "jepsen", "checker", "checker.py"),
                    help="the checker program (history in, verdict.json/verdict.txt out)")
    ap.add_argument("--out", default=None, help="report folder (default run/jepsen/<time>-seed<N>)")
    ap.add_argument("--allow-crashes", action="store_true",
                    help="a broker that dies by itself (crash, abort) does not fail the run (it is still reported)")
    ap.add_argument("--keep-data", action="store_true", help="keep the brokers' data dirs in the report folder")
    ap.add_argument("--cleanup", action="store_true", help="only remove what an interrupted run left, then exit")
    a = ap.parse_args(argv)
    if a.nodes is None:
        a.nodes = 3
    if a.profile == "ci" and a.nodes != 3:
        ap.error("the ci profile runs 3 nodes")
    if not 3 <= a.nodes <= 9:
        ap.error("--nodes must be 3..9")
    a.fault_s = a.fault_s or (5.0 if a.profile == "ci" else 8.0)
    a.quiet_s = a.quiet_s or (3.0 if a.profile == "ci" else 5.0)
    kinds = nemesis.KINDS if a.faults == "all" else [k.strip() for k in a.faults.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in nemesis.FAULTS]
    if unknown or not kinds:
        ap.error("unknown fault kind(s) %s; known: %s" % (",".join(unknown), ",".join(nemesis.KINDS)))
    a.kinds = kinds
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2 ** 31)
    a.build_dir = os.path.abspath(a.build_dir)
    return a


def check_prerequisites(a):
    if os.geteuid() != 0:
        raise HarnessError("needs root (network namespaces, nft, iptables)")
    need = [os.path.join(a.build_dir, "ferryctl"), os.path.join(a.build_dir, "jepsen", "nfq_delay"),
            os.path.join(a.build_dir, "jepsen", "sync_shim.so"), os.path.join(a.build_dir, "jepsen", "certs", "ca.crt"),
            FAKETIME_LIB, a.checker]
    need += [os.path.join(a.build_dir, "jepsen", b) for b in ("jp_producer", "jp_consumer", "jp_final_read",
                                                              "jp_replica_dump")]
    need.append(os.path.join(ROOT, "build-bugs", "ferryd") if a.bug else os.path.join(a.build_dir, "ferryd"))
    missing = [p for p in need if not os.path.exists(p)]
    if missing:
        raise HarnessError("missing: %s (make jepsen builds them%s)"
                           % (", ".join(missing), "; make build-bugs/ferryd for --bug" if a.bug else ""))
    for tool in ("ip", "nft", "iptables", "gnuplot"):
        if shutil.which(tool) is None:
            raise HarnessError("%s not found: make deps" % tool)


def replay_command(a):
    """The make command that replays this run's schedule."""
    replay = "--seed %d" % a.seed
    if a.profile == "soak":
        replay += " --nodes %d --duration %g --faults %s" % (a.nodes, a.duration, a.faults)
    elif a.faults != "all":
        replay += " --faults %s" % a.faults
    if (a.partitions, a.producers, a.rate, a.consumers) != (4, 2, 40, 1):
        replay += " --partitions %d --producers %d --rate %d --consumers %d" % (a.partitions, a.producers, a.rate,
                                                                                a.consumers)
    if a.group_consumers != 2:
        replay += " --group-consumers %d" % a.group_consumers
    if a.bug:
        replay += " --bug %s" % a.bug
    return 'make jepsen%s ARGS="%s"' % ("" if a.profile == "ci" else "-soak", replay)


def report_dir(a):
    """The report folder (created); run/jepsen/latest points at the newest default one."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = os.path.abspath(a.out or os.path.join(ROOT, "run", "jepsen", "%s-seed%d" % (stamp, a.seed)))
    os.makedirs(os.path.join(run_dir, "history"), exist_ok=True)
    if a.out is None:
        latest = os.path.join(os.path.dirname(run_dir), "latest")
        if os.path.islink(latest):
            os.unlink(latest)
        if not os.path.exists(latest):
            os.symlink(os.path.basename(run_dir), latest)
    return run_dir


def bring_up(a, cluster):
    """Testbed, brokers, registration, the topic and a leader for each of its partitions."""
    subprocess.run([NETNS, "up", str(a.nodes)], env=dict(os.environ, JEPSEN_NS_PREFIX=cluster.prefix), check=True)
    cluster.write_configs()
    for i in range(a.nodes):
        cluster.start(i)
    wait_until("every broker registered", lambda: registered(cluster), 60)
    out = cluster.ferryctl(["topic", "create", TOPIC, "--partitions", str(a.partitions),
                            "--replicas", str(min(3, a.nodes))], timeout_ms=10000)
    if not out or not out.get("ok", False):
        raise HarnessError("topic create: %s" % out)
    wait_until("a leader for every partition", lambda: all_led(cluster), 60)
    log("%d brokers up (%s), topic %s with %d partitions" % (a.nodes, cluster.brokers(), TOPIC, a.partitions))


def client_argv(a, cluster, program, name, extra):
    hist = os.path.join(cluster.run_dir, "history", "%s.jsonl" % name)
    return ([os.path.join(a.build_dir, "jepsen", program), "--topic", TOPIC, "--partitions", str(a.partitions),
             "--process", name, "--history", hist] + extra +
            ["--brokers", cluster.brokers(), "--ca", os.path.join(cluster.certs, "ca.crt")])


def start_workload(a, cluster, workload_s):
    """Consumers first (they read from the start anyway), then producers; {name: Popen}."""
    clients = {}
    for k in range(1, a.consumers + 1):
        name = "c%d" % k
        clients[name] = start_client(cluster, name, client_argv(a, cluster, "jp_consumer", name,
                                                                ["--duration", str(workload_s + 10)]))
    # group members leave one after the other (4 s apart) after the last fault: each leave moves its
    # partitions to the members still there, with commits before the hand-over
    for k in range(1, a.group_consumers + 1):
        name = "g%d" % k
        clients[name] = start_client(cluster, name, client_argv(
            a, cluster, "jp_consumer", name, ["--group", GROUP, "--duration", str(workload_s + 2 + 4 * k)]))
    for k in range(1, a.producers + 1):
        name = "p%d" % k
        clients[name] = start_client(cluster, name, client_argv(
            a, cluster, "jp_producer", name, ["--rate", str(a.rate), "--duration", str(workload_s),
                                              "--flush-timeout", "30"]))
    return clients


def wait_client(cluster, name, p, timeout):
    """Waits for a client (killed past timeout); its exit status."""
    try:
        p.wait(timeout=max(5, timeout))
    except subprocess.TimeoutExpired:
        log("%s still running after its time: killed" % name)
        p.kill()
        p.wait()
    cluster.untrack_pid(p.pid)
    if p.returncode != 0:
        log("%s exited with status %d (logs/%s.log)" % (name, p.returncode, name))
    return p.returncode


def final_reads(a, cluster, nem, result):
    """After the heal: the read through the cluster, replicas converged, brokers stopped, the replica dumps."""
    try:
        topic = wait_until("a leader for every partition after the heal", lambda: all_led(cluster), 90)
    except HarnessError as e:  # unavailability is a finding: the final read records what it cannot read
        log("%s; reading anyway" % e)
        topic = cluster.describe()
        result["unavailable_after_heal"] = True
    partitions = (topic or {}).get("partitions") or []
    result["placement"] = {p["partition"]: p.get("replicas") for p in partitions if p.get("replicas")}
    fr = start_client(cluster, "final", client_argv(a, cluster, "jp_final_read", "final", ["--timeout", "90"]))
    result["final_read_status"] = wait_client(cluster, "final", fr, 150)
    if a.group_consumers > 0:
        fc = start_client(cluster, "committed", client_argv(
            a, cluster, "jp_consumer", "committed", ["--group", GROUP, "--final-committed", "--duration", "60"]))
        result["final_committed_status"] = wait_client(cluster, "committed", fc, 90)
    result["replicas_converged"] = wait_replicas(cluster, result["placement"], 30) if result["placement"] else None
    nem.check_crashes(restart=False)
    result["stop_status"] = cluster.stop_all()
    for i, st in result["stop_status"].items():
        if st != 0:
            log("broker n%d exited with status %s on SIGTERM (logs/ferryd-n%d.log)" % (i, st, i))
    for i in range(a.nodes):
        r = subprocess.run([os.path.join(a.build_dir, "jepsen", "jp_replica_dump"), "--data-dir", cluster.data_dir(i),
                            "--topic", TOPIC, "--partitions", str(a.partitions), "--source", "n%d" % i,
                            "--node-id", str(i), "--history",
                            os.path.join(cluster.run_dir, "history", "replica-n%d.jsonl" % i)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            log("jp_replica_dump n%d: status %d: %s" % (i, r.returncode, r.stdout.strip()[-500:]))


def check(a, run_dir, result):
    """Merged history -> the checker -> verdict.json / verdict.txt."""
    ops, bad = merge_histories(run_dir, result.get("placement"))
    result["history_ops"] = len(ops)
    result["history_unparseable"] = bad
    ck = subprocess.run([sys.executable, a.checker, os.path.join(run_dir, "history.jsonl"), "--out", run_dir],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(run_dir, "logs", "checker.log"), "w") as f:
        f.write(ck.stdout)
    result["checker_status"] = ck.returncode
    result["verdict"] = None
    try:
        with open(os.path.join(run_dir, "verdict.json")) as f:
            result["verdict"] = json.load(f)
    except (OSError, ValueError):
        pass


def run(a):
    """One whole run (see the top of this file); the exit status."""
    t_start = time.monotonic()
    replay = replay_command(a)
    log("seed %d (replay: %s)" % (a.seed, replay))
    check_prerequisites(a)
    cleanup_stale()
    run_dir = report_dir(a)
    log("report folder %s" % run_dir)
    schedule = nemesis.make_schedule(a.seed, a.kinds, a.duration, a.fault_s, a.quiet_s, a.profile == "ci")
    if not schedule:
        raise HarnessError("--duration %g leaves no room for a fault window" % a.duration)
    sched_end = schedule[-1][0] + schedule[-1][2]
    workload_s = int(sched_end + a.quiet_s + 4) if a.profile == "ci" else int(max(a.duration, sched_end) + 4)
    state = State("fj", run_dir)
    cluster = Cluster(a, run_dir, state, "fj")
    nem = None
    clients = {}
    stop = {"flag": False}
    result = {"seed": a.seed, "replay": replay, "profile": a.profile, "nodes": a.nodes, "bug": a.bug,
              "schedule": schedule, "partitions": a.partitions, "producers": a.producers, "consumers": a.consumers,
              "group_consumers": a.group_consumers,
              "rate": a.rate, "crashes": []}

    def on_signal(sig, frame):
        stop["flag"] = True
        raise Interrupted("signal %d" % sig)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)  # also SIGINT: a shell starts background jobs with it ignored
    try:
        bring_up(a, cluster)
        clients = start_workload(a, cluster, workload_s)
        log("workload: %d producer(s) at %d/s, %d consumer(s), %d group consumer(s), %d s; %d fault windows"
            % (a.producers, a.rate, a.consumers, a.group_consumers, workload_s, len(schedule)))
        nem = nemesis.Nemesis(cluster, a.seed, os.path.join(run_dir, "nemesis.jsonl"))
        t0 = time.monotonic()
        nem.run(schedule, t0, lambda: stop["flag"])
        errors = nem.heal_all()
        result["faults"] = dict(nem.counts)
        result["crashes"] = nem.crashes
        if errors:
            raise HarnessError("heal: %s" % "; ".join(errors))
        result["client_status"] = {name: wait_client(cluster, name, p, workload_s + 60 - (time.monotonic() - t0))
                                   for name, p in clients.items()}
        final_reads(a, cluster, nem, result)
        result["crashes"] = nem.crashes
        check(a, run_dir, result)
    finally:
        # a second Ctrl-C or SIGTERM must not cut the teardown short
        saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        teardown(cluster, nem, clients, state)
        for s in saved:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
        result["elapsed_s"] = round(time.monotonic() - t_start, 1)
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)

    rep = subprocess.run([sys.executable, os.path.join(ROOT, "jepsen", "report", "report.py"), run_dir],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if rep.returncode != 0:
        log("report: %s" % rep.stdout.strip()[-1000:])
    if not a.keep_data:
        shutil.rmtree(os.path.join(run_dir, "data"), ignore_errors=True)
    summarize(run_dir, result)
    if result["checker_status"] not in (0, 1):
        raise HarnessError("checker exit %d (logs/checker.log)" % result["checker_status"])
    if result["crashes"] and not a.allow_crashes:
        return 1
    return 0 if result["checker_status"] == 0 else 1


def teardown(cluster, nem, clients, state):
    """Stops everything this run started, by PID, and deletes the namespaces (idempotent)."""
    for name, p in clients.items():
        if p.poll() is None:
            p.kill()
            p.wait()
    if nem is not None:
        for i in range(cluster.n):
            try:
                nem.net.stop_delay(i)
            except Exception:
                pass
        nem.close()
    cluster.kill_all()
    subprocess.run([NETNS, "down"], env=dict(os.environ, JEPSEN_NS_PREFIX=cluster.prefix), check=False)
    state.clear()


def summarize(run_dir, r):
    v = r.get("verdict") or {}
    stats = v.get("stats", {})
    anomalies = {k: len(x) for k, x in (v.get("anomalies") or {}).items() if x}
    print()
    print("== jepsen run: seed %d, %s profile, %d nodes%s, %.0f s"
          % (r["seed"], r["profile"], r["nodes"], ", bug " + r["bug"] if r["bug"] else "", r.get("elapsed_s", 0)))
    print("faults injected: %s" % ", ".join("%s x%d" % kv for kv in sorted(r.get("faults", {}).items())))
    sends, reads = stats.get("sends", {}), stats.get("reads", {})
    print("history: %d operations; sends %s invoked, %s ok, %s fail, %s info; records read: %s by polls, %s by final "
          "reads, %s from replicas" % (r.get("history_ops", 0), sends.get("invoke", "?"), sends.get("ok", "?"),
                                       sends.get("fail", "?"), sends.get("info", "?"), reads.get("poll_records", "?"),
                                       reads.get("final_records", "?"), reads.get("replica_records", "?")))
    for g, x in sorted((stats.get("groups") or {}).items()):
        print("group %s: members %s; commits %s; %d assignment changes; %d records polled; final committed %s"
              % (g, ",".join(x.get("members", [])), json.dumps(x.get("commits", {}), sort_keys=True),
                 x.get("assign_events", 0), x.get("records_polled", 0),
                 json.dumps(x.get("final_committed")) if x.get("final_committed") is not None
                 else "not read (%s)" % x.get("final_committed_error", "no committed op")))
    for c in r.get("crashes") or []:
        print("BROKER CRASH: n%d exited by itself with status %s at %.1f s (during %s); see logs/ferryd-n%d.log"
              % (c["node"], c["status_text"], c["at_s"], c["during"] or "a healed window", c["node"]))
    if v:
        print("verdict: %s%s" % ("VALID" if v.get("valid") else "ANOMALIES",
                                 "" if not anomalies else " " + json.dumps(anomalies, sort_keys=True)))
    else:
        print("verdict: none (checker status %s)" % r.get("checker_status"))
    print("report: %s/index.html" % run_dir)


def main(argv):
    a = parse_args(argv)
    if a.cleanup:
        cleanup_stale()
        log("cleaned up")
        return 0
    try:
        return run(a)
    except HarnessError as e:
        log("FAILED: %s" % e)
        return 2
    except (KeyboardInterrupt, Interrupted) as e:
        log("interrupted (%s): everything stopped and removed" % (e or "Ctrl-C"))
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
