"""Generators behind one adapter protocol (`GeneratorAdapter`) and the checkpoint loader."""

from dplase.generators.base import GeneratorAdapter
from dplase.generators.registry import generator_meta, load_generator, save_generator

__all__ = ["GeneratorAdapter", "generator_meta", "load_generator", "save_generator"]
