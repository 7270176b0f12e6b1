"""chronik's modules import one another without a cycle.

A cycle means two modules that cannot be understood, tested or moved apart: an adapter
and the factory that picks it, a port and the engine beside it. Python hides most of
them (an import inside a function runs late enough), so the graph is checked here,
with every import counted except those under ``if TYPE_CHECKING`` (annotations only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set

import grimp


def _graph() -> dict[str, set[str]]:
    """Each chronik module and the chronik modules it imports."""
    graph = grimp.build_graph("chronik", exclude_type_checking_imports=True)
    return {
        module: {m for m in graph.find_modules_directly_imported_by(module) if _ours(m)}
        for module in graph.modules
        if _ours(module)
    }


def _ours(module: str) -> bool:
    return module == "chronik" or module.startswith("chronik.")


def strongly_connected(graph: Mapping[str, Set[str]]) -> Iterator[list[str]]:
    """The groups of modules that reach one another (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in graph.get(node, ()):
                        yield sorted(group)


def a_cycle(graph: Mapping[str, Set[str]], group: list[str]) -> list[str]:
    """One cycle through the group's first module, shortest first: a -> b -> ... -> a."""
    start = group[0]
    members = set(group)
    paths: dict[str, list[str]] = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{group} is no cycle")


def test_the_cycle_finder_names_a_cycle_and_passes_a_tree() -> None:
    looped = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert list(strongly_connected(looped)) == [["a", "b", "c"]]
    assert a_cycle(looped, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert list(strongly_connected({"a": {"b"}, "b": set(), "c": {"a", "b"}})) == []


def test_no_chronik_module_imports_itself_through_others() -> None:
    graph = _graph()
    cycles = [" -> ".join(a_cycle(graph, group)) for group in strongly_connected(graph)]
    assert not cycles, "import cycles in chronik:\n  " + "\n  ".join(cycles)
