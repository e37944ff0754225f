"""The SQL subset: what compiles, and every refused construct named in the message."""

from __future__ import annotations

import polars as pl
import pytest

from cleanroom.errors import QueryRefused
from cleanroom.queries.sql import compile_sql

SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": ["north", "south", "east", "west"]},
        {"name": "city", "type": "string"},
        {"name": "income", "type": "float", "lower": 0, "upper": 200000},
        {"name": "owns_home", "type": "boolean"},
    ]
}


def plan(sql: str, **policy: object):  # type: ignore[no-untyped-def]
    return compile_sql(sql, table="households", schema=SCHEMA, policy=policy)


def refused(sql: str, **policy: object) -> str:
    with pytest.raises(QueryRefused) as caught:
        plan(sql, **policy)
    return caught.value.detail


def test_grouped_count_sum_avg_compiles_with_public_keys() -> None:
    compiled = plan(
        "SELECT region, COUNT(*) AS n, SUM(income) AS total, AVG(income) AS mean_income "
        "FROM households WHERE age >= 30 GROUP BY region"
    )
    assert compiled.columns == (
        ("region", "key"),
        ("n", "aggregate"),
        ("total", "aggregate"),
        ("mean_income", "aggregate"),
    )
    assert [a.kind for a in compiled.aggregates] == ["count", "sum", "avg"]
    assert compiled.group_keys[0].labels == ("north", "south", "east", "west")
    assert compiled.aggregates[2].lower == 0 and compiled.aggregates[2].upper == 200000
    assert compiled.group_count == 4


def test_where_compiles_to_the_same_rows_as_python() -> None:
    compiled = plan(
        "SELECT COUNT(*) FROM households WHERE (age BETWEEN 30 AND 40 OR region IN ('north', 'east')) "
        "AND NOT owns_home AND income <> 5.5 AND city IS NULL"
    )
    frame = pl.DataFrame(
        {
            "age": [35, 50, 50, 35, 35],
            "region": ["south", "north", "south", "west", "east"],
            "city": [None, None, None, None, "x"],
            "income": [1.0, 2.0, 3.0, 5.5, 1.0],
            "owns_home": [False, False, False, False, False],
        }
    )
    assert compiled.where is not None
    assert frame.filter(compiled.where).height == 2


def test_quantiles_and_median() -> None:
    compiled = plan(
        "SELECT MEDIAN(age), QUANTILE(income, 0.9) AS p90, "
        "PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY age) AS q1 FROM households"
    )
    assert [(a.kind, a.column, a.quantile) for a in compiled.aggregates] == [
        ("quantile", "age", 0.5),
        ("quantile", "income", 0.9),
        ("quantile", "age", 0.25),
    ]


def test_histogram_over_public_bins() -> None:
    compiled = plan(
        "SELECT WIDTH_BUCKET(age, 0, 100, 5) AS age_band, COUNT(*) AS n FROM households GROUP BY age_band"
    )
    key = compiled.group_keys[0]
    assert key.bins == (0.0, 100.0, 5)
    assert key.labels == ("[0, 20)", "[20, 40)", "[40, 60)", "[60, 80)", "[80, 100)")


