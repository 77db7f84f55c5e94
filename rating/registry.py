"""Which class implements a model name, and which kernel pairs with which reference.

Tests and benchmarks iterate `KERNEL_REFERENCES` so a model cannot gain a kernel without being held
to its Decimal reference.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from rating.errors import Problem, UnknownModelError
from rating.price import MODELS
from rating.table import KERNEL_MODELS, KernelPrice


def model_classes(name: str) -> tuple[type, ...]:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            [
                Problem(
                    "model",
                    "unknown_model",
                    f"unknown price model {name!r}; choose one of: {', '.join(MODELS)}",
                )
            ]
        ) from None


def reference_amount(price: KernelPrice, quantity: Decimal) -> Decimal:
    """The Decimal reference a kernel must equal to the last digit."""
    return price.amount(quantity)


#: Model name → (kernel model code, reference function).
KERNEL_REFERENCES: dict[str, tuple[int, Callable[[KernelPrice, Decimal], Decimal]]] = {
    name: (code, reference_amount) for name, (code, _cls) in KERNEL_MODELS.items()
}

__all__ = ["KERNEL_REFERENCES", "model_classes", "reference_amount"]
