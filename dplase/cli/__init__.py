"""The `dplase` command line. Each subcommand lives in its own module and is imported only when used."""

from __future__ import annotations

import importlib
import importlib.util

import click

#: command name -> "module:function" (lazy, so `dplase --help` stays fast and modules stay independent)
COMMANDS = {
    "train-gan": "dplase.cli.train_gan:train_gan",
    "sample": "dplase.cli.train_gan:sample",
    "discover": "dplase.cli.discover:discover",
    "traverse": "dplase.cli.discover:traverse",
    "train-predictor": "dplase.cli.evaluate:train_predictor",
    "evaluate": "dplase.cli.evaluate:evaluate",
    "collect": "dplase.cli.evaluate:collect",
    "plot": "dplase.cli.plot:plot",
    "sweep": "dplase.cli.launch:sweep",
    "planted": "dplase.cli.planted:planted",
    "import": "dplase.cli.importer:import_checkpoint",
    "compare": "dplase.cli.compare:compare",
    "explore": "dplase.cli.explore:explore",
    "validate-density": "dplase.cli.validate:validate_density",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._available(name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                return None
            raise
        return getattr(module, attr, None)

    @staticmethod
    def _available(name: str) -> bool:
        module_name = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dplase")
def main() -> None:
    """dplase: discover density-preserving latent directions in GANs and compare them with baselines.

    \b
    Example (train the default 64 px shapes GAN and write its sample grid):
      dplase train-gan --dataset shapes --out results/models/shapes-dcgan64.pt --seed 0
    """
