#!/usr/bin/env python3
"""report.py RUN_DIR: plots (gnuplot) and index.html of one Jepsen run, from its history, nemesis timeline and verdict.

Reads RUN_DIR/history.jsonl, nemesis.jsonl, verdict.json, verdict.txt and run.json (each may be missing);
writes RUN_DIR/plots/{throughput,latency}.png (fault windows shaded, times in seconds since the first
operation) and RUN_DIR/index.html, which ties together the verdict, the plots, the nemesis timeline, the
run's parameters and links to every file of the folder. Python standard library and gnuplot only.
"""

import html
import json
import os
import subprocess
import sys

# Shading colour of each fault family in the plots and the timeline.
FAMILY_COLOURS = {"network": "#3b7dd8", "process": "#d83b3b", "clock": "#2f9e44", "disk": "#e8890c",
                  "combined": "#8e44ad", "other": "#777777"}


def family(kind):
    if kind.startswith("partition") or kind in ("loss", "delay", "reorder"):
        return "network"
    if kind in ("kill-during-partition", "pause-then-kill", "transfer-during-loss"):
        return "combined"
    if kind.startswith("clock"):
        return "clock"
    if kind in ("lose-unsynced", "power-cut"):
        return "disk"
    if kind.startswith(("kill", "pause", "transfer")):
        return "process"
    return "other"


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except FileNotFoundError:
        pass
    return out


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def windows(nemesis_ops):
    """[(kind, start, stop, detail)] from the timeline's start/stop pairs (a start without a stop runs on)."""
    out, open_ = [], {}
    for e in nemesis_ops:
        if e.get("phase") == "start":
            open_[e["fault"]] = e
        elif e.get("phase") == "stop" and e.get("fault") in open_:
            s = open_.pop(e["fault"])
            out.append((e["fault"], s["time"], e["time"], s.get("detail", {})))
    for kind, s in open_.items():
        out.append((kind, s["time"], None, s.get("detail", {})))
    return sorted(out, key=lambda w: w[1])


def series(history, t0):
    """Per-second throughput rows and per-send latency points, times relative to t0."""
    per_s = {}
    invokes = {}
    lat = []

    def bucket(t):
        return per_s.setdefault(int(t - t0), {"ok": 0, "fail": 0, "info": 0, "read": 0})

    for o in history:
        t = o.get("time")
        if t is None:
            continue
        if o.get("f") == "send":
            key = (o.get("process"), o.get("value"))
            if o.get("type") == "invoke":
                invokes[key] = t
            elif o.get("type") in ("ok", "fail", "info"):
                bucket(t)[o["type"]] += 1
                if key in invokes:
                    lat.append((t - t0, (t - invokes.pop(key)) * 1000.0, o["type"]))
        elif o.get("f") == "poll" and o.get("type") == "ok":
            bucket(t)["read"] += len(o.get("records") or [])
    return per_s, lat


def gnuplot_shading(wins, t0, crashes=()):
    """gnuplot commands: a shaded, labelled rectangle per fault window and a dashed line per broker crash."""
    lines = []
    for n, e in enumerate(crashes):
        x = e["time"] - t0
        lines.append('set arrow %d from %.2f, graph 0 to %.2f, graph 1 nohead lc rgb "black" dt 2 lw 1.5 front'
                     % (n + 1, x, x))
        lines.append('set label %d "crash n%s" at %.2f, graph 0.02 left font ",7" front'
                     % (1000 + n, e["detail"].get("node"), x + 0.3))
    for n, (kind, a, b, _) in enumerate(wins):
        b = b if b is not None else a + 1
        colour = FAMILY_COLOURS[family(kind)]
        lines.append('set object %d rect from %.2f, graph 0 to %.2f, graph 1 fc rgb "%s" fs transparent solid 0.18 '
                     'noborder behind' % (n + 1, a - t0, b - t0, colour))
        lines.append('set label %d "%s" at %.2f, graph 0.98 rotate by 90 right font ",7" tc rgb "%s"'
                     % (n + 1, kind, a - t0 + 0.3, colour))
    return "\n".join(lines)


