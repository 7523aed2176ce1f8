"""What a training run will cost in memory, estimated from its shape before anything is allocated.

Each knob (channels, depth, batch, patch) may be reasonable alone and absurd together:
``base_channels`` 512 with ``depth`` 8 is a 40-billion-weight network. ``check_training_memory``
refuses a configuration whose estimate exceeds the budget (``SPOCO_TRAIN_MEMORY_GB``, default
``DEFAULT_BUDGET_GB``) with a ``ValueError`` that says what it would need and what to lower.

The estimate (float32, the worst case: bfloat16 autocast needs less):
- weights: student + EMA teacher + gradients + two Adam moments + one transient copy = 6 copies of
  the parameters;
- activations kept for the backward pass: per sample, each encoder level stores ~5 and each decoder
  level ~9 tensors of its width at its resolution, twice over for the gradients flowing back, plus
  the teacher's forward pass (one level at a time) and the two augmented views.
Against the peak resident memory of real CPU training runs (base 8-128 channels, depth 3-8, batch
1-8, 64-256 px patches) the estimate was 0.87-1.25 times the measured peak (tests/test_budget.py
checks one run).
"""

from __future__ import annotations

import os

DEFAULT_BUDGET_GB = 16.0
BYTES_PER_VALUE = 4  # float32
OVERHEAD_BYTES = 256 * 2**20  # the framework itself, the samples, the loss's per-object tensors


def budget_bytes() -> int:
    """``SPOCO_TRAIN_MEMORY_GB`` (a positive number), else ``DEFAULT_BUDGET_GB``, in bytes."""
    raw = os.environ.get("SPOCO_TRAIN_MEMORY_GB", "").strip()
    if not raw:
        return int(DEFAULT_BUDGET_GB * 2**30)
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"SPOCO_TRAIN_MEMORY_GB must be a number of GiB, not {raw!r}") from exc
    if not 0 < value < 1e6:
        raise ValueError(f"SPOCO_TRAIN_MEMORY_GB must be a positive number of GiB, not {raw!r}")
    return int(value * 2**30)


def _widths(base_channels: int, depth: int) -> list[int]:
    return [base_channels * 2**i for i in range(depth)]


def parameter_count(
    in_channels: int, base_channels: int, depth: int, embedding_dim: int = 16, foreground_head: bool = True
) -> int:
    """Weights of ``spoco_core.model.EmbeddingUNet`` with this shape (norm affine terms included)."""
    widths = _widths(base_channels, depth)
    total, cin = 0, in_channels
    for w in widths:
        total += 9 * cin * w + 9 * w * w + 4 * w
        cin = w
    for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
        total += 9 * (w_in + w_skip) * w_skip + 9 * w_skip * w_skip + 4 * w_skip
    total += (widths[0] + 1) * embedding_dim
    if foreground_head:
        total += widths[0] + 1
    return total


def training_bytes(
    in_channels: int,
    base_channels: int,
    depth: int,
    batch_size: int,
    patch_size: int,
    embedding_dim: int = 16,
) -> int:
    """Estimated peak memory of one training step in bytes (see the module docstring)."""
    widths = _widths(base_channels, depth)
    weights = 6 * parameter_count(in_channels, base_channels, depth, embedding_dim)
    side = float(patch_size)
    kept = 0.0  # values per sample kept for the backward pass
    widest = 0.0  # the largest single level (the teacher's transient forward pass)
    for i, w in enumerate(widths):
        pixels = (side / 2**i) ** 2
        kept += pixels * w * (5 + (9 if i < depth - 1 else 0))
        widest = max(widest, pixels * w * 4)
    per_sample = 2 * kept + widest + 4 * side**2 * (in_channels + embedding_dim)
    return int(BYTES_PER_VALUE * (weights + batch_size * per_sample) + OVERHEAD_BYTES)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_training_memory(
    in_channels: int,
    base_channels: int,
    depth: int,
    batch_size: int,
    patch_size: int,
    embedding_dim: int = 16,
    budget: int | None = None,
) -> int:
    """The estimate in bytes; a ``ValueError`` naming the need and the budget when it is over."""
    for name, value in (
        ("in_channels", in_channels),
        ("base_channels", base_channels),
        ("depth", depth),
        ("batch_size", batch_size),
        ("patch_size", patch_size),
        ("embedding_dim", embedding_dim),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    limit = budget_bytes() if budget is None else int(budget)
    if depth > 16:  # 2**15 x the base width already: no budget fits, and the estimate grows huge
        raise ValueError(f"depth {depth} is too deep: at most 16 levels")
    need = training_bytes(in_channels, base_channels, depth, batch_size, patch_size, embedding_dim)
    if need > limit:
        weights = 6 * BYTES_PER_VALUE * parameter_count(in_channels, base_channels, depth, embedding_dim)
        raise ValueError(
            f"training would need about {_gib(need)} of memory ({_gib(weights)} for the network of "
            f"base_channels {base_channels}, depth {depth}; the rest for batch {batch_size} of "
            f"{patch_size} px patches), more than the budget of {_gib(limit)} "
            "(SPOCO_TRAIN_MEMORY_GB): lower base_channels, depth, batch size or patch size"
        )
    return need


def training_problem(
    in_channels: int,
    base_channels: int,
    depth: int,
    batch_size: int,
    patch_size: int,
    embedding_dim: int = 16,
    budget: int | None = None,
) -> str | None:
    """``check_training_memory``'s message, or None when the run fits (for argument checks)."""
    try:
        check_training_memory(
            in_channels, base_channels, depth, batch_size, patch_size, embedding_dim, budget
        )
    except ValueError as exc:
        return str(exc)
    return None
