"""The threat model in the layout: no defense imports the attacker's side or the evaluator's
knowledge of the attack, directly or through the modules it imports."""
import ast
import os.path as osp
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PKG = Path(REPO_ROOT) / 'bmaiu_plugin'
#: What a defense must never reach: the attacks, and the evaluator's presets, loop and metric
#: (which hold the attacker's triggers and targets).
FORBIDDEN = ('bmaiu_plugin.attacks', 'bmaiu_plugin.evaluation.presets',
             'bmaiu_plugin.evaluation.loop', 'bmaiu_plugin.evaluation.metric')


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix('')
    parts = list(rel.parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def module_file(name: str):
    base = PKG.parent.joinpath(*name.split('.'))
    for cand in (base.with_suffix('.py'), base / '__init__.py'):
        if cand.is_file():
            return cand
    return None


def imported_modules(path: Path):
    """Every ``bmaiu_plugin`` module a file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                mod = '.'.join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ''
            out.add(mod)
            # `from .pkg import submodule` imports the submodule too
            out.update(f'{mod}.{a.name}' for a in node.names if module_file(f'{mod}.{a.name}'))
    return {m for m in out if m == 'bmaiu_plugin' or m.startswith('bmaiu_plugin.')}


def reachable(path: Path):
    """The package modules reachable from ``path`` through explicit imports."""
    seen, todo, chain = set(), [path], {module_name(path): None}
    while todo:
        f = todo.pop()
        for m in imported_modules(f):
            if m in seen:
                continue
            seen.add(m)
            chain.setdefault(m, module_name(f))
            target = module_file(m)
            if target is not None and target.name != '__init__.py':
                todo.append(target)
    return seen, chain


DEFENSE_FILES = sorted((PKG / 'defenses').rglob('*.py'))


@pytest.mark.parametrize('path', DEFENSE_FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_defense_never_reaches_the_attack_side(path):
    seen, chain = reachable(path)
    bad = sorted(m for m in seen if any(m == f or m.startswith(f + '.') for f in FORBIDDEN))
    routes = []
    for m in bad:
        route, cur = [m], m
        while chain.get(cur):
            cur = chain[cur]
            route.append(cur)
        routes.append(' <- '.join(route))
    assert not bad, f'{path.relative_to(PKG)} reaches the attack side: {routes}'


def test_the_check_sees_a_forbidden_import():
    """The scan itself: a defense module importing an attack is caught, relative or absolute."""
    fake = PKG / 'defenses' / '_layout_probe_tmp.py'
    try:
        fake.write_text('from ..attacks import badencoder\n'
                        'import bmaiu_plugin.evaluation.presets\n')
        seen, _ = reachable(fake)
        assert 'bmaiu_plugin.attacks' in seen and 'bmaiu_plugin.evaluation.presets' in seen
    finally:
        fake.unlink()


def test_every_defense_is_a_base_defense():
    import bmaiu_plugin  # noqa: F401
    from bmaiu_plugin.defenses import BaseDefense
    from bmaiu_plugin.registry import MODELS
    names = ['BMAIU', 'SearchedTriggerUnlearning', 'CLPDefense', 'IBAUDefense', 'SSLCleanse']
    for name in names:
        cls = MODELS.get(name)
        assert cls is not None, f'{name} is not registered'
        assert issubclass(cls, BaseDefense), f'{name} does not implement BaseDefense'
        assert osp.join('bmaiu_plugin', 'defenses') in cls.__module__.replace('.', osp.sep)
