"""Plain SGD training (no momentum, weight decay or schedule) that records parameters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hessketch.data import augment_batch
from hessketch.errors import NumericalError
from hessketch.models import flatten_params

__all__ = [
    "SGDConfig",
    "evaluate",
    "learning_problem",
    "train_sgd",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SGDConfig:
    """Settings of one training run."""

    lr: float
    batch_size: int
    steps: int
    seed: int
    record_steps: tuple[int, ...]
    eval_every: int = 100
    augment: bool = False  # random crops and flips of each mini-batch (CIFAR, All-CNN-C)
    # a run whose training loss ends above this factor times its start, or whose final
    # training accuracy is at chance, did not learn (None: no loss check)
    max_loss_factor: float | None = 10.0
    stop_if_not_learning: bool = True  # False keeps such a run (a study of divergence)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 10_000
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``(x, y)``.

    ``x`` may be any indexable stand-in for a tensor (:class:`hessketch.pipeline.common.
    LazyImages`); its ``eval_batch`` then bounds the batch.
    """
    batch = min(batch, getattr(x, "eval_batch", batch))
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch])
        loss += float(nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum"))
        correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    model.train(was_training)
    return loss / len(x), correct / len(x)


def train_sgd(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    cfg: SGDConfig,
    *,
    on_record: Callable[[int, torch.Tensor], None],
    device: torch.device | str = "cpu",
) -> list[dict[str, float]]:
    """Train with mini-batch SGD on the mean cross-entropy; seeded and reproducible.

    Step ``t`` means "after ``t`` updates"; the parameters at every step in
    ``cfg.record_steps`` are passed to ``on_record(step, flat_params)``. Mini-batches are
    drawn without replacement from a seeded permutation per epoch; with ``cfg.augment`` each
    mini-batch is randomly cropped and flipped (:func:`hessketch.data.augment_batch`) from a
    second generator of the same seed, so the run stays reproducible.

    Returns:
        One row per evaluation (every ``cfg.eval_every`` steps and at the last step):
        step, train/test loss and accuracy on the full splits, elapsed seconds.

    Raises:
        NumericalError: at once, naming the step, if a mini-batch loss or the parameters of a
            recorded step are not finite (diverged training).
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    augment_gen = torch.Generator().manual_seed(cfg.seed + 1)
    model = model.to(device)
    x_train, y_train = (t.to(device) for t in train)
    x_test, y_test = (t.to(device) for t in test)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    record = set(cfg.record_steps)
    rows: list[dict[str, float]] = []
    order = torch.randperm(len(x_train), generator=gen)
    cursor = 0
    start = time.perf_counter()
    for step in range(cfg.steps + 1):
        if step in record:
            flat = flatten_params(model).cpu()
            if not bool(torch.isfinite(flat).all()):
                raise NumericalError(
                    f"training diverged: the parameters at step {step} are not finite "
                    f"(lr {cfg.lr:g}); nothing was recorded from this step on"
                )
            on_record(step, flat)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            tr_loss, tr_acc = evaluate(model, x_train, y_train)
            te_loss, te_acc = evaluate(model, x_test, y_test)
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "step": step,
                    "train_loss": tr_loss,
                    "train_accuracy": tr_acc,
                    "test_loss": te_loss,
                    "test_accuracy": te_acc,
                    "seconds": elapsed,
                }
            )
            log.info(
                "step %d / %d: train loss %.4f acc %.4f, test loss %.4f acc %.4f (%.1f s)",
                step,
                cfg.steps,
                tr_loss,
                tr_acc,
                te_loss,
                te_acc,
                elapsed,
            )
        if step == cfg.steps:
            break
        if cursor + cfg.batch_size > len(x_train):
            order, cursor = torch.randperm(len(x_train), generator=gen), 0
        idx = order[cursor : cursor + cfg.batch_size].to(device)
        cursor += cfg.batch_size
        inputs = x_train[idx]
        if cfg.augment:
            inputs = augment_batch(inputs.cpu(), augment_gen).to(device)
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(inputs), y_train[idx])
        if not bool(torch.isfinite(loss)):
            raise NumericalError(
                f"training diverged: the mini-batch loss of update {step + 1} (from step "
                f"{step}) is {float(loss.detach())} (lr {cfg.lr:g})"
            )
        loss.backward()
        opt.step()
    return rows


def learning_problem(
    rows: list[dict[str, float]],
    num_classes: int,
    max_loss_factor: float | None,
    train_points: int,
) -> str | None:
    """Why a training run (its evaluation ``rows``) did not learn, or None if it did.

    It did not when the final training loss exceeds ``max_loss_factor`` times the first, or
    when the final training accuracy is within 3 binomial standard errors of chance
    (1 / ``num_classes``, over ``train_points`` points) although the run made updates.
    ``rows`` are those of :func:`train_sgd`, the first at step 0, the last at the final step.
    """
    if len(rows) < 2 or rows[-1]["step"] == 0:
        return None
    first, last = rows[0], rows[-1]
    if max_loss_factor is not None and last["train_loss"] > max_loss_factor * first["train_loss"]:
        return (
            f"the training loss rose from {first['train_loss']:.4g} at step {first['step']} to "
            f"{last['train_loss']:.4g} at step {last['step']} (more than "
            f"training.max_loss_factor = {max_loss_factor:g} times)"
        )
    chance = 1.0 / num_classes
    margin = 3.0 * (chance * (1.0 - chance) / max(1, train_points)) ** 0.5
    if last["train_accuracy"] <= chance + margin:
        return (
            f"the training accuracy at step {last['step']} is {last['train_accuracy']:.4f}, "
            f"at chance (1/{num_classes} = {chance:.4f}, within 3 standard errors)"
        )
    return None
