"""Prints the throughput rows of benches/vdi_export.sh, vdi_import.sh and vm_import.sh from their timing file.

Lines: `<label> direct_<fmt>|edge_<fmt> <bytes per second> <bytes>` and `<label> cpu_<fmt> <CPU ticks>`.
Arguments: the timing file, the clock ticks per second, then pairs of label and title, in print order.
"""
import statistics
import sys

path, hz, *titles = sys.argv[1:]
t, n = {}, {}
for line in open(path):
    label, k, *v = line.split()
    t.setdefault((label, k), []).append(float(v[0]))
    if len(v) > 1:
        n[(label, k)] = int(v[1])
med = {k: statistics.median(v) for k, v in t.items()}
for label, title in zip(titles[::2], titles[1::2]):
    if not any(lb == label and k.startswith("direct_") for (lb, k) in med):
        continue
    print(title)
    # The formats, in the order the timing file first names them (raw and vhd for disks, xva and zstd for VMs).
    fmts = list(dict.fromkeys(k[len("direct_"):] for (lb, k) in med if lb == label and k.startswith("direct_")))
    for fmt in fmts:
        d, e = med[(label, f"direct_{fmt}")], med[(label, f"edge_{fmt}")]
        size_b = n[(label, f"edge_{fmt}")]
        cpu = med[(label, f"cpu_{fmt}")] / float(hz) / (size_b / 2**30)
        print(f"  {fmt}: direct {d / 1e6:7.0f} MB/s   edge {e / 1e6:7.0f} MB/s   ratio {e / d:.2f}   "
              f"runtime CPU {cpu:.2f} s/GiB   ({size_b} bytes)")
        if (label, f"edge2_{fmt}") in med:
            e2 = med[(label, f"edge2_{fmt}")]
            cpu2 = med[(label, f"cpu2_{fmt}")] / float(hz) / (size_b / 2**30)
            print(f"  {fmt}: edge2 {e2 / 1e6:7.0f} MB/s   ratio {e2 / d:.2f}   edge2/edge {e2 / e:.2f}   "
                  f"runtime CPU {cpu2:.2f} s/GiB   (the COMPARE_WASM build)")
