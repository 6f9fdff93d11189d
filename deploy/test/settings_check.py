#!/usr/bin/env python3
"""Every gateway setting the deploy files set (`TSUNAGU_<SECTION>__<KEY>`) is one that
docs/configuration.md documents. The gateway ignores environment variables it does not know
(with a warning at start, which nobody reads in a deploy file's review), so a misspelt one would
be without effect: deploy/test.sh runs this on the Compose file (as docker-compose resolved it)
and the Kubernetes manifests.

Usage: settings_check.py docs/configuration.md FILE...
"""

import re
import sys
from pathlib import Path


def documented(doc):
    keys, section = set(), None
    for line in doc.splitlines():
        m = re.match(r"^## `\[(\w+)\]`", line)
        if m:
            section = m.group(1)
            continue
        if line.startswith("## "):
            section = None
        m = re.match(r"^\| (`[a-z_]+`(?: / `[a-z_]+`)*) \|", line)
        if section and m:
            keys |= {f"{section}.{k}" for k in re.findall(r"`([a-z_]+)`", m.group(1))}
    return keys


def main():
    known = documented(Path(sys.argv[1]).read_text())
    failures, seen = [], set()
    for f in sys.argv[2:]:
        # Compose's own variables (TSUNAGU_PUBLIC_HOST, TSUNAGU_IMAGE) have no double underscore.
        for section, key in sorted(set(re.findall(r"\bTSUNAGU_([A-Z]+)__([A-Z0-9_]+)\b", Path(f).read_text()))):
            var = f"TSUNAGU_{section}__{key}"
            seen.add(var)
            if f"{section.lower()}.{key.lower()}" not in known:
                failures.append(f"{f}: {var} is not a documented setting")
    for fail in failures:
        print("FAIL " + fail)
    print(f"settings: {len(seen)} gateway settings set in the deploy files, "
          f"{len(failures)} not in docs/configuration.md ({len(known)} keys there)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
