"""Result files of a run: kept in the run's own folder, published as the work dir's latest copy.

Every file the plugin's hooks and loops write (``metrics.json``, ``defended_encoder.pth`` /
``.safetensors``, ``poison_record.json``) goes through :func:`publish`: it is written into the
run's timestamped folder (mmengine's ``runner.log_dir``, ``<work_dir>/<YYYYmmdd_HHMMSS>/``) and
then copied to ``<work_dir>/<name>`` atomically (a temporary file in the same folder, then
``os.replace``).  A top-level file that is not a copy of a file in some run folder (written by
hand, or by an older version of the plugin) is first moved into a folder named after its own
modification time (:func:`set_aside`).  No earlier result is ever overwritten.

The tools refuse a training run into a work dir that already holds one unless it resumes it
(:func:`check_new_training`), and refuse a work dir that is a file or cannot be written
(:func:`check_work_dir`).
"""
import filecmp
import os
import os.path as osp
import re
import shutil
import time
from typing import Callable, List, Optional

from ..utils.errors import WorkDirError

#: Names of mmengine's run folders (``Runner.timestamp``).
RUN_DIR = re.compile(r'^\d{8}_\d{6}$')
#: Checkpoint files mmengine's ``CheckpointHook`` writes into the work dir.
CHECKPOINT = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')
LAST_CHECKPOINT = 'last_checkpoint'


def _stamp(seconds: float) -> str:
    return time.strftime('%Y%m%d_%H%M%S', time.localtime(seconds))


def free_path(folder: str, name: str) -> str:
    """``folder/name``, or ``folder/<stem>.<k><ext>`` with the first ``k`` not yet taken."""
    path, (stem, ext), k = osp.join(folder, name), osp.splitext(name), 1
    while osp.lexists(path):
        path, k = osp.join(folder, f'{stem}.{k}{ext}'), k + 1
    return path


def run_dirs(work_dir: str) -> List[str]:
    """The run folders in ``work_dir``, newest first."""
    names = os.listdir(work_dir) if osp.isdir(work_dir) else []
    return [osp.join(work_dir, n) for n in sorted(names, reverse=True)
            if RUN_DIR.match(n) and osp.isdir(osp.join(work_dir, n))]


def is_kept(work_dir: str, name: str) -> bool:
    """Whether some run folder of ``work_dir`` holds an identical copy of ``work_dir/name``."""
    path = osp.join(work_dir, name)
    size = osp.getsize(path)
    return any(osp.isfile(p) and not osp.samefile(p, path) and osp.getsize(p) == size
               and filecmp.cmp(p, path, shallow=False)
               for p in (osp.join(d, name) for d in run_dirs(work_dir)))


def set_aside(work_dir: str, name: str) -> Optional[str]:
    """Make room for a new ``work_dir/name`` without losing the present one.

    A file a run folder holds a copy of stays where it is (a new copy may replace it); any other
    file is moved into ``work_dir/<its mtime as YYYYmmdd_HHMMSS>/``.

    Returns:
        str | None: Where the file went, or ``None`` when nothing was moved.
    """
    path = osp.join(work_dir, name)
    if not osp.isfile(path) or is_kept(work_dir, name):
        return None
    folder = osp.join(osp.dirname(path), _stamp(osp.getmtime(path)))
    os.makedirs(folder, exist_ok=True)
    dest = free_path(folder, osp.basename(name))
    os.replace(path, dest)
    return dest


def publish(runner, name: str, write_fn: Callable[[str], object],
            latest: bool = True) -> Optional[str]:
    """Write a result file into the run's folder and publish it as ``work_dir/name``.

    Only the main process writes.  Within one run the same ``name`` may be published again (the
    metrics of every evaluation); its run-folder file is then replaced.  A runner without a run
    folder (``log_dir``) writes the top-level file only, by the same rules.

    Args:
        runner (Runner): The running runner.
        name (str): The file name, relative to the work dir.
        write_fn (callable): ``write_fn(path)`` writes the file at ``path``.
        latest (bool): Also publish ``work_dir/name``; ``False`` keeps the run-folder copy only.

    Returns:
        str | None: The published top-level path (the run-folder path when ``latest=False``);
        ``None`` on other ranks.
    """
    from mmengine.dist import is_main_process
    if not is_main_process():
        return None
    work_dir, log_dir = runner.work_dir, getattr(runner, 'log_dir', None)
    src = None
    if log_dir:
        paths = runner.__dict__.setdefault('_bmaiu_results', {})
        if name not in paths:  # a run started in the same second keeps its own file
            os.makedirs(osp.dirname(osp.join(log_dir, name)), exist_ok=True)
            paths[name] = free_path(osp.dirname(osp.join(log_dir, name)), osp.basename(name))
        src = paths[name]
        _write_atomic(src, write_fn)
        if not latest:
            return src
    top = osp.join(work_dir, name)
    os.makedirs(osp.dirname(top), exist_ok=True)
    set_aside(work_dir, name)
    _write_atomic(top, write_fn if src is None else lambda p: shutil.copyfile(src, p))
    return top


