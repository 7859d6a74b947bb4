"""Fails if the top-level modules of a crate's src/ import each other in a
circle (docs/architecture.md: each module uses only those below it).

    python3 scripts/module_cycles.py src behaviours/src

A module is a file or folder under src/; it uses another when its code (not
its comments or its tests) names `crate::other`. Prints each crate's graph,
its floors (a module's floor is one above the highest floor it uses; a
module that uses none is on floor 1) and every circle; exits 1 if there is
one.
"""
import os, re, sys
from itertools import chain

def modules(src):
    mods = {}
    for entry in os.listdir(src):
        path = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            mods[entry[:-3]] = [path]
        elif os.path.isdir(path):
            files = []
            for root, _, names in os.walk(path):
                files += [os.path.join(root, n) for n in names if n.endswith(".rs")]
            mods[entry] = files
    return mods

def code(path):
    in_tests = False
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        if s.startswith("//"):
            continue
        if s.startswith("#[cfg(test)]"):
            in_tests = True
        if not in_tests:
            yield line

def deps(src):
    mods = modules(src)
    graph = {}
    for mod, files in mods.items():
        text = "".join(chain.from_iterable(code(f) for f in files))
        used = set(re.findall(r"crate::([a-z_]+)", text))
        for group in re.findall(r"use crate::\{([^;]*)\};", text, re.S):
            used |= set(re.findall(r"(?:^|[,{\s])([a-z_]+)::", group))
            used |= {m for m in re.findall(r"(?:^|[,{\s])([a-z_]+)\s*(?:[,}]|$)", group)}
        graph[mod] = sorted(u for u in used if u in mods and u != mod)
    return graph

def cycles(graph):
    found, index, low, stack, on, n = [], {}, {}, [], set(), [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: found.append(sorted(comp))
    for v in graph:
        if v not in index: visit(v)
    return found

def floors(graph):
    floor = {}
    def of(v, seen=()):
        if v not in floor:
            below = [of(w, seen + (v,)) for w in graph[v] if w not in seen]
            floor[v] = 1 + max(below, default=0)
        return floor[v]
    for v in graph:
        of(v)
    return floor

failed = False
for src in sys.argv[1:]:
    graph = deps(src)
    print(f"== {src}")
    for m, d in sorted(graph.items()):
        print(f"{m} -> {' '.join(d)}")
    circles = cycles(graph)
    for circle in circles:
        print(f"CIRCLE in {src}: {' <-> '.join(circle)}")
        failed = True
    if not circles:
        floor = floors(graph)
        print(f"{max(floor.values())} floors, {sum(map(len, graph.values()))} arrows:")
        for level in range(1, max(floor.values()) + 1):
            print(f"  {level}: {' '.join(sorted(m for m in graph if floor[m] == level))}")
sys.exit(1 if failed else 0)
