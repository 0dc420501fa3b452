"Bad data through the DataModule: each problem stops setup with a message naming the file or row, or is skipped and listed."
import shutil, warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medseg.config import ConfigError, DataConfig, HeadConfig
from medseg.data import SKIP_FILE, MedDataModule
from medseg.io import DataError
from medseg.synthetic import make_synthetic

HEADS = [HeadConfig(name='mask', kind='seg'), HeadConfig(name='tags', kind='cls', multilabel=True, classes=['round', 'elongated']),
         HeadConfig(name='age', kind='reg')]


@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp('clean'); make_synthetic(d, n=16, size=32, seed=0); return d


@pytest.fixture
def data(clean, tmp_path):
    d = tmp_path/'data'; shutil.copytree(clean, d); return d


def manifest(d):
    return pd.read_csv(d/'manifest.csv', dtype=str, keep_default_na=False)


def dm_for(d, heads=HEADS, **kw):
    return MedDataModule(DataConfig(data_dir=d, im_size=32, batch_size=4, **kw), heads, seed=0)


def first_train_row(d):
    df = manifest(d); i = int(np.flatnonzero(df.split == 'train')[0]); return df, i


def test_truncated_file_is_caught_before_training(data):
    df, i = first_train_row(data)
    p = data/df.image[i]; p.write_bytes(p.read_bytes()[:30])  # the header itself is cut
    with pytest.raises(DataError, match=f"manifest.csv row {i + 2}: .*{df.image[i]}: cannot read pil header"):
        dm_for(data).setup('fit')


def test_truncated_pixels_fail_at_read_naming_the_file_or_with_decode_check(data):
    df, i = first_train_row(data)
    p = data/df.image[i]; p.write_bytes(p.read_bytes()[:80])  # header intact, pixel data cut
    dm = dm_for(data, train_augs=[]); dm.setup('fit')  # headers are fine
    ds = dm.dataset('train'); j = list(ds.s.ids).index(df.image[i])
    with pytest.raises(DataError, match=f"{df.image[i]}: cannot read pil image"): ds[j]
    with pytest.raises(DataError, match=f"{df.image[i]}: cannot read pil image"):
        dm_for(data, check_data='decode').setup('fit')  # found up front with a full decode


def test_missing_mask(data):
    df, i = first_train_row(data); (data/df['mask'][i]).unlink()
    with pytest.raises(DataError, match=f"manifest.csv row {i + 2}: mask file not found: .*{df['mask'][i]}"):
        dm_for(data).setup('fit')


def test_missing_mask_in_mask_folders(data):
    (data/'masks'/'img_0003.png').unlink()
    cfg = dict(layout='mask_folders', split_ratios=[0.5, 0.5])
    with pytest.raises(DataError, match=r"missing mask: no file named img_0003\.\* in .*masks for image .*img_0003.png"):
        dm_for(data, [HeadConfig(name='mask', kind='seg')], **cfg).setup('fit')


def test_mask_size_differs(data):
    df, i = first_train_row(data)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(data/df['mask'][i])
    with pytest.raises(DataError, match=rf"row {i + 2}: .*{df['mask'][i]}: mask size \(16, 16\) differs from image .*\(32, 32\)"):
        dm_for(data).setup('fit')


def test_label_outside_declared_classes(data):
    df, i = first_train_row(data); df.loc[i, 'tags'] = 'round|square'; df.to_csv(data/'manifest.csv', index=False)
    with pytest.raises(DataError, match=rf"row {i + 2}: tags label 'square' is not one of the declared classes \(round, elongated\)"):
        dm_for(data).setup('fit')


def test_mask_label_outside_declared_classes(data):
    df, i = first_train_row(data)
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(data/df['mask_mc'][i])
    head = HeadConfig(name='mask_mc', kind='seg', multiclass=True, classes=['background', 'round', 'elongated'])
    dm = dm_for(data, [head], check_data='decode')
    with pytest.raises(DataError, match=rf"{df['mask_mc'][i]}: mask label 7 is outside the declared classes of head 'mask_mc'"):
        dm.setup('fit')


def test_empty_split(data):
    df = manifest(data); df.loc[df.split == 'test', 'split'] = 'train'; df.to_csv(data/'manifest.csv', index=False)
    with pytest.raises(DataError, match=r"manifest.csv: split 'test' is empty \(splits present: train, val\)"):
        dm_for(data).setup('test')


def test_csv_missing_required_column(data):
    manifest(data).drop(columns='age').to_csv(data/'manifest.csv', index=False)
    with pytest.raises(DataError, match=r"manifest.csv: missing column\(s\) age \(head age\); found image, mask"):
        dm_for(data).setup('fit')


def test_path_escaping_data_root(data):
    df, i = first_train_row(data); df.loc[i, 'image'] = '../outside.png'; df.to_csv(data/'manifest.csv', index=False)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data.parent/'outside.png')  # exists, but outside
    with pytest.raises(DataError, match=rf"row {i + 2}: image path '../outside.png' escapes the data folder"):
        dm_for(data).setup('fit')


def test_several_problems_are_listed_together(data):
    df = manifest(data); df.loc[[0, 1, 2], 'age'] = 'old'; df.to_csv(data/'manifest.csv', index=False)
    with pytest.raises(DataError) as e: dm_for(data).setup('fit')
    msg = str(e.value)
    assert all(f"row {r}: age value 'old' is not a number" in msg for r in (2, 3, 4)) and 'on_bad_sample=skip' in msg


def test_skip_lists_every_skipped_sample_in_the_run_folder(data, tmp_path):
    df = manifest(data)
    tr = np.flatnonzero(df.split == 'train')
    (data/df['mask'][tr[0]]).unlink()                                   # missing mask (load)
    df.loc[tr[1], 'tags'] = 'square'                                    # bad label (load)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(data/df['mask'][tr[2]])  # size mismatch (header check)
    p = data/df.image[tr[3]]; p.write_bytes(p.read_bytes()[:80])        # unreadable pixels (found when read)
    df.to_csv(data/'manifest.csv', index=False)
    run = tmp_path/'run'
    dm = dm_for(data, on_bad_sample='skip', train_augs=[])
    path = dm.write_skipped(run)  # the lead calls this once the run folder exists
    assert path == run/SKIP_FILE
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dm.setup('fit')
        ids = [i for b in dm._loader('train') for i in b['id']]
    assert df.image[tr[3]] not in ids and len(ids) == len(dm.dataset('train'))  # replaced by a readable sample
    listed = pd.read_csv(run/SKIP_FILE)
    assert sorted(listed.id) == sorted(df.image[tr[:4]])
    assert listed.set_index('id').loc[df.image[tr[0]], 'where'] == f'manifest.csv row {tr[0] + 2}'
    reasons = ' '.join(listed.reason)
    for part in ('mask file not found', "'square' is not one of the declared classes", 'differs from image', 'cannot read pil image'):
        assert part in reasons
    assert set(listed.stage) == {'load', 'check', 'train'}


def test_skip_does_not_cover_config_problems(data):
    manifest(data).drop(columns='split').to_csv(data/'manifest.csv', index=False)
    with pytest.raises(DataError, match=r'missing column\(s\) split \(or set data.split_ratios\)'):
        dm_for(data, on_bad_sample='skip').setup('fit')
    with pytest.raises(ConfigError, match=r"data.sampling_tags: 'squares' is not a class of any cls or seg head"):
        dm_for(data, split_ratios=[0.5, 0.5], sampler='train_weighted_val_sequential', sampling_tags=['squares']).train_dataloader()
