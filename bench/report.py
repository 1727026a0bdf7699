#!/usr/bin/env python3
"""bench/report.py - turn google-benchmark JSON into lull's benchmark report.

    report.py OUTDIR [--plots] [--mode default|full|smoke]

Reads OUTDIR/raw/*.json (one file per benchmark executable, written by
--benchmark_out) and writes
    OUTDIR/results.json   every figure, and every lull/baseline ratio
    OUTDIR/report.txt     the table scripts/bench.sh prints
    OUTDIR/plots/*.svg    with --plots, if gnuplot is installed
Exits 1 if any benchmark reported an error.  Python 3 standard library only.

Figures: a case's ops/s is its aggregate throughput (every thread's items
over wall time; the median of the repetitions when there are several);
ns/op is per thread (threads / ops/s): what one operation costs the thread
that makes it.  ratio = lull's ops/s / the baseline's: above 1, lull is
faster.  For memory, ratio = baseline bytes / lull's bytes.
"""
import json
import os
import shutil
import subprocess
import sys
import time

# (layer, lull case, baseline case, baseline impls, label). A "|" in impls
# means "the better of them" (what the user would pick).
# Pairs marked False go to results.json only (the table stays short).
PAIRS = [
    ("store", "get_zc", "get_copy", "rwlock", "get, zero-copy vs rwlock map"),
    ("store", "get_zc", "get_copy", "mutex", "get, zero-copy vs mutex map", False),
    ("store", "get_zc", "get_zc", "lfht", "get, zero-copy vs raw cds_lfht"),
    ("store", "get_inline", "get_copy", "rwlock", "get, inline sections vs rwlock map"),
    ("store", "get_inline", "get_zc", "lfht", "get, inline sections vs raw cds_lfht"),
    # get_zc through liblull.so (what find_package / pkg-config link): no
    # target of its own; docs/performance.md, "The shared library"
    ("store", "get_so", "get_copy", "rwlock", "get, via liblull.so vs rwlock map"),
    ("store", "get_so", "get_zc", "lfht", "get, via liblull.so vs raw cds_lfht", False),
    ("store", "get_copy", "get_copy", "rwlock", "get, copy-out vs rwlock map"),
    ("store", "get_copy", "get_copy", "mutex", "get, copy-out vs mutex map", False),
    ("store", "get_copy", "get_copy", "lfht", "get, copy-out vs raw cds_lfht", False),
    ("store", "mix90", "mix90", "rwlock|mutex", "90/10 get/update vs best lock map"),
    ("store", "upd_disjoint", "upd_disjoint", "mutex", "update, disjoint keys vs mutex map"),
    ("store", "upd_disjoint", "upd_disjoint", "rwlock", "update, disjoint keys vs rwlock map",
     False),
    ("store", "upd_contended", "upd_contended", "mutex", "update, one key vs mutex map"),
    ("wheel", "sched_cancel", "sched_cancel", "heap", "schedule+cancel vs min-heap"),
    ("wheel", "expiry", "expiry", "heap", "expiry per fired timer vs min-heap"),
    ("wheel", "reschedule", "reschedule", "heap", "keepalive reschedule vs min-heap"),
    ("wheel", "memory", "memory", "heap", "bytes per pending timer vs min-heap"),
    ("registry", "lookup", "lookup", "mutex", "lookup vs mutex registry"),
    ("registry", "claim_release", "claim_release", "mutex", "claim+release vs mutex registry"),
    ("registry", "grace_cycle", "grace_cycle", "mutex", "release_after+reclaim vs mutex registry"),
]

# The targets (information: the figures that count are measured on
# a quiet machine).  key: (layer, lull case, baseline impls, params, threads)
# -> minimum ratio.  params None: any size.
TARGETS = {
    ("store", "get_zc", "rwlock", (("keys", 1024),), 2): 6.0,
    ("store", "get_zc", "lfht", (("keys", 1024),), 2): 1 / 1.25,
    # the same get with LULL_INLINE_READ's inline sections (<lull/rcu.h>)
    ("store", "get_inline", "rwlock", (("keys", 1024),), 2): 6.0,
    ("store", "get_inline", "lfht", (("keys", 1024),), 2): 1 / 1.25,
    ("store", "get_zc", "rwlock", (("keys", 1048576),), 2): 1.0,
    ("store", "mix90", "rwlock|mutex", None, 2): 1.5,
    ("store", "upd_disjoint", "mutex", None, 2): 0.4,
    ("wheel", "sched_cancel", "heap", (("pending", 1000000),), 1): 3.0,
    ("wheel", "expiry", "heap", None, 1): 2.0,
    ("wheel", "reschedule", "heap", None, 1): 4.0,
    ("registry", "lookup", "mutex", None, 2): 5.0,
}
NAMES = {"rwlock": "rwlock map", "mutex": "mutex map", "lfht": "raw cds_lfht",
         "heap": "min-heap", "rwlock|mutex": "best lock map"}
