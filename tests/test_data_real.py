"Real data through the data layer: PneumoniaMNIST (.npz) and the DSB 2018 nuclei image tiled into crops."
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.config import DataConfig, HeadConfig
from medseg.data import MedDataModule

DATA = Path(__file__).resolve().parents[1].parent/'shared'/'data'
PNEU, NUCLEI = DATA/'pneumoniamnist', DATA/'nuclei_dsb2018'
pytestmark = pytest.mark.realdata
need = lambda p: pytest.mark.skipif(not p.exists(), reason=f"real data not found at {p} (only in the project's shared workspace)")
HEAD = HeadConfig(name='label', kind='cls', classes=['normal', 'pneumonia'])


def _pneu(npz, **kw):
    cfg = DataConfig(layout='npz', data_dir=PNEU, npz_file=npz, im_size=28, train_augs=[], batch_size=512, **kw)
    dm = MedDataModule(cfg, [HEAD], in_channels=1, seed=0); dm.setup(None)
    return dm


@need(PNEU)
def test_pneumoniamnist_balanced_counts_shapes_ranges():
    dm = _pneu('pneumoniamnist_balanced.npz')
    z = np.load(PNEU/'pneumoniamnist_balanced.npz')
    assert [len(dm.dataset(s)) for s in ('train', 'val', 'test')] == [2428, 270, 468]
    for split in ('train', 'val', 'test'):
        labels = dm.dataset(split).s.labels['label']
        assert np.bincount(labels).tolist() == np.bincount(z[f'{split}_labels'].ravel()).tolist()
    assert np.bincount(dm.dataset('train').s.labels['label']).tolist() == [1214, 1214]  # the balanced file
    b = dm.finish(next(iter(dm.test_dataloader())))  # uint8 as loaded; float as the model sees it
    assert b['image'].shape == (512 if len(dm.dataset('test')) >= 512 else 468, 1, 28, 28)
    assert b['image'].dtype == torch.float32 and 0 <= b['image'].min() and b['image'].max() <= 1
    assert b['label'].dtype == torch.long and set(b['label'].tolist()) == {0, 1} and b['label_valid'].all()
    # the pixels are the file's, scaled to [0, 1], in file order
    np.testing.assert_allclose(b['image'][:, 0].numpy(), z['test_images'][:len(b['image'])] / 255, atol=1e-6)
    assert b['label'].tolist() == z['test_labels'][:len(b['label']), 0].tolist()


@need(PNEU)
def test_pneumoniamnist_full_weighted_sampling_balances_classes():
    dm = _pneu('pneumoniamnist_fullvaltest.npz', sampler='train_weighted_val_sequential', train_samples=4000)
    assert [len(dm.dataset(s)) for s in ('train', 'val', 'test')] == [3882, 524, 624]
    train = dm.dataset('train').s.labels['label']
    assert np.bincount(train).tolist() == [388, 3494]  # 9:1 pneumonia
    drawn = np.concatenate([b['label'].numpy() for b in dm.train_dataloader()])
    assert len(drawn) == 4000
    assert abs((drawn == 0).mean() - 0.5) < 0.03  # class-balanced draws
    again = np.concatenate([b['label'].numpy() for b in MedDataModule(dm.cfg, [HEAD], seed=0).train_dataloader()])
    assert (again == drawn).all()  # deterministic under the seed


def _tile(img, mask, out, size=128):
    "Cut the 512 x 512 image and its instance mask into size x size crops written as 16-bit TIFFs."
    import tifffile
    (out/'images').mkdir(parents=True); (out/'masks').mkdir()
    n = 0
    for y in range(0, img.shape[0] - size + 1, size):
        for x in range(0, img.shape[1] - size + 1, size):
            tifffile.imwrite(out/'images'/f'tile_{y:03d}_{x:03d}.tif', img[y:y + size, x:x + size])
            tifffile.imwrite(out/'masks'/f'tile_{y:03d}_{x:03d}.tif', mask[y:y + size, x:x + size])
            n += 1
    return n


@need(NUCLEI)
def test_nuclei_tiles_into_image_mask_crops(tmp_path):
    import tifffile
    img, mask = tifffile.imread(NUCLEI/'img2d.tif'), tifffile.imread(NUCLEI/'mask2d.tif')
    assert img.shape == mask.shape == (512, 512) and img.dtype == np.uint16 and len(np.unique(mask)) - 1 == 125
    assert _tile(img, mask, tmp_path) == 16
    cfg = DataConfig(layout='mask_folders', data_dir=tmp_path, mask_dirs={'nuclei': 'masks'}, split_ratios=[0.75, 0.25],
                     normalize='percentile', percentiles=(0.0, 100.0), mask_threshold=None, im_size=128, train_augs=[], batch_size=16)
    dm = MedDataModule(cfg, [HeadConfig(name='nuclei', kind='seg')], seed=0); dm.setup('fit')
    assert (len(dm.dataset('train')), len(dm.dataset('val'))) == (12, 4)
    batches = [dm.finish(next(iter(dm._loader(s)))) for s in ('train', 'val')]  # unshuffled, no augmentation
    x = torch.cat([b['image'] for b in batches]); m = torch.cat([b['nuclei'] for b in batches])
    ids = sum([b['id'] for b in batches], [])
    assert x.shape == (16, 1, 128, 128) and m.shape == (16, 1, 128, 128)
    assert x.min() == 0 and x.max() == 1  # per-tile min-max (percentiles 0..100)
    assert set(m.unique().tolist()) == {0.0, 1.0}  # instance ids -> binary foreground
    assert int(m.sum()) == int((mask > 0).sum())  # every nucleus pixel lands in exactly one crop
    for i, name in enumerate(ids):  # each crop is the right window of the original
        y, x0 = int(Path(name).stem[5:8]), int(Path(name).stem[9:12])  # images/tile_YYY_XXX.tif
        crop = img[y:y + 128, x0:x0 + 128].astype(np.float32)
        np.testing.assert_allclose(x[i, 0].numpy(), (crop - crop.min()) / (crop.max() - crop.min()), atol=1e-6)
        assert (m[i, 0].numpy() == (mask[y:y + 128, x0:x0 + 128] > 0)).all()
    fg = m.mean().item()
    assert 0.15 < fg < 0.25  # nuclei cover about a fifth of the field
