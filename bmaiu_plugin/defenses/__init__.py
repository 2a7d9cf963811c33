"""Backdoor defenses, one module each, all behind :class:`~.base.BaseDefense`."""
from .base import BaseDefense
from .bmaiu import BMAIU, BMAIUStageHook, unlearning_losses
from .clp import CLPDefense, clp_prune, clp_scores, conv_bn_pairs
from .decree import decree_invert, mean_pairwise_cosine, pl1_norm
from .finetune_control import FineTuneControl
from .ibau import (EncoderClassifier, IBAUDefense, IBAUHook, ibau_hypergradient, ibau_inner_map,
                   ibau_perturbation, ibau_unlearn)
from .searched_trigger import SearchedTriggerUnlearning
from .sslcleanse import SSLCleanse, mad_anomaly_index, sslcleanse_detect
from .search_space import (AdditiveSearch, MaskPatternSearch, SearchableTrigger, WarpSearch,
                           WindowPatchSearch, search_collapse)
from .trigger_search import TriggerSearchHook, search_patch_pattern

__all__ = ['BaseDefense', 'FineTuneControl', 'BMAIU', 'BMAIUStageHook', 'unlearning_losses',
           'SearchedTriggerUnlearning', 'TriggerSearchHook', 'search_patch_pattern',
           'SearchableTrigger', 'WindowPatchSearch', 'MaskPatternSearch', 'AdditiveSearch',
           'WarpSearch', 'search_collapse', 'CLPDefense',
           'clp_prune', 'clp_scores', 'conv_bn_pairs', 'decree_invert', 'mean_pairwise_cosine',
           'pl1_norm', 'EncoderClassifier', 'IBAUDefense', 'IBAUHook', 'ibau_hypergradient',
           'ibau_inner_map', 'ibau_perturbation', 'ibau_unlearn', 'SSLCleanse',
           'mad_anomaly_index', 'sslcleanse_detect']
