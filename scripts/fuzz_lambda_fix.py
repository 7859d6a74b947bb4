"""Loaded at start-up by the fuzzer's venv (scripts/fuzz-api.sh installs it
with a .pth file). CPython 3.11 before 3.11.8 has an AST bug (gh-106905):
`ast.parse` of some snippets raises SystemError ("AST constructor recursion
depth mismatch"). Hypothesis parses a lambda's source only to describe it
in a repr, and on such a Python that crashes schemathesis mid-run. Where the
bug is, a description that cannot be made says "lambda" instead; nothing
else changes."""

import sys

if sys.version_info[:2] == (3, 11) and sys.version_info < (3, 11, 8):
    try:
        from hypothesis.internal import lambda_sources
    except ImportError:  # not installed yet
        lambda_sources = None
    if lambda_sources is not None:
        _describe = lambda_sources.lambda_description

        def _lambda_description(f):
            try:
                return _describe(f)
            except (SystemError, KeyError):
                return "lambda: <source not shown>"

        lambda_sources.lambda_description = _lambda_description
