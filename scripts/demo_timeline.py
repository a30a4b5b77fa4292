#!/usr/bin/python3
"""Print the heist's timeline at the end of the demo: for each Louvre
incident that reached the police, when its second detector confirmed it,
when the dispatch reached the post, and when a human acknowledged it; then
the relay's full audit log of each incident.

usage: demo_timeline.py VIGIE_RELAY DB [POST_JSON_LOG ...]
"""
import json
import re
import subprocess
import sys
from datetime import datetime, timezone


def stamp(us):
    return datetime.fromtimestamp(us / 1e6, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def parse_time(text):
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
               .replace(tzinfo=timezone.utc).timestamp() * 1e6)


def main():
    relay, db, logs = sys.argv[1], sys.argv[2], sys.argv[3:]
    listing = subprocess.run([relay, "incidents", "--db", db, "--all"],
                             capture_output=True, text=True).stdout
    ids = [line.split()[0] for line in listing.splitlines()
           if line.split() and line.split()[0].startswith("louvre-")]
    received = {}  # dispatch id -> first arrival at a post (µs)
    for path in logs:
        try:
            with open(path) as f:
                for line in f:
                    try:
                        d = json.loads(line)
                    except ValueError:
                        continue
                    if d.get("type") == "dispatch" and d.get("received_us"):
                        received.setdefault(d["id"], d["received_us"])
        except OSError:
            pass
    audits = {}
    print("\n=== The heist at the Louvre: second detector -> police post -> acknowledgement")
    for iid in ids:
        text = subprocess.run([relay, "audit", "--db", db, "--incident", iid],
                              capture_output=True, text=True).stdout
        audits[iid] = text
        # time, what, who, detail: columns separated by two or more spaces
        rows = [re.split(r"\s{2,}", r, maxsplit=3) for r in text.splitlines() if r[:2] == "20"]
        first = {}
        for r in rows:
            if len(r) >= 2:
                first.setdefault(r[1], (parse_time(r[0]), r[3] if len(r) > 3 else ""))
        if "dispatch" not in first:
            continue
        head = text.splitlines()[0] if text else iid
        print(f"\n{head}")
        if "confirmed" in first:
            t, detail = first["confirmed"]
            print(f"  {stamp(t)}  confirmed: {detail}")
        t_d, detail = first["dispatch"]
        did = detail.split("dispatch ", 1)[-1].split()[0] if "dispatch " in detail else ""
        print(f"  {stamp(t_d)}  {detail}")
        if did in received:
            base = first.get("confirmed", first["dispatch"])[0]
            print(f"  {stamp(received[did])}  on the police post's screen, "
                  f"{(received[did] - base) / 1000:.1f} ms after "
                  f"{'the second detector' if 'confirmed' in first else 'the decision'}")
        if "acknowledged" in first:
            t, detail = first["acknowledged"]
            print(f"  {stamp(t)}  {detail}: escalation stopped")
        else:
            print("  not acknowledged: still escalating")
    print("\n=== The relay's audit log of each Louvre incident")
    for iid in ids:
        print()
        print(audits[iid].rstrip())


if __name__ == "__main__":
    main()
