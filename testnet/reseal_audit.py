"""The exfiltration drill's forger (testnet/exfil.sh, attempt 8): what
someone with the run of a site's disk does to hide what ran there. It turns
the first entry that mentions `copy` into one that says `stats`, seals every
line from there on again into the hash chain, and adds one line of its own,
so that the log is longer than what the other members last saw. It has no
node key, so it cannot sign: `iris audit verify` finds the lines; a forger
with the key would pass that, and the members' witness is what is left.

    python3 reseal_audit.py DIR/audit.log
"""

import hashlib
import json
import sys


def dumps(value):
    """JSON as the node writes it: no spaces, keys in their order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def seal(entry):
    unsealed = {k: entry[k] for k in ("seq", "at_ms", "prev", "event")}
    return hashlib.sha256((entry["prev"] + "\n" + dumps(unsealed)).encode()).hexdigest()


def main(path):
    with open(path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    hidden = next(
        (e for e in entries if "copy" in dumps(e["event"])), entries[-1]
    )
    hidden["event"] = json.loads(dumps(hidden["event"]).replace("copy", "stats"))
    extra = dict(entries[-1])
    extra["seq"] += 1
    extra["event"] = {"type": "policy_changed", "change": "logs = withhold"}
    entries.append(extra)
    prev = "0" * 64
    for entry in entries:
        entry["prev"] = prev
        entry["hash"] = seal(entry)
        prev = entry["hash"]
    with open(path, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(dumps(entry) + "\n")
    print(f"rewrote entry {hidden['seq']} and added entry {extra['seq']}: {len(entries)} lines")


if __name__ == "__main__":
    main(sys.argv[1])
