"""gptme-factory: a software factory for autonomous gptme agents.

The public Python API is small and lazily imported (so importing the package, the CLI's
`--help` and the gptme plugin manifest stay light):

- `Ledger` (ledger.py): open/init the artifact ledger of a brain repo, create artifacts.
- `engine` functions: `start_stage`, `submit`, `advance`, `review`, `close`.
- `verify_ledger` (verify.py): integrity check.
- `FactoryError` (errors.py): the root of every expected failure.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Ledger": "gptme_factory.ledger.store",
    "FactoryError": "gptme_factory.errors",
    "verify_ledger": "gptme_factory.line.verify",
    "start_stage": "gptme_factory.line.engine",
    "submit": "gptme_factory.line.engine",
    "advance": "gptme_factory.line.engine",
    "review": "gptme_factory.line.engine",
    "close": "gptme_factory.line.engine",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gptme_factory' has no attribute {name!r}")
    return getattr(import_module(module), name)