def test_boolean_group_and_two_keys() -> None:
    compiled = plan("SELECT owns_home, region, COUNT(*) FROM households GROUP BY owns_home, region")
    assert compiled.group_count == 8


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT * FROM households", "SELECT *"),
        ("SELECT age FROM households", "Bare column 'age'"),
        ("SELECT region, COUNT(*) FROM households", "Bare column 'region'"),
        ("SELECT COUNT(*), contributor_id FROM households", "contributor identifier"),
        ("SELECT COUNT(*) FROM households WHERE contributor_id = 7", "contributor identifier"),
        ("SELECT SUM(contributor_id) FROM households", "contributor identifier"),
        ("SELECT COUNT(*) AS contributor_id FROM households", "contributor identifier"),
        ("SELECT COUNT(*) FROM households GROUP BY contributor_id", "contributor identifier"),
        ("SELECT COUNT(*) FROM households h JOIN households g ON h.age = g.age", "JOIN"),
        ("SELECT COUNT(*) FROM households, households AS b", "JOIN"),
        ("SELECT COUNT(*) FROM (SELECT * FROM households) AS t", "subqueries"),
        (
            "SELECT COUNT(*) FROM households WHERE age IN (SELECT age FROM households)",
            "subqueries",
        ),
        ("WITH t AS (SELECT * FROM households) SELECT COUNT(*) FROM t", "WITH"),
        ("SELECT region, COUNT(*) FROM households GROUP BY region HAVING COUNT(*) > 3", "HAVING"),
        ("SELECT COUNT(*) FROM households ORDER BY 1", "ORDER BY"),
        ("SELECT COUNT(*) FROM households LIMIT 1", "LIMIT"),
        ("SELECT COUNT(*) OVER () FROM households", "window functions"),
        ("SELECT LENGTH(city) FROM households", "function LENGTH"),
        ("SELECT COUNT(*) FROM households WHERE LOWER(city) = 'x'", "function LOWER"),
        ("SELECT MAX(age) FROM households", "MAX"),
        ("SELECT MIN(age) FROM households", "MIN"),
        ("SELECT STDDEV(age) FROM households", "STDDEV"),
        ("SELECT SUM(age * 2) FROM households", "Expressions inside aggregates"),
        ("SELECT AVG(age + income) FROM households", "Expressions inside aggregates"),
        ("SELECT COUNT(age) FROM households", "COUNT(*)"),
        ("SELECT COUNT(DISTINCT age) FROM households", "DISTINCT"),
        ("SELECT SUM(salary) FROM households", "Unknown column 'salary'"),
        ("SELECT COUNT(*) FROM households WHERE salary > 1", "Unknown column 'salary'"),
        ("SELECT COUNT(*) FROM households; SELECT COUNT(*) FROM households", "second statement"),
        ("SELECT COUNT(*) FROM households; DROP TABLE households", "second statement"),
        ("DROP TABLE households", "DDL/DML"),
        ("DELETE FROM households", "DDL/DML"),
        ("INSERT INTO households (age) VALUES (1)", "DDL/DML"),
        ("UPDATE households SET age = 1", "DDL/DML"),
        ("CREATE TABLE x (a int)", "DDL/DML"),
        ("SELECT COUNT(*) FROM households -- ' OR 1=1", "Comments"),
        ("SELECT /* smuggled */ COUNT(*) FROM households", "Comments"),
        ("SELECT COUNT(*) FROM households WHERE region = 'a' /* x */", "Comments"),
        ("SELECT COUNT(*) FROM people", "Unknown table 'people'"),
        ("SELECT COUNT(*) FROM public.households", "Schema-qualified"),
        ("SELECT COUNT(*) FROM households UNION SELECT COUNT(*) FROM households", "UNION"),
        ("SELECT COUNT(*)", "FROM is missing"),
        ("SELECT 1 FROM households", "Constants in SELECT"),
        ("SELECT DISTINCT region FROM households", "DISTINCT"),
        ("SELECT city, COUNT(*) FROM households GROUP BY city", "categories are not public"),
        ("SELECT age, COUNT(*) FROM households GROUP BY age", "categories are not public"),
        (
            "SELECT WIDTH_BUCKET(age, 0, 100, 100) AS b, COUNT(*) FROM households GROUP BY b",
            "100 bins",
        ),
        (
            "SELECT WIDTH_BUCKET(age, 18, 30, 12) AS b, COUNT(*) FROM households GROUP BY b",
            "one bin per value",
        ),
        ("SELECT COUNT(*) FROM households WHERE age > 'x'", "compare it with a number"),
        ("SELECT COUNT(*) FROM households WHERE region = 3", "quoted string"),
        ("SELECT COUNT(*) FROM households WHERE region LIKE 'n%'", "LIKE"),
        ("SELECT COUNT(*) FROM households WHERE CAST(age AS TEXT) = '1'", "CAST"),
        ("SELECT COUNT(*) FROM households WHERE age = $1", "Parameters"),
        ("SELECT QUANTILE(age, 1.5) FROM households", "strictly between 0 and 1"),
        ("SELECT SUM(region) FROM households", "needs a numeric column"),
        ("", "empty"),
        ("SELECT COUNT(* FROM households", "could not be parsed"),
        ("SELECT COUNT(*) FROM households WHERE age = 1e999", "not finite"),
    ],
)
def test_refused_constructs_are_named(sql: str, named: str) -> None:
    assert named in refused(sql)


def test_policy_limits_columns_and_aggregates() -> None:
    assert "not allowed by the dataset policy" in refused(
        "SELECT SUM(income) FROM households", allowed_columns=["age", "region"]
    )
    assert "SUM is not allowed by the dataset policy" in refused(
        "SELECT SUM(age) FROM households", allowed_aggregates=["count", "avg"]
    )
    assert plan("SELECT MEDIAN(age) FROM households", allowed_aggregates=["quantile"])


def test_sql_injection_strings_are_plain_literals() -> None:
    compiled = plan("SELECT COUNT(*) FROM households WHERE region = 'x''; DROP TABLE households;'")
    frame = pl.DataFrame({"region": ["x'; DROP TABLE households;", "north"]})
    assert compiled.where is not None
    assert frame.filter(compiled.where).height == 1


def test_too_long_and_nul() -> None:
    assert "longer than" in refused(
        "SELECT COUNT(*) FROM households WHERE " + "age > 1 AND " * 2000 + "age > 1"
    )
    assert "NUL" in refused("SELECT COUNT(*) FROM households\x00")
