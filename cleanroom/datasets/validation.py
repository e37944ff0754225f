"""Validation of dataset definitions and of uploaded records against a dataset's schema.

Records are validated row by row into typed Arrow record batches, so a large CSV
streams from the uploaded file into columnar batches without a second in-memory
copy of all rows as Python objects. Error messages name the row, the column and
the rule, never the submitted value: a contributed value must not reach a log or a
response body.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import IO, Any

import pyarrow as pa

from cleanroom.errors import ValidationFailed
from cleanroom.numbers import decimal_number

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
COLUMN_TYPES = ("integer", "float", "string", "boolean")
RESERVED_COLUMNS = {"contributor_id"}
MAX_COLUMNS = 100
MAX_CATEGORIES = 1000
MAX_STRING_LENGTH = 1000
MAX_ERRORS = 100
BATCH_ROWS = 16384
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Cells a spreadsheet would evaluate (CSV/formula injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}
INTEGER_RE = re.compile(r"^[+-]?[0-9]+$")
FLOAT_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
MICRO = Decimal("0.000001")
MAX_FLOAT_BOUND = Decimal(10**15)


# ---------------------------------------------------------------- dataset definitions


def _number(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValidationFailed(f"{where} must be a number.")
    try:
        number = decimal_number(value)  # ASCII digits only: Decimal() also reads "١٢"
    except InvalidOperation as exc:
        raise ValidationFailed(f"{where} must be a number.") from exc
    if not number.is_finite():
        raise ValidationFailed(f"{where} must be a finite number.")
    return number


def schema_clean(schema: Any) -> dict[str, Any]:
    """Check a dataset schema and return its canonical form."""
    if not isinstance(schema, dict) or not isinstance(schema.get("columns"), list):
        raise ValidationFailed("schema must be an object with a list of columns.")
    if set(schema) - {"columns"}:
        raise ValidationFailed("schema holds only 'columns'.")
    columns = schema["columns"]
    if not columns:
        raise ValidationFailed("schema must have at least one column.")
    if len(columns) > MAX_COLUMNS:
        raise ValidationFailed(f"schema may have at most {MAX_COLUMNS} columns.")
    seen: set[str] = set()
    out = []
    for index, column in enumerate(columns):
        where = f"schema column {index + 1}"
        if not isinstance(column, dict):
            raise ValidationFailed(f"{where} must be an object.")
        name = column.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValidationFailed(
                f"{where}: name must be lowercase letters, digits and underscores, "
                "starting with a letter."
            )
        where = f"schema column {name!r}"
        if name in RESERVED_COLUMNS:
            raise ValidationFailed(f"{where}: the name is reserved.")
        if name in seen:
            raise ValidationFailed(f"{where} appears twice.")
        seen.add(name)
        kind = column.get("type")
        if kind not in COLUMN_TYPES:
            raise ValidationFailed(f"{where}: type must be one of {', '.join(COLUMN_TYPES)}.")
        allowed = {"name", "type"}
        clean: dict[str, Any] = {"name": name, "type": kind}
        if kind in ("integer", "float"):
            allowed |= {"lower", "upper"}
            if "lower" not in column or "upper" not in column:
                raise ValidationFailed(f"{where}: numeric columns need lower and upper bounds.")
            lower = _number(column["lower"], f"{where}: lower")
            upper = _number(column["upper"], f"{where}: upper")
            if lower >= upper:
                raise ValidationFailed(f"{where}: lower must be less than upper.")
            if kind == "integer":
                if lower != lower.to_integral_value() or upper != upper.to_integral_value():
                    raise ValidationFailed(f"{where}: integer bounds must be whole numbers.")
                if lower < INT64_MIN or upper > INT64_MAX:
                    raise ValidationFailed(f"{where}: bounds must fit in 64 bits.")
                clean["lower"], clean["upper"] = int(lower), int(upper)
            else:
                if lower < -MAX_FLOAT_BOUND or upper > MAX_FLOAT_BOUND:
                    raise ValidationFailed(
                        f"{where}: bounds must be within -1e15 and 1e15 (a sum over larger "
                        "values overflows and its noise would swamp any answer)."
                    )
                clean["lower"], clean["upper"] = float(lower), float(upper)
        if kind == "string" and "categories" in column:
            allowed.add("categories")
            categories = column["categories"]
            if (
                not isinstance(categories, list)
                or not categories
                or len(categories) > MAX_CATEGORIES
                or not all(isinstance(c, str) and c and len(c) <= 200 for c in categories)
            ):
                raise ValidationFailed(
                    f"{where}: categories must be a list of 1 to {MAX_CATEGORIES} "
                    "non-empty strings."
                )
            if len(set(categories)) != len(categories):
                raise ValidationFailed(f"{where}: categories must be unique.")
            clean["categories"] = list(categories)
        extra = set(column) - allowed
        if extra:
            raise ValidationFailed(f"{where}: unknown field(s) {', '.join(sorted(extra))}.")
        out.append(clean)
    return {"columns": out}


def _decimal_string(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".") or "0"


# Optional policy keys and what reads them (cleanroom/queries/policy.py, sql.py, services.py).
POLICY_REQUIRED = (
    "total_epsilon",
    "max_query_epsilon",
    "min_contributors",
    "max_rows_per_contributor",
    "auto_approve",
)
POLICY_COUNTS = ("max_groups", "max_histogram_bins", "max_contributors")
POLICY_OPTIONAL = (
    *POLICY_COUNTS,
    "delta",
    "total_delta",
    "default_privacy_cap",
    "max_epsilon_per_organization",
    "allowed_organizations",
    "allowed_columns",
    "allowed_aggregates",
    "private_keys",
)
# The aggregate names the SQL compiler checks against ``allowed_aggregates``
# (``quantile`` also allows MEDIAN); ``histogram`` names WIDTH_BUCKET group keys.
POLICY_AGGREGATES = ("count", "sum", "avg", "median", "quantile", "histogram")
MAX_DELTA = Decimal("0.001")
MAX_COUNT = 10**9
# OpenDP counts rows in u32: rows per contributor times max contributors must fit.
MAX_POOL_ROWS = 2**32 - 1
DEFAULT_MAX_CONTRIBUTORS = 1_000_000
DELTA_QUANTUM = Decimal("1e-26")


def delta_bound(policy: dict[str, Any]) -> Decimal:
    """The largest delta a policy may allow: one over the most contributors it admits.

    Delta is the chance that the guarantee fails outright; above 1/n a mechanism may
    release some contributors' records as they are (a thresholded release of a
    near-unique key does exactly that), so it must stay below one person's share.
    """
    return Decimal(1) / Decimal(int(policy.get("max_contributors") or DEFAULT_MAX_CONTRIBUTORS))


def policy_total_delta(policy: dict[str, Any]) -> Decimal:
    """The dataset's delta total for a clean policy: 0 without thresholded releases."""
    if policy.get("private_keys") is not True:
        return Decimal(0)
    total = Decimal(str(policy["total_delta"])) if "total_delta" in policy else delta_bound(policy)
    return total.quantize(DELTA_QUANTUM)


