"Exhaustive checks of medseg.metrics: scikit-learn references over many draws, batching, pickling, Lightning logging."
import pickle

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from medseg.config import HeadConfig
from medseg.losses import MultiTaskLoss
from medseg.metrics import head_confusion_matrix, head_metrics


def close(a, b, eps=1e-5):
    a, b = float(a), float(b)
    assert abs(a - b) < eps or (np.isnan(a) and np.isnan(b)), (a, b)

HEADS = [HeadConfig(name='lungs', kind='seg', classes=['left', 'right']),
         HeadConfig(name='blobs', kind='seg', classes=['bg', 'round', 'long'], multiclass=True),
         HeadConfig(name='finding', kind='cls', classes=['normal', 'pneumonia', 'covid', 'other']),
         HeadConfig(name='tags', kind='cls', classes=['effusion', 'nodule'], multilabel=True),
         HeadConfig(name='pneumonia', kind='cls', classes=['pneumonia']),
         HeadConfig(name='age', kind='reg'),
         HeadConfig(name='csi', kind='zones', zones=6, classes=['0', '1', '2', '3', 'unknown'])]

def make_batch(B=16, seed=0):
    "Model outputs and a batch in the contract, with unknown labels of every kind."
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    out = {'lungs': r(B, 2, 8, 8), 'blobs': r(B, 3, 8, 8), 'finding': r(B, 4), 'tags': r(B, 2), 'pneumonia': r(B, 1),
           'age': r(B, 1) * 10 + 50, 'csi': r(B, 6, 5)}
    tags = (torch.rand(B, 2, generator=g) > .5).float(); tags[torch.rand(B, 2, generator=g) < .2] = -1
    age = out['age'] + r(B, 1) * 5; age[torch.rand(B, 1, generator=g) < .2] = float('nan')
    csi = torch.randint(0, 5, (B, 6), generator=g); csi[torch.rand(B, 6, generator=g) < .1] = -1
    batch = {'lungs': (torch.rand(B, 2, 8, 8, generator=g) > .5).float(), 'blobs': torch.randint(0, 3, (B, 8, 8), generator=g),
             'finding': torch.randint(-1, 4, (B,), generator=g), 'tags': tags, 'pneumonia': torch.randint(-1, 2, (B,), generator=g),
             'age': age, 'csi': csi}
    for h in HEADS: batch[f'{h.name}_valid'] = torch.rand(B, generator=g) > .25
    return out, batch

@pytest.mark.parametrize('seed', range(5))
def test_multiclass_against_sklearn(seed):
    out, batch = make_batch(64, seed)
    h = HEADS[2]
    m = head_metrics(h, beta=0.5); m.update_batch(out, batch)
    r = m.compute()
    k = batch['finding_valid'] & (batch['finding'] >= 0)
    yt, pr = batch['finding'][k].numpy(), out['finding'][k].softmax(1).numpy()
    yp = pr.argmax(1)
    close(r['val_acc'], skm.accuracy_score(yt, yp))
    close(r['val_f1'], skm.f1_score(yt, yp, average='macro'))
    close(r['val_fbeta_weighted'], skm.fbeta_score(yt, yp, beta=.5, average='weighted'))
    for i, c in enumerate(h.classes):
        close(r[f'val_recall_{c}'], skm.recall_score(yt, yp, average=None, labels=range(4))[i])
    close(r['val_auroc'], skm.roc_auc_score(yt, pr, multi_class='ovr', labels=range(4)))
    close(r['val_ap'], skm.average_precision_score(np.eye(4)[yt], pr, average='macro'))

@pytest.mark.parametrize('seed', range(5))
def test_multilabel_and_binary_against_sklearn(seed):
    out, batch = make_batch(64, seed)
    m = head_metrics(HEADS[3]); m.update_batch(out, batch); r = m.compute()
    f1s, aucs = [], []
    for j in range(2):
        k = batch['tags_valid'] & (batch['tags'][:, j] >= 0)
        t, s = batch['tags'][k, j].numpy(), out['tags'][k, j].sigmoid().numpy()
        f1s.append(skm.f1_score(t, s > .5)); aucs.append(skm.roc_auc_score(t, s))
    close(r['val_f1'], np.mean(f1s)); close(r['val_auroc'], np.mean(aucs)); close(r['val_f1_nodule'], f1s[1])
    m = head_metrics(HEADS[4], threshold=0.3); m.update_batch(out, batch); r = m.compute()
    k = batch['pneumonia_valid'] & (batch['pneumonia'] >= 0)
    t, s = batch['pneumonia'][k].numpy(), out['pneumonia'][k, 0].sigmoid().numpy()
    close(r['val_precision'], skm.precision_score(t, s > .3)); close(r['val_ap'], skm.average_precision_score(t, s))
    cm = head_confusion_matrix(HEADS[4], threshold=0.3); cm.update_batch(out, batch)
    assert (cm.compute()['val_confmat'].numpy() == skm.confusion_matrix(t, s > .3)).all()

