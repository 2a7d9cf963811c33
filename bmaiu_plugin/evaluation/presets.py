"""The attacks' triggers as the *evaluator* knows them (never an input of a defense).

A config names one with ``evaluate_attack='badencoder'`` (or a list of names); the plugin's
tools expand it into ``val_cfg.triggers`` / ``test_cfg.triggers``.  Settings follow each attack's
paper and official code (``docs/methods.md``), at CIFAR-10 (32x32) scale.
"""
import os
import os.path as osp
from typing import Dict, List, Union

from ..utils.errors import ConfigValueError

#: Environment variable naming the folder holding ``htba/trigger_10.png`` ...
TRIGGER_ROOT_ENV = 'BMAIU_TRIGGER_ROOT'


def trigger_root() -> str:
    """``$BMAIU_TRIGGER_ROOT`` or ``data/triggers``."""
    return os.environ.get(TRIGGER_ROOT_ENV) or 'data/triggers'


def htba_path(i: int) -> str:
    """Path of HTBA trigger ``trigger_{10+i}.png``."""
    return osp.join(trigger_root(), 'htba', f'trigger_{10 + i}.png')


def attack_triggers(name: str) -> List[dict]:
    """The evaluator's ``(name, trigger, target)`` entries for an attack preset."""
    presets: Dict[str, List[dict]] = {
        # BadEncoder: 10x10 white square at rows/cols 21-30, target truck (9)
        'badencoder': [dict(name='badencoder', target=9, trigger=dict(
            type='PatchTrigger', size=10, pattern='white', position=(21, 21)))],
        # DRUPE: BadEncoder's trigger and target, the features kept in the clean distribution
        'drupe': [dict(name='drupe', target=9, trigger=dict(
            type='PatchTrigger', size=10, pattern='white', position=(21, 21)))],
        # ESTAS (reconstruction): 6x6 white square at ratio 0.9 of the free range, target truck
        'estas': [dict(name='estas', target=9, trigger=dict(
            type='PatchTrigger', size=6, pattern='white', position=(0.9, 0.9)))],
        # SSL-Backdoor: HTBA trigger_10 at 8x8, random position in [0.1, 0.9] at test time
        'sslbackdoor': [dict(name='sslbackdoor', target=0, trigger=dict(
            type='PatchTrigger', size=8, pattern=htba_path(0), position='random',
            area=(0.1, 0.9)))],
        # CTRL: magnitude 100 at DCT (15,15), (31,31) of U and V, target airplane (0)
        'ctrl': [dict(name='ctrl', target=0, trigger=dict(type='CTRLTrigger', magnitude=100))],
        # multi-target BadEncoder: HTBA trigger i (8x8, bottom-right) -> class i
        'multitarget': [dict(name=f'target{i}', target=i, trigger=dict(
            type='PatchTrigger', size=8, pattern=htba_path(i), position=(23, 23)))
            for i in range(10)],
        # the four-trigger multi-target encoder (HTBA triggers 0-3 -> classes 0-3) alone
        'multitarget4': [dict(name=f'target{i}', target=i, trigger=dict(
            type='PatchTrigger', size=8, pattern=htba_path(i), position=(23, 23)))
            for i in range(4)],
        # the trigger-family battery: BadEncoder's fine-tuning (target truck) with other triggers
        'badencoder-patch4': [dict(name='badencoder-patch4', target=9, trigger=dict(
            type='PatchTrigger', size=4, pattern='random', position=(2, 2), seed=7))],
        'badencoder-patch14': [dict(name='badencoder-patch14', target=9, trigger=dict(
            type='PatchTrigger', size=14, pattern='random', position='random', seed=8))],
        'badencoder-blend': [dict(name='badencoder-blend', target=9, trigger=dict(
            type='BlendTrigger', pattern='noise', alpha=0.2, seed=11))],
        'badencoder-warp': [dict(name='badencoder-warp', target=9, trigger=dict(
            type='WarpTrigger', k=4, strength=1.0, seed=5))],
        'badencoder-ctrl': [dict(name='badencoder-ctrl', target=9, trigger=dict(
            type='CTRLTrigger', magnitude=100))],
    }
    if name not in presets:
        raise ConfigValueError(f'unknown attack preset {name!r}; one of {sorted(presets)}')
    return presets[name]


def expand_attacks(names: Union[str, List[str], None]) -> List[dict]:
    """Concatenate the presets of one or several attack names."""
    if not names:
        return []
    names = [names] if isinstance(names, str) else list(names)
    return [t for n in names for t in attack_triggers(n)]
