"""The one protocol every method and metric uses to talk to a generator.

Modelled on GANSpace's BaseModel: a family adapts its network to this interface once, and no algorithm ever
branches on the GAN family. G is split at a named layer into G1 = `features(z, layer)` and
G2 = `from_features(f, layer, latent)`, with ``from_features(features(z, l), l, z) == forward(z)`` for every
layer. G2 takes the latent as well because in a style-based generator every layer after the split is modulated
by it (a family whose G2 needs it sets ``g2_needs_latent``; the others ignore it).

An adapter walks in one latent space (``space``, one of ``spaces``; "z" unless the family has others, such as
StyleGAN2's "w"): its ``z_dim``, ``prior``, `features` and `forward` are those of that space, so no method or
walk knows which space it runs in. `in_space` gives the same network's adapter in another space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from dplase.priors import Prior


class GeneratorAdapter(ABC):
    """Abstract generator adapter. Subclasses set the attributes and implement the four methods."""

    z_dim: int
    image_size: int
    channels: int
    prior: Prior
    device: torch.device
    #: source checkpoint sha256 (empty for generators built in memory)
    checkpoint_sha256: str = ""
    #: short model name used in results tables
    name: str = "generator"
    #: the family's network class, built from a checkpoint's ``arch`` keyword arguments
    network: type[torch.nn.Module]
    #: the family's name in `dplase.generators.registry.FAMILIES`
    family: str = ""
    #: the latent space this adapter walks in (one of `spaces`)
    space: str = "z"
    #: whether `from_features` needs the latent (style-based generators); the others ignore it
    g2_needs_latent: bool = False
    #: where the space's coordinates are an affine image of a native one (whitened w): the matrix B with
    #: native = offset + B @ latent (`dplase.generators.spaces`); None: the coordinates are native
    latent_basis: torch.Tensor | None = None

    @property
    @abstractmethod
    def layers(self) -> list[str]:
        """Names of the split points, from the latent side to the image side."""

    @abstractmethod
    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        """G1: latents (N x z_dim) to the activations at ``layer``."""

    @abstractmethod
    def from_features(self, f: torch.Tensor, layer: str, latent: torch.Tensor | None = None) -> torch.Tensor:
        """G2: activations at ``layer`` (with the latent, where ``g2_needs_latent``) to images in [-1, 1]
        (N x channels x size x size)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for latents ``z``."""
        layer = self.layers[-1]
        return self.from_features(self.features(z, layer), layer, z)

    @property
    def spaces(self) -> tuple[str, ...]:
        """The latent spaces this generator can be walked in."""
        return ("z",)

    def in_space(self, space: str) -> GeneratorAdapter:
        """This generator's adapter in latent space ``space`` (self when it is already there)."""
        if space == self.space:
            return self
        raise ValueError(f"generator '{self.name}' (family {self.family or type(self).__name__}) has no latent "
                         f"space '{space}'; its spaces: {', '.join(self.spaces)}")

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward(z)

    def latent_projection_weight(self, layers: list[int] | None = None) -> torch.Tensor:
        """Weight (out_features x native dim) of the first operation that projects the latent (used by SeFa);
        ``layers``: which of several such operations (style-based generators), None for all."""
        raise NotImplementedError(
            f"{type(self).__name__} exposes no latent projection weight, so SeFa cannot run on it"
        )

    def check_layer(self, layer: str) -> str:
        """Return ``layer`` if it is a split point, else raise a clear ValueError."""
        if layer not in self.layers:
            raise ValueError(f"unknown layer '{layer}' for {self.name}; choose one of {', '.join(self.layers)}")
        return layer

    def default_layer(self) -> str:
        """The split point used when none is given (the first one)."""
        return self.layers[0]

    @torch.no_grad()
    def generate(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images for many latents in batches, without autograd; returned on CPU."""
        out = [self.forward(chunk.to(self.device)).cpu() for chunk in torch.split(z, batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.channels, self.image_size, self.image_size)

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        """``n`` latents from the prior on this adapter's device, from an explicit seed."""
        return self.prior.sample(n, seed, device=self.device)


class NetworkAdapter(GeneratorAdapter):
    """An adapter around one network ``net`` that has ``z_dim``, ``image_size``, ``channels``, ``layer_names``,
    ``features(z, layer)``, ``from_features(f, layer)``, a forward pass and a first latent-projecting Linear
    layer ``project``: what a family file then adds is only what is special about it. The network is kept in
    eval mode with its parameters frozen."""

    def __init__(self, net: torch.nn.Module, prior: Prior, device: str | torch.device = "cpu",
                 checkpoint_sha256: str = "", name: str | None = None) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.z_dim, self.image_size, self.channels = net.z_dim, net.image_size, net.channels
        if prior.dim != self.z_dim:
            raise ValueError(f"prior dimension {prior.dim} != generator z_dim {self.z_dim}")
        self.prior = prior
        self.checkpoint_sha256 = checkpoint_sha256
        self.name = name or type(self).family

    @property
    def layers(self) -> list[str]:
        return self.net.layer_names

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        return self.net.features(z.to(self.device), self.check_layer(layer))

    def from_features(self, f: torch.Tensor, layer: str, latent: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.from_features(f.to(self.device), self.check_layer(layer))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.to(self.device))

    def latent_projection_weight(self, layers: list[int] | None = None) -> torch.Tensor:
        if layers is not None:
            raise ValueError(f"{type(self).__name__} has one latent projection; SeFa's layers must be 'all'")
        return self.net.project.weight.detach()