LAYER_NAMES = {("registry", "mutex"): "mutex registry"}
LAYERS = ("store", "wheel", "registry")


def parse_name(run_name):
    """store/get_zc/lull/keys:1024/real_time/threads:2 -> parts."""
    parts = run_name.split("/")
    out = {"layer": parts[0], "case": parts[1], "impl": parts[2], "params": {}, "threads": 1}
    for p in parts[3:]:
        if ":" in p:
            k, v = p.split(":", 1)
            if k == "threads":
                out["threads"] = int(v)
            elif k in ("iterations", "repeats", "min_time"):
                continue   # google-benchmark's own annotations
            else:
                try:
                    out["params"][k] = int(v)
                except ValueError:
                    out["params"][k] = v
    return out


def load(outdir):
    raw = os.path.join(outdir, "raw")
    cases, contexts, errors = [], {}, []
    for fn in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(raw, fn)) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                errors.append(f"{fn}: not valid JSON ({e}); did the run crash?")
                continue
        contexts[fn[:-5]] = d.get("context", {})
        by_run = {}
        file_cases = []
        for b in d.get("benchmarks", []):
            if b.get("error_occurred"):
                errors.append(f"{b['name']}: {b.get('error_message', '')}")
                continue
            by_run.setdefault(b["run_name"], []).append(b)
        for run_name, bs in by_run.items():
            med = [b for b in bs if b.get("run_type") == "aggregate"
                   and b.get("aggregate_name") == "median"]
            its = [b for b in bs if b.get("run_type") == "iteration"]
            pick = med[0] if med else (its[-1] if its else None)
            if not pick:
                continue
            cv = [b for b in bs if b.get("aggregate_name") == "cv"]
            c = parse_name(run_name)
            c["name"] = run_name
            c["repetitions"] = len(its)
            ips = pick.get("items_per_second")
            c["ops_per_sec"] = ips
            c["ns_per_op"] = (1e9 * c["threads"] / ips) if ips else None
            c["real_time_ns"] = pick.get("real_time")
            if cv:
                c["cv"] = cv[0].get("real_time")
            known = {"name", "run_name", "family_index", "per_family_instance_index",
                     "run_type", "repetitions", "repetition_index", "threads",
                     "aggregate_name", "aggregate_unit", "iterations", "real_time",
                     "cpu_time", "time_unit", "items_per_second", "error_occurred",
                     "error_message", "label"}
            c["counters"] = {k: v for k, v in pick.items() if k not in known}
            # Registration order: with random interleaving the file lists
            # cases in the order they finished.
            c["order"] = (pick.get("family_index", 0), pick.get("per_family_instance_index", 0))
            file_cases.append(c)
        cases.extend(sorted(file_cases, key=lambda c: c["order"]))
    return cases, contexts, errors


def pkey(params):
    return tuple(sorted(params.items()))


def find(cases, layer, case, impl, params, threads):
    for c in cases:
        if (c["layer"], c["case"], c["impl"], pkey(c["params"]), c["threads"]) == \
                (layer, case, impl, params, threads):
            return c
    return None


def target_for(layer, case, impls, params, threads):
    for (tl, tc, ti, tp, tt), v in TARGETS.items():
        if (tl, tc, ti) == (layer, case, impls) and (tp is None or tp == params) \
                and (tt is None or tt == threads):
            return v
    return None


