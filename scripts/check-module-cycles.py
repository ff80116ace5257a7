#!/usr/bin/env python3
"""Fails if the top-level modules of a crate depend on each other in a cycle.

For each crate source root given, a module's dependencies are the other
top-level modules its non-test code names as `crate::<module>` (comments
and `#[cfg(test)]` blocks at the end of a file are left out). A cycle means
two concerns cannot be understood, or moved, one without the other.

    scripts/check-module-cycles.py src crates/core/src
"""

import re
import sys
from pathlib import Path


def dependencies(root: Path) -> dict[str, set[str]]:
    modules = {p.stem for p in root.glob("*.rs")} | {p.name for p in root.iterdir() if p.is_dir()}
    modules -= {"lib", "main"}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in root.rglob("*.rs"):
        module = path.relative_to(root).parts[0].removesuffix(".rs")
        if module not in graph:
            continue
        code = path.read_text().split("#[cfg(test)]")[0]
        code = "\n".join(line for line in code.splitlines() if not line.strip().startswith("//"))
        for name in re.findall(r"\bcrate::([a-z_0-9]+)", code):
            if name != module and name in graph:
                graph[module].add(name)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def main() -> int:
    failed = False
    for root in map(Path, sys.argv[1:]):
        graph = dependencies(root)
        found = cycle(graph)
        if found:
            print(f"{root}: module cycle {' → '.join(found)}", file=sys.stderr)
            failed = True
        else:
            edges = sum(len(v) for v in graph.values())
            print(f"{root}: {len(graph)} modules, {edges} dependencies, no cycle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
