#!/usr/bin/env python3
"""Fails when a module includes a module it may not use (STYLE.md section 2).

Each module's headers (include/strata/<mod>/) and sources (src/<mod>/) may include only the
modules in its row. Reaching upward needs an interface or callback instead.
"""
import pathlib
import re
import sys

BASE = {"common", "config", "metrics"}
ALLOWED = {
    "common": set(),
    "config": {"common"},
    "metrics": {"common"},
    "event": {"common"},
    "http": {"common"},
    "net": BASE | {"event"},
    "cache": BASE | {"event", "http"},
    "upstream": BASE | {"event", "net", "http"},
    "proxy": BASE | {"event", "net", "http", "cache", "upstream"},
    "admin": BASE | {"event", "net", "http", "cache"},
    "server": BASE | {"event", "net", "http", "cache", "upstream", "proxy", "admin"},
}
INCLUDE = re.compile(r'#\s*include\s*"strata/([a-z_]+)/')


def main(root: pathlib.Path) -> int:
    problems = []
    for module, allowed in ALLOWED.items():
        for top in (root / "include" / "strata" / module, root / "src" / module):
            if not top.exists():
                continue
            for path in sorted(top.rglob("*")):
                if path.suffix not in (".h", ".cpp"):
                    continue
                for lineno, line in enumerate(path.read_text().splitlines(), 1):
                    m = INCLUDE.search(line)
                    if m and m.group(1) != module and m.group(1) not in allowed:
                        problems.append(f"{path.relative_to(root)}:{lineno}: {module} may not "
                                        f"include strata/{m.group(1)}/ (allowed: "
                                        f"{', '.join(sorted(allowed)) or 'none'})")
    for p in problems:
        print(p)
    print(f"layering: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
