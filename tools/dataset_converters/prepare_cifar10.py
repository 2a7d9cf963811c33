"""Put CIFAR-10 in the standard python layout that the plugin reads (``cifar-10-batches-py/``).

usage:
    python tools/dataset_converters/prepare_cifar10.py --archive cifar-10-python.tar.gz [OUT]
    python tools/dataset_converters/prepare_cifar10.py --download [OUT]
    python tools/dataset_converters/prepare_cifar10.py --jpeg-npz FILE.npz [OUT]

``OUT`` defaults to ``data/cifar10``; the batches go to ``OUT/cifar-10-batches-py/``.

* ``--archive``: the official python version (https://www.cs.toronto.edu/~kriz/cifar.html,
  ``cifar-10-python.tar.gz``), md5-checked; only the seven batch/meta files are extracted.
* ``--download``: fetch that archive first (needs network access).
* ``--jpeg-npz``: a compact JPEG re-encoding of CIFAR-10 (arrays ``{train,test}_jpeg``,
  ``{train,test}_offsets``, ``{train,test}_labels``, ``classes``), for machines without network
  access.  Its pixels differ from the official ones by the JPEG rounding, so its batch files do
  not match the official md5 sums: use it with ``check_md5=False`` (the plugin's configs do).

Existing batch files are kept (the run says so); remove them to rebuild.
"""
import argparse
import hashlib
import io
import os
import os.path as osp
import pickle
import sys
import tarfile
import urllib.request

URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
ARCHIVE_MD5 = 'c58f30108f718f92721af3b95e74349a'
FOLDER = 'cifar-10-batches-py'
BATCHES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
MEMBERS = BATCHES + ['batches.meta']


def fail(msg: str) -> None:
    sys.exit(f'error: {msg}')


def md5sum(path: str) -> str:
    h = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def from_archive(archive: str, out: str) -> None:
    """Extract the batch and meta files of the official archive, nothing else."""
    if not osp.isfile(archive):
        fail(f'{archive} does not exist; download {URL} or use --download')
    if md5sum(archive) != ARCHIVE_MD5:
        fail(f'{archive} is not the official CIFAR-10 python archive (md5 mismatch); '
             f'download it again from {URL}')
    dst = osp.join(out, FOLDER)
    os.makedirs(dst, exist_ok=True)
    with tarfile.open(archive, 'r:gz') as tar:
        for name in MEMBERS:
            target = osp.join(dst, name)
            if osp.exists(target):
                print(f'kept {target} (exists)')
                continue
            member = tar.getmember(f'{FOLDER}/{name}')
            if not member.isfile():
                fail(f'{archive}: {FOLDER}/{name} is not a regular file')
            with tar.extractfile(member) as src, open(target + '.part', 'wb') as f:
                f.write(src.read())
            os.replace(target + '.part', target)
    print(dst)


def download(out: str) -> str:
    os.makedirs(out, exist_ok=True)
    path = osp.join(out, 'cifar-10-python.tar.gz')
    if not osp.isfile(path):
        print(f'downloading {URL}')
        try:
            urllib.request.urlretrieve(URL, path + '.part')
        except OSError as e:
            fail(f'could not download {URL} ({type(e).__name__}); download it by hand and run '
                 'with --archive FILE')
        os.replace(path + '.part', path)
    return path


def from_jpeg_npz(npz: str, out: str) -> None:
    """Decode a compact JPEG copy into the standard batch files (labels and order kept)."""
    import numpy as np
    from PIL import Image
    if not osp.isfile(npz):
        fail(f'{npz} does not exist')
    try:
        src = np.load(npz, allow_pickle=False)
        arrays = {k: src[k] for k in src.files}
    except (OSError, ValueError) as e:
        fail(f'{npz} is not a readable .npz of plain arrays ({type(e).__name__})')
    need = [f'{s}_{k}' for s in ('train', 'test') for k in ('jpeg', 'offsets', 'labels')]
    missing = [k for k in need + ['classes'] if k not in arrays]
    if missing:
        fail(f'{npz} lacks the arrays {missing}')
    dst = osp.join(out, FOLDER)
    os.makedirs(dst, exist_ok=True)
    for n, name in enumerate(BATCHES):
        path = osp.join(dst, name)
        if osp.exists(path):
            print(f'kept {path} (exists)')
            continue
        split, first = ('test', 0) if name == 'test_batch' else ('train', n * 10000)
        jpeg, off = arrays[f'{split}_jpeg'], arrays[f'{split}_offsets']
        labels = arrays[f'{split}_labels']
        if len(off) < first + 10001 or len(labels) < first + 10000:
            fail(f'{npz}: the {split} split has fewer images than CIFAR-10')
        rows = np.empty((10000, 3072), np.uint8)
        for i in range(10000):
            k = first + i
            img = Image.open(io.BytesIO(jpeg[off[k]:off[k + 1]].tobytes())).convert('RGB')
            if img.size != (32, 32):
                fail(f'{npz}: image {k} of the {split} split is not 32x32')
            rows[i] = np.asarray(img, np.uint8).transpose(2, 0, 1).reshape(-1)
        label = 'testing batch 1 of 1' if split == 'test' else f'training batch {n + 1} of 5'
        batch = {'batch_label': label, 'labels': [int(v) for v in labels[first:first + 10000]],
                 'data': rows, 'filenames': [f'{split}_{first + i}.png' for i in range(10000)]}
        with open(path + '.part', 'wb') as f:
            pickle.dump(batch, f, protocol=2)
        os.replace(path + '.part', path)
    meta = osp.join(dst, 'batches.meta')
    if not osp.exists(meta):
        with open(meta, 'wb') as f:
            pickle.dump({'num_cases_per_batch': 10000, 'num_vis': 3072,
                         'label_names': [str(c) for c in arrays['classes']]}, f, protocol=2)
    print(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--archive', help='the official cifar-10-python.tar.gz')
    src.add_argument('--download', action='store_true', help=f'download {URL} first')
    src.add_argument('--jpeg-npz', help='a compact JPEG copy (see the module docstring)')
    parser.add_argument('out', nargs='?', default='data/cifar10',
                        help='folder that gets cifar-10-batches-py/ (default: data/cifar10)')
    args = parser.parse_args()
    if args.jpeg_npz:
        from_jpeg_npz(args.jpeg_npz, args.out)
    else:
        from_archive(args.archive or download(args.out), args.out)


if __name__ == '__main__':
    main()
