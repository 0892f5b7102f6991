"""Store SQL lives in `sql/` (DESIGN.md, habit 3): a static scan of the code, no store needed.

* every `sql_text("name")` names an existing `sql/<name>.sql`, and every SQL file is used;
* a task passes `execute` the text of a SQL file, or transaction control; never an f-string,
  `%` or `.format` with a value in it, except the identifier cases listed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "sql"
CODE_DIRS = ("tasks", "flows", "benchmarks", "deployments")

# `sql_text(<not a literal>)`: the argument is checked against a fixed tuple, whose names are
# checked here: (file, argument as written) -> (module, tuple of names).
COMPUTED_SQL_NAMES = {
    ("tasks/ingest/load.py", "table"): ("tasks/ingest/load.py", "STAGED_TABLES"),
    ("tasks/ingest/load.py", "clear_day"): ("tasks/ingest/load.py", "DAY_CLEARS"),
}
# Statements that are not table SQL and stay inline (sql/README.md says why).
INLINE_STATEMENTS = {"begin transaction", "commit", "rollback"}
# `execute(<formatted text>)` kept on purpose: (file, start of the text). The memory cap is a
# setting, not a value of a row; `set` takes no bound parameter and the value is an int().
# ATTACH takes no bound parameter either: the compaction attaches the store's own file, quoted.
# The snapshot wraps a sql/ file's query (no value in it) in COPY: a query cannot be bound.
FORMATTED_ALLOWED = {
    ("tasks/store.py", "set memory_limit = '"),
    ("tasks/store.py", "attach '"),
    ("tasks/features/snapshot.py", "copy (\n"),
}


def _modules() -> list[tuple[str, ast.Module]]:
    files = sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))
    return [(p.relative_to(ROOT).as_posix(), ast.parse(p.read_text(), str(p))) for p in files]


def _calls(tree: ast.AST, *names: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id in names)
            or (isinstance(node.func, ast.Attribute) and node.func.attr in names)
        )
    ]


def _tuple_of(path: str, name: str) -> tuple[str, ...]:
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} has no module-level {name}")


def _used_sql_names() -> dict[str, list[str]]:
    """SQL file name -> where it is used; fails on a computed name not listed above."""
    used: dict[str, list[str]] = {}
    for path, tree in _modules():
        for call in _calls(tree, "sql_text"):
            (arg,) = call.args
            where = f"{path}:{call.lineno}"
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                used.setdefault(arg.value, []).append(where)
                continue
            key = (path, ast.unparse(arg))
            assert key in COMPUTED_SQL_NAMES, f"{where}: sql_text({key[1]}) is not a known list"
            for name in _tuple_of(*COMPUTED_SQL_NAMES[key]):
                used.setdefault(name, []).append(where)
    return used


def test_every_sql_name_in_the_code_is_a_file_and_every_file_is_used():
    used = _used_sql_names()
    files = {p.stem for p in SQL_DIR.glob("*.sql")}
    missing = {name: where for name, where in used.items() if name not in files}
    assert not missing, f"sql_text names without a sql/<name>.sql: {missing}"
    assert files - set(used) == set(), "SQL files no code reads"
    assert {"ingestions", "ingestion_previous", "stale_runs_list", "quarantine_summary"} <= files


def test_sql_readme_lists_every_file():
    readme = (SQL_DIR / "README.md").read_text()
    unlisted = sorted(p.name for p in SQL_DIR.glob("*.sql") if f"`{p.name}`" not in readme)
    assert not unlisted, f"sql/README.md does not list {unlisted}"


def _formatted(node: ast.expr) -> bool:
    """Text built at run time: an f-string, `%`, `+` or `.format(...)`."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    )


def _start(node: ast.expr) -> str:
    first = node.values[0] if isinstance(node, ast.JoinedStr) and node.values else node
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""


def test_tasks_execute_sql_files_not_formatted_text():
    problems, allowed_seen = [], set()
    for path, tree in _modules():
        if not path.startswith("tasks/"):
            continue
        for call in _calls(tree, "execute", "executemany"):
            if not call.args:
                continue
            arg, where = call.args[0], f"{path}:{call.lineno}"
            if _formatted(arg):
                key = (path, _start(arg))
                if key in FORMATTED_ALLOWED:
                    allowed_seen.add(key)
                else:
                    problems.append(f"{where}: formatted SQL {ast.unparse(arg)[:60]}")
            elif isinstance(arg, ast.Constant):
                if arg.value not in INLINE_STATEMENTS:
                    problems.append(f"{where}: inline SQL {arg.value!r:.60}; move it to sql/")
            elif not (
                isinstance(arg, ast.Call)
                and isinstance(arg.func, ast.Name)
                and arg.func.id == "sql_text"
            ):
                problems.append(f"{where}: execute({ast.unparse(arg)[:60]}) is not a SQL file")
    assert not problems, "\n".join(problems)
    assert allowed_seen == FORMATTED_ALLOWED, "an allowed case is gone: drop it from the list"


def test_the_scan_flags_what_it_should():
    src = (
        "con.execute(f'delete from t where d = {d}')\n"
        "con.execute('select %s' % x)\n"
        "con.execute('select {}'.format(x))\n"
        "con.execute('select 1')\n"
        "con.execute(sql_text('ingestions'), {'a': 1})\n"
        "con.execute('commit')\n"
    )
    calls = _calls(ast.parse(src), "execute")
    assert [_formatted(c.args[0]) for c in calls] == [True, True, True, False, False, False]