def _policy_error(key: str, message: str) -> dict[str, Any]:
    return {"field": f"policy.{key}", "message": message}


def _name_list(value: Any, key: str, choices: Any, what: str) -> tuple[list[Any], str | None]:
    """(names, None) or ([], message): a non-empty list of distinct names among `choices`."""
    if not isinstance(value, list) or not value:
        return [], f"must be a non-empty list of {what} (omit it to allow all)"
    if not all(isinstance(v, str) and v for v in value):
        return [], f"must list {what} as strings"
    if len(set(value)) != len(value):
        return [], "must not repeat a name"
    unknown = [v for v in value if v not in choices]
    if unknown:
        return [], f"names unknown {what}: {', '.join(sorted(unknown))}"
    return list(value), None


def _organizations(value: Any) -> tuple[list[str], str | None]:
    """Existing organizations by name or id, as names (the query side matches names)."""
    from cleanroom.accounts.models import Organization

    what = "organization names or ids"
    if not isinstance(value, list) or not value:
        return [], f"must be a non-empty list of {what} (omit it to allow every organization)"
    ids = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    names = [v for v in value if isinstance(v, str) and v]
    if len(ids) + len(names) != len(value):
        return [], f"must list {what}"
    by_id = dict(Organization.objects.filter(pk__in=ids).values_list("pk", "name"))
    known = set(Organization.objects.filter(name__in=names).values_list("name", flat=True))
    unknown = [str(v) for v in ids if v not in by_id] + [v for v in names if v not in known]
    if unknown:
        return [], f"names unknown organizations: {', '.join(sorted(unknown))}"
    out = [by_id[v] if isinstance(v, int) else v for v in value]
    if len(set(out)) != len(out):
        return [], "must not name an organization twice"
    return out, None


