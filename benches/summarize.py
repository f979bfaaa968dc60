#!/usr/bin/env python3
"""Median of each broker and scenario over the rounds of one `compare.sh` run, as a Markdown table.

    python3 benches/summarize.py OUT_DIR [BROKER ...]

Reads the JSON reports `<broker>-<scenario>[-r<round>].json` that `compare.sh` left in OUT_DIR.
Per scenario: deliveries/s for fan-out and pairs, the last delivery after the first publish for
the 1 → all scenario, broker RSS per connection for `conn`. Each cell is the median over the
rounds, with the range in brackets; a ratio column compares the first two brokers given.
"""

import glob
import json
import os
import re
import statistics
import sys


def figure(report):
    scenario = report["name"]
    if "conn-" in scenario:
        return report["broker"]["rss_per_connection_bytes"] / 1024, "KiB per connection", False
    if "1msg" in scenario:
        return report["messages"]["time_to_last_delivery_ms"], "ms to the last delivery", False
    return report["messages"]["deliveries_per_s"], "deliveries/s", True


def main():
    out = sys.argv[1]
    brokers = sys.argv[2:] or ["baseline", "shardmq", "mosquitto", "rumqttd"]
    cells = {}
    units = {}
    for path in glob.glob(os.path.join(out, "*.json")):
        report = json.load(open(path))
        match = re.match(r"(\w+)-(.*?)(?:-r\d+)?$", report["name"])
        if not match or report.get("outcome") != "complete":
            continue
        broker, scenario = match.groups()
        value, unit, higher_better = figure(report)
        cells.setdefault((broker, scenario), []).append(value)
        units[scenario] = (unit, higher_better)
    print("| scenario | " + " | ".join(brokers) + f" | {brokers[1]} / {brokers[0]} |")
    print("| --- |" + " --- |" * (len(brokers) + 1))
    for scenario in sorted(units):
        unit, higher_better = units[scenario]
        row, medians = [], []
        for broker in brokers:
            values = cells.get((broker, scenario), [])
            if not values:
                row.append("—")
                medians.append(None)
                continue
            median = statistics.median(values)
            medians.append(median)
            fmt = (lambda v: f"{v:,.0f}") if median >= 100 else (lambda v: f"{v:.1f}")
            row.append(f"{fmt(median)} [{fmt(min(values))}–{fmt(max(values))}]")
        ratio = "—"
        if medians[0] and medians[1]:
            r = medians[1] / medians[0] if higher_better else medians[0] / medians[1]
            ratio = f"{r:.2f}×"
        print(f"| {scenario} ({unit}) | " + " | ".join(row) + f" | {ratio} |")


if __name__ == "__main__":
    main()
