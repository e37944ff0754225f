"""The SQL subset: parse with sqlglot, walk the tree against an allow-list, compile to a plan.

Nothing here touches data or OpenDP. ``compile_sql`` either returns a ``Plan`` (plain
dataclasses holding Polars expressions for the row filter and public facts from the
schema: bounds, categories, bins) or raises ``QueryRefused`` naming the construct it
refused. Every node of the tree must be on the allow-list: anything the walker does not
know is refused, so a new sqlglot node type can never slip through.

Accepted::

    SELECT <group keys and aggregates> FROM <dataset> [WHERE <predicate>] [GROUP BY <keys>]

- aggregates: ``COUNT(*)``, ``SUM(col)``, ``AVG(col)``, ``MEDIAN(col)``,
  ``QUANTILE(col, q)`` / ``PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col)``;
- group keys: columns with public categories (strings with ``categories``, booleans) and
  ``WIDTH_BUCKET(col, lower, upper, n)`` (a histogram over public bins); where the policy
  says ``private_keys: true``, also text/integer columns whose keys are not public,
  released only where the noisy count clears a threshold (approximate DP, delta > 0);
- predicates: comparisons, ``IN``, ``BETWEEN``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT``
  over schema columns and literals.

Bounds of sums, means and quantiles come from the schema, never from the query.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from cleanroom.errors import QueryRefused
from cleanroom.queries.policy import policy_bool, policy_int, policy_names

IDENTIFIER_COLUMN = "contributor_id"
MAX_SQL_LENGTH = 10_000
# Parsing and compiling recurse once per nesting level (a few Python frames each), so a query
# nested deeper than these is refused before it can exhaust the stack.
MAX_PARENTHESES = 20
MAX_EXPRESSION_DEPTH = 100
MAX_AGGREGATES = 12
DEFAULT_MAX_BINS = 20
DEFAULT_MAX_GROUPS = 200
QUANTILE_CANDIDATES = 64
NUMERIC_TYPES = ("integer", "float")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    lower: float | int | None = None
    upper: float | int | None = None
    categories: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class GroupKey:
    """An output key column: a public-category column, or a histogram bin of a numeric one."""

    alias: str
    column: str
    # The public key values in output order (bin labels for a histogram).
    labels: tuple[Any, ...]
    # (lower, upper, count) when the key is WIDTH_BUCKET(column, lower, upper, count).
    bins: tuple[float, float, int] | None = None
    # Keys that are not public: released only where a noisy count clears a threshold.
    private: bool = False

    @property
    def frame_column(self) -> str:
        """The name of the key column in the frame the mechanism groups by."""
        return f"__bin_{self.alias}" if self.bins else self.column


@dataclass(frozen=True)
class Aggregate:
    alias: str
    kind: str  # count | sum | avg | quantile
    column: str | None = None
    lower: float | int | None = None
    upper: float | int | None = None
    column_type: str | None = None
    quantile: float | None = None  # for kind == "quantile" (median is 0.5)
    label: str = ""  # how it was written, e.g. MEDIAN(income)


@dataclass(frozen=True)
class Plan:
    table: str
    where: pl.Expr | None
    group_keys: tuple[GroupKey, ...]
    aggregates: tuple[Aggregate, ...]
    # Output columns in SELECT order: (alias, "key" | "aggregate").
    columns: tuple[tuple[str, str], ...]
    schema: tuple[ColumnSpec, ...] = field(default_factory=tuple)

    @property
    def group_count(self) -> int:
        """Groups with public keys (private keys add an unknown number, thresholded)."""
        public = [key for key in self.group_keys if not key.private]
        return math.prod(len(key.labels) for key in public) if public else 1

    @property
    def has_private_keys(self) -> bool:
        return any(key.private for key in self.group_keys)

    def column_spec(self, name: str) -> ColumnSpec:
        return next(spec for spec in self.schema if spec.name == name)


def schema_columns(schema: dict[str, Any]) -> tuple[ColumnSpec, ...]:
    """The dataset schema JSON as column specs (public facts only)."""
    out = []
    for column in schema.get("columns", []):
        categories = column.get("categories")
        out.append(
            ColumnSpec(
                name=str(column["name"]),
                type=str(column["type"]),
                lower=column.get("lower"),
                upper=column.get("upper"),
                categories=tuple(categories) if categories is not None else None,
            )
        )
    return tuple(out)


def _refuse(message: str) -> QueryRefused:
    return QueryRefused(message)


# Node types the walker knows. Everything else is refused by its SQL name.
_CONSTRUCT_NAMES: dict[type[exp.Expression], str] = {
    exp.Join: "JOIN",
    exp.Subquery: "subqueries",
    exp.With: "WITH (common table expressions)",
    exp.CTE: "WITH (common table expressions)",
    exp.Having: "HAVING",
    exp.Order: "ORDER BY",
    exp.Limit: "LIMIT",
    exp.Offset: "OFFSET",
    exp.Window: "window functions",
    exp.Distinct: "DISTINCT",
    exp.Union: "UNION",
    exp.Intersect: "INTERSECT",
    exp.Except: "EXCEPT",
    exp.Star: "SELECT *",
    exp.Lateral: "LATERAL",
    exp.Qualify: "QUALIFY",
    exp.Case: "CASE",
    exp.Cast: "CAST",
    exp.Like: "LIKE",
    exp.ILike: "ILIKE",
    exp.Placeholder: "parameters",
}


def _construct_name(node: exp.Expression) -> str:
    for klass, name in _CONSTRUCT_NAMES.items():
        if isinstance(node, klass):
            return name
    if isinstance(node, exp.Func):
        return (
            f"function {node.sql_name()}"
            if not isinstance(node, exp.Anonymous)
            else (f"function {str(node.this).upper()}")
        )
    if isinstance(node, exp.Binary):
        return f"operator {node.key.upper()}"
    return node.key.upper()


_DDL_DML: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "Insert",
        "Update",
        "Delete",
        "Create",
        "Drop",
        "Alter",
        "Merge",
        "TruncateTable",
        "Command",
        "Copy",
        "Grant",
        "Set",
        "Use",
        "Transaction",
        "Commit",
        "Rollback",
    )
    if hasattr(exp, name)
)


def _parse(sql: str) -> exp.Select:
    if not isinstance(sql, str) or not sql.strip():
        raise _refuse("The query is empty.")
    if len(sql) > MAX_SQL_LENGTH:
        raise _refuse(f"The query is longer than {MAX_SQL_LENGTH} characters.")
    if "\x00" in sql:
        raise _refuse("The query contains a NUL character.")
    too_deep = _refuse(
        f"The query is nested too deeply: at most {MAX_PARENTHESES} levels of parentheses and "
        f"{MAX_EXPRESSION_DEPTH} levels of operators (NOT, AND, +, ...) are allowed."
    )
    try:
        if _parenthesis_depth(sql) > MAX_PARENTHESES:
            raise too_deep
        statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
    except (ParseError, TokenError) as error:
        first = str(error).splitlines()[0] if str(error) else "syntax error"
        raise _refuse(f"The query could not be parsed as SQL: {first[:200]}") from None
    except RecursionError:  # e.g. 200 NOTs in a row: the parser recurses once per operator
        raise too_deep from None
    if len(statements) != 1:
        raise _refuse("Only one statement is allowed (found a second statement after ';').")
    statement = statements[0]
    if _expression_depth(statement) > MAX_EXPRESSION_DEPTH:
        raise too_deep
    for node in statement.walk():
        if node.comments:
            raise _refuse("Comments are not allowed in a query.")
    if not isinstance(statement, exp.Select):
        if isinstance(statement, exp.Union | exp.Intersect | exp.Except):
            raise _refuse(f"{_construct_name(statement)} is not allowed: one SELECT only.")
        if isinstance(statement, _DDL_DML):
            kind = statement.key.upper()
            raise _refuse(f"Only SELECT is allowed; {kind} statements (DDL/DML) are refused.")
        raise _refuse("Only a SELECT statement is allowed.")
    return statement


def _parenthesis_depth(sql: str) -> int:
    """The deepest nesting of parentheses, counted on tokens (a string literal's parentheses
    are not nesting)."""
    depth = deepest = 0
    for token in sqlglot.tokenize(sql, read="postgres"):
        if token.token_type == sqlglot.TokenType.L_PAREN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type == sqlglot.TokenType.R_PAREN:
            depth -= 1
    return deepest


def _expression_depth(root: Any) -> int:
    """The depth of the parsed tree, walked without recursion."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_EXPRESSION_DEPTH:
            break
        stack.extend((child, depth + 1) for child in node.iter_expressions())
    return deepest