def compare(cases):
    rows = []
    lulls = [c for c in cases if c["impl"] == "lull"]
    for layer, lcase, bcase, impls, label, *flags in PAIRS:
        in_table = not flags or flags[0]
        for lc in lulls:
            if (lc["layer"], lc["case"]) != (layer, lcase):
                continue
            params, threads = pkey(lc["params"]), lc["threads"]
            base = None
            for impl in impls.split("|"):
                b = find(cases, layer, bcase, impl, params, threads)
                if b is None:
                    continue
                if base is None or _better(b, base):
                    base = b
            if base is None:
                continue
            row = {"label": label, "layer": layer, "case": lcase, "params": dict(params),
                   "threads": threads, "lull": lc["name"], "baseline": base["name"],
                   "baseline_impl": base["impl"] if "|" not in impls
                   else f"best: {NAMES.get(base['impl'], base['impl'])}",
                   "in_table": in_table}
            if lcase == "memory":
                lb, bb = _bytes(lc), _bytes(base)
                row.update(lull_value=lb, baseline_value=bb, unit="B/timer",
                           ratio=(bb / lb) if lb and bb else None)
                row["target"] = "<= 64 B/timer"
                row["met"] = lb is not None and lb <= 64
            else:
                row.update(lull_value=lc["ns_per_op"], baseline_value=base["ns_per_op"],
                           unit="ns/op",
                           ratio=(lc["ops_per_sec"] / base["ops_per_sec"])
                           if lc["ops_per_sec"] and base["ops_per_sec"] else None)
                t = target_for(layer, lcase, impls, params, threads)
                if t is not None:
                    row["target"] = f">= {t:.2f}x"
                    row["met"] = row["ratio"] is not None and row["ratio"] >= t
            cvs = [c.get("cv") for c in (lc, base) if c.get("cv") is not None]
            if cvs:
                row["spread"] = max(cvs)   # the larger coefficient of variation
            rows.append(row)
    # lull's schedule+cancel at 1e6 pending within 1.3x of its cost at 1e3
    small = find(cases, "wheel", "sched_cancel", "lull", (("pending", 1000),), 1)
    big = find(cases, "wheel", "sched_cancel", "lull", (("pending", 1000000),), 1)
    if small and big and small["ops_per_sec"] and big["ops_per_sec"]:
        r = big["ops_per_sec"] / small["ops_per_sec"]
        rows.append({"label": "schedule+cancel at 1e6 pending vs at 1e3", "layer": "wheel",
                     "case": "sched_cancel", "params": {"pending": 1000000}, "threads": 1,
                     "lull": big["name"], "baseline": small["name"],
                     "baseline_impl": "lull at 1e3", "lull_value": big["ns_per_op"],
                     "baseline_value": small["ns_per_op"], "unit": "ns/op", "ratio": r,
                     "target": f">= {1 / 1.3:.2f}x", "met": r >= 1 / 1.3, "in_table": True})
    order = {l: i for i, l in enumerate(LAYERS)}
    rows.sort(key=lambda r: order.get(r["layer"], len(order)))   # stable: keeps pair order
    return rows


def _better(a, b):
    if a["case"] == "memory":
        return (_bytes(a) or 1e99) < (_bytes(b) or 1e99)
    return (a["ops_per_sec"] or 0) > (b["ops_per_sec"] or 0)


def _bytes(c):
    return c["counters"].get("bytes_per_timer")


def fmt_size(params):
    if not params:
        return ""
    k, v = next(iter(params.items()))
    if isinstance(v, int):
        for div, suf in ((1 << 20, "Mi"), (1 << 10, "Ki")):
            if v >= div and v % div == 0:
                return f"{k}={v // div}{suf}"
        s = str(v)
        if v >= 1000 and s[1:] == "0" * (len(s) - 1):
            return f"{k}={s[0]}e{len(s) - 1}"
    return f"{k}={v}"


def fmt_num(v, unit):
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def control_line(cases):
    """The machine's own speed during the store's cases (bench_store.c,
    bm_control_alu): a loop of register arithmetic, no memory, no lull."""
    ns = {c["threads"]: c["ns_per_op"] for c in cases
          if (c["layer"], c["case"], c["impl"]) == ("store", "control", "alu") and c["ns_per_op"]}
    if not ns:
        return None
    at = ", ".join(f"{ns[t]:.2f} ns at {t} thread{'s' if t > 1 else ''}" for t in sorted(ns))
    return (f"machine: a register-only loop took {at} (no memory, no lull: higher than "
            "usual = a slow spell; docs/performance.md)")


