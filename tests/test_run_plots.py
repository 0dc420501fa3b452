"`write_run_plots` as the engine calls it: every head kind at once, then without labels, then with every label unknown."
import matplotlib
matplotlib.use('Agg')  # no display here, and none needed by a run
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from medseg.heads import HeadConfig
from medseg.plots import write_run_plots

HEADS = [HeadConfig(name='mask', kind='seg'),
         HeadConfig(name='blobs', kind='seg', multiclass=True, classes=['background', 'round', 'long']),
         HeadConfig(name='finding', kind='cls', classes=['normal', 'pneumonia', 'covid']),
         HeadConfig(name='tags', kind='cls', multilabel=True, classes=['effusion', 'nodule']),
         HeadConfig(name='pneumonia', kind='cls', classes=['pneumonia']),
         HeadConfig(name='age', kind='reg'),
         HeadConfig(name='csi', kind='zones', zones=6, classes=['0', '1', '2', '3', 'unknown'])]
ALL = {'curves.png', 'mask_overlays.png', 'blobs_overlays.png', 'finding_confusion.png', 'finding_roc_pr.png',
       'tags_confusion.png', 'tags_roc_pr.png', 'pneumonia_confusion.png', 'pneumonia_roc_pr.png', 'age_scatter.png', 'csi_zones.png'}


def make_preds(n=20, size=16, seed=0):
    "What the task's predict/test pass collects: ids, logits per head, labels with unknowns of every kind."
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    mask = (torch.rand(n, 1, size, size, generator=g) > .7).float()
    blobs = torch.randint(0, 3, (n, size, size), generator=g)
    finding, pneu = torch.randint(0, 3, (n,), generator=g), torch.tensor([0, 1] * (n // 2))
    tags = torch.tensor([[0., 1.], [1., 0.]] * (n // 2))
    age, csi = r(n, 1) * 10 + 50, torch.randint(0, 5, (n, 6), generator=g)
    out = {'mask': mask * 4 - 2 + r(n, 1, size, size), 'blobs': F.one_hot(blobs, 3).movedim(-1, 1) * 3. + r(n, 3, size, size),
           'finding': F.one_hot(finding, 3) * 2. + r(n, 3), 'tags': tags * 2 - 1 + r(n, 2), 'pneumonia': pneu[:, None] * 2. - 1 + r(n, 1),
           'age': age + r(n, 1) * 4, 'csi': F.one_hot(csi, 5) * 2. + r(n, 6, 5)}
    finding[0] = -1; tags[1, 0] = float('nan'); tags[2, 1] = -1; pneu[3] = -1; age[4] = float('nan'); csi[5, :2] = -1
    labels = {'mask': mask, 'blobs': blobs, 'finding': finding, 'tags': tags, 'pneumonia': pneu, 'age': age, 'csi': csi}
    for h in HEADS: labels[f'{h.name}_valid'] = torch.arange(n) != 6
    return {'id': [f's{i}' for i in range(n)], 'outputs': out, 'labels': labels}


def history(epochs=4):
    e = np.arange(epochs)
    return pd.DataFrame({'epoch': e, 'train_loss_epoch': 1 / (e + 1), 'val_loss': 1.2 / (e + 1), 'val_mask_loss': .5 / (e + 1),
                         'val_mask_dice': .2 * e, 'val_finding_auroc': .5 + .1 * e, 'val_age_mae': 10 - e})


@pytest.fixture(autouse=True)
def no_open_figures():
    plt.close('all'); yield; plt.close('all')


def test_every_kind_at_once(tmp_path):
    written = write_run_plots(tmp_path/'plots', HEADS, history(), make_preds(), images=torch.rand(6, 1, 16, 16))
    assert {p.name for p in written} == ALL
    assert sorted(p.name for p in (tmp_path/'plots').iterdir()) == sorted(ALL)  # no temporary file left behind
    assert all(p.parent == tmp_path/'plots' and p.stat().st_size > 1000 for p in written)
    for p in written: Image.open(p).verify()  # whole PNGs
    assert Image.open(tmp_path/'plots'/'curves.png').size[0] == 700  # 7 inches at 100 dpi
    assert plt.get_fignums() == []  # every figure closed


def test_without_metrics_images_or_labels(tmp_path):
    preds = make_preds()
    assert {p.name for p in write_run_plots(tmp_path/'a', HEADS, preds=preds)} == ALL - {'curves.png', 'mask_overlays.png', 'blobs_overlays.png'}
    unlabelled = {**preds, 'labels': {}}  # `predict` on a folder of images: only the overlays need no label
    assert [p.name for p in write_run_plots(tmp_path/'b', HEADS, pd.DataFrame(), unlabelled, torch.rand(3, 3, 16, 16))] == \
        ['mask_overlays.png', 'blobs_overlays.png']
    assert write_run_plots(tmp_path/'c', HEADS, metrics=history()) == [tmp_path/'c'/'curves.png']
    assert write_run_plots(tmp_path/'d', HEADS) == [] and not (tmp_path/'d').exists()
    assert plt.get_fignums() == []


def test_heads_with_every_label_unknown_get_nothing(tmp_path):
    preds = make_preds(); n = len(preds['id']); lab = dict(preds['labels'])
    lab.update(finding=torch.full((n,), -1), tags=torch.full((n, 2), float('nan')), age=torch.full((n, 1), float('nan')),
               csi=torch.full((n, 6), -1), mask_valid=torch.zeros(n, dtype=torch.bool), pneumonia_valid=torch.zeros(n, dtype=torch.bool))
    del lab['blobs'], lab['blobs_valid']  # a head the labels do not carry at all
    names = {p.name for p in write_run_plots(tmp_path, HEADS, preds={**preds, 'labels': lab}, images=torch.rand(2, 1, 16, 16))}
    assert names == set()


def test_one_class_seen_draws_confusion_but_no_roc(tmp_path):
    preds = make_preds(); preds['labels']['pneumonia'] = torch.ones(len(preds['id']), dtype=torch.long)  # every sample positive
    names = {p.name for p in write_run_plots(tmp_path, [HEADS[4]], preds=preds)}
    assert names == {'pneumonia_confusion.png'}  # ROC/PR needs positives and negatives
