"""One checkpointed training loop used by every trainer (GAN, DP-LaSE, Voynov-Babenko).

Guarantees, so no trainer re-implements them:
- randomness of step t comes from `step_generator(seed, t)` (a fresh generator per step), so a run that is
  interrupted and resumed draws exactly the numbers an uninterrupted run draws;
- a checkpoint (module and optimizer state dicts, step, loss history) is written atomically every
  ``checkpoint_every`` steps and when SIGTERM or SIGUSR2 arrives (the SLURM pre-emption signals); after the
  signal the loop raises `Preempted`, and rerunning the same command resumes from that checkpoint;
- a NaN/Inf in any loss term stops the run with `NonFiniteLossError` naming the term and the step; trainers
  call `check_finite_update` between backward() and the optimiser step, so a finite loss with a NaN/Inf
  gradient stops the run too, before it reaches the weights; and a checkpoint is never written over with
  non-finite weights, so the last good one stays on disk and resumes;
- losses go to a tqdm bar (each term shown) and to a long-format history (step, term, value).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dplase.artifacts import ArtifactError, load_artifact, save_artifact

log = logging.getLogger(__name__)

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf."""


class Preempted(SystemExit):
    """Raised after a pre-emption signal once the checkpoint is safely written (exit code 143)."""

    def __init__(self, step: int, path: Path, signum: int | None = None) -> None:
        super().__init__(143)
        self.step, self.path = step, path
        self.signum = signum  # which signal stopped the run (launchers requeue on SIGUSR2, not on SIGTERM)

    def __str__(self) -> str:
        return f"pre-empted at step {self.step}; checkpoint written to {self.path}; rerun to resume"


def step_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The random generator for one step: a pure function of (seed, step), hence resume-exact."""
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + 17) % (2**63 - 1))
    return gen


@dataclass
class LoopState:
    """Everything a trainer must persist: stateful objects (modules/optimizers) and the history."""

    stateful: Mapping[str, Any]
    step: int = 0
    history: list[tuple[int, str, float]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        steps = torch.tensor([h[0] for h in self.history], dtype=torch.int64)
        values = torch.tensor([h[2] for h in self.history], dtype=torch.float64)
        return {
            "objects": {name: obj.state_dict() for name, obj in self.stateful.items()},
            "step": self.step,
            "history_steps": steps,
            "history_terms": [h[1] for h in self.history],
            "history_values": values,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, obj in self.stateful.items():
            obj.load_state_dict(state["objects"][name])
        self.step = int(state["step"])
        self.history = list(
            zip(
                state["history_steps"].tolist(),
                list(state["history_terms"]),
                state["history_values"].tolist(),
                strict=True,
            )
        )


class _SignalFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signum = signum


@contextmanager
def preemption_flag() -> Iterator[_SignalFlag]:
    """Catch SIGTERM/SIGUSR2 while training (main thread only) and restore the old handlers after."""
    flag = _SignalFlag()
    if not _in_main_thread():
        yield flag
        return
    old = {sig: signal.getsignal(sig) for sig in PREEMPTION_SIGNALS}
    for sig in PREEMPTION_SIGNALS:
        signal.signal(sig, flag)
    try:
        yield flag
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _check_finite(terms: Mapping[str, float], step: int) -> None:
    for name, value in terms.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(f"loss term '{name}' is {value} at step {step}; stopping (no artifact written)")


def _peak(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Largest |value| over tensors (NaN if any is NaN), as one 0-d tensor on their device (no host sync)."""
    return torch.stack([torch.linalg.vector_norm(t, math.inf) for t in tensors if t.numel()]).amax()


def check_finite_update(losses: Mapping[str, torch.Tensor], params: Iterable[torch.Tensor], step: int) -> None:
    """Raise `NonFiniteLossError` naming the term and the step when a loss term, or the gradient that
    backward() left on ``params``, holds NaN/Inf. Call it between backward() and the optimiser step, so a
    broken update never reaches the weights (one host sync for all of it)."""
    grads = [p.grad.detach() for p in params if p.grad is not None and p.grad.numel()]
    values = [loss.detach().reshape(()).float() for loss in losses.values()]
    if grads:
        values.append(_peak(grads).float())
    host = torch.stack(values).tolist()
    for name, value in zip(losses, host, strict=False):
        if not math.isfinite(value):
            raise NonFiniteLossError(f"loss term '{name}' is {value} at step {step}; stopping before the "
                                     "optimiser step")
    if grads and not math.isfinite(host[-1]):
        raise NonFiniteLossError(f"gradient of loss term '{' + '.join(losses)}' is {host[-1]} at step {step} "
                                 "(the loss itself is finite); stopping before the optimiser step")


