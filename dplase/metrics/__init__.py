"""Evaluation metrics, registered by name in `METRICS` (import-light: the config layer reads the names at
Snakemake parse time, so nothing here imports torch or sklearn). Submodules (imported on use):

- context: `EvalConfig` (the protocol), `EvalContext` (what every metric sees), `ImageMetric` (the hooks of
  metrics fed by the walk-image loop);
- predictor: factor predictor (CNN on real images), also the "domain" FID extractor;
- attribute: attribute change along walks (directions x factors matrix, top-factor share);
- disentanglement: MIG, DCI, modularity (disentanglement_lib definitions) and the Khrulkov et al. protocol;
- fid: FID along walks with clean-fid (domain or Inception features);
- density: log-density drift, norm ratio and out-of-typical-set share along walks;
- rca: reconstructor classification accuracy;
- recovery: matching of the directions to a generator's planted directions (planted generators only);
- exact: exact attribute change, predictor agreement and the disentanglement ceiling (planted generators only);
- gap: each walk's images against the linear walk's (0 where the generator ignores ||z||: PixelNorm);
- evaluate: the orchestrator: one walk/image loop feeding the image metrics, then each requested metric's rows.

Adding a metric is one new file plus one line here. A target is either a function ``EvalContext -> rows`` or,
with ``needs_images`` set, an `ImageMetric` subclass that sees every walked image batch once as it is made.
"""

from dplase.registry import Registry

#: metric groups in evaluation order (also the default of ``--metrics`` and of ``EvalConfig.metrics``)
METRICS = Registry("metric", {
    "attr": ("dplase.metrics.attribute:AttributeChange", {"needs_images": True}),
    "disent": ("dplase.metrics.disentanglement:disent_metric", {"needs_images": False}),
    "fid": ("dplase.metrics.fid:WalkFID", {"needs_images": True}),
    "density": ("dplase.metrics.density:density_metric", {"needs_images": False}),
    "rca": ("dplase.metrics.rca:rca_metric", {"needs_images": False}),
    "recovery": ("dplase.metrics.recovery:recovery_metric", {"needs_images": False}),
    "exact": ("dplase.metrics.exact:ExactAttributeChange", {"needs_images": True}),
    "gap": ("dplase.metrics.gap:LinearGap", {"needs_images": True}),
})

__all__ = ["METRICS"]