def _positive_decimal(value: Any, *, places: int) -> tuple[Decimal | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, "must be a number"
    try:
        number = decimal_number(value)
    except InvalidOperation:
        return None, "must be a number"
    if not number.is_finite() or number <= 0:
        return None, "must be a finite number greater than 0"
    if number.as_tuple().exponent < -places:  # type: ignore[operator]
        return None, f"has at most {places} decimal places"
    return number, None


def policy_clean(policy: Any, *, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check a policy against the dataset's (clean) schema and return its canonical form.

    Every key is known and checked: a value the query side cannot use must be refused
    here (400) rather than break every later query. Epsilons and delta become decimal
    strings, organizations become names. Problems of optional and unknown keys are listed
    per key in ``errors`` (``{"field": "policy.<key>", "message"}``).
    """
    if not isinstance(policy, dict):
        raise ValidationFailed("policy must be an object.")
    missing = [key for key in POLICY_REQUIRED if key not in policy]
    if missing:
        raise ValidationFailed(f"policy is missing {', '.join(missing)}.")
    total = _number(policy["total_epsilon"], "policy.total_epsilon")
    per_query = _number(policy["max_query_epsilon"], "policy.max_query_epsilon")
    if total <= 0 or per_query <= 0:
        raise ValidationFailed("policy epsilons must be greater than 0.")
    if per_query > total:
        raise ValidationFailed("policy.max_query_epsilon cannot exceed policy.total_epsilon.")
    if total >= Decimal(10**12):
        raise ValidationFailed("policy.total_epsilon is too large.")
    if total.as_tuple().exponent < -12 or per_query.as_tuple().exponent < -12:  # type: ignore[operator]
        raise ValidationFailed("policy epsilons have at most 12 decimal places.")
    for key in ("min_contributors", "max_rows_per_contributor"):
        value = policy[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**9:
            raise ValidationFailed(f"policy.{key} must be a whole number of at least 1.")
    if not isinstance(policy["auto_approve"], bool):
        raise ValidationFailed("policy.auto_approve must be true or false.")
    clean: dict[str, Any] = {key: policy[key] for key in POLICY_REQUIRED}
    clean["total_epsilon"] = _decimal_string(total)
    clean["max_query_epsilon"] = _decimal_string(per_query)

    errors: list[dict[str, Any]] = []
    unknown = sorted(set(policy) - set(POLICY_REQUIRED) - set(POLICY_OPTIONAL))
    for key in unknown:
        errors.append(_policy_error(key, "is not a policy field"))
    columns = {c["name"]: c["type"] for c in (schema or {"columns": []})["columns"]}
    for key in POLICY_OPTIONAL:
        if key not in policy:
            continue
        value = policy[key]
        problem: str | None = None
        if key in POLICY_COUNTS:
            if isinstance(value, bool) or not isinstance(value, int):
                problem = "must be a whole number"
            elif not 1 <= value <= MAX_COUNT:
                problem = f"must be from 1 to {MAX_COUNT}"
            else:
                clean[key] = value
        elif key in ("delta", "total_delta"):
            number, problem = _positive_decimal(value, places=26)
            bound = min(MAX_DELTA, delta_bound(clean))  # max_contributors is checked first
            if number is not None and number > bound:
                problem = (
                    f"must be at most {_decimal_string(bound)}, one over max_contributors "
                    f"({clean.get('max_contributors', DEFAULT_MAX_CONTRIBUTORS):,}): "
                    "a larger delta lets a release show some contributors' records as they are"
                )
            elif number is not None:
                clean[key] = _decimal_string(number)
        elif key == "default_privacy_cap":
            number, problem = _positive_decimal(value, places=12)
            if number is not None:
                clean[key] = _decimal_string(number)
        elif key == "max_epsilon_per_organization":
            number, problem = _positive_decimal(value, places=12)
            if number is not None and number > total:
                problem = "cannot exceed policy.total_epsilon"
            elif number is not None:
                clean[key] = _decimal_string(number)
        elif key == "allowed_organizations":
            clean[key], problem = _organizations(value)
        elif key == "allowed_columns":
            clean[key], problem = _name_list(value, key, columns, "schema columns")
        elif key == "allowed_aggregates":
            clean[key], problem = _name_list(value, key, POLICY_AGGREGATES, "aggregates")
        elif key == "private_keys":
            # A flag read by the query compiler: string and integer columns without public
            # categories may be group keys, released under a threshold with ``delta``.
            if not isinstance(value, bool):
                problem = "must be true or false"
            else:
                clean[key] = value
        if problem is not None:
            errors.append(_policy_error(key, problem))
            clean.pop(key, None)
    if "delta" in clean and "total_delta" in clean and clean["delta"] > clean["total_delta"]:
        errors.append(_policy_error("delta", "cannot exceed policy.total_delta"))
    max_contributors = clean.get("max_contributors", DEFAULT_MAX_CONTRIBUTORS)
    if clean["max_rows_per_contributor"] * max_contributors > MAX_POOL_ROWS:
        errors.append(
            _policy_error(
                "max_rows_per_contributor",
                f"times max_contributors ({max_contributors:,}) must be at most "
                f"{MAX_POOL_ROWS:,} rows, the most the DP engine can count; lower either",
            )
        )
    if errors:
        fields = ", ".join(e["field"] for e in errors)
        detail = f"The policy has unknown or invalid field(s): {fields}."
        if unknown:
            detail += f" Unknown: {', '.join(unknown)}; known: {', '.join(POLICY_OPTIONAL)}."
        raise ValidationFailed(detail, errors=errors)
    return clean


def price_clean(price: Any) -> dict[str, str]:
    if not isinstance(price, dict):
        raise ValidationFailed("price must be an object.")
    missing = [
        k for k in ("currency", "per_query", "per_epsilon", "platform_fee") if k not in price
    ]
    if missing:
        raise ValidationFailed(f"price is missing {', '.join(missing)}.")
    extra = set(price) - {"currency", "per_query", "per_epsilon", "platform_fee"}
    if extra:
        raise ValidationFailed(f"price has unknown field(s) {', '.join(sorted(extra))}.")
    currency = price["currency"]
    if not isinstance(currency, str) or not re.match(r"^[A-Z]{3}$", currency):
        raise ValidationFailed("price.currency must be a three-letter code such as EUR.")
    clean = {"currency": currency}
    for key in ("per_query", "per_epsilon", "platform_fee"):
        amount = _number(price[key], f"price.{key}")
        if amount < 0:
            raise ValidationFailed(f"price.{key} cannot be negative.")
        if amount >= Decimal(10**9):  # first: quantize() fails beyond 28 digits
            raise ValidationFailed(f"price.{key} is too large.")
        if amount != amount.quantize(MICRO, rounding="ROUND_DOWN"):
            raise ValidationFailed(f"price.{key} has at most 6 decimal places.")
        clean[key] = format(amount.quantize(MICRO), "f")
    if Decimal(clean["platform_fee"]) > 1:
        raise ValidationFailed("price.platform_fee is a fraction between 0 and 1.")
    return clean


RESERVED_SLUGS = {"new"}  # portal paths under /datasets/


def slug_clean(slug: Any) -> str:
    if isinstance(slug, str) and slug in RESERVED_SLUGS:
        raise ValidationFailed(f"The slug {slug!r} is reserved; choose another.")
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise ValidationFailed(
            "slug must be 2 to 63 lowercase letters, digits and underscores, starting with a "
            "letter (it is the table name in queries)."
        )
    return slug


# ---------------------------------------------------------------- records


class _Column:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["name"]
        self.type: str = spec["type"]
        self.lower: float = spec.get("lower", 0)
        self.upper: float = spec.get("upper", 0)
        categories = spec.get("categories")
        self.categories = frozenset(categories) if categories else None
        self.categories_text = ", ".join(categories) if categories else ""

    def from_json(self, value: Any) -> tuple[Any, str | None]:
        """(parsed value, None) or (None, message): JSON values must have the column's type."""
        if value is None:
            return None, "a value is required"
        if self.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    return None, "expected an integer"
            return self._bounded(value)
        if self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, "expected a number"
            return self._bounded(float(value))
        if self.type == "boolean":
            if not isinstance(value, bool):
                return None, "expected true or false"
            return value, None
        if not isinstance(value, str):
            return None, "expected a string"
        return self._string(value)

    def from_text(self, text: str) -> tuple[Any, str | None]:
        """Parse a CSV cell (leading/trailing spaces ignored for non-strings)."""
        if self.type == "string":
            if text == "":
                return None, "a value is required"
            return self._string(text)
        stripped = text.strip()
        if stripped == "":
            return None, "a value is required"
        if self.type == "integer":
            if not INTEGER_RE.match(stripped):
                if text.startswith(FORMULA_PREFIXES[:1] + FORMULA_PREFIXES[3:]):
                    return None, "looks like a spreadsheet formula, which is not accepted"
                return None, "expected an integer"
            if len(stripped.lstrip("+-").lstrip("0")) > 19:  # beyond 64 bits, and int()'s limit
                return None, f"out of bounds: must be between {self.lower} and {self.upper}"
            return self._bounded(int(stripped))
        if self.type == "float":
            if not FLOAT_RE.match(stripped):
                if text.startswith(FORMULA_PREFIXES[:1] + FORMULA_PREFIXES[3:]):
                    return None, "looks like a spreadsheet formula, which is not accepted"
                return None, "expected a number"
            return self._bounded(float(stripped))
        word = stripped.lower()
        if word in TRUE_WORDS:
            return True, None
        if word in FALSE_WORDS:
            return False, None
        return None, "expected true or false"

    def _bounded(self, value: int | float) -> tuple[Any, str | None]:
        if isinstance(value, float) and not math.isfinite(value):
            return None, "expected a finite number"
        if value < self.lower or value > self.upper:
            return None, f"out of bounds: must be between {self.lower} and {self.upper}"
        return value, None

    def _string(self, value: str) -> tuple[Any, str | None]:
        if "\x00" in value:
            return None, "contains a NUL byte"
        if self.categories is not None:
            if value not in self.categories:
                return None, f"not one of the categories: {self.categories_text}"
            return value, None
        if value.startswith(FORMULA_PREFIXES):
            return None, "looks like a spreadsheet formula, which is not accepted"
        if len(value) > MAX_STRING_LENGTH:
            return None, f"longer than {MAX_STRING_LENGTH} characters"
        return value, None


def _error(row: int | None, column: str | None, message: str) -> dict[str, Any]:
    return {"row": row, "column": column, "message": message}


class RecordBatcher:
    """Validate rows into typed Arrow batches; collects row-level errors (capped)."""

    def __init__(self, schema: dict[str, Any], *, max_rows: int) -> None:
        self.columns = [_Column(spec) for spec in schema["columns"]]
        self.names = [c.name for c in self.columns]
        self.known = set(self.names)
        self.arrow_schema = pa.schema(
            [
                pa.field(
                    c.name,
                    {
                        "integer": pa.int64(),
                        "float": pa.float64(),
                        "string": pa.large_string(),
                        "boolean": pa.bool_(),
                    }[c.type],
                    nullable=False,
                )
                for c in self.columns
            ]
        )
        self.max_rows = max_rows
        self.rows = 0
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.batches: list[pa.RecordBatch] = []
        self._buffer: list[list[Any]] = [[] for _ in self.columns]

    def error(self, row: int | None, column: str | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(_error(row, column, message))

    def _count_row(self, row: int) -> bool:
        self.rows += 1
        if self.rows > self.max_rows:
            if self.rows == self.max_rows + 1:
                self.error(
                    row,
                    None,
                    f"too many rows: at most {self.max_rows} rows per contributor in this dataset",
                )
            return False
        return True

    def add_values(self, row: int, values: list[Any]) -> None:
        if self.error_count:
            return  # nothing will be stored: stop building batches, keep validating
        for buffer, value in zip(self._buffer, values, strict=True):
            buffer.append(value)
        if len(self._buffer[0]) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer and self._buffer[0]:
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(self._buffer, self.arrow_schema, strict=True)
            ]
            self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.arrow_schema))
            self._buffer = [[] for _ in self.columns]

    def add_json(self, row: int, record: Any) -> None:
        if not self._count_row(row):
            return
        if not isinstance(record, dict):
            self.error(row, None, "each record must be an object of column: value")
            return
        unknown = [key for key in record if key not in self.known]
        for key in unknown:
            self.error(row, str(key)[:100], "unknown column")
        values: list[Any] = []
        failed = bool(unknown)
        for column in self.columns:
            if column.name not in record:
                self.error(row, column.name, "missing required column")
                failed = True
                continue
            value, message = column.from_json(record[column.name])
            if message:
                self.error(row, column.name, message)
                failed = True
            values.append(value)
        if not failed:
            self.add_values(row, values)

    def add_cells(self, row: int, cells: list[str], header: list[str]) -> None:
        if not self._count_row(row):
            return
        if len(cells) != len(header):
            self.error(row, None, f"expected {len(header)} cells, found {len(cells)}")
            return
        values: list[Any] = []
        failed = False
        for column, text in zip(self.columns, cells, strict=True):
            value, message = column.from_text(text)
            if message:
                self.error(row, column.name, message)
                failed = True
            values.append(value)
        if not failed:
            self.add_values(row, values)

    def table(self) -> pa.Table:
        self._flush()
        return pa.Table.from_batches(self.batches, schema=self.arrow_schema)

    def raise_if_failed(self) -> None:
        if self.error_count:
            shown = len(self.errors)
            more = f" (first {shown} listed)" if shown < self.error_count else ""
            raise ValidationFailed(
                f"The upload was refused and nothing was stored: {self.error_count} "
                f"error(s){more}.",
                errors=self.errors,
            )


