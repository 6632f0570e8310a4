#!/usr/bin/env python3
"""The include walker behind scripts/check_layers.sh.

  layers.py ROOT FOLDER...   (rules on stdin, one a line: folder TAB forbidden TAB what
                              TAB excepted files, comma-separated; folder "*": all)

Reads the `#include` lines of every .h and .cc under ROOT/FOLDER, follows quoted includes
that name a file of the project (relative to ROOT, else to the including file), and for
each file prints every forbidden include it reaches through any chain of project headers,
with the chain (file:line -> header:line -> include), and every include cycle among
project files. Forbidden is a Python regular expression matched at the start of the
included path. Exit status: 1 if anything was printed, else 0.
"""
import os
import re
import sys
from collections import deque

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def read_includes(root, path):
    """[(line, target, project file or None)] of one project file."""
    out = []
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, 1):
            m = INCLUDE.match(text)
            if not m:
                continue
            kind, target = m.groups()
            found = None
            if kind == '"':
                for candidate in (target, os.path.join(os.path.dirname(path), target)):
                    candidate = os.path.normpath(candidate)
                    if os.path.isfile(os.path.join(root, candidate)):
                        found = candidate
                        break
            out.append((number, target, found))
    return out


class Graph:
    def __init__(self, root):
        self.root = root
        self.edges = {}

    def includes(self, path):
        if path not in self.edges:
            self.edges[path] = read_includes(self.root, path)
        return self.edges[path]

    def violations(self, start, forbidden, covered):
        """[chain] from start to each forbidden include it reaches, breadth first (so each
        chain is a shortest one). The walk stops at a forbidden include, and does not enter
        the files that `covered` says are checked by the same rule themselves: each
        violation is reported once, by the file whose include chain starts it."""
        found, seen = {}, {start}
        queue = deque([(start, [])])
        while queue:
            path, chain = queue.popleft()
            for line, target, header in self.includes(path):
                hop = chain + [f"{path}:{line}"]
                if forbidden.match(target):
                    found.setdefault(target, hop + [target])
                elif header and header not in seen and not covered(header):
                    seen.add(header)
                    queue.append((header, hop))
        return [found[target] for target in sorted(found)]

    def cycles(self, starts):
        """Each include cycle among project files once, as a list of paths, first = last."""
        found, state = [], {}
        seen_cycles = set()

        def visit(path, stack):
            state[path] = "open"
            stack.append(path)
            for _, _, child in self.includes(path):
                if not child:
                    continue
                if state.get(child) == "open":
                    cycle = stack[stack.index(child):] + [child]
                    key = frozenset(cycle)
                    if key not in seen_cycles:
                        seen_cycles.add(key)
                        found.append(cycle)
                elif child not in state:
                    visit(child, stack)
            stack.pop()
            state[path] = "done"

        for start in starts:
            if start not in state:
                visit(start, [])
        return found


def main():
    root, folders = sys.argv[1], sys.argv[2:]
    rules = []
    for text in sys.stdin:
        if text.strip():
            folder, forbidden, what, excepted = (text.rstrip("\n").split("\t") + [""])[:4]
            rules.append((folder, re.compile(forbidden), what, set(filter(None, excepted.split(",")))))
    files = []
    for folder in folders:
        for directory, _, names in sorted(os.walk(os.path.join(root, folder))):
            for name in sorted(names):
                if name.endswith((".h", ".cc")):
                    files.append(os.path.relpath(os.path.join(directory, name), root))
    graph = Graph(root)
    checked = set(files)
    bad = False
    for path in files:
        for folder, forbidden, what, excepted in rules:
            def covered(p, folder=folder, excepted=excepted):
                return p in checked and folder in ("*", p.split(os.sep)[0]) and p not in excepted

            if not covered(path):
                continue
            for chain in graph.violations(path, forbidden, covered):
                print(f"layering: {path} must not reach {what}: {' -> '.join(chain)}")
                bad = True
    for cycle in graph.cycles(files):
        print(f"layering: include cycle: {' -> '.join(cycle)}")
        bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