def _write_atomic(path: str, write_fn: Callable[[str], object]) -> None:
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------------------------
# work dirs
# ------------------------------------------------------------------------------------------
def check_work_dir(work_dir: str, config: Optional[str] = None) -> None:
    """Create ``work_dir`` if needed; raise :class:`WorkDirError` if it cannot hold a run.

    Args:
        work_dir (str): The run's work dir.
        config (str, optional): The run's config file: it must not be where mmengine writes its
            copy of the config (``work_dir/<config's file name>``).
    """
    if config and osp.abspath(config) == osp.abspath(osp.join(work_dir, osp.basename(config))):
        raise WorkDirError(f'the config {config} is inside the work dir, where mmengine writes '
                           'its copy of the config; pass --work-dir DIR with another folder')
    if osp.lexists(work_dir) and not osp.isdir(work_dir):
        raise WorkDirError(f'the work dir {work_dir} is a file, not a folder; pass --work-dir '
                           'DIR with a folder')
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as e:
        raise WorkDirError(f'cannot create the work dir {work_dir}: {e.strerror}; pass '
                           '--work-dir DIR with a writable folder') from None
    if not os.access(work_dir, os.W_OK | os.X_OK):
        raise WorkDirError(f'the work dir {work_dir} is not writable; pass --work-dir DIR with '
                           'a writable folder')


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint a training run left in ``work_dir``, or ``None``.

    The file mmengine's ``last_checkpoint`` names (looked up in ``work_dir`` too, for a work dir
    that was moved), else the highest-numbered ``epoch_N.pth`` / ``iter_N.pth``.
    """
    record = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(record):
        with open(record) as f:
            named = f.read().strip()
        for path in (named, osp.join(work_dir, osp.basename(named))) if named else ():
            if osp.isfile(path):
                return osp.abspath(path)
    found = [(int(m.group(1)), m.group(0)) for m in map(
        CHECKPOINT.match, os.listdir(work_dir) if osp.isdir(work_dir) else []) if m]
    return osp.join(osp.abspath(work_dir), max(found)[1]) if found else None


def check_new_training(work_dir: str) -> None:
    """Refuse to start a training run over the checkpoints of an earlier one.

    Raises:
        WorkDirError: ``work_dir`` holds ``last_checkpoint`` or an ``epoch_N.pth``/``iter_N.pth``.
    """
    ckpt = latest_checkpoint(work_dir)
    if ckpt is None and osp.isfile(osp.join(work_dir, LAST_CHECKPOINT)):
        ckpt = LAST_CHECKPOINT
    if ckpt is not None:
        raise WorkDirError(f'{work_dir} already holds a training run (last checkpoint: '
                           f'{osp.basename(ckpt)}); pass --resume to continue it or --work-dir '
                           'DIR for a new run')


def set_aside_training(work_dir: str) -> Optional[str]:
    """Move an earlier training run's checkpoints out of the way of a new run.

    ``last_checkpoint`` and every ``epoch_N.pth`` / ``iter_N.pth`` / ``best_*.pth`` go into
    ``work_dir/<mtime of the newest as YYYYmmdd_HHMMSS>/``; nothing is deleted.

    Returns:
        str | None: The folder they went to, or ``None`` when there were none.
    """
    names = [n for n in (os.listdir(work_dir) if osp.isdir(work_dir) else [])
             if n == LAST_CHECKPOINT or CHECKPOINT.match(n)
             or (n.startswith('best_') and n.endswith('.pth'))]
    names = [n for n in names if osp.isfile(osp.join(work_dir, n))]
    if not names:
        return None
    folder = osp.join(work_dir, _stamp(max(osp.getmtime(osp.join(work_dir, n))
                                           for n in names)))
    os.makedirs(folder, exist_ok=True)
    for n in names:
        os.replace(osp.join(work_dir, n), free_path(folder, n))
    return folder