def _check_finite_weights(state: LoopState, step: int) -> None:
    """Refuse to checkpoint modules whose weights became NaN/Inf (a trainer without `check_finite_update`)."""
    for name, obj in state.stateful.items():
        params = [p.detach() for p in obj.parameters() if p.numel()] if isinstance(obj, torch.nn.Module) else []
        if params and not math.isfinite(float(_peak(params))):
            raise NonFiniteLossError(f"weights of '{name}' became non-finite by step {step} (a NaN/Inf gradient); "
                                     "stopping without writing them to the checkpoint")


def _kept(ckpt: Path | None, saved_step: int | None) -> str:
    """What a stopped run leaves behind, for the error message."""
    if ckpt is None or saved_step is None:
        return "no checkpoint was written yet"
    return f"the last good checkpoint {ckpt} (step {saved_step}) is kept; rerunning resumes from it"


def run_loop(
    *,
    total_steps: int,
    step_fn: Callable[[int], Mapping[str, torch.Tensor | float]],
    state: LoopState,
    checkpoint_path: str | os.PathLike | None,
    checkpoint_every: int = 100,
    kind: str = "checkpoint",
    meta: dict[str, Any] | None = None,
    desc: str = "training",
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
) -> LoopState:
    """Run ``step_fn(step)`` for steps ``state.step .. total_steps - 1``, resuming from a checkpoint.

    ``step_fn`` returns the loss terms of the step (tensors or floats). ``meta`` is stored in the checkpoint
    and must match on resume (so a checkpoint of another configuration is never silently continued).
    """
    if total_steps < 0:
        raise ValueError(f"steps must be >= 0, got {total_steps}")
    meta = json.loads(json.dumps(meta or {}, sort_keys=True))  # what a reload returns (tuples -> lists)
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    saved_step = None
    if ckpt is not None and ckpt.exists():
        _resume(state, ckpt, kind, meta)
        saved_step = state.step
    with preemption_flag() as flag, tqdm(
        total=total_steps, initial=state.step, desc=desc, disable=not progress, dynamic_ncols=True, leave=False
    ) as bar:
        while state.step < total_steps:
            step = state.step
            try:
                terms = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in step_fn(step).items()}
                _check_finite(terms, step)
            except NonFiniteLossError as err:
                raise NonFiniteLossError(f"{err}; {_kept(ckpt, saved_step)}") from None
            state.history.extend((step, name, value) for name, value in terms.items())
            state.step = step + 1
            if on_step is not None:
                on_step(step)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items()}, refresh=False)
            due = ckpt is not None and checkpoint_every > 0 and state.step % checkpoint_every == 0
            if ckpt is not None and (due or flag.signum is not None):
                try:
                    _check_finite_weights(state, state.step)
                except NonFiniteLossError as err:
                    raise NonFiniteLossError(f"{err}; {_kept(ckpt, saved_step)}") from None
                save_checkpoint(state, ckpt, kind, meta)
                saved_step = state.step
            if flag.signum is not None:
                if ckpt is None:
                    raise Preempted(state.step, Path("<no checkpoint path>"), flag.signum)
                log.warning("signal %s: checkpoint saved at step %d", flag.signum, state.step)
                raise Preempted(state.step, ckpt, flag.signum)
    return state


def save_checkpoint(state: LoopState, path: Path, kind: str, meta: dict[str, Any]) -> None:
    """Atomically write the loop state."""
    save_artifact(path, kind, state.state_dict(), meta)


def _resume(state: LoopState, path: Path, kind: str, meta: dict[str, Any]) -> None:
    tensors, saved_meta = load_artifact(path, kind=kind)
    saved = {k: v for k, v in saved_meta.items() if k not in ("kind", "package_version")}
    if saved != meta:
        changed = sorted(k for k in set(saved) | set(meta) if saved.get(k) != meta.get(k))
        raise ArtifactError(
            f"{path}: checkpoint belongs to a different configuration (differs in: {', '.join(changed)}); "
            "delete it or use another output path"
        )
    state.load_state_dict(tensors)
    log.info("resumed from %s at step %d", path, state.step)
    print(f"resumed from checkpoint {path} at step {state.step}", flush=True)
