"""Bridges to other backdoor toolboxes' file formats (no dependency on the toolboxes)."""
from .backdoorbench import (BB_NORMALIZATION, BackdoorBenchClassifier, ImportedRecord,
                            RecordError, encoder_to_torchvision, export_attack_record,
                            import_attack_record, infer_backbone_cfg, load_record,
                            rescale_stem, save_record, torch_load_allow_list,
                            torchvision_to_encoder, validate_record, write_encoder)
from .bb_models import EXPORTABLE, bb_model_name, check_loadable

__all__ = ['BB_NORMALIZATION', 'BackdoorBenchClassifier', 'EXPORTABLE', 'ImportedRecord',
           'RecordError', 'bb_model_name', 'check_loadable', 'encoder_to_torchvision',
           'export_attack_record', 'import_attack_record', 'infer_backbone_cfg', 'load_record',
           'rescale_stem', 'save_record', 'torch_load_allow_list', 'torchvision_to_encoder',
           'validate_record', 'write_encoder']
