"""test_nemesis.py: unit tests of the nemesis's pure parts: schedules, ring grudges, cutting un-fsynced bytes, clocks."""

import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nemesis  # noqa: E402


class ScheduleTest(unittest.TestCase):
    def test_ci_schedule_has_every_kind_once_without_overlap(self):
        s = nemesis.make_schedule(11, nemesis.KINDS, 0, 5, 3, True)
        self.assertEqual(sorted(k for _, k, _ in s), sorted(nemesis.KINDS))
        for (t1, _, l1), (t2, _, _) in zip(s, s[1:]):
            self.assertGreaterEqual(t2, t1 + l1 + 3 - 1e-9)

    def test_same_seed_same_schedule_other_seed_other_order(self):
        a = nemesis.make_schedule(5, nemesis.KINDS, 0, 5, 3, True)
        self.assertEqual(a, nemesis.make_schedule(5, nemesis.KINDS, 0, 5, 3, True))
        self.assertNotEqual([k for _, k, _ in a], [k for _, k, _ in nemesis.make_schedule(6, nemesis.KINDS, 0, 5, 3,
                                                                                              True)])

    def test_soak_schedule_fits_its_duration(self):
        s = nemesis.make_schedule(3, ["kill", "loss"], 100, 8, 5, False)
        self.assertTrue(s)
        self.assertLessEqual(s[-1][0] + s[-1][2], 100)
        self.assertTrue({k for _, k, _ in s} <= {"kill", "loss"})


class RingTest(unittest.TestCase):
    def check_ring(self, n):
        order = list(range(n))
        drops = set(nemesis.ring_drops(n, order))
        views = []
        for a in range(n):
            sees = frozenset(b for b in range(n) if b == a or ((a, b) not in drops and (b, a) not in drops))
            self.assertGreaterEqual(len(sees), n // 2 + 1, "node %d sees a minority %s" % (a, sorted(sees)))
            views.append(sees)
        self.assertTrue(drops, "a ring with nothing cut")
        self.assertNotEqual(len(set(views)), 1, "every node sees the same majority")

    def test_rings_of_3_5_7(self):
        for n in (3, 5, 7):
            self.check_ring(n)


class CutUnsyncedTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="test_nemesis.")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, rel, size):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"x" * size)
        return os.path.realpath(path)

    def test_cuts_to_last_synced_size_and_never_synced_to_zero(self):
        a = self.write("data/topics/t-0/00000000000000000000.log", 500)
        b = self.write("data/topics/t-0/00000000000000000007.log", 300)
        idx = self.write("data/topics/t-0/00000000000000000000.index", 80)
        c = self.write("data/topics/t-1/00000000000000000000.log", 100)
        shim = os.path.join(self.dir, "synced")
        with open(shim, "w") as f:
            f.write("100 %s\n400 %s\n100 %s\n" % (a, a, c))
        cut = nemesis.cut_unsynced(os.path.join(self.dir, "data"), shim)
        self.assertEqual(os.path.getsize(a), 400)
        self.assertEqual(os.path.getsize(b), 0)
        self.assertEqual(os.path.getsize(c), 100)
        self.assertEqual(os.path.getsize(idx), 80)
        self.assertEqual(sorted((p, x, y) for p, x, y in cut),
                         [("t-0/00000000000000000000.log", 500, 400), ("t-0/00000000000000000007.log", 300, 0)])

    def test_missing_dirs_cut_nothing(self):
        self.assertEqual(nemesis.cut_unsynced(os.path.join(self.dir, "none"), os.path.join(self.dir, "x")), [])


class ClockTest(unittest.TestCase):
    def test_clock_file_holds_a_signed_offset(self):
        d = tempfile.mkdtemp(prefix="test_nemesis.")
        try:
            p = os.path.join(d, "n0")
            nemesis.write_clock(p, -120)
            with open(p) as f:
                self.assertEqual(f.read(), "-120\n")
            nemesis.write_clock(p, 0)
            with open(p) as f:
                self.assertEqual(f.read(), "+0\n")
            self.assertEqual(os.listdir(d), ["n0"])
        finally:
            shutil.rmtree(d)


