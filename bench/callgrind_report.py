#!/usr/bin/env python3
"""bench/callgrind_report.py - instructions per operation from callgrind.

    callgrind_report.py ANNOTATE N OUTDIR

ANNOTATE is `callgrind_annotate --inclusive=yes` output for a run of
lull_opcount N (bench/opcount.c).  Each op_* function ran its operation N
times; its inclusive instruction count (Ir) divided by N, less op_loop's
per-iteration cost (the key and loop overhead they share), is the cost of one
operation.  Expiry is per fired timer (N timers over 1000 advances).
Writes OUTDIR/opcount.md and OUTDIR/opcount.json; prints the table.
"""
import json
import os
import re
import sys

# (function, operation, which side); the order is the table's.
OPS = [
    ("op_store_get", "store get (zero-copy, with read lock/unlock)", "lull"),
    ("op_store_get_inline", "store get (zero-copy, with read lock/unlock)", "lull, LULL_INLINE_READ"),
    ("op_lfht_get", "store get (zero-copy, with read lock/unlock)", "raw cds_lfht"),
    ("op_store_read", "store read (copy-out 64 B)", "lull"),
    ("op_rwmap_read", "store read (copy-out 64 B)", "rwlock map"),
    ("op_store_update", "store update (read-modify-write)", "lull"),
    ("op_mxmap_update", "store update (read-modify-write)", "mutex map"),
    ("op_wheel_schedule", "wheel schedule (1000 pending)", "lull"),
    ("op_heap_schedule", "wheel schedule (1000 pending)", "min-heap"),
    ("op_wheel_cancel", "wheel cancel", "lull"),
    ("op_heap_cancel", "wheel cancel", "min-heap"),
    ("op_wheel_reschedule", "wheel reschedule", "lull"),
    ("op_wheel_expire", "wheel expiry (per fired timer)", "lull"),
    ("op_heap_expire", "wheel expiry (per fired timer)", "min-heap"),
    ("op_reg_claim", "registry claim (free id)", "lull"),
    ("op_mxreg_claim", "registry claim (free id)", "mutex registry"),
    ("op_reg_lookup", "registry lookup", "lull"),
    ("op_mxreg_lookup", "registry lookup", "mutex registry"),
    ("op_reg_release", "registry release", "lull"),
    ("op_mxreg_release", "registry release", "mutex registry"),
]
NO_LOOP = {"op_wheel_expire", "op_heap_expire", "op_wheel_schedule", "op_heap_schedule",
           "op_wheel_cancel", "op_heap_cancel", "op_wheel_reschedule"}   # no key to make

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(?:\*\s+)?(\S+?):(\S+)")


def parse(path):
    ir = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            fn = m.group(3)
            if fn.startswith("op_") or fn == "lull__run_batch":
                v = int(m.group(1).replace(",", ""))
                ir[fn] = max(ir.get(fn, 0), v)
    return ir


def main():
    path, n, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ir = parse(path)
    loop = ir.get("op_loop", 0) / n
    rows = []
    for fn, op, side in OPS:
        if fn not in ir:
            continue
        per = ir[fn] / n - (0 if fn in NO_LOOP else loop)
        rows.append({"function": fn, "operation": op, "impl": side, "ir_per_op": round(per, 1)})
    lines = ["| operation | implementation | instructions/op |", "|---|---|---:|"]
    for r in rows:
        lines.append(f"| {r['operation']} | {r['impl']} | {r['ir_per_op']:.0f} |")
    note = (f"N = {n} per operation; loop and key overhead ({loop:.0f} Ir) subtracted. "
            "Deferred frees run on lull's reclaim thread and are not in these counts")
    if "lull__run_batch" in ir:
        note += f" (all of them together: {ir['lull__run_batch'] / n:.0f} Ir per N)"
    note += "."
    md = "\n".join(lines) + "\n\n" + note + "\n"
    with open(os.path.join(outdir, "opcount.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "opcount.json"), "w") as f:
        json.dump({"n": n, "loop_ir": loop, "ops": rows}, f, indent=1)
    sys.stdout.write(md)
    if not rows:
        print("callgrind_report: no op_* function found (stripped binary?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