def test_accumulating_batches_equals_one_batch():
    out, batch = make_batch(32, 7)
    for h in HEADS:
        whole, parts = head_metrics(h), head_metrics(h)
        whole.update_batch(out, batch)
        for sl in (slice(0, 10), slice(10, 11), slice(11, 32)):
            parts.update_batch({k: v[sl] for k, v in out.items()}, {k: v[sl] for k, v in batch.items()})
        a, b = whole.compute(), parts.compute()
        assert a.keys() == b.keys()
        for k in a:
            if 'iou' in k: continue  # MeanIoU averages per image: same, but checked in the notebook
            close(a[k], b[k], 1e-4)

def test_seg_matches_numpy_over_draws():
    for seed in range(3):
        out, batch = make_batch(8, seed)
        m = head_metrics(HEADS[0]); m.update_batch(out, batch); r = m.compute()
        v = batch['lungs_valid'].numpy()
        p, t = (out['lungs'].numpy() > 0)[v], batch['lungs'].numpy().astype(bool)[v]
        dice = [2 * (p[:, c] & t[:, c]).sum() / (p[:, c].sum() + t[:, c].sum()) for c in range(2)]
        close(r['val_dice'], np.mean(dice)); close(r['val_dice_right'], dice[1])
    # one binary channel (the built-in job's `mask` head): global Dice and per-image IoU, as numpy computes them
    h = HeadConfig(name='mask', kind='seg')
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(4, 1, 8, 8, generator=g), (torch.rand(4, 1, 8, 8, generator=g) > .5).float()
        a = head_metrics(h, prefix='val_mask_'); a.update(x, y); ra = a.compute()
        p, t = (x > 0).numpy(), y.numpy().astype(bool)
        close(ra['val_mask_dice'], 2 * (p & t).sum() / (p.sum() + t.sum()))
        close(ra['val_mask_iou'], np.mean([(p[i] & t[i]).sum() / (p[i] | t[i]).sum() for i in range(4)]))

def test_all_scalar_and_picklable():
    out, batch = make_batch(16, 3)
    for h in HEADS:
        m = head_metrics(h, beta=2)
        m.update_batch(out, batch)
        r = pickle.loads(pickle.dumps(m)).compute()
        assert all(v.ndim == 0 for v in r.values()), h.name

def test_no_labelled_sample_does_not_crash():
    out, batch = make_batch(8, 0)
    batch = {**batch, 'age_valid': torch.zeros(8, dtype=torch.bool)}
    m = head_metrics(HEADS[5]); m.update_batch(out, batch)
    with pytest.warns(UserWarning): r = m.compute()
    assert r["val_r2"].isnan()

def test_lightning_logs_every_head_with_log_dict(tmp_path):
    "The pattern a multi-task LightningModule uses: MultiTaskLoss for the loss, one head_metrics per head, log_dict."
    import lightning as L
    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
        def forward(self, x):  # outputs derived from a parameter so that the loss has a gradient
            o, _ = make_batch(len(x), 0)
            return {k: v + self.lin.weight.sum() * 0 for k, v in o.items()}
    class Task(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.loss = Heads(), MultiTaskLoss(HEADS)
            self.val_metrics = torch.nn.ModuleDict({h.name: head_metrics(h, prefix=f'val_{h.name}_') for h in HEADS})
        def training_step(self, b, i):
            total, parts = self.loss(self.model(b[0]), make_batch(len(b[0]), 0)[1])
            return total
        def validation_step(self, b, i):
            out, batch = self.model(b[0]), make_batch(len(b[0]), 0)[1]
            total, parts = self.loss(out, batch)
            self.log('val_loss', total, batch_size=len(b[0]))
            self.log_dict({f'val_loss_{k}': v for k, v in parts.items()}, batch_size=len(b[0]))
            for m in self.val_metrics.values():
                m.update_batch(out, batch); self.log_dict(m, on_epoch=True)
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), 0.0)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(16, 4)), batch_size=16)
    tr = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path)
    task = Task()
    tr.fit(task, dl, dl)
    cm = tr.callback_metrics
    ref = head_metrics(HEADS[6]); out, batch = make_batch(16, 0); ref.update_batch(out, batch); ref = ref.compute()
    close(cm['val_csi_score_mae'], ref['val_score_mae']); close(cm['val_csi_severity_f1'], ref['val_severity_f1'])
    assert {'val_loss', 'val_loss_age', 'val_finding_f1_covid', 'val_lungs_dice_left', 'val_age_r2', 'val_tags_auroc'} <= set(cm)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_metrics_on_gpu_match_cpu():
    out, batch = make_batch(32, 4)
    for h in HEADS:
        cpu, gpu = head_metrics(h), head_metrics(h).cuda()
        cpu.update_batch(out, batch)
        gpu.update_batch({k: v.cuda() for k, v in out.items()}, {k: v.cuda() for k, v in batch.items()})
        a, b = cpu.compute(), gpu.compute()
        for k in a: close(a[k], b[k].cpu(), 1e-4)