class FakeNet:
    def __init__(self):
        self.heals = 0

    def heal(self):
        self.heals += 1


class StartFailure(Exception):
    def __init__(self, node, status):
        super().__init__("n%d exited during start-up" % node)
        self.node = node
        self.status = status


class FakeCluster:
    """The cluster interface of nemesis.py without processes: alive flags, clocks, scripted crashes."""

    def __init__(self, n):
        self.n = n
        self.up = {i: True for i in range(n)}
        self.paused = set()
        self.clocks = {i: 0 for i in range(n)}
        self.pending_crashes = []
        self.fail_starts = {}  # node -> exit status of its next start
        self.log = []

    def alive(self, i):
        return self.up[i]

    def kill(self, i):
        self.log.append(("kill", i))
        self.up[i] = False

    def restart(self, i):
        self.log.append(("restart", i))
        if i in self.fail_starts:
            raise StartFailure(i, self.fail_starts.pop(i))
        self.up[i] = True

    def terminate(self, i):
        self.kill(i)

    def pause(self, i):
        self.paused.add(i)

    def resume(self, i):
        self.paused.discard(i)

    def lose_unsynced(self, i):
        return []

    def set_clock(self, i, s):
        self.clocks[i] = s

    def leaders(self):
        return {0: 1, 1: 2}

    def controller(self):
        return 0

    def crashed(self):
        out, self.pending_crashes = self.pending_crashes, []
        for i, _ in out:
            self.up[i] = False
        return out


class NemesisTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="test_nemesis.")
        self.log = os.path.join(self.dir, "nemesis.jsonl")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def nemesis(self, c):
        nem = nemesis.Nemesis(c, 1, self.log, echo=False)
        nem.net = FakeNet()
        return nem

    def events(self):
        import json
        with open(self.log) as f:
            return [json.loads(line) for line in f]

    def test_faults_undo_themselves_and_are_logged(self):
        c = FakeCluster(3)
        nem = self.nemesis(c)
        nem.run([(0, "kill-leader", 0.3), (0.4, "pause", 0.3), (0.8, "clock-skew", 0.3)], time.monotonic(),
                lambda: False)
        nem.close()
        self.assertTrue(all(c.up.values()))
        self.assertEqual(c.paused, set())
        self.assertEqual(set(c.clocks.values()), {0})
        self.assertIn(("kill", 1), c.log)
        self.assertIn(("restart", 1), c.log)
        phases = [(e["fault"], e["phase"]) for e in self.events()]
        self.assertEqual(phases, [("kill-leader", "start"), ("kill-leader", "stop"), ("pause", "start"),
                                  ("pause", "stop"), ("clock-skew", "start"), ("clock-skew", "stop")])
        self.assertEqual(nem.counts, {"kill-leader": 1, "pause": 1, "clock-skew": 1})

    def test_crash_recorded_and_restarted_in_the_next_healed_window(self):
        c = FakeCluster(3)
        nem = self.nemesis(c)
        c.pending_crashes = [(2, -11)]
        nem.run([(0, "clock-bump", 0.3), (0.6, "clock-strobe", 0.3)], time.monotonic(), lambda: False)
        nem.close()
        self.assertEqual([(x["node"], x["status_text"], x["during"]) for x in nem.crashes],
                         [(2, "signal SIGSEGV", "clock-bump")])
        self.assertTrue(c.up[2])
        crash_events = [e["detail"] for e in self.events() if e["fault"] == "crash"]
        self.assertEqual(crash_events[1], {"node": 2, "step": "restarted"})

    def test_broker_that_cannot_restart_is_a_crash_not_an_error(self):
        c = FakeCluster(3)
        nem = self.nemesis(c)
        c.fail_starts = {0: 1}
        c.up[0] = False
        errors = nem.heal_all()
        nem.close()
        self.assertEqual(errors, [])
        self.assertEqual([(x["node"], x["status_text"], x["during"]) for x in nem.crashes],
                         [(0, "exit 1", "heal (restart)")])
        self.assertEqual(nem.net.heals, 1)


if __name__ == "__main__":
    unittest.main()
