#!/usr/bin/env python3
"""Check the crate's shape (docs/ARCHITECTURE.md): layers that only point down, no import loops,
no overlong hand-written function or file.

Reads every `crate::`, `super::` and `self::` path in the code of src/ (comments, strings and
`#[cfg(test)]` modules and files left out) and resolves it to the file that defines the module
it names.
Then:
  - loops: strongly connected groups of files in that graph;
  - upward imports: a file importing a top-level module of the same or a higher layer (below),
    or the `mod.rs` of a folder it is in (a folder's mod.rs only declares and re-exports);
  - sizes: functions longer than MAX_FUNCTION_LINES, files longer than MAX_FILE_LINES
    (generated files excepted).
Prints the figures and exits 1 when any rule is broken. `--report` prints them without failing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# Bottom to top. A module may import modules of lower layers only (and its own files).
LAYERS: list[list[str]] = [
    ["error"],
    ["dtype", "kernel_images", "progress", "rng", "threads"],
    ["buffer", "cuda", "s3"],
    ["tensor", "decode"],
    ["source"],
    ["cache"],
    ["sampler", "gather"],
    ["transform"],
    ["loader"],
    ["demo", "info"],
    ["cli"],
    ["python", "bin"],
]
GENERATED = {"src/decode/nvjpeg/sys.rs"}
MAX_FUNCTION_LINES = 120
MAX_FILE_LINES = 600

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text: str) -> str:
    """The text with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(r"\w", text[i - 1 : i]):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1 : j]) + '"')
            i = j + 1
        elif (
            c == "'"
            and re.match(r"'(\\.|[^\\'])+'", text[i:])
            and not re.match(r"'[A-Za-z_]\w*[^'\w]", text[i:])
        ):
            m = re.match(r"'(\\.|[^\\'])+'", text[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(code: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def drop_test_modules(code: str) -> str:
    """Blank `#[cfg(test)] mod name { ... }` blocks (unit tests may use anything)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", code)
        if not m:
            return code
        end = matching_brace(code, m.end() - 1)
        code = (
            code[: m.start()] + re.sub(r"[^\n]", " ", code[m.start() : end + 1]) + code[end + 1 :]
        )


def module_of(path: Path, src: Path) -> tuple[str, ...]:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"],):
        return ()
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def expand_use_tree(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    out = []
    for item in items:
        if item:
            out.extend(prefix + p for p in expand_use_tree(item))
    return out


def references(code: str, children: set[str]) -> list[str]:
    """Every crate-relative path the code uses: use trees expanded, inline paths as written.
    Paths that start with a child module's name (`use cpu::Lut`) are made `self::` paths."""
    starts = ["crate", "super", "self", *sorted(children)]
    head = r"\b(?<!::)(?:" + "|".join(starts) + r")\b"
    refs = []
    for m in re.finditer(rf"\buse\s+({head}[^;]*);", code):
        refs.extend(expand_use_tree(m.group(1)))
    without_uses = re.sub(rf"\buse\s+{head}[^;]*;", "", code)
    # `pub(crate)`/`pub(super)` are visibilities, not paths; `mod x;` declares.
    without_uses = re.sub(r"pub\((crate|super|self|in [^)]*)\)", "pub", without_uses)
    path = rf"{head}(?:::(?:{IDENT}|\{{[^;]*?\}}))+"
    for m in re.finditer(path, without_uses):
        refs.extend(expand_use_tree(m.group(0)))
    first = {"crate", "super", "self"}
    return [r if r.split("::")[0] in first else "self::" + r for r in refs]


def resolve(ref: str, here: tuple[str, ...], is_mod_file: bool, modules: set) -> tuple | None:
    parts = [p for p in ref.split("::") if p]
    # The module `super`/`self` start from: a mod.rs (or lib.rs) file is its module's own scope.
    scope = list(here)
    if parts[0] == "crate":
        scope, parts = [], parts[1:]
    while parts and parts[0] in ("super", "self"):
        if parts[0] == "super":
            scope = scope[:-1] if scope else scope
        parts = parts[1:]
    full = scope + [p for p in parts if p not in ("self", "*")]
    # The longest prefix that is a module of its own file.
    for k in range(len(full), -1, -1):
        if tuple(full[:k]) in modules:
            return tuple(full[:k])
    return None


def layer_of(module: tuple[str, ...]) -> int | None:
    if not module:
        return None
    for i, names in enumerate(LAYERS):
        if module[0] in names:
            return i
    return None


def functions(code: str, lines: list[str]) -> list[tuple[int, str, int]]:
    """(length in lines, name, first line) of every fn with a body."""
    out = []
    for m in re.finditer(rf"\bfn\s+({IDENT})", code):
        # The body's brace: the first `{` after the signature, unless a `;` ends it first.
        j = m.end()
        depth = 0
        while j < len(code):
            c = code[j]
            if c in "(<[":
                depth += 1
            elif c in ")>]":
                depth -= 1
            elif c == ";" and depth <= 0:
                j = -1
                break
            elif c == "{" and depth <= 0:
                break
            j += 1
        if j < 0 or j >= len(code):
            continue
        end = matching_brace(code, j)
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, end) + 1
        out.append((last - first + 1, m.group(1), first))
    return out


def tarjan(graph: dict) -> list[list]:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=Path(__file__).resolve().parent.parent, type=Path)
    parser.add_argument("--report", action="store_true", help="print, never fail")
    args = parser.parse_args()
    root: Path = args.root
    src = root / "src"
    files = sorted(src.rglob("*.rs"))
    file_of = {module_of(f, src): f for f in files}
    modules = set(file_of)
    name = {m: str(f.relative_to(root)) for m, f in file_of.items()}
    # lib.rs only declares modules and re-exports `error`'s Error and Result.
    root_reexports = {"Error": ("error",), "Result": ("error",)}

    # Files of `#[cfg(test)] mod name;` declarations: unit tests, which may use anything.
    test_files = {
        (*module, m.group(2))
        for module, path in file_of.items()
        for m in re.finditer(
            r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+(\w+)\s*;", strip_code(path.read_text())
        )
    }

    graph: dict[str, set[str]] = {}
    upward: list[str] = []
    long_functions: list[tuple[int, str]] = []
    all_functions: list[tuple[int, str]] = []
    for module, path in file_of.items():
        rel = name[module]
        text = path.read_text()
        code = "" if module in test_files else drop_test_modules(strip_code(text))
        edges = graph.setdefault(rel, set())
        children = {m[-1] for m in modules if len(m) == len(module) + 1 and m[:-1] == module}
        for ref in references(code, children):
            target = resolve(ref, module, path.name == "mod.rs", modules)
            if target == () and ref.split("::")[-1] in root_reexports:
                target = root_reexports[ref.split("::")[-1]]
            if target is None or target == module or target == ():
                continue
            edges.add(name[target])
            if len(module) > len(target) and module[: len(target)] == target:
                upward.append(f"{rel} -> {name[target]} (its own folder's mod.rs)")
            mine, theirs = layer_of(module), layer_of(target)
            if module and target[0] != module[0]:
                if mine is None or theirs is None:
                    upward.append(f"{rel} -> {name[target]} (a module with no layer)")
                elif theirs >= mine:
                    upward.append(f"{rel} -> {name[target]}")
        if rel not in GENERATED:
            for length, fn, line in functions(code, text.splitlines()):
                all_functions.append((length, f"{rel}:{line} {fn}"))
                if length > MAX_FUNCTION_LINES:
                    long_functions.append((length, f"{rel}:{line} {fn}"))
    loops = tarjan(graph)

    sized = [
        f
        for pattern in ("src/**/*.rs", "tests/*.rs", "benches/*.rs", "python/**/*.py")
        for f in root.glob(pattern)
    ]
    sizes = sorted(
        ((len(f.read_text().splitlines()), str(f.relative_to(root))) for f in sized),
        reverse=True,
    )
    long_files = [(n, f) for n, f in sizes if n > MAX_FILE_LINES and f not in GENERATED]

    print(f"layers: {len(files)} files, {sum(len(e) for e in graph.values())} imports between them")
    print(f"  import loops: {len(loops)}")
    for group in loops:
        print("    " + " <-> ".join(group))
    print(f"  upward imports: {len(upward)}")
    for u in sorted(set(upward)):
        print("    " + u)
    all_functions.sort(reverse=True)
    print("  longest functions: " + ", ".join(f"{f} ({n} lines)" for n, f in all_functions[:3]))
    print("  largest files: " + ", ".join(f"{f} ({n})" for n, f in sizes[:4]))
    for n, f in sorted(long_functions, reverse=True):
        print(f"  function over {MAX_FUNCTION_LINES} lines: {f} ({n})")
    for n, f in long_files:
        print(f"  file over {MAX_FILE_LINES} lines: {f} ({n})")
    broken = loops or upward or long_functions or long_files
    if broken and not args.report:
        print("layers: FAILED (docs/ARCHITECTURE.md says what may import what)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
