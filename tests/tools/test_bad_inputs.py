"""Careless input, one table: each case ends in exit status 2 and one ``error:`` line, no work.

Every case builds its bad input itself (a ``--cfg-options`` value, a file in ``tmp_path``, ...)
and runs the tool's ``main`` in this process.  A case passes when the tool returns 2, stderr has
exactly one line starting with ``error: `` (holding the expected text), there is no traceback,
and the work dir has no checkpoint or ``metrics.json``: nothing was trained or evaluated.
"""
import glob
import importlib.util
import os
import os.path as osp
import sys

import pytest
import torch

from conftest import REPO_ROOT, write_fake_cifar

SIMCLR = 'configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py'
BMAIU = 'configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py'
SEARCHED = 'configs/searched_trigger/searched-trigger_resnet18-w16_1xb64-10e_cifar10.py'
BADENC = 'configs/attacks/badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py'
CTRL = 'configs/attacks/ctrl_resnet18-w16_simclr_1xb256-coslr-8e_cifar10.py'
CLP = 'configs/defenses/clp_resnet18-w16_u3_cifar10.py'
IBAU = 'configs/defenses/ibau_resnet18-w16_1xb256-5e_cifar10.py'
SSLC = 'configs/defenses/sslcleanse_resnet18-w16_1xb256-20e_cifar10.py'
PROBE = 'configs/eval/probe_resnet18-w16_cifar10.py'
W16 = dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16,
           norm_cfg=dict(type='BN'))
#: Options that keep a run that does start small (fake data, no worker processes); its own
#: experiment name, so that no logger of an earlier case (bound to its captured stdout) is reused.
SMALL = ['experiment_name=bad_inputs_{case}',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0', 'val_cfg.probe_dataloader.num_workers=0',
         'val_cfg.probe_dataloader.dataset.indices=40', 'test_dataloader.num_workers=0',
         'test_cfg.probe_dataloader.num_workers=0',
         'test_cfg.probe_dataloader.dataset.indices=40']
SMALL_TEST = [SMALL[0]] + [o for o in SMALL if o.startswith('test_')]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """The fake CIFAR-10 folder, a matching w16 encoder, a text file and a corrupt data copy."""
    from mmpretrain.registry import MODELS

    import bmaiu_plugin  # noqa: F401
    root = tmp_path_factory.mktemp('bad_inputs')
    write_fake_cifar(str(root / 'cifar'))
    write_fake_cifar(str(root / 'corrupt'))
    with open(root / 'corrupt' / 'cifar-10-batches-py' / 'data_batch_1', 'r+b') as f:
        f.truncate(100)
    torch.manual_seed(0)
    torch.save(MODELS.build(W16).state_dict(), str(root / 'encoder.pth'))
    diverged = MODELS.build(W16).state_dict()
    diverged['layer2.0.conv1.weight'][0, 0, 0, 0] = float('nan')
    torch.save(diverged, str(root / 'nan_encoder.pth'))
    (root / 'not_an_image.png').write_text('these are words, not pixels\n')
    (root / 'a_file').write_text('not a folder\n')
    (root / 'pipeline_typo.py').write_text(
        "ssl = dict(simclr=dict(config='a.py'))\n"
        "attacks = dict(b=dict(type='finetune', config='b.py', evaluate='badencoder'))\n"
        "defenes = dict(clp=dict(tool='test', config='c.py'))\n")
    (root / 'pipeline_eval_typo.py').write_text(
        "ssl = dict(simclr=dict(config='a.py'))\n"
        "attacks = dict(b=dict(type='finetune', config='b.py', evaluate='badencoder'))\n"
        "evaluation = dict(clan=False)\n")
    (root / 'pipeline_syntax.py').write_text("ssl = dict(simclr=dict(config='a.py')\n")
    return str(root)


def _module(rel):
    name = '_bad_inputs_' + rel.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_train(config, *opts, extra=()):
    """``(tool, argv)`` of a ``tools/train.py`` run with ``--cfg-options opts``."""
    return 'tools/train.py', [config, '--work-dir', '{wd}', *extra, '--cfg-options', *SMALL,
                              *opts]


def run_test(config, *opts, extra=('--checkpoint', '{enc}')):
    """``(tool, argv)`` of a ``tools/test.py`` run (of the fake encoder by default)."""
    return 'tools/test.py', [config, *extra, '--work-dir', '{wd}', '--cfg-options', *SMALL_TEST,
                             *opts]