def _identifier_name(node: exp.Expression) -> str:
    return str(node.name)


class _Compiler:
    def __init__(
        self, *, table: str, schema: tuple[ColumnSpec, ...], policy: dict[str, Any]
    ) -> None:
        self.table = table
        self.schema = {spec.name: spec for spec in schema}
        self.schema_order = schema
        self.policy = policy
        allowed = policy_names(policy, "allowed_columns")
        self.allowed_columns: set[str] | None = set(allowed) if allowed else None
        aggregates = policy_names(policy, "allowed_aggregates")
        self.allowed_aggregates: set[str] | None = (
            {str(a).lower() for a in aggregates} if aggregates else None
        )
        self.max_bins = policy_int(policy, "max_histogram_bins", DEFAULT_MAX_BINS, minimum=1)
        self.max_groups = policy_int(policy, "max_groups", DEFAULT_MAX_GROUPS, minimum=1)
        self.private_keys = policy_bool(policy, "private_keys", False)

    # -- columns -------------------------------------------------------------------------
    def column(self, node: exp.Expression) -> ColumnSpec:
        if not isinstance(node, exp.Column):
            raise _refuse(f"{_construct_name(node)} is not allowed here; name a column.")
        if node.table and node.table not in (self.table,):
            raise _refuse(f"Unknown table {node.table!r}: query the dataset's table only.")
        name = node.name
        if name.lower() == IDENTIFIER_COLUMN:
            raise _refuse(
                "The contributor identifier cannot be used in a query (it is the privacy unit)."
            )
        spec = self.schema.get(name)
        if spec is None:
            raise _refuse(f"Unknown column {name!r}.")
        if self.allowed_columns is not None and name not in self.allowed_columns:
            raise _refuse(f"Column {name!r} is not allowed by the dataset policy.")
        return spec

    # -- WHERE ---------------------------------------------------------------------------
    def literal(self, node: exp.Expression) -> Any:
        if isinstance(node, exp.Neg):
            inner = self.literal(node.this)
            if isinstance(inner, bool) or not isinstance(inner, int | float):
                raise _refuse("Unary minus applies to numbers only.")
            return -inner
        if isinstance(node, exp.Paren):
            return self.literal(node.this)
        if isinstance(node, exp.Boolean):
            return bool(node.this)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return str(node.this)
            text = str(node.this)
            try:
                value: int | float = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    raise _refuse(f"Bad number literal {text!r}.") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise _refuse(f"Number literal {text!r} is not finite.")
            if isinstance(value, int) and abs(value) > 2**62:
                raise _refuse(f"Number literal {text!r} is out of range.")
            return value
        if isinstance(node, exp.Null):
            raise _refuse("NULL is only allowed in IS NULL / IS NOT NULL.")
        raise _refuse(f"{_construct_name(node)} is not allowed in WHERE.")

    def typed_literal(self, spec: ColumnSpec, node: exp.Expression) -> pl.Expr:
        value = self.literal(node)
        if spec.type in NUMERIC_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _refuse(f"Column {spec.name!r} is a number; compare it with a number.")
            dtype = pl.Int64 if spec.type == "integer" and isinstance(value, int) else pl.Float64
            if dtype == pl.Float64 and spec.type == "integer":
                return pl.lit(float(value), dtype=pl.Float64)
            return pl.lit(value, dtype=dtype)
        if spec.type == "string":
            if not isinstance(value, str):
                raise _refuse(f"Column {spec.name!r} is text; compare it with a quoted string.")
            return pl.lit(value, dtype=pl.String)
        if spec.type == "boolean":
            if not isinstance(value, bool):
                raise _refuse(f"Column {spec.name!r} is a boolean; compare it with TRUE/FALSE.")
            return pl.lit(value, dtype=pl.Boolean)
        raise _refuse(f"Column {spec.name!r} has an unsupported type.")

    def col_expr(self, spec: ColumnSpec, other_is_float: bool = False) -> pl.Expr:
        expression = pl.col(spec.name)
        if spec.type == "integer" and other_is_float:
            return expression.cast(pl.Float64)
        return expression

    def operand_pair(self, left: exp.Expression, right: exp.Expression) -> tuple[pl.Expr, pl.Expr]:
        for side in (left, right):
            if not isinstance(
                side, exp.Column | exp.Literal | exp.Boolean | exp.Neg | exp.Paren | exp.Null
            ):
                raise _refuse(f"{_construct_name(side)} is not allowed in WHERE.")
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            a, b = self.column(left), self.column(right)
            if (a.type in NUMERIC_TYPES) != (b.type in NUMERIC_TYPES) or (
                a.type not in NUMERIC_TYPES and a.type != b.type
            ):
                raise _refuse(f"Columns {a.name!r} and {b.name!r} cannot be compared.")
            mixed = {a.type, b.type} == {"integer", "float"}
            return self.col_expr(a, mixed), self.col_expr(b, mixed)
        if isinstance(left, exp.Column):
            spec = self.column(left)
            literal = self.typed_literal(spec, right)
            is_float = spec.type == "integer" and isinstance(self.literal(right), float)
            return self.col_expr(spec, is_float), literal
        if isinstance(right, exp.Column):
            literal_expr, column_expr = self.operand_pair(right, left)
            return column_expr, literal_expr
        raise _refuse("A comparison needs a column on at least one side.")

    _COMPARISONS: dict[type[exp.Expression], str] = {
        exp.EQ: "eq",
        exp.NEQ: "ne",
        exp.GT: "gt",
        exp.GTE: "ge",
        exp.LT: "lt",
        exp.LTE: "le",
    }

    def predicate(self, node: exp.Expression) -> pl.Expr:
        if isinstance(node, exp.Paren):
            return self.predicate(node.this)
        if isinstance(node, exp.And):
            return self.predicate(node.this) & self.predicate(node.expression)
        if isinstance(node, exp.Or):
            return self.predicate(node.this) | self.predicate(node.expression)
        if isinstance(node, exp.Not):
            return ~self.predicate(node.this)
        for klass, op_name in self._COMPARISONS.items():
            if type(node) is klass:
                left, right = self.operand_pair(node.this, node.expression)
                if op_name in ("gt", "ge", "lt", "le"):
                    for side in (node.this, node.expression):
                        if isinstance(side, exp.Column) and self.column(side).type == "boolean":
                            raise _refuse("Booleans can only be compared with = or <>.")
                result: pl.Expr = getattr(left, f"__{op_name}__")(right)
                return result
        if isinstance(node, exp.In):
            if node.args.get("query") is not None:
                raise _refuse("subqueries are not allowed (IN (SELECT ...)).")
            if node.args.get("unnest") is not None or node.args.get("field") is not None:
                raise _refuse("IN needs a list of literals.")
            spec = self.column(node.this)
            values = node.expressions
            if not values:
                raise _refuse("IN needs at least one value.")
            if len(values) > 100:
                raise _refuse("IN lists are limited to 100 values.")
            literals = [self.literal(v) for v in values]
            for value in literals:
                self.typed_literal(spec, _literal_node(value))
            # OpenDP 0.16 does not support is_in: an IN list is a disjunction of equalities.
            column = pl.col(spec.name)
            if spec.type == "integer" and any(isinstance(v, float) for v in literals):
                column = column.cast(pl.Float64)
            terms = [column == self.typed_literal(spec, _literal_node(v)) for v in literals]
            if spec.type == "integer" and any(isinstance(v, float) for v in literals):
                terms = [column == pl.lit(float(v), dtype=pl.Float64) for v in literals]
            return functools.reduce(operator.or_, terms)
        if isinstance(node, exp.Between):
            spec = self.column(node.this)
            if spec.type not in NUMERIC_TYPES:
                raise _refuse("BETWEEN applies to numeric columns only.")
            low = node.args.get("low")
            high = node.args.get("high")
            if low is None or high is None:
                raise _refuse("BETWEEN needs two bounds.")
            left_low, low_expr = self.operand_pair(node.this, low)
            left_high, high_expr = self.operand_pair(node.this, high)
            return (left_low >= low_expr) & (left_high <= high_expr)
        if isinstance(node, exp.Is):
            spec = self.column(node.this)
            if not isinstance(node.expression, exp.Null):
                raise _refuse("IS is only allowed as IS NULL or IS NOT NULL.")
            return pl.col(spec.name).is_null()
        if isinstance(node, exp.Column):
            spec = self.column(node)
            if spec.type != "boolean":
                raise _refuse(f"Column {spec.name!r} is not a boolean condition.")
            return pl.col(spec.name) == pl.lit(True)
        if isinstance(node, exp.Boolean):
            return pl.lit(bool(node.this))
        if isinstance(node, exp.Select):
            raise _refuse("subqueries are not allowed.")
        raise _refuse(f"{_construct_name(node)} is not allowed in WHERE.")

    # -- GROUP BY and histogram bins -----------------------------------------------------
    def group_key(self, node: exp.Expression, aliases: dict[str, exp.Expression]) -> GroupKey:
        alias = None
        if isinstance(node, exp.Column) and not node.table and node.name in aliases:
            alias = node.name
            node = aliases[node.name]
        if isinstance(node, exp.WidthBucket):
            return self.histogram(node, alias)
        if isinstance(node, exp.Column):
            spec = self.column(node)
            if spec.type == "boolean":
                labels: tuple[Any, ...] = (False, True)
            elif spec.type == "string" and spec.categories:
                labels = tuple(spec.categories)
            elif spec.type in ("string", "integer") and self.private_keys:
                # The policy allows keys found in the data, released with a threshold (delta).
                return GroupKey(alias=alias or spec.name, column=spec.name, labels=(), private=True)
            else:
                raise _refuse(
                    f"GROUP BY {spec.name}: its categories are not public in the schema "
                    "(group by a column with public categories, or use WIDTH_BUCKET for a "
                    "numeric column)."
                )
            return GroupKey(alias=alias or spec.name, column=spec.name, labels=labels)
        if isinstance(node, exp.Literal):
            raise _refuse("GROUP BY a position or literal is not allowed; name the column.")
        raise _refuse(f"GROUP BY {_construct_name(node)} is not allowed.")

    def histogram(self, node: exp.WidthBucket, alias: str | None) -> GroupKey:
        if self.allowed_aggregates is not None and "histogram" not in self.allowed_aggregates:
            raise _refuse("Histograms (WIDTH_BUCKET) are not allowed by the dataset policy.")
        spec = self.column(node.this)
        if spec.type not in NUMERIC_TYPES:
            raise _refuse("WIDTH_BUCKET applies to numeric columns only.")
        args = [node.args.get(k) for k in ("min_value", "max_value", "num_buckets")]
        if any(a is None for a in args):
            raise _refuse("WIDTH_BUCKET needs (column, lower, upper, bins).")
        lower, upper, count = (self.literal(a) for a in args if a is not None)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise _refuse("WIDTH_BUCKET needs a positive whole number of bins.")
        if count > self.max_bins:
            raise _refuse(
                f"A histogram with {count} bins is refused: the policy allows at most "
                f"{self.max_bins} bins."
            )
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lower, upper)):
            raise _refuse("WIDTH_BUCKET bounds must be numbers.")
        if not lower < upper:
            raise _refuse("WIDTH_BUCKET needs lower < upper.")
        if spec.type == "integer" and (upper - lower) / count <= 1:
            raise _refuse(
                "A histogram with one bin per value (or narrower) is refused: make the bins wider."
            )
        width = (upper - lower) / count
        labels = tuple(
            f"[{_fmt(lower + i * width)}, {_fmt(lower + (i + 1) * width)})" for i in range(count)
        )
        name = alias or f"{spec.name}_bin"
        return GroupKey(
            alias=name, column=spec.name, labels=labels, bins=(float(lower), float(upper), count)
        )

    # -- aggregates ----------------------------------------------------------------------
    def aggregate(self, node: exp.Expression, alias: str | None) -> Aggregate:
        label = node.sql(dialect="postgres")
        if isinstance(node, exp.Count):
            inner = node.this
            if isinstance(inner, exp.Distinct):
                raise _refuse("COUNT(DISTINCT ...) is not allowed.")
            if not isinstance(inner, exp.Star):
                if isinstance(inner, exp.Column):
                    self.column(inner)
                raise _refuse("Only COUNT(*) is allowed (COUNT of a column or expression is not).")
            return self._checked(Aggregate(alias=alias or "count", kind="count", label=label))
        kinds: dict[type[exp.Expression], str] = {exp.Sum: "sum", exp.Avg: "avg"}
        for klass, kind in kinds.items():
            if type(node) is klass:
                spec = self.numeric_argument(node.this, kind.upper())
                return self._checked(self._numeric(kind, spec, alias, label))
        if isinstance(node, exp.Median):
            spec = self.numeric_argument(node.this, "MEDIAN")
            return self._checked(self._numeric("quantile", spec, alias, label, 0.5, "median"))
        if isinstance(node, exp.Quantile):
            spec = self.numeric_argument(node.this, "QUANTILE")
            q = self.literal(node.args["quantile"])
            return self._checked(self._numeric("quantile", spec, alias, label, q, "quantile"))
        if isinstance(node, exp.WithinGroup):
            inner = node.this
            order = node.expression
            if not isinstance(inner, exp.PercentileCont | exp.PercentileDisc):
                raise _refuse(f"{_construct_name(inner)} WITHIN GROUP is not allowed.")
            if not isinstance(order, exp.Order) or len(order.expressions) != 1:
                raise _refuse("PERCENTILE_CONT needs WITHIN GROUP (ORDER BY one column).")
            ordered = order.expressions[0]
            if ordered.args.get("desc"):
                raise _refuse("PERCENTILE_CONT ... ORDER BY column DESC is not supported.")
            spec = self.numeric_argument(ordered.this, "PERCENTILE_CONT")
            q = self.literal(inner.this)
            return self._checked(self._numeric("quantile", spec, alias, label, q, "quantile"))
        if isinstance(node, exp.AggFunc):
            raise _refuse(f"Aggregate {node.sql_name()} is not allowed.")
        raise _refuse(f"{_construct_name(node)} is not allowed in SELECT.")

    def numeric_argument(self, node: exp.Expression, name: str) -> ColumnSpec:
        if isinstance(node, exp.Distinct):
            raise _refuse(f"{name}(DISTINCT ...) is not allowed.")
        if not isinstance(node, exp.Column):
            raise _refuse(
                f"Expressions inside aggregates are not allowed: {name} takes one column."
            )
        spec = self.column(node)
        if spec.type not in NUMERIC_TYPES:
            raise _refuse(f"{name}({spec.name}) needs a numeric column.")
        if spec.lower is None or spec.upper is None:
            raise _refuse(f"Column {spec.name!r} has no public bounds in the schema.")
        return spec

    def _numeric(
        self,
        kind: str,
        spec: ColumnSpec,
        alias: str | None,
        label: str,
        quantile: Any = None,
        policy_name: str | None = None,
    ) -> Aggregate:
        if quantile is not None and (
            isinstance(quantile, bool)
            or not isinstance(quantile, int | float)
            or not 0 < float(quantile) < 1
        ):
            raise _refuse("A quantile must be a number strictly between 0 and 1.")
        default_alias = f"{policy_name or kind}_{spec.name}"
        return Aggregate(
            alias=alias or default_alias,
            kind=kind,
            column=spec.name,
            lower=spec.lower,
            upper=spec.upper,
            column_type=spec.type,
            quantile=float(quantile) if quantile is not None else None,
            label=policy_name or kind,
        )

    def _checked(self, aggregate: Aggregate) -> Aggregate:
        name = aggregate.label if aggregate.kind == "quantile" else aggregate.kind
        allowed = self.allowed_aggregates
        # "quantile" in the policy also allows MEDIAN.
        if (
            allowed is not None
            and name not in allowed
            and not (name == "median" and "quantile" in allowed)
        ):
            raise _refuse(f"Aggregate {name.upper()} is not allowed by the dataset policy.")
        return aggregate

    # -- the statement -------------------------------------------------------------------
    def compile(self, select: exp.Select) -> Plan:
        for key in ("with", "with_"):
            if select.args.get(key):
                raise _refuse("WITH (common table expressions) is not allowed.")
        for node in select.walk():
            for klass in (exp.Join, exp.Window, exp.Subquery, exp.Lateral):
                if isinstance(node, klass):
                    raise _refuse(f"{_CONSTRUCT_NAMES[klass]} are not allowed.")
            if isinstance(node, exp.Select) and node is not select:
                raise _refuse("subqueries are not allowed.")
            if isinstance(node, exp.Placeholder | exp.Parameter):
                raise _refuse("Parameters are not allowed; write literal values.")
        for key, name in (
            ("having", "HAVING"),
            ("order", "ORDER BY"),
            ("limit", "LIMIT"),
            ("offset", "OFFSET"),
            ("distinct", "DISTINCT"),
            ("qualify", "QUALIFY"),
            ("windows", "window functions"),
            ("into", "SELECT INTO"),
            ("locks", "locking clauses"),
            ("sample", "TABLESAMPLE"),
            ("laterals", "LATERAL"),
            ("pivots", "PIVOT"),
            ("connect", "CONNECT BY"),
            ("prewhere", "PREWHERE"),
            ("cluster", "CLUSTER BY"),
            ("distribute", "DISTRIBUTE BY"),
            ("sort", "SORT BY"),
            ("settings", "SETTINGS"),
            ("format", "FORMAT"),
            ("kind", "SELECT modifiers"),
            ("hint", "hints"),
            ("options", "OPTIONS"),
        ):
            if select.args.get(key):
                raise _refuse(f"{name} is not allowed.")
        joins = select.args.get("joins")
        if joins:
            raise _refuse("JOIN is not allowed: query the dataset's one table.")
        source = select.args.get("from_") or select.args.get("from")
        if source is None:
            raise _refuse("FROM is missing: query the dataset's table.")
        table = source.this
        if not isinstance(table, exp.Table):
            raise _refuse(
                f"FROM {_construct_name(table)} is not allowed; name the dataset's table."
            )
        if table.args.get("db") or table.args.get("catalog"):
            raise _refuse("Schema-qualified tables are not allowed; name the dataset's table.")
        if table.args.get("joins") or table.args.get("laterals") or table.args.get("pivots"):
            raise _refuse("JOIN is not allowed: query the dataset's one table.")
        if not isinstance(table.this, exp.Identifier):
            raise _refuse("FROM needs a table name.")
        name = table.name
        if name not in (self.table, self.table.replace("-", "_")):
            raise _refuse(f"Unknown table {name!r}: this dataset's table is {self.table!r}.")
        table_alias = table.alias
        if table_alias:
            self.table = table_alias

        aliases: dict[str, exp.Expression] = {}
        items: list[tuple[str | None, exp.Expression]] = []
        for item in select.expressions:
            if isinstance(item, exp.Alias):
                alias = item.alias
                if alias.lower() == IDENTIFIER_COLUMN:
                    raise _refuse(
                        "The contributor identifier cannot be used in a query (it is the privacy unit)."
                    )
                aliases[alias] = item.this
                items.append((alias, item.this))
            else:
                items.append((None, item))

        group = select.args.get("group")
        group_keys: list[GroupKey] = []
        if group:
            for key in ("grouping_sets", "cube", "rollup", "totals"):
                if group.args.get(key):
                    raise _refuse(f"GROUP BY {key.upper().replace('_', ' ')} is not allowed.")
            for node in group.expressions:
                group_keys.append(self.group_key(node, aliases))
        if len({key.alias for key in group_keys}) != len(group_keys):
            raise _refuse("A column is grouped twice.")
        if len(group_keys) > 3:
            raise _refuse("At most three GROUP BY keys are allowed.")

        where = select.args.get("where")
        where_expr = self.predicate(where.this) if where is not None else None

        aggregates: list[Aggregate] = []
        columns: list[tuple[str, str]] = []
        for output_alias, node in items:
            if isinstance(node, exp.Star):
                raise _refuse("SELECT * is not allowed: select aggregates only.")
            matched = self._matching_key(node, output_alias, group_keys)
            if matched is not None:
                columns.append((matched.alias, "key"))
                continue
            if isinstance(node, exp.Column):
                spec = self.column(node)
                raise _refuse(
                    f"Bare column {spec.name!r} outside an aggregate is not allowed "
                    "(only GROUP BY keys may be selected as they are)."
                )
            if isinstance(node, exp.WidthBucket):
                raise _refuse("WIDTH_BUCKET must also appear in GROUP BY.")
            if isinstance(node, exp.Literal | exp.Boolean | exp.Null | exp.Neg):
                raise _refuse("Constants in SELECT are not allowed: select aggregates only.")
            aggregate = self.aggregate(node, output_alias)
            aggregates.append(aggregate)
            columns.append((aggregate.alias, "aggregate"))
        if not aggregates:
            raise _refuse("Select at least one aggregate (COUNT, SUM, AVG, MEDIAN, QUANTILE).")
        if len(aggregates) > MAX_AGGREGATES:
            raise _refuse(f"At most {MAX_AGGREGATES} aggregates per query.")
        names = [name for name, _ in columns]
        if len(set(names)) != len(names):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise _refuse(f"Output column {duplicate!r} appears twice; give each an alias.")
        plan = Plan(
            table=name,
            where=where_expr,
            group_keys=tuple(group_keys),
            aggregates=tuple(aggregates),
            columns=tuple(columns),
            schema=self.schema_order,
        )
        if plan.group_count > self.max_groups:
            raise _refuse(
                f"The query has {plan.group_count} groups; the policy allows at most "
                f"{self.max_groups}."
            )
        return plan

    def _matching_key(
        self, node: exp.Expression, alias: str | None, keys: list[GroupKey]
    ) -> GroupKey | None:
        for key in keys:
            if isinstance(node, exp.Column) and not node.table and node.name == key.alias:
                return key
            if key.bins is None and isinstance(node, exp.Column) and node.name == key.column:
                if alias and alias != key.alias:
                    raise _refuse("Select a GROUP BY column under its own name.")
                return key
            if key.bins is not None and isinstance(node, exp.WidthBucket) and alias == key.alias:
                return key
        if isinstance(node, exp.WidthBucket):
            for key in keys:
                if key.bins is not None and self.histogram(node, key.alias) == key:
                    return key
        return None


def _literal_node(value: Any) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, int | float) and value < 0:
        return exp.Neg(this=exp.Literal.number(-value))
    return exp.Literal.number(value)


def _fmt(value: float) -> str:
    return f"{value:g}"


def compile_sql(
    sql: str, *, table: str, schema: dict[str, Any], policy: dict[str, Any] | None = None
) -> Plan:
    """Parse, check against the allow-list and the policy, and compile; or raise QueryRefused."""
    select = _parse(sql)
    compiler = _Compiler(table=table, schema=schema_columns(schema), policy=policy or {})
    return compiler.compile(select)