def records_validate(*, schema: dict[str, Any], records: Any, max_rows: int) -> pa.Table:
    """Validate JSON records (a list of objects) into one typed table, or raise with errors."""
    if not isinstance(records, list):
        raise ValidationFailed(
            "records must be a list of objects.",
            errors=[_error(None, None, "records must be a list")],
        )
    if not records:
        raise ValidationFailed(
            "The upload holds no records.", errors=[_error(None, None, "no records")]
        )
    batcher = RecordBatcher(schema, max_rows=max_rows)
    for index, record in enumerate(records, start=1):
        batcher.add_json(index, record)
    batcher.raise_if_failed()
    return batcher.table()


def _csv_lines(binary: IO[bytes]) -> Iterator[str]:
    """Decode line by line (UTF-8 is self-synchronizing), refusing NUL bytes and bad encodings.

    Lines are read from the (possibly on-disk) upload one at a time, so a large file is
    never held in memory as a whole.
    """
    for number, raw in enumerate(binary, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _FileProblem(number, "is not valid UTF-8 text") from None
        if "\x00" in line:
            raise _FileProblem(number, "contains a NUL byte")
        yield line


class _FileProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def csv_validate(*, schema: dict[str, Any], binary: IO[bytes], max_rows: int) -> pa.Table:
    """Validate a CSV file (header row of column names) streamed from `binary`."""
    batcher = RecordBatcher(schema, max_rows=max_rows)
    lines = _csv_lines(binary)
    try:
        reader = (cells for cells in csv.reader(lines, strict=True) if cells)
        try:
            header = next(reader)
        except StopIteration:
            raise ValidationFailed(
                "The file is empty.", errors=[_error(None, None, "empty file")]
            ) from None
        header = [name.strip() for name in header]
        _check_header(header, batcher)
        order = [header.index(name) for name in batcher.names]
        row = 0
        for row, cells in enumerate(reader, start=1):
            if len(cells) == len(header):
                cells = [cells[i] for i in order]
            batcher.add_cells(row, cells, header)
        if row == 0:
            raise ValidationFailed(
                "The file has a header but no rows.", errors=[_error(None, None, "no rows")]
            )
    except _FileProblem as problem:
        raise ValidationFailed(
            f"The upload was refused and nothing was stored: line {problem.line} "
            f"{problem.message}.",
            errors=[_error(None, None, f"line {problem.line} {problem.message}")],
        ) from None
    except csv.Error as exc:
        raise ValidationFailed(
            "The upload was refused and nothing was stored: the file is not well-formed CSV.",
            errors=[_error(None, None, f"malformed CSV: {_csv_error_text(exc)}")],
        ) from None
    batcher.raise_if_failed()
    return batcher.table()


def _csv_error_text(exc: csv.Error) -> str:
    # csv errors describe structure ("unexpected end of data"), not cell contents.
    return str(exc).split("'", 1)[0].strip() or "malformed"


def _check_header(header: list[str], batcher: RecordBatcher) -> None:
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(_error(0, name[:100], "column appears twice in the header"))
        seen.add(name)
        if name not in batcher.known:
            problems.append(_error(0, name[:100], "unknown column"))
    for name in batcher.names:
        if name not in seen:
            problems.append(_error(0, name, "missing required column"))
    if problems:
        raise ValidationFailed(
            "The upload was refused and nothing was stored: the header does not match the "
            "dataset's columns.",
            errors=problems,
        )
