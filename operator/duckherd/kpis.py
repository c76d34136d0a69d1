"""Business KPIs (`spec.metrics[]`): the shape of an expression, decidable without DuckDB.

A KPI's expression is one read-only SQL aggregate over its table (`count(*)`,
`avg(monthly_ltv)`). Two layers judge it (docs/kpis.md):

1. here, in the neutral core, with sqlparse's lexer (the operator never loads DuckDB): one
   expression — no `;`, no statement or query keyword (SELECT, INSERT, COPY, WITH, ...), no
   clause of a query at the top level (FROM, WHERE, GROUP BY, ...), no alias, no window, no
   comment. The API models apply it, so the operator stalls the pipeline with `InvalidSpec`
   and local mode refuses the manifest;
2. in the jobs, with DuckDB's own parser (`duckherd_jobs.check.kpis`): every column inside
   an aggregate, only known functions without side effects, no subquery; the check stage
   and `duckherd run` refuse what fails it before any work.

The query itself then runs on a read-only connection without external access, so even an
expression both layers let through cannot write to the warehouse or reach outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from sqlparse import lexer
from sqlparse import tokens as T

# sqlparse ships no annotations: its lexer yields (token type, text) pairs.
_tokenize = cast(Callable[[str], Iterator[tuple[Any, str]]], lexer.tokenize)

KPI_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$"
"""Prometheus' metric-name rules without the colon (reserved for recording rules)."""

MAX_EXPRESSION_LENGTH = 2048

# Clauses of a query: at the top level of an expression they mean a query was written
# (`count(*) FROM other`), inside parentheses they can be legitimate (`extract(year FROM t)`,
# `sum(x) FILTER (WHERE ok)`).
_TOP_LEVEL_CLAUSES = frozenset(
    {
        "FROM",
        "WHERE",
        "GROUP BY",
        "HAVING",
        "QUALIFY",
        "WINDOW",
        "ORDER BY",
        "LIMIT",
        "OFFSET",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "INTO",
        "JOIN",
        "AS",
        "OVER",
    }
)
_EXAMPLE = "write one aggregate over the table, e.g. avg(monthly_ltv)"


def expression_problem(expression: str) -> str | None:
    """Why `expression` is not one SQL expression (None when its shape is fine)."""
    if not expression.strip():
        return "is empty: " + _EXAMPLE
    depth = 0
    for ttype, value in _tokenize(expression):
        word = " ".join(value.upper().split())
        if ttype in T.Comment:
            return "comments are not allowed"
        if ttype in T.Punctuation and value == ";":
            return "one expression only: `;` is not allowed"
        if ttype in T.Keyword.DML or ttype in T.Keyword.DDL or ttype in T.Keyword.CTE:
            return f"{word} is not allowed: no queries or statements, " + _EXAMPLE
        if ttype in T.Punctuation and value == "(":
            depth += 1
        elif ttype in T.Punctuation and value == ")":
            depth -= 1
            if depth < 0:
                return "unbalanced parentheses: a `)` without its `(`"
        elif depth == 0 and ttype in T.Punctuation and value == ",":
            return "one expression only: a `,` outside parentheses starts a second one"
        elif depth == 0 and ttype in T.Keyword and word in _TOP_LEVEL_CLAUSES:
            return _clause_problem(word)
    if depth:
        return "unbalanced parentheses: a `(` is never closed"
    return None


def _clause_problem(word: str) -> str:
    if word == "AS":
        return "an alias (AS) is not allowed: the KPI's name names the value"
    if word == "OVER":
        return "window functions (OVER) are not allowed: " + _EXAMPLE
    return f"{word} is not allowed: the table goes in `table`; " + _EXAMPLE
