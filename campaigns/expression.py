"""The selection language of `clm campaign create --select`: one boolean expression over
a customer's scores, stage and features, parsed into a small tree and evaluated column-wise.

    churn_probability > 0.3 and stage in ('declining', 'dormant') and not is_payroll
    propensity_credit_card >= 0.05 and (value_tier == 'affluent' or aum > 50000)

Grammar: comparisons (`< <= > >= == !=`, chained), `in` / `not in` a list of literals,
`and`, `or`, `not`, parentheses, arithmetic (`+ - * /`), numbers, quoted strings,
`true`/`false`. Names are field names, checked against the fields that exist before
anything is evaluated; Python's parser reads the text but nothing is ever `eval`ed:
only the node types below are accepted.
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clm.errors import ClmError

__all__ = ["Expression", "ExpressionError", "parse"]


class ExpressionError(ClmError):
    """The selection expression does not parse, or names an unknown field."""


_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_CONSTANTS = {"true": True, "false": False, "True": True, "False": False}


@dataclass(frozen=True)
class Expression:
    text: str
    tree: ast.expr
    fields: frozenset[str]

    def evaluate(self, frame: Any) -> Any:
        """A boolean numpy array over the rows of `frame` (a pandas DataFrame)."""
        import numpy as np

        result = _eval(self.tree, frame, self.text)
        if np.isscalar(result):
            return np.full(len(frame), bool(result))
        values = np.asarray(result)
        if values.dtype != bool:
            raise ExpressionError(
                f"--select {self.text!r} is not a condition (it gives numbers, not true/false); "
                "compare it, e.g. `churn_probability > 0.3`"
            )
        return values


def parse(text: str, fields: Iterable[str]) -> Expression:
    """Parse and validate `text`; every name must be one of `fields`."""
    known = set(fields)
    if not text or not text.strip():
        raise ExpressionError(
            "--select is empty; write a condition, e.g. `churn_probability > 0.3`"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"--select {text!r} does not parse{where}: {exc.msg}") from None
    names: set[str] = set()
    _check(tree, text, names)
    unknown = sorted(names - known)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hints.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ExpressionError(
            f"--select names unknown field(s) {', '.join(hints)}; fields are scores "
            "(churn_probability, propensity_<product>), stage, stage_next, value_tier, segment, "
            "next_best_product and the features of docs/features.md"
        )
    return Expression(text, tree, frozenset(names))


def _check(node: ast.AST, text: str, names: set[str]) -> None:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And | ast.Or):
        for value in node.values:
            _check(value, text, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub | ast.UAdd):
        _check(node.operand, text, names)
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        _check(node.left, text, names)
        _check(node.right, text, names)
    elif isinstance(node, ast.Compare):
        _check(node.left, text, names)
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right, ast.List | ast.Tuple | ast.Set) or not all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str | int | float)
                    for e in right.elts
                ):
                    raise ExpressionError(
                        f"--select {text!r}: `in` takes a list of literals, e.g. "
                        "stage in ('declining', 'dormant')"
                    )
            elif type(op) in _COMPARE:
                _check(right, text, names)
            else:
                raise ExpressionError(f"--select {text!r}: unsupported comparison")
    elif isinstance(node, ast.Name):
        if node.id not in _CONSTANTS:
            names.add(node.id)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
        pass
    else:
        shown = ast.get_source_segment(text.strip(), node) or type(node).__name__
        raise ExpressionError(
            f"--select {text!r}: {shown!r} is not allowed; use field names, numbers, "
            "quoted strings, comparisons, in (...), and/or/not, + - * /"
        )


def _eval(node: ast.AST, frame: Any, text: str) -> Any:
    import numpy as np

    if isinstance(node, ast.BoolOp):
        values = [_as_bool(_eval(v, frame, text)) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = combine(out, v)
        return out
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, frame, text)
        if isinstance(node.op, ast.Not):
            return np.logical_not(_as_bool(value))
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _ARITHMETIC[type(node.op)](
            _eval(node.left, frame, text), _eval(node.right, frame, text)
        )
    if isinstance(node, ast.Compare):
        left = _eval(node.left, frame, text)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                options = [e.value for e in right_node.elts]  # type: ignore[attr-defined]
                hit = np.isin(np.asarray(left, dtype=object), np.asarray(options, dtype=object))
                value = hit if isinstance(op, ast.In) else ~hit
                right = left
            else:
                right = _eval(right_node, frame, text)
                try:
                    value = _COMPARE[type(op)](left, right)
                except TypeError:
                    raise ExpressionError(
                        f"--select {text!r}: cannot compare "
                        f"{ast.get_source_segment(text.strip(), node) or 'these values'} "
                        "(a text field against a number?)"
                    ) from None
            result = np.logical_and(result, np.asarray(value, dtype=bool))
            left = right
        return result
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        column = frame[node.id]
        return column.to_numpy()
    if isinstance(node, ast.Constant):
        return node.value
    raise ExpressionError(f"--select {text!r}: cannot evaluate")  # pragma: no cover (checked)


def _as_bool(value: Any) -> Any:
    """A numeric 0/1 flag (is_payroll, holds_…) reads as a condition; NaN is false."""
    import numpy as np

    array = np.asarray(value)
    if array.dtype == bool:
        return array
    if array.dtype.kind in "fiu":
        return np.nan_to_num(array.astype(float), nan=0.0) != 0
    raise ExpressionError("a text field is used as a condition in --select; compare it instead")