def table(rows, contexts, mode, cases=()):
    out = []
    ctx = next(iter(contexts.values()), {})
    load = ctx.get("load_avg") or []
    out.append(f"lull benchmark report ({mode}): {ctx.get('num_cpus', '?')} CPUs @ "
               f"{ctx.get('mhz_per_cpu', '?')} MHz, host {ctx.get('host_name', '?')}, "
               f"{ctx.get('date', '')}")
    if load and ctx.get("num_cpus") and load[0] > 0.5 * ctx["num_cpus"]:
        out.append(f"NOTE: load average {load[0]:.1f} on {ctx['num_cpus']} CPUs while it ran: "
                   "the machine was busy, figures are noisy.")
    ctl = control_line(cases)
    if ctl:
        out.append(ctl)
    if mode == "smoke":
        out.append("NOTE: smoke run (tiny min_time): a check that everything runs; the "
                   "figures mean nothing.")
    out.append("ratio = lull's throughput / the baseline's (>1: lull faster); ns/op per thread;"
               " memory: baseline bytes / lull's;")
    out.append("spread = the larger coefficient of variation of the two over the repetitions.")
    hdr = f"{'case':<42} {'size':<12} {'thr':>3} {'lull':>9} {'baseline':<22} {'base':>9} " \
          f"{'ratio':>8} {'spread':>6}  target"
    out.append(hdr)
    out.append("-" * len(hdr))
    layer = None
    for r in rows:
        if not r["in_table"]:
            continue
        if r["layer"] != layer:
            layer = r["layer"]
            out.append(f"[{layer}]")
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        tgt = ""
        if "target" in r:
            tgt = f"{r['target']:<14} {'ok' if r.get('met') else 'MISSED'}"
        spread = f"{100 * r['spread']:.0f}%" if r.get("spread") is not None else "-"
        base = r["baseline_impl"]
        base = LAYER_NAMES.get((r["layer"], base), NAMES.get(base, base))
        if len(base) > 22:
            base = base[:22]
        unit = "" if r["unit"] == "ns/op" else " B"
        out.append(f"{r['label']:<42} {fmt_size(r['params']):<12} {r['threads']:>3} "
                   f"{fmt_num(r['lull_value'], r['unit']) + unit:>9} {base:<22} "
                   f"{fmt_num(r['baseline_value'], r['unit']) + unit:>9} {ratio:>8} "
                   f"{spread:>6}  {tgt}")
    missed = [r for r in rows if "met" in r and not r["met"]]
    met = [r for r in rows if r.get("met")]
    out.append("")
    out.append(f"targets: {len(met)} met, {len(missed)} missed"
               + (" (smoke figures mean nothing)" if mode == "smoke" else ""))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- plots

def series(cases, layer, case, impl, param, threads):
    pts = []
    for c in cases:
        if (c["layer"], c["case"], c["impl"], c["threads"]) == (layer, case, impl, threads) \
                and param in c["params"] and c["ns_per_op"]:
            pts.append((c["params"][param], c["ns_per_op"]))
    return sorted(pts)


def thread_series(cases, layer, case, impl, params):
    pts = []
    for c in cases:
        if (c["layer"], c["case"], c["impl"], pkey(c["params"])) == (layer, case, impl, params) \
                and c["ops_per_sec"]:
            pts.append((c["threads"], c["ops_per_sec"] / 1e6))
    return sorted(pts)


def write_dat(path, pts):
    with open(path, "w") as f:
        for x, y in pts:
            f.write(f"{x} {y}\n")


