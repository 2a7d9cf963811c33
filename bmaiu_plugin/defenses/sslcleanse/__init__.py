"""SSL-Cleanse (Zheng et al., ECCV 2024): detect a backdoored encoder, then mitigate it.

:mod:`.detector` holds the detection algorithm (per-cluster trigger synthesis, MAD outlier test),
:mod:`.model` the registered mitigation model that runs it on its defense data.
"""
from .detector import mad_anomaly_index, sslcleanse_detect
from .model import SSLCleanse

__all__ = ['SSLCleanse', 'mad_anomaly_index', 'sslcleanse_detect']
