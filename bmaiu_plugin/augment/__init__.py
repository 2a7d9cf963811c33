"""On-device SSL augmentation: batched ops with per-sample random parameters.

:mod:`.ops` holds the tensor ops (crop, flip, colour jitter, grayscale, blur, solarize);
:mod:`.pipeline` builds view recipes from config dicts named after mmpretrain's CPU transforms.
:class:`~bmaiu_plugin.models.data_preprocessor.DeviceMultiViewPreprocessor` runs them.
"""
from .ops import (adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
                  apply_color_jitter, color_jitter, gaussian_blur, grayscale, hflip, hsv_to_rgb,
                  random_gaussian_blur, random_grayscale, random_hflip, random_resized_crop,
                  random_solarize, resized_crop, rgb_to_hsv, sample_color_jitter,
                  sample_crop_boxes, solarize)
from .pipeline import (DEVICE_TRANSFORMS, PRESETS, ViewPipeline, build_view_pipeline,
                       resolve_views)

__all__ = [
    'adjust_brightness', 'adjust_contrast', 'adjust_hue', 'adjust_saturation',
    'apply_color_jitter', 'color_jitter', 'gaussian_blur', 'grayscale', 'hflip', 'hsv_to_rgb',
    'random_gaussian_blur', 'random_grayscale', 'random_hflip', 'random_resized_crop',
    'random_solarize', 'resized_crop', 'rgb_to_hsv', 'sample_color_jitter', 'sample_crop_boxes',
    'solarize', 'DEVICE_TRANSFORMS', 'PRESETS', 'ViewPipeline', 'build_view_pipeline',
    'resolve_views'
]
