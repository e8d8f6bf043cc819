"""Evaluation metrics. Submodules (imported on use, nothing happens at import time):

- predictor: factor predictor (CNN on real images), also the "domain" FID extractor;
- attribute: attribute change along walks (directions x factors matrix, top-factor share);
- disentanglement: MIG, DCI, modularity (disentanglement_lib definitions) and the Khrulkov et al. protocol;
- fid: FID along walks with clean-fid (domain or Inception features);
- density: log-density drift, norm ratio and out-of-typical-set share along walks;
- rca: reconstructor classification accuracy;
- evaluate: the orchestrator that generates every walk image once and feeds all requested metrics.
"""
