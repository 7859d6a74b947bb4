#!/usr/bin/env python3
"""No type's inherent `impl` is spread over files.

Usage: impl_spread.py DIR...

A reader finds a type and everything it does in one file. Each inherent
`impl Type` block (not `impl Trait for Type`) is counted by the file it is
in; a type whose blocks stand in more than one file is listed, and the
script exits 1. A tests file (`tests.rs`, `*_tests.rs`, or under a
`tests/` folder) may add to a type: tests are not the type's behaviour.
"""

import os
import re
import sys

# `impl Name {`, `impl<T> Name<T> {`, `impl<'a> Name<'a> {`, at the start
# of a line and with no `for` (a trait's impl is the trait's business).
INHERENT = re.compile(r"^\s*impl(?:<[^>]*>)?\s+([A-Za-z_][A-Za-z0-9_]*)(?:<[^{]*>)?\s*\{")


def is_tests_file(path):
    name = os.path.basename(path)
    return name == "tests.rs" or name.endswith("_tests.rs") or f"{os.sep}tests{os.sep}" in path


def inherent_impls(root):
    """(type, file) for every inherent impl block under root."""
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            if is_tests_file(path):
                continue
            with open(path, encoding="utf-8") as source:
                for line in source:
                    match = INHERENT.match(line)
                    if match and " for " not in line:
                        yield match.group(1), os.path.relpath(path, root)


def main(roots):
    spread = 0
    for root in roots:
        files_of = {}
        for type_name, path in inherent_impls(root):
            files_of.setdefault(type_name, set()).add(path)
        for type_name, paths in sorted(files_of.items()):
            if len(paths) > 1:
                spread += 1
                print(f"{root}: impl {type_name} is spread over {', '.join(sorted(paths))}")
        print(f"{root}: {len(files_of)} types with inherent impls")
    if spread:
        print(f"{spread} types have their impl spread over files: keep each in one")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