def plots(cases, outdir):
    gp = shutil.which("gnuplot")
    pdir = os.path.join(os.path.abspath(outdir), "plots")
    os.makedirs(pdir, exist_ok=True)
    for fn in os.listdir(pdir):   # nothing stale from an earlier run
        if fn.endswith((".svg", ".dat", ".gp")):
            os.remove(os.path.join(pdir, fn))
    script = ["set terminal svg size 900,560 dynamic enhanced font 'sans,12' background '#ffffff'",
              "set grid", "set key top left"]
    made = []

    def plot(name, title, xlabel, ylabel, lines, logx=True):
        avail = [(f, t, s) for f, t, s in lines if os.path.exists(f)]
        if not any(sum(1 for _ in open(f)) >= 2 for f, _, _ in avail):
            return   # nothing to draw a line through (a filtered or 1-size run)
        script.append(f"set output '{os.path.join(pdir, name)}'")
        if logx:
            script.append("set logscale x; set format x '10^{%L}'; set xtics autofreq")
        else:
            script.append("unset logscale x; set format x '%g'; set xtics 1")
        script.append("set autoscale xfix; set offsets graph 0.03, graph 0.03, 0, 0")
        script.append("set yrange [0:*]")
        script.append(f"set title '{title}' noenhanced")
        script.append(f"set xlabel '{xlabel}' noenhanced")
        script.append(f"set ylabel '{ylabel}' noenhanced")
        script.append("plot " + ", ".join(
            f"'{f}' using 1:2 with linespoints {s} title '{t}' noenhanced" for f, t, s in avail))
        made.append(name)

    def dat(tag, pts):
        if len(pts) < 1:
            return os.path.join(pdir, "missing")
        p = os.path.join(pdir, tag + ".dat")
        write_dat(p, pts)
        return p

    # ns/op vs pending timers: wheel vs heap
    lines = []
    for case, dash in (("sched_cancel", "dt 1"), ("expiry", "dt 2")):
        for impl in ("lull", "heap"):
            pts = series(cases, "wheel", case, impl, "pending", 1)
            lines.append((dat(f"wheel_{case}_{impl}", pts),
                          f"{'lull wheel' if impl == 'lull' else 'min-heap'}: {case.replace('_', '+')}",
                          dash + " lw 2"))
    plot("wheel_pending.svg", "Timers: ns per operation vs timers already pending",
         "pending timers", "ns/op (schedule+cancel pair; expiry: per fired timer)", lines)

    # ns/op vs key count: store vs rwlock map vs raw cds_lfht, per thread count
    threads = sorted({c["threads"] for c in cases if c["layer"] == "store"})
    for t in threads:
        lines = []
        for case, impl, title in (("get_zc", "lull", "lull get (zero-copy)"),
                                  ("get_copy", "lull", "lull read (copy-out)"),
                                  ("get_zc", "lfht", "raw cds_lfht (zero-copy)"),
                                  ("get_copy", "rwlock", "rwlock map"),
                                  ("get_copy", "mutex", "mutex map")):
            pts = series(cases, "store", case, impl, "keys", t)
            lines.append((dat(f"store_{case}_{impl}_t{t}", pts), title, "lw 2"))
        plot(f"store_keys_t{t}.svg", f"Store gets, {t} thread{'s' if t > 1 else ''}: "
             "ns per get vs keys", "keys", "ns/op (per thread)", lines)

    # throughput vs threads
    groups = [("store", "get_zc", (("keys", 1024),),
               [("get_zc", "lull", "lull get (zero-copy)"),
                ("get_inline", "lull", "lull get, inline sections"),
                ("get_zc", "lfht", "raw cds_lfht (zero-copy)"),
                ("get_copy", "rwlock", "rwlock map (copy-out)"),
                ("get_copy", "mutex", "mutex map (copy-out)")],
               "threads_store_get.svg", "Store hot gets (1K keys): throughput vs threads"),
              ("store", "mix90", (("keys", 1024),),
               [("mix90", "lull", "lull"), ("mix90", "rwlock", "rwlock map"),
                ("mix90", "mutex", "mutex map")],
               "threads_store_mix.svg", "Store 90/10 get/update: throughput vs threads"),
              ("registry", "lookup", (("ids", 1024),),
               [("lookup", "lull", "lull registry"), ("lookup", "mutex", "mutex registry")],
               "threads_registry.svg", "Registry lookups: throughput vs threads")]
    for layer, _, params, members, name, title in groups:
        lines = []
        for case, impl, t in members:
            pts = thread_series(cases, layer, case, impl, params)
            lines.append((dat(f"thr_{layer}_{case}_{impl}", pts), t, "lw 2"))
        plot(name, title, "threads", "Mop/s (all threads)", lines, logx=False)

    with open(os.path.join(pdir, "plots.gp"), "w") as f:
        f.write("\n".join(script) + "\n")
    if not gp:
        return ("plots: skipped: gnuplot is not installed (Debian: apt-get install gnuplot-nox); "
                f"data and script are in {pdir}/")
    r = subprocess.run([gp, os.path.join(pdir, "plots.gp")], capture_output=True, text=True)
    if r.returncode:
        return f"plots: gnuplot failed: {r.stderr.strip()[:400]}"
    if not made:
        return "plots: none (every series has a single point: run more sizes or threads)"
    return f"plots: {', '.join(made)} in {pdir}/"


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    outdir, want_plots, mode = args[0], "--plots" in args, "default"
    if "--mode" in args:
        mode = args[args.index("--mode") + 1]
    cases, contexts, errors = load(outdir)
    rows = compare(cases)
    text = table(rows, contexts, mode, cases)
    if errors:
        text += "\nERRORS:\n" + "\n".join("  " + e for e in errors) + "\n"
    res = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": mode,
           "contexts": contexts, "cases": cases, "comparisons": rows, "errors": errors,
           "notes": "ns_per_op is per thread (threads / ops_per_sec); ratio = lull ops/s / "
                    "baseline ops/s (memory: baseline bytes / lull bytes)"}
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(outdir, "report.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    if want_plots:
        print(plots(cases, outdir))
    print(f"figures: {os.path.join(outdir, 'results.json')}, table: "
          f"{os.path.join(outdir, 'report.txt')}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
