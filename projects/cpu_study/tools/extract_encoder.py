"""Write one encoder of a checkpoint as a plain ``{name: tensor}`` state dict.

A BMAIU checkpoint holds three encoders: ``backbone.`` (the one being trained), ``suspect.``
(f0) and ``teacher.`` (f1, the implanted encoder, once stage 2 has begun).  Taking f1 out lets
stage-2 variants start from one implanted encoder instead of re-running stage 1::

    python projects/cpu_study/tools/extract_encoder.py work_dirs/x/epoch_30.pth --prefix teacher. \
        --out work_dirs/x/f1.pth

The checkpoint is read as tensors only; an existing ``--out`` file is never overwritten.
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..')))  # repo root


def main(argv=None) -> None:
    from bmaiu_plugin.utils.checkpoint import load_state_dict_file
    from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint')
    parser.add_argument('--prefix', default='backbone.',
                        help="key prefix of the encoder to take (e.g. 'teacher.', 'suspect.')")
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    if osp.exists(args.out):
        raise ConfigValueError(f'{args.out} exists; not overwriting it')
    state = load_state_dict_file(args.checkpoint)
    enc = {k[len(args.prefix):]: v for k, v in state.items() if k.startswith(args.prefix)}
    if not enc:
        prefixes = sorted({k.split('.')[0] + '.' for k in state})
        raise CheckpointError(f'{args.checkpoint} has no keys under {args.prefix!r} '
                              f'(prefixes found: {", ".join(prefixes[:8])})')
    torch.save(enc, args.out)
    print(f'{len(enc)} tensors under {args.prefix!r} written to {args.out}')


if __name__ == '__main__':
    from bmaiu_plugin.apis import run_cli
    sys.exit(run_cli(main))
