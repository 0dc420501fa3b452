"The disk cache under DataLoader workers and across runs, on a slow reader (slices of a gzipped NIfTI volume)."
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medseg.config import DataConfig
from medseg.data import MedDataModule
from medseg.io import apply_window
from medseg.synthetic import make_synthetic


def _batches(cfg, split='train'):
    dm = MedDataModule(cfg, None, seed=0)
    return dm, [dm.finish(b) for b in dm._loader(split)]  # unshuffled


def test_cache_dir_with_workers_matches_decoding(tmp_path):
    "Two workers fill the cache concurrently; a later run (new DataModule) reads it back; batches equal the uncached ones."
    make_synthetic(tmp_path/'d', n=24, size=32, seed=0)
    base = DataConfig(data_dir=tmp_path/'d', im_size=32, train_augs=[], batch_size=5, num_workers=2, mean=[0.5], std=[0.2])
    _, ref = _batches(base)
    cached = base.model_copy(update={'cache_dir': tmp_path/'cache'})
    dm, first = _batches(cached)
    n = len(dm.dataset('train'))
    files = list((tmp_path/'cache').rglob('*.npy'))
    assert len(files) == n and not list((tmp_path/'cache').rglob('*.tmp'))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    _, second = _batches(cached)  # read back, nothing rewritten
    assert {f: f.stat().st_mtime_ns for f in (tmp_path/'cache').rglob('*.npy')} == stamps
    for a, b, c in zip(ref, first, second):
        assert a['id'] == b['id'] == c['id']
        for k in ('image', 'mask'):
            assert a[k].dtype == torch.float32 and torch.equal(a[k], b[k]) and torch.equal(a[k], c[k])


def test_cache_dir_on_nifti_slices(tmp_path):
    "Each slice of a .nii.gz decodes the volume up to it; from the cache the slices come back unchanged."
    import nibabel as nib
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 4000, (48, 48, 12)).astype(np.int16)
    (tmp_path/'v').mkdir(); nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path/'v'/'ct.nii.gz')
    nib.save(nib.Nifti1Image((vol > 2000).astype(np.uint8), np.eye(4)), tmp_path/'v'/'ct_mask.nii.gz')
    pd.DataFrame({'image': ['v/ct.nii.gz'], 'mask': ['v/ct_mask.nii.gz'], 'split': ['train']}).to_csv(tmp_path/'m.csv', index=False)
    cfg = DataConfig(data_dir=tmp_path, manifest='m.csv', expand_frames=True, normalize='window', window=(1000, 2000),
                     im_size=48, train_augs=[], batch_size=12, cache_dir=tmp_path/'cache')
    dm, (b,) = _batches(cfg)
    assert len(list((tmp_path/'cache').rglob('*.npy'))) == 12
    expect = apply_window(vol.transpose(2, 0, 1).astype(np.float32), 1000, 2000)
    np.testing.assert_allclose(b['image'][:, 0].numpy(), expect, atol=1e-5)
    assert torch.equal(b['mask'][:, 0], torch.from_numpy((vol > 2000).transpose(2, 0, 1).astype(np.float32)))
    _, (again,) = _batches(cfg)
    assert torch.equal(again['image'], b['image']) and torch.equal(again['mask'], b['mask'])
    other = cfg.model_copy(update={'window': (500, 1000)})  # another window: new entries, not the stale ones
    _, (w,) = _batches(other)
    assert len(list((tmp_path/'cache').rglob('*.npy'))) == 24 and not torch.equal(w['image'], b['image'])
