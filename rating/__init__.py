"""Pure pricing: exact money, price models, numba kernels and their Decimal references."""
