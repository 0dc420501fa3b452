"Every layout and file kind through the DataModule, on real DICOM/NIfTI files shipped with pydicom and nibabel."
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medseg.config import ConfigError, DataConfig, HeadConfig
from medseg.data import MedDataModule, view_batch
from medseg.io import apply_window


def test_nifti_volume_slices_with_masks(tmp_path):
    "A real NIfTI volume becomes one sample per slice; its mask volume gives the matching slice."
    import nibabel as nib
    src = Path(nib.__file__).parent/'tests'/'data'/'anatomical.nii'
    vol = nib.load(src).get_fdata()
    (tmp_path/'vol').mkdir(); shutil.copy(src, tmp_path/'vol'/'anat.nii')
    nib.save(nib.Nifti1Image((vol > np.percentile(vol, 70)).astype(np.uint8), np.eye(4)), tmp_path/'vol'/'anat_mask.nii.gz')
    pd.DataFrame({'image': ['vol/anat.nii'], 'mask': ['vol/anat_mask.nii.gz'], 'split': ['train']}).to_csv(tmp_path/'m.csv', index=False)
    cfg = DataConfig(data_dir=tmp_path, manifest='m.csv', expand_frames=True, normalize='minmax', im_size=32, train_augs=[], batch_size=25)
    dm = MedDataModule(cfg, None, seed=0)
    ds = dm.dataset('train')
    assert len(ds) == 25 and ds.s.ids[7] == 'vol/anat.nii#7'
    b = next(iter(dm._loader('train')))
    assert b['image'].shape == (25, 1, 32, 32) and b['mask'].shape == (25, 1, 32, 32)
    raw = ds.decode(7)
    sl = vol[:, :, 7]
    np.testing.assert_allclose(raw['image'][..., 0], (sl - sl.min()) / (sl.max() - sl.min()), atol=1e-6)
    assert (raw['masks'][0] == (sl > np.percentile(vol, 70))).all()
    cfg = cfg.model_copy(update={'expand_frames': False, 'slice_axis': 0})  # no expansion: all slices as channels
    with pytest.raises(Exception, match='cannot convert 33 channels to 1; set model.in_channels=33'):
        MedDataModule(cfg, None).dataset('train')[0]


def test_dicom_ct_window_through_the_data_module(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut
    ct = get_testdata_file('CT_small.dcm'); (tmp_path/'dcm').mkdir()
    for i in range(4): shutil.copy(ct, tmp_path/'dcm'/f'ct{i}.dcm')
    pd.DataFrame({'image': [f'dcm/ct{i}.dcm' for i in range(4)], 'finding': ['normal', 'nodule', 'unknown', 'nodule'],
                  'split': ['train', 'train', 'val', 'val']}).to_csv(tmp_path/'m.csv', index=False)
    head = HeadConfig(name='finding', kind='cls', classes=['normal', 'nodule'])
    cfg = DataConfig(data_dir=tmp_path, manifest='m.csv', normalize='window', window=(40, 400), im_size=128, val_augs=[], batch_size=2)
    dm = MedDataModule(cfg, [head], in_channels=3, seed=0); dm.setup('fit')
    b = next(iter(dm.val_dataloader()))
    ds = pydicom.dcmread(ct); hu = apply_modality_lut(ds.pixel_array, ds)
    assert b['image'].shape == (2, 3, 128, 128)
    np.testing.assert_allclose(b['image'][0, 0].numpy(), apply_window(hu, 40, 400), atol=1e-5)
    assert b['finding'].tolist() == [-1, 1] and b['finding_valid'].tolist() == [False, True]


def test_class_folders_ratio_split_is_stratified_and_predict_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c, n in (('benign', 30), ('malignant', 10)):
        (tmp_path/'cf'/c).mkdir(parents=True)
        for i in range(n): Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path/'cf'/c/f'{i}.jpg')
    cfg = DataConfig(layout='class_folders', data_dir=tmp_path/'cf', split_ratios=[0.5, 0.5], im_size=16, batch_size=40,
                     sampler='train_random_val_weighted', validation_samples=400, predict_dir=tmp_path/'cf'/'malignant')
    dm = MedDataModule(cfg, None, in_channels=3, seed=1); dm.setup('fit')
    assert dm.heads[0].classes == ['benign', 'malignant']
    for split in ('train', 'val'):
        assert np.bincount(dm.dataset(split).s.labels['label']).tolist() == [15, 5]  # stratified: 3:1 in both
    drawn = torch.cat([b['label'] for b in dm.val_dataloader()])
    assert len(drawn) == 400 and abs(drawn.float().mean().item() - 0.5) < 0.08  # weighted val sampler balances classes
    dm.setup('predict'); p = next(iter(dm.predict_dataloader()))
    assert p['image'].shape == (10, 3, 16, 16) and sorted(p['id'])[0] == '0.jpg'
    fig = view_batch(next(iter(dm.train_dataloader())), dm.heads, n=4)
    assert len(fig.axes) == 4 and fig.axes[0].get_title().split('\n')[1].startswith('label: ')


def test_class_folders_without_split_need_ratios(tmp_path):
    (tmp_path/'a').mkdir(); Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path/'a'/'x.png')
    with pytest.raises(ConfigError, match='data.split_ratios: this class_folders data set names no splits'):
        MedDataModule(DataConfig(layout='class_folders', data_dir=tmp_path)).setup('fit')


def test_multiclass_and_per_class_masks_with_equal_source_sampling(tmp_path):
    from medseg.synthetic import make_synthetic
    make_synthetic(tmp_path, n=24, size=32, seed=2)
    df = pd.read_csv(tmp_path/'manifest.csv', dtype=str, keep_default_na=False)
    lab = {p: np.asarray(Image.open(tmp_path/p)) for p in df.mask_mc}
    for c, k in (('round', 1), ('elongated', 2)):  # one binary file per class
        (tmp_path/c).mkdir()
        for p in df.mask_mc: Image.fromarray(((lab[p] == k) * 255).astype(np.uint8)).save(tmp_path/c/Path(p).name)
        df[f'blobs_{c}'] = [f'{c}/{Path(p).name}' for p in df.mask_mc]
    df.loc[df.index[df.split == 'train'][:3], 'source'] = 'scanner_c'  # a small third source
    df.to_csv(tmp_path/'manifest.csv', index=False)
    heads = [HeadConfig(name='mask_mc', kind='seg', multiclass=True, classes=['background', 'round', 'elongated']),
             HeadConfig(name='blobs', kind='seg', classes=['round', 'elongated'])]
    cfg = DataConfig(data_dir=tmp_path, im_size=32, batch_size=300, train_augs=[{'RandomRotate90': {'p': 1}}],
                     equal_source_sampling=True, train_samples=300)
    dm = MedDataModule(cfg, heads, seed=0); dm.setup('fit')
    b = next(iter(dm.train_dataloader()))
    assert b['mask_mc'].dtype == torch.long and b['blobs'].shape == (300, 2, 32, 32)
    for k in (1, 2): assert torch.equal((b['mask_mc'] == k).float(), b['blobs'][:, k - 1])  # rotated together
    src = dict(zip(df.image, df.source))
    counts = pd.Series([src[i] for i in b['id']]).value_counts(normalize=True)
    assert set(counts.index) == {'scanner_a', 'scanner_b', 'scanner_c'} and (abs(counts - 1 / 3) < 0.08).all()
