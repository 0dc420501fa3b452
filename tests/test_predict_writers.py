"What `medseg predict` leaves in `run/predictions/`, read back as a user would: seg + cls + reg heads, from batches to files."
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medseg.config import HeadConfig
from medseg.predict import gather_predictions, write_predictions

HEADS = [HeadConfig(name='mask', kind='seg'),
         HeadConfig(name='finding', kind='cls', classes=['normal', 'pneumonia', 'covid']),
         HeadConfig(name='age', kind='reg')]
SIZES = {'images/img_0000.png': (50, 70), 'images/img_0001.png': (40, 30), 'images/img_0002.png': (64, 48),
         'extra/img_0000.png': (33, 21)}  # (H, W) of each image file; two share the stem img_0000
SQUARE = {'images/img_0000.png': (8, 24), 'images/img_0001.png': (4, 12), 'images/img_0002.png': (16, 32),
          'extra/img_0000.png': (0, 0)}  # rows/cols [a, b) of the predicted square in 32 x 32 logits; (0, 0): nothing


@pytest.fixture
def images(tmp_path):
    "The four image files at their original sizes; `paths` maps id -> file."
    paths = {}
    for i, (h, w) in SIZES.items():
        p = tmp_path/'data'/i; p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w), 7, np.uint8)).save(p)
        paths[i] = p
    return paths


def batch_outputs(ids, labelled=True):
    "What `predict_step` returns for one batch of `ids`: logits of every head and, when `labelled`, the labels."
    n = len(ids)
    seg = torch.full((n, 1, 32, 32), -6.)
    for k, i in enumerate(ids):
        a, b = SQUARE[i]; seg[k, 0, a:b, a:b] = 6.
    cls = torch.zeros(n, 3)
    cls[torch.arange(n), torch.arange(n) % 3] = 2.  # the k-th sample of a batch predicts class k % 3
    out = {'id': list(ids), 'outputs': {'mask': seg, 'finding': cls, 'age': torch.arange(n, dtype=torch.float32)[:, None] + 40}}
    if labelled:
        truth = (seg > 0).float(); truth[:, :, :2] = 1  # the truth has two more rows on top
        out['labels'] = {'mask': truth, 'mask_valid': torch.ones(n, dtype=torch.bool),
                         'finding': torch.tensor([0, -1, 2, 1][:n]), 'finding_valid': torch.ones(n, dtype=torch.bool),
                         'age': torch.tensor([[41.], [float('nan')], [43.], [44.]][:n]), 'age_valid': torch.tensor([True, True, False, True][:n])}
    return out


def dice_iou(p, t):
    i, s = (p & t).sum(), p.sum() + t.sum()
    return 2 * i / s, i / (s - i)


def test_write_and_read_back(tmp_path, images):
    ids = list(SIZES)
    preds = gather_predictions([batch_outputs(ids[:3]), batch_outputs(ids[3:])])
    out = tmp_path/'run'/'predictions'
    written = write_predictions(out, preds, HEADS, images, save_probs=True)
    assert sorted(written) == ['mask', 'mask.prob', 'predictions.csv', 'scores.csv']
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*')) == sorted(
        ['mask', 'predictions.csv', 'scores.csv'] + [f'mask/{s}{x}' for s in ('images_img_0000', 'img_0001', 'img_0002', 'extra_img_0000')
                                                      for x in ('.png', '_prob.npy')])  # nothing else, no temporary files

    t = pd.read_csv(out/'predictions.csv', keep_default_na=False, na_values=[''])
    assert list(t.columns) == ['id', 'path', 'mask_file', 'finding', 'finding_true', 'finding_prob_normal', 'finding_prob_pneumonia',
                               'finding_prob_covid', 'age', 'age_true']
    assert t.id.tolist() == ids and t.path.tolist() == [str(images[i]) for i in ids]
    assert t.finding.tolist() == ['normal', 'pneumonia', 'covid', 'normal']  # batch-wise k % 3
    assert t.finding_true.isna().tolist() == [False, True, False, False] and t.finding_true[0] == 'normal'
    probs = t[['finding_prob_normal', 'finding_prob_pneumonia', 'finding_prob_covid']].to_numpy()
    assert np.allclose(probs.sum(1), 1) and np.allclose(probs[0], np.exp([2, 0, 0]) / np.exp([2, 0, 0]).sum())
    assert np.allclose(t.age, [40, 41, 42, 40])
    assert t.age_true.isna().tolist() == [False, True, True, False] and t.age_true[3] == 41  # NaN label, then not valid; each batch labels from the start

    for i, f in zip(ids, t.mask_file):
        m = np.asarray(Image.open(out/f))
        h, w = SIZES[i]
        assert m.shape == (h, w) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}  # the original size, 0/255
        a, b = SQUARE[i]
        if a == b: assert m.max() == 0; continue
        rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
        assert np.allclose([rows[0], rows[-1] + 1], [a * h / 32, b * h / 32], atol=1)  # the square, scaled with the image
        assert np.allclose([cols[0], cols[-1] + 1], [a * w / 32, b * w / 32], atol=1)
        p = np.load(out/f.replace('.png', '_prob.npy'))
        assert p.shape == (1, h, w) and p.dtype == np.float16 and ((p[0] > .5) == (m > 0)).mean() > .99

    s = pd.read_csv(out/'scores.csv')
    assert list(s.columns) == ['id', 'mask_dice', 'mask_iou'] and s.id.tolist() == ids
    for k, i in enumerate(ids):  # against numpy at the model's resolution
        b = batch_outputs([i])
        ref = dice_iou(b['outputs']['mask'][0, 0].numpy() > 0, b['labels']['mask'][0, 0].numpy() > 0)
        assert np.allclose(s.loc[k, ['mask_dice', 'mask_iou']].to_numpy(float), ref)


def test_unlabelled_folder_without_paths(tmp_path):
    "`predict_dir`: no labels, so no truth columns and no scores; without `paths`, masks at the model's resolution."
    preds = gather_predictions([batch_outputs(list(SIZES), labelled=False)])
    written = write_predictions(tmp_path/'p', preds, HEADS)
    assert sorted(written) == ['mask', 'predictions.csv']
    t = pd.read_csv(tmp_path/'p'/'predictions.csv')
    assert list(t.columns) == ['id', 'mask_file', 'finding', 'finding_prob_normal', 'finding_prob_pneumonia', 'finding_prob_covid', 'age']
    assert t.mask_file.tolist() == ['mask/images_img_0000.png', 'mask/img_0001.png', 'mask/img_0002.png', 'mask/extra_img_0000.png']
    assert all(Image.open(f).size == (32, 32) for f in written['mask'])


def test_same_stem_never_overwrites(tmp_path, images):
    "Two ids with one stem get two files, each with its own image's mask."
    ids = ['images/img_0000.png', 'extra/img_0000.png']
    written = write_predictions(tmp_path/'p', gather_predictions([batch_outputs(ids)]), HEADS[:1], images)
    a, b = (np.asarray(Image.open(f)) for f in written['mask'])
    assert [f.name for f in written['mask']] == ['images_img_0000.png', 'extra_img_0000.png']
    assert (a.shape, b.shape, a.max(), b.max()) == ((50, 70), (33, 21), 255, 0)
