#!/usr/bin/env python3
"""A model of the distributed refresh (README, Scale-out on Citus) at more
workers than this machine holds, from what bench/citus.sh measured on one
node in the same run.

The per-shard build is the single-node build run on a shard's share of the
people (the design), so a shard's cost is modelled as the single-node cost
of that volume of data, measured here at SCALE. What the distribution adds
is modelled from measured quantities too:

- the rows that cross nodes: bronze's bytes into the workers (all through the
  coordinator), the silver rows moved from their order-key shard to their
  person's, and the gold rows moved from the person's shard to their
  golden_id's (a share (N-1)/N of each crosses, each worker sending and
  receiving its 1/N at once);
- the cost of writing moved rows a second time, measured as an
  INSERT ... SELECT of those tables with their indexes, on one core;
- gold's passes: a shard whose people do not fit maintenance_work_mem is
  built in passes, each re-reading the shard's silver: each pass beyond the
  first costs PASS_COST of a one-pass step (0.1, fitted to bench/scale.sh
  of 2026-12-04: gold at scale 30, 6 passes, took 4.12x scale 10's 2, where
  (1 + 5a) / (1 + a) = 4.12 / 3 gives a = 0.10).

Assumptions, given as options: each worker has CORES cores and as many
shards, building at once; a node's network moves BANDWIDTH gigabits a second
each way; the coordinator parses and hashes the files (PARSE_SHARE of
ingest's single-node time, README: Helper threads) while the workers write
them, the two streaming at once.
"""
import argparse
import math


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, required=True, help="the scale measured on one node")
    p.add_argument("--ingest-ms", type=float, required=True)
    p.add_argument("--silver-ms", type=float, required=True)
    p.add_argument("--gold-ms", type=float, required=True)
    p.add_argument("--csv-bytes", type=float, required=True, help="the sample's files")
    p.add_argument("--silver-moved-bytes", type=float, required=True, help="heap bytes of the silver tables moved to their person's shard")
    p.add_argument("--silver-rewrite-ms", type=float, required=True, help="INSERT ... SELECT of those tables, with their indexes")
    p.add_argument("--gold-moved-bytes", type=float, required=True, help="heap bytes of the 360 and the bridge")
    p.add_argument("--gold-rewrite-ms", type=float, required=True)
    p.add_argument("--gold-passes", type=int, required=True, help="passes gold took on one node at --scale")
    p.add_argument("--cores", type=int, default=2, help="cores (and shards building at once) per worker")
    p.add_argument("--bandwidth", type=float, default=10.0, help="gigabits a second, each way, per node")
    p.add_argument("--parse-share", type=float, default=1 / 6)
    p.add_argument("--pass-cost", type=float, default=0.1, help="a further gold pass, as a share of a one-pass step")
    p.add_argument("--workers", default="4,16,64")
    p.add_argument("--scales", default="100,1000")
    a = p.parse_args()

    bw = a.bandwidth * 1e9 / 8  # bytes a second

    def gold_at(shard_scale):
        # Passes grow with the people of a shard: one per `people per pass`
        # as measured (gold_passes at --scale).
        per_pass = a.scale / a.gold_passes
        passes = max(1, math.ceil(shard_scale / per_pass - 1e-9))
        one_pass = a.gold_ms / (1 + a.pass_cost * (a.gold_passes - 1))
        return one_pass * (shard_scale / a.scale) * (1 + a.pass_cost * (passes - 1)) / 1000, passes

    print(f"Model: refresh time (s) of a full pipeline at scale X on N workers of {a.cores} cores, "
          f"{a.bandwidth:g} Gbit/s; from one node at scale {a.scale:g} in this run")
    print(f"  measured at scale {a.scale:g}: ingest {a.ingest_ms / 1000:.1f} s, silver {a.silver_ms / 1000:.1f} s, "
          f"gold {a.gold_ms / 1000:.1f} s in {a.gold_passes} pass(es); files {a.csv_bytes / 1e9:.2f} GB; "
          f"silver moved {a.silver_moved_bytes / 1e9:.2f} GB, rewritten in {a.silver_rewrite_ms / 1000:.1f} s; "
          f"gold moved {a.gold_moved_bytes / 1e9:.2f} GB, rewritten in {a.gold_rewrite_ms / 1000:.1f} s")
    print(f"{'scale':>6} {'workers':>8} {'ingest':>9} {'silver':>9} {'gold':>9} {'total':>9} "
          f"{'moved GB':>9} {'one node':>10} {'speedup':>8}  where the time goes")
    for x in [float(s) for s in a.scales.split(",")]:
        f = x / a.scale
        one_gold, one_passes = gold_at(x)
        one_node = (a.ingest_ms + a.silver_ms) / 1000 * f + one_gold
        for n in [int(w) for w in a.workers.split(",")]:
            shards = n * a.cores
            crossing = (n - 1) / n
            # Ingest: the coordinator parses on its cores, sends every byte,
            # the workers write their share; streaming, the slowest sets the pace.
            parse = a.parse_share * a.ingest_ms / 1000 * f / a.cores
            send = a.csv_bytes * f / bw
            write = (1 - a.parse_share) * a.ingest_ms / 1000 * f / shards
            ingest = max(parse, send, write)
            ingest_by = max((parse, "coordinator parsing"), (send, "coordinator's network"), (write, "workers writing"))[1]
            # Silver: per shard, then the move to the person's shard.
            silver_work = a.silver_ms / 1000 * f / shards
            silver_move = a.silver_moved_bytes * f * crossing / n / bw
            silver_rewrite = a.silver_rewrite_ms / 1000 * f / shards
            silver = silver_work + silver_move + silver_rewrite
            # Gold: per shard (in passes when a shard outgrows memory), then
            # the records to their golden_id's shard.
            gold_work, passes = gold_at(x / shards)
            gold_move = a.gold_moved_bytes * f * crossing / n / bw
            gold_rewrite = a.gold_rewrite_ms / 1000 * f / shards
            gold = gold_work + gold_move + gold_rewrite
            total = ingest + silver + gold
            moved = (a.csv_bytes + (a.silver_moved_bytes + a.gold_moved_bytes) * crossing) * f / 1e9
            notes = [f"ingest: {ingest_by}",
                     f"moves {100 * (silver_move + gold_move) / total:.0f}%",
                     f"rewrites {100 * (silver_rewrite + gold_rewrite) / total:.0f}%",
                     f"gold {passes} pass{'es' if passes > 1 else ''} a shard"]
            print(f"{x:>6g} {n:>8d} {ingest:>9.1f} {silver:>9.1f} {gold:>9.1f} {total:>9.1f} {moved:>9.1f} "
                  f"{one_node:>10.0f} {one_node / total:>7.1f}x  " + "; ".join(notes))
        print(f"{'':>6} (one node: gold in {one_passes} passes)")


if __name__ == "__main__":
    main()