def plot(run_dir, per_s, lat, wins, crashes, t0):
    pdir = os.path.join(run_dir, "plots")
    os.makedirs(pdir, exist_ok=True)
    tput = os.path.join(pdir, "throughput.dat")
    with open(tput, "w") as f:
        f.write("# second ok fail info records_read\n")
        if per_s:
            for s in range(min(per_s), max(per_s) + 1):
                r = per_s.get(s, {"ok": 0, "fail": 0, "info": 0, "read": 0})
                f.write("%d %d %d %d %d\n" % (s, r["ok"], r["fail"], r["info"], r["read"]))
    latd = {}
    for kind in ("ok", "fail", "info"):
        latd[kind] = os.path.join(pdir, "latency-%s.dat" % kind)
        with open(latd[kind], "w") as f:
            f.write("# seconds latency_ms\n")
            for t, ms, k in lat:
                if k == kind:
                    f.write("%.3f %.3f\n" % (t, max(ms, 0.01)))
    shading = gnuplot_shading(wins, t0, crashes)
    script = """
set terminal pngcairo size 1200,420 font ",9"
set grid
set key outside right top
set xlabel "seconds since the first operation"
%(shading)s
set output "%(pdir)s/throughput.png"
set title "Throughput per second (fault windows shaded)"
set ylabel "operations / s"
plot "%(tput)s" using 1:2 with steps lw 1.5 lc rgb "#1b5e20" title "send ok", \\
     "%(tput)s" using 1:4 with steps lw 1.5 lc rgb "#e8890c" title "send info (unknown)", \\
     "%(tput)s" using 1:3 with steps lw 1.5 lc rgb "#c62828" title "send fail", \\
     "%(tput)s" using 1:5 with steps lw 1 lc rgb "#6a1b9a" dt 3 title "records polled"
set output "%(pdir)s/latency.png"
set title "Send latency, invoke to outcome (fault windows shaded)"
set ylabel "ms (log)"
set logscale y
plot "%(ok)s" using 1:2 with points pt 7 ps 0.3 lc rgb "#1b5e20" title "ok", \\
     "%(info)s" using 1:2 with points pt 7 ps 0.5 lc rgb "#e8890c" title "info", \\
     "%(fail)s" using 1:2 with points pt 7 ps 0.5 lc rgb "#c62828" title "fail"
""" % {"shading": shading, "pdir": pdir, "tput": tput, "ok": latd["ok"], "info": latd["info"], "fail": latd["fail"]}
    with open(os.path.join(pdir, "plots.gp"), "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", os.path.join(pdir, "plots.gp")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError("gnuplot: %s" % r.stdout.strip()[-800:])


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def page(run_dir, run, verdict, verdict_txt, wins, nemesis_ops, per_s, lat, t0):
    e = html.escape
    valid = verdict.get("valid") if verdict else None
    anomalies = {k: v for k, v in ((verdict or {}).get("anomalies") or {}).items() if v}
    oks = [ms for _, ms, k in lat if k == "ok"]
    sent = {k: sum(r[k] for r in per_s.values()) for k in ("ok", "fail", "info", "read")}
    title = "Ferry Jepsen run, seed %s" % (run or {}).get("seed", "?")
    status = ("<span class=ok>VALID</span>" if valid else "<span class=bad>ANOMALIES</span>" if valid is False
              else "<span class=bad>NO VERDICT</span>")
    out = ["<!doctype html><html><head><meta charset=utf-8><title>%s</title><style>" % e(title),
           "body{font:14px/1.4 sans-serif;margin:2em;max-width:1250px} table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top} .ok{color:#1b5e20;"
           "font-weight:bold} .bad{color:#c62828;font-weight:bold} pre{background:#f6f6f6;padding:8px;"
           "overflow:auto;max-height:30em} .sw{display:inline-block;width:10px;height:10px;margin-right:4px}",
           "</style></head><body>", "<h1>%s: %s</h1>" % (e(title), status)]
    if run:
        replay = run.get("replay", "?")
        rows = [("profile", run.get("profile")), ("nodes", run.get("nodes")), ("seed", run.get("seed")),
                ("broker bug switch", run.get("bug") or "none"), ("partitions", run.get("partitions")),
                ("producers x rate", "%s x %s/s" % (run.get("producers"), run.get("rate"))),
                ("consumers", run.get("consumers")), ("elapsed", "%s s" % run.get("elapsed_s")),
                ("history operations", run.get("history_ops")), ("replay", replay)]
        out.append("<h2>Run</h2><table>%s</table>" % "".join(
            "<tr><th>%s</th><td>%s</td></tr>" % (e(str(k)), e(str(v))) for k, v in rows))
    crashes = (run or {}).get("crashes") or []
    if crashes:
        out.append("<h2 class=bad>Broker crashes</h2><table><tr><th>at s</th><th>node</th><th>status</th>"
                   "<th>during</th></tr>%s</table>" % "".join(
                       "<tr><td>%s</td><td>n%s</td><td class=bad>%s</td><td>%s</td></tr>"
                       % (e(str(c.get("at_s"))), e(str(c.get("node"))), e(str(c.get("status_text"))),
                          e(str(c.get("during") or "healed window"))) for c in crashes))
    out.append("<h2>Verdict</h2>")
    if anomalies:
        out.append("<table><tr><th>anomaly</th><th>count</th></tr>%s</table>" % "".join(
            "<tr><td class=bad>%s</td><td>%d</td></tr>" % (e(k), len(v)) for k, v in sorted(anomalies.items())))
    out.append("<pre>%s</pre>" % e(verdict_txt or "(no verdict.txt)"))
    out.append("<p>Sends: %d ok, %d fail, %d info (unknown); %d records polled. Latency of ok sends: p50 %s ms, "
               "p99 %s ms, max %s ms.</p>" % (
                   sent["ok"], sent["fail"], sent["info"], sent["read"],
                   *("%.1f" % x if x is not None else "-" for x in (percentile(oks, 0.5), percentile(oks, 0.99),
                                                                     max(oks) if oks else None))))
    out.append("<h2>Plots</h2><p>%s</p>" % " ".join(
        "<span class=sw style='background:%s'></span>%s" % (c, f) for f, c in FAMILY_COLOURS.items()))
    for name in ("throughput", "latency"):
        if os.path.exists(os.path.join(run_dir, "plots", name + ".png")):
            out.append("<p><img src='plots/%s.png' alt='%s'></p>" % (name, name))
    out.append("<h2>Fault windows</h2><table><tr><th>start s</th><th>end s</th><th>fault</th><th>detail</th></tr>")
    for kind, a, b, detail in wins:
        out.append("<tr><td>%.1f</td><td>%s</td><td><span class=sw style='background:%s'></span>%s</td>"
                   "<td><code>%s</code></td></tr>" % (a - t0, "%.1f" % (b - t0) if b else "-",
                                                       FAMILY_COLOURS[family(kind)], e(kind),
                                                       e(json.dumps(detail, sort_keys=True))))
    out.append("</table>")
    steps = [x for x in nemesis_ops if x.get("phase") not in ("start", "stop")]
    if steps:
        out.append("<h3>Other nemesis events</h3><table>%s</table>" % "".join(
            "<tr><td>%.1f</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>"
            % (x["time"] - t0, e(x.get("fault", "")), e(x.get("phase", "")),
               e(json.dumps(x.get("detail", {}), sort_keys=True))) for x in steps))
    out.append("<h2>Files</h2><ul>")
    for rel in files(run_dir):
        out.append("<li><a href='%s'>%s</a></li>" % (e(rel), e(rel)))
    out.append("</ul></body></html>")
    with open(os.path.join(run_dir, "index.html"), "w") as f:
        f.write("\n".join(out))


def files(run_dir):
    for top in ("history.jsonl", "nemesis.jsonl", "verdict.json", "verdict.txt", "run.json"):
        if os.path.exists(os.path.join(run_dir, top)):
            yield top
    for sub in ("logs", "history", "conf"):
        d = os.path.join(run_dir, sub)
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                yield "%s/%s" % (sub, name)


def main(argv):
    if len(argv) != 1:
        print("usage: report.py RUN_DIR", file=sys.stderr)
        return 2
    run_dir = argv[0]
    history = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    nemesis_ops = read_jsonl(os.path.join(run_dir, "nemesis.jsonl"))
    verdict = read_json(os.path.join(run_dir, "verdict.json"))
    run = read_json(os.path.join(run_dir, "run.json"))
    try:
        with open(os.path.join(run_dir, "verdict.txt")) as f:
            verdict_txt = f.read()
    except OSError:
        verdict_txt = None
    times = [o["time"] for o in history if isinstance(o.get("time"), (int, float))]
    t0 = min(times) if times else (nemesis_ops[0]["time"] if nemesis_ops else 0.0)
    wins = windows(nemesis_ops)
    per_s, lat = series(history, t0)
    err = None
    try:
        crashes = [x for x in nemesis_ops if x.get("fault") == "crash" and "status" in x.get("detail", {})]
        plot(run_dir, per_s, lat, wins, crashes, t0)
    except (OSError, RuntimeError) as ex:
        err = str(ex)
    page(run_dir, run, verdict, verdict_txt, wins, nemesis_ops, per_s, lat, t0)
    if err:
        print("report.py: plots: %s" % err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
