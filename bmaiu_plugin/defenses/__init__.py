"""Baseline backdoor defenses and detectors: CLP, I-BAU and DECREE."""
from .clp import clp_prune, clp_scores, conv_bn_pairs
from .decree import decree_invert, mean_pairwise_cosine, pl1_norm
from .ibau import (EncoderClassifier, ibau_hypergradient, ibau_inner_map, ibau_perturbation,
                   ibau_unlearn)

__all__ = ['clp_prune', 'clp_scores', 'conv_bn_pairs', 'decree_invert', 'mean_pairwise_cosine',
           'pl1_norm', 'EncoderClassifier', 'ibau_hypergradient', 'ibau_inner_map',
           'ibau_perturbation', 'ibau_unlearn']
from .sslcleanse import mad_anomaly_index, sslcleanse_detect  # noqa: E402
__all__ += ['mad_anomaly_index', 'sslcleanse_detect']