ENC = 'encoder_checkpoint={enc}'

CASES = {
    # 1. numbers that are not finite, anywhere
    'nan_lr': (
        run_train(SIMCLR, 'optim_wrapper.optimizer.lr=nan'),
        'optim_wrapper.optimizer.lr is nan'),
    'inf_lr': (
        run_train(SIMCLR, 'optim_wrapper.optimizer.lr=inf'),
        'optim_wrapper.optimizer.lr is inf'),
    'nan_weight_decay': (
        run_train(SIMCLR, 'optim_wrapper.optimizer.weight_decay=nan'),
        'weight_decay is nan'),
    'negative_lr': (run_train(SIMCLR, 'optim_wrapper.optimizer.lr=-0.1'), 'lr must be >= 0'),
    'momentum_above_1': (
        run_train(SIMCLR, 'optim_wrapper.optimizer.momentum=1.5'),
        'momentum must be in [0, 1]'),
    'nan_temperature': (
        run_train(SIMCLR, 'model.head.temperature=nan'),
        'model.head.temperature is nan'),
    'nan_bmaiu_u1': (run_train(BMAIU, ENC, 'model.u1=nan'), 'model.u1 is nan'),
    'inf_search_lr': (run_train(SEARCHED, ENC, 'model.search.lr=-inf'), 'search.lr is -inf'),
    'nan_badencoder_lambda': (run_train(BADENC, ENC, 'model.lambda1=nan'), 'model.lambda1 is nan'),
    'nan_clp_u': (run_test(CLP, 'model.u=nan'), 'model.u is nan'),
    'nan_ibau_l2_weight': (run_train(IBAU, ENC, 'model.l2_weight=nan'), 'l2_weight is nan'),
    'nan_sslcleanse_weight': (
        run_train(SSLC, ENC, 'model.unlearn_weight=nan'),
        'unlearn_weight is nan'),
    'nan_probe_lr': (run_train(SIMCLR, 'val_evaluator.lr=nan'), 'val_evaluator.lr is nan'),
    'negative_bmaiu_u2': (run_train(BMAIU, ENC, 'model.u2=-1.0'), 'u2 must be >= 0'),
    # ratios
    'zero_ratio': (
        run_train(BMAIU, ENC, 'train_dataloader.dataset.ratio=0'),
        'ratio must be in (0, 1]'),
    'negative_ratio': (
        run_train(BMAIU, ENC, 'train_dataloader.dataset.ratio=-0.5'),
        'ratio must be in (0, 1]'),
    'removed_bmaiu_option': (
        run_train(BMAIU, ENC, 'model.trigger_fraction=0.5'),
        'trigger_fraction'),
    'zero_search_steps': (run_train(SEARCHED, ENC, 'model.search.steps=0'), 'steps must be >= 1'),
    'sslcleanse_fraction_above_1': (
        run_train(SSLC, ENC, 'model.trigger_fraction=1.5'),
        'trigger_fraction must be in (0, 1]'),
    'ibau_portion_above_1': (
        run_train(IBAU, ENC, 'model.portion=2.0'),
        'portion must be in [0, 1]'),
    # 2. counts that leave nothing (or a stage) to run
    'max_epochs_0': (
        run_train(SIMCLR, 'train_cfg.max_epochs=0'),
        'train_cfg.max_epochs must be >= 1'),
    'max_epochs_negative': (
        run_train(SIMCLR, 'train_cfg.max_epochs=-2'),
        'max_epochs must be >= 1'),
    'max_epochs_fraction': (
        run_train(SIMCLR, 'train_cfg.max_epochs=2.5'),
        'max_epochs must be an integer'),
    'implant_epochs_eq_max': (
        run_train(BMAIU, ENC, 'custom_hooks.1.implant_epochs=25'),
        'leaves BMAIU stage 2'),
    'implant_epochs_gt_max': (
        run_train(BMAIU, ENC, 'custom_hooks.1.implant_epochs=3', 'train_cfg.max_epochs=2'),
        'leaves BMAIU stage 2'),
    'implant_epochs_negative': (
        run_train(BMAIU, ENC, 'custom_hooks.1.implant_epochs=-1'),
        'implant_epochs must be >= 0'),
    'probe_epochs_0_val': (run_train(SIMCLR, 'val_evaluator.epochs=0'), 'epochs must be >= 1'),
    'probe_epochs_0_test': (run_test(PROBE, 'test_evaluator.epochs=0'), 'epochs must be >= 1'),
    'ibau_head_epochs_0': (run_train(IBAU, ENC, 'model.head.epochs=0'), 'head epochs must be >= 1'),
    'batch_size_0': (
        run_train(SIMCLR, 'train_dataloader.batch_size=0'),
        'train_dataloader.batch_size must be >= 1'),
    'probe_batch_size_0': (
        run_train(SIMCLR, 'val_cfg.probe_dataloader.batch_size=0'),
        'probe_dataloader.batch_size must be >= 1'),
    'test_batch_size_0': (
        run_test(PROBE, 'test_dataloader.batch_size=0'),
        'test_dataloader.batch_size must be >= 1'),
    'cosine_t_max_0': (run_train(SIMCLR, 'param_scheduler.1.T_max=0'), 'T_max must be >= 1'),
    # 3. dataset indices the dataset does not have
    'indices_0': (
        run_train(SIMCLR, 'train_dataloader.dataset.indices=0'),
        'indices must be a count of at least 1'),
    'indices_count_too_large': (
        run_train(SIMCLR, 'train_dataloader.dataset.indices=100'),
        'asks for more items than the dataset has (40)'),
    'indices_position_past_end': (
        run_train(SIMCLR, 'train_dataloader.dataset.indices=[0,40]'),
        'does not have ([40]'),
    'indices_position_before_start': (
        run_train(SIMCLR, 'train_dataloader.dataset.indices=[-41]'),
        'does not have ([-41]'),
    'ratio_subset_indices_too_large': (
        run_train(BMAIU, ENC, 'train_dataloader.dataset.indices=100'),
        'asks for more items'),
    'test_indices_too_large': (
        run_test(PROBE, 'test_dataloader.dataset.indices=101'),
        'asks for more items than the dataset has (100)'),
    # 4. unknown keys of registered components
    'typo_model_key': (
        run_train(BMAIU, ENC, 'model.lamda_clean=1.0'),
        'model.lamda_clean is not an argument of BMAIU'),
    'typo_badencoder_key': (run_train(BADENC, ENC, 'model.lamda1=1.0'), 'did you mean lambda1?'),
    'typo_mmpretrain_head_key': (
        run_train(SIMCLR, 'model.head.temperatur=0.1'),
        'not an argument of ContrastiveHead'),
    'typo_hook_key': (
        run_train(BMAIU, ENC, 'custom_hooks.1.implant_epoch=3'),
        'custom_hooks.1.implant_epoch is not an argument of BMAIUStageHook'),
    'typo_mmengine_hook_key': (
        run_train(SIMCLR, 'default_hooks.logger.intervall=5'),
        'not an argument of LoggerHook'),
    'typo_train_loop_key': (
        run_train(SIMCLR, 'train_cfg.max_epoch=3'),
        'train_cfg.max_epoch is not an argument of EpochBasedTrainLoop'),
    'typo_probe_loop_key': (
        run_train(SIMCLR, 'val_cfg.normalise=None'),
        'not an argument of BackdoorProbeLoop'),
    'typo_optimizer_key': (
        run_train(SIMCLR, 'optim_wrapper.optimizer.momentun=0.9'),
        'not an argument of SGD (did you mean momentum?'),
    'typo_dataloader_key': (
        run_train(SIMCLR, 'train_dataloader.batchsize=8'),
        'train_dataloader.batchsize is not a dataloader key'),
    'typo_dataset_key': (
        run_train(SIMCLR, 'train_dataloader.dataset.check_md6=False'),
        'not an argument of BackdoorCIFAR10'),
    'typo_scheduler_key': (
        run_train(SIMCLR, 'param_scheduler.1.T_mx=2'),
        'not an argument of CosineAnnealingLR'),
    'typo_metric_key': (
        run_train(SIMCLR, 'val_evaluator.epoch=2'),
        'not an argument of BackdoorProbeMetric'),
    'typo_trigger_key': (
        run_train(BMAIU, ENC, 'model.custom_trigger.sise=4'),
        'not an argument of PatchTrigger'),
    'typo_reference_key': (
        run_train(BMAIU, ENC, 'model.reference.nmu=5'),
        'reference.nmu is not a reference key (did you mean num?'),
    'unknown_type': (
        run_train(SIMCLR, 'model.backbone.type=ResNet_CIFARR'),
        'is not a registered model type'),
    # 5. unknown keys of a pipeline config
    'pipeline_unknown_key': (
        ('tools/pipeline.py', ['{root}/pipeline_typo.py', '--dry-run']),
        'defenes is not a top-level key of a pipeline config'),
    'pipeline_unknown_evaluation_key': (
        ('tools/pipeline.py', ['{root}/pipeline_eval_typo.py', '--dry-run']),
        'evaluation.clan is not'),
    'pipeline_syntax_error': (
        ('tools/pipeline.py', ['{root}/pipeline_syntax.py', '--dry-run']),
        'cannot be read: SyntaxError'),
    # 6. triggers: a text file as the image, larger than the image
    'trigger_image_not_an_image': (
        run_train(BMAIU, ENC, 'model.custom_trigger.pattern={root}/not_an_image.png'),
        'is not a readable image'),
    'attack_trigger_not_an_image': (
        run_train(BADENC, ENC, 'model.targets.0.trigger.pattern={root}/not_an_image.png'),
        'is not a readable image'),
    'trigger_larger_than_image': (
        run_train(BMAIU, ENC, 'model.custom_trigger.size=40'),
        '40x40 trigger does not fit a 32x32 image'),
    'attack_trigger_larger_than_image': (
        run_train(BADENC, ENC, 'model.targets.0.trigger.size=40',
                  'train_dataloader.dataset.ratio=1.0'),
        '40x40 trigger does not fit'),
    'trigger_size_0': (
        run_train(BMAIU, ENC, 'model.custom_trigger.size=0'),
        'trigger size must be >= 1'),
    # 7. files (missing, corrupt, in the way)
    'encoder_checkpoint_missing': (
        run_train(BMAIU, 'encoder_checkpoint={root}/nope.pth'),
        'encoder_checkpoint not found'),
    'encoder_weights_not_finite': (
        run_train(BMAIU, 'encoder_checkpoint={root}/nan_encoder.pth'),
        'holds weights that are not finite'),
    'probed_encoder_not_finite': (
        run_test(PROBE, extra=('--checkpoint', '{root}/nan_encoder.pth')),
        'holds weights that are not finite'),
    'resume_missing': (run_train(SIMCLR, extra=('--resume', '{root}/nope.pth')), 'not found'),
    'checkpoint_missing': (
        run_test(PROBE, extra=('--checkpoint', '{root}/nope.pth')),
        'checkpoint not found'),
    'work_dir_is_a_file': (
        ('tools/train.py', [SIMCLR, '--work-dir', '{root}/a_file']),
        'a_file is a file'),
    'cifar_batch_truncated': (
        run_train(SIMCLR, 'train_dataloader.dataset.data_root={root}/corrupt'),
        'data_batch_1'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_input_is_one_error_line(case, files, tmp_path, monkeypatch, capsys):
    (tool, argv), expected = CASES[case]
    wd = str(tmp_path / 'wd')
    fill = dict(wd=wd, root=files, enc=osp.join(files, 'encoder.pth'), case=case)
    argv = [a.format(**fill) for a in argv]
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv('BMAIU_DATA_ROOT', osp.join(files, 'cifar'))
    mod = _module(tool)
    rc = mod.main(argv)
    out = capsys.readouterr()
    errors = [ln for ln in out.err.splitlines() if ln.startswith('error: ')]
    assert rc == 2, (rc, out.err[-2000:])
    assert len(errors) == 1 and expected in errors[0], out.err[-2000:]
    assert 'Traceback' not in out.err + out.out
    assert 'Epoch(train)' not in out.out
    found = glob.glob(osp.join(wd, '**', '*.pth'), recursive=True) + \
        glob.glob(osp.join(wd, '**', 'metrics.json'), recursive=True)
    assert not found, found


def test_the_table_covers_every_class():
    assert len(CASES) >= 40
    words = ' '.join(CASES)
    for word in ('nan', 'inf', 'ratio', 'max_epochs', 'implant_epochs', 'probe_epochs',
                 'batch_size', 'indices', 'typo', 'pipeline', 'trigger', 'missing'):
        assert word in words, word


def test_error_line_leads_the_child_output(files, tmp_path):
    """Run as its own process (as ``mim train`` runs it): the ``error:`` line comes first."""
    import subprocess
    env = {**os.environ, 'BMAIU_DATA_ROOT': osp.join(files, 'cifar'), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, 'tools/train.py', SIMCLR, '--work-dir',
                        str(tmp_path / 'wd'), '--cfg-options', 'train_cfg.max_epochs=0'],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stdout == ''
    assert r.stderr.splitlines() == ['error: train_cfg.max_epochs must be >= 1, got 0']
