"""Shared training machinery: checkpoint/resume, signal handling, NaN guards, loss logs."""

from dplase.training.loop import LoopState, NonFiniteLossError, Preempted, run_loop, step_generator

__all__ = ["LoopState", "NonFiniteLossError", "Preempted", "run_loop", "step_generator"]
