"Exhaustive checks of medseg.losses: independent numpy references, every registry name on every target form, masking, config."
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.config import ConfigError, HeadConfig, validate_config
from medseg.losses import (LOSSES, MultiTaskLoss, build_loss, head_loss, known, list_losses, LovaszLoss, TverskyLoss,
                           GeneralizedDiceLoss, DiceLoss, FocalLoss, ZoneLoss)


def close(a, b, eps=1e-5):
    a, b = float(torch.as_tensor(a).detach()), float(torch.as_tensor(b).detach())
    assert abs(a - b) < eps, (a, b)

# ---------- independent numpy references ----------

def np_lovasz_hinge(logits, labels):
    "Berman et al.'s Lovasz hinge, written from the paper: sort errors, dot with the Jaccard gradient."
    signs = 2 * labels - 1
    errors = 1 - logits * signs
    order = np.argsort(-errors, kind='stable')
    e, gt = errors[order], labels[order]
    inter = gt.sum() - np.cumsum(gt)
    union = gt.sum() + np.cumsum(1 - gt)
    jac = 1 - inter / union
    jac[1:] = jac[1:] - jac[:-1]
    return np.dot(np.maximum(e, 0), jac)

def test_lovasz_hinge_matches_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 1, 6, 6)), (rng.random((3, 1, 6, 6)) > .5).astype(float)
    y[0, 0, :2] = -1  # unknown pixels are dropped
    k = y >= 0
    close(LovaszLoss()(torch.tensor(x).float(), torch.tensor(y).float()), np_lovasz_hinge(x[k], y[k]))
    per_img = np.mean([np_lovasz_hinge(x[i][k[i]], y[i][k[i]]) for i in range(3)])
    close(LovaszLoss(per_image=True)(torch.tensor(x).float(), torch.tensor(y).float()), per_img)

def np_softmax(x, axis=1):
    e = np.exp(x - x.max(axis, keepdims=True)); return e / e.sum(axis, keepdims=True)

def test_tversky_and_generalized_dice_match_numpy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 3, 5, 5)), rng.integers(0, 3, (2, 5, 5))
    p, t = np_softmax(x).reshape(2, 3, -1), np.eye(3)[y].transpose(0, 3, 1, 2).reshape(2, 3, -1)
    tp, fp, fn = (p * t).sum(-1), (p * (1 - t)).sum(-1), ((1 - p) * t).sum(-1)
    s = 1e-5
    ti = (tp + s) / (tp + .3 * fp + .7 * fn + s)
    close(TverskyLoss(.3, .7)(torch.tensor(x).float(), torch.tensor(y)), (1 - ti).mean())
    w = 1 / t.sum(-1) ** 2  # per image and class; MONAI replaces infinite weights by the largest finite one
    w = np.where(np.isinf(w), w[np.isfinite(w)].max(), w) if np.isinf(w).any() else w
    gd = 1 - (2 * (w * (p * t).sum(-1)).sum(1) + s) / ((w * (p + t).sum(-1)).sum(1) + s)
    close(GeneralizedDiceLoss()(torch.tensor(x).float(), torch.tensor(y)), gd.mean())

def test_softmax_focal_matches_numpy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    p = np_softmax(x)[np.arange(6), y]
    ref = (-(1 - p) ** 2 * np.log(p)).sum() / (6 * 4)  # MONAI averages over samples x classes
    close(FocalLoss()(torch.tensor(x).float(), torch.tensor(y)), ref)

# ---------- every name on every target form ----------

def batches(form, unknown=True):
    "(logits, target) pairs for a target form: a segmentation and a classification layout."
    g = torch.Generator().manual_seed(0)
    if form == 'binary':
        ys, yc = (torch.rand(2, 2, 16, 16, generator=g) > .5).float(), (torch.rand(6, 3, generator=g) > .5).float()
        if unknown: ys[0, 1, :3] = -1; yc[1, 2] = -1; yc[4] = float('nan')
        return [(torch.randn(2, 2, 16, 16, generator=g), ys), (torch.randn(6, 3, generator=g), yc)]
    ys, yc = torch.randint(0, 3, (2, 16, 16), generator=g), torch.randint(0, 4, (6,), generator=g)
    if unknown: ys[1, :2] = -1; yc[3] = -1
    return [(torch.randn(2, 3, 16, 16, generator=g), ys), (torch.randn(6, 4, generator=g), yc)]

CASES = [(n, f) for n, (_, forms) in LOSSES.items() for f in forms if f in ('index', 'binary')]

@pytest.mark.parametrize('name,form', CASES)
def test_each_loss_runs_and_ignores_unknown_entries(name, form):
    loss = build_loss(name, kind='seg', multiclass=form == 'index')
    for x, y in batches(form):
        x = x.clone().requires_grad_()
        v = loss(x, y)
        assert v.ndim == 0 and torch.isfinite(v), (name, v)
        v.backward()
        assert torch.isfinite(x.grad).all()
        # logits at unknown entries do not matter
        unk = ~known(y)
        if form == 'index': unk = unk.unsqueeze(1).expand_as(x)
        x2 = x.detach().clone(); x2[unk] += 5.
        close(loss(x2, y), v, 1e-5)
        # nothing known: 0, not NaN
        close(loss(x.detach(), torch.full_like(y, -1)), 0.)

@pytest.mark.parametrize('name,form', CASES)
def test_each_loss_prefers_the_right_answer(name, form):
    loss = build_loss(name, kind='seg', multiclass=form == 'index')
    for x, y in batches(form, unknown=False):
        good = (y * 20 - 10) if form == 'binary' else F.one_hot(y, x.shape[1]).movedim(-1, 1).float() * 20 - 10
        assert loss(good, y) < loss(x, y) < loss(-good, y), name

def test_regression_and_zone_losses_mask_unknowns():
    p, t = torch.tensor([[1.], [2.], [3.]]), torch.tensor([[1.5], [float('nan')], [1.]])
    for n, ref in [('mse', np.mean([.25, 4])), ('mae', np.mean([.5, 2])), ('rmse', np.sqrt(np.mean([.25, 4])))]:
        close(build_loss(n, kind='reg')(p, t), ref)
    z = ZoneLoss(0.3)
    x, y = torch.randn(3, 6, 5), torch.randint(0, 5, (3, 6))
    y[:, 0] = -1
    x2 = x.clone(); x2[:, 0] += 3
    close(z(x2, y), z(x, y))

def test_list_and_errors():
    assert list_losses() == ['ce', 'bce', 'dice', 'dice_bce', 'generalized_dice', 'dice_ce', 'dice_focal', 'focal', 'tversky',
                             'lovasz', 'zone', 'mse', 'mae', 'rmse']
    assert 'zone' not in list_losses('seg') and 'dice' in list_losses('cls')
    with pytest.raises(ConfigError, match="Did you mean 'tversky'"): build_loss('tverski')
    with pytest.raises(ConfigError, match="use one of: zone"): build_loss('ce', kind='zones')
    with pytest.raises(ConfigError, match="has no parameter 'unknown_wieght'"): build_loss('zone', kind='zones', unknown_wieght=.1)

# ---------- the config and the multi-task total ----------

def test_heads_from_a_config_train():
    cfg = validate_config({'heads': [
        {'name': 'lungs', 'kind': 'seg', 'classes': ['left', 'right']},
        {'name': 'blobs', 'kind': 'seg', 'classes': ['bg', 'a', 'b'], 'multiclass': True,
         'loss': {'_target_': 'medseg.losses.DiceFocalLoss', 'params': {'gamma': 1.0}}},
        {'name': 'finding', 'kind': 'cls', 'classes': ['normal', 'pneumonia', 'covid'],
         'loss': {'_target_': 'medseg.losses.CrossEntropyLoss', 'params': {'weight': [1, 2, 2], 'label_smoothing': .1}}},
        {'name': 'age', 'kind': 'reg', 'alpha': 0.01, 'loss': {'_target_': 'medseg.losses.RMSELoss'}},
        {'name': 'csi', 'kind': 'zones', 'zones': 6, 'classes': ['0', '1', '2', '3', 'unknown'],
         'loss': {'_target_': 'medseg.losses.ZoneLoss', 'params': {'unknown_weight': .5}}}]})
    mt = MultiTaskLoss(cfg.heads)
    assert mt.losses[4].unknown_weight == .5 and mt.losses[4].unknown_index == 4  # the class named 'unknown' (-1 before: the same class here)
    torch.manual_seed(0)
    B = 8
    feats = torch.randn(B, 16)
    model = torch.nn.ModuleDict({'lungs': torch.nn.Linear(16, 2 * 8 * 8), 'blobs': torch.nn.Linear(16, 3 * 8 * 8),
                                 'finding': torch.nn.Linear(16, 3), 'age': torch.nn.Linear(16, 1), 'csi': torch.nn.Linear(16, 30)})
    shape = {'lungs': (2, 8, 8), 'blobs': (3, 8, 8), 'finding': (3,), 'age': (1,), 'csi': (6, 5)}
    batch = {'lungs': (torch.rand(B, 2, 8, 8) > .5).float(), 'blobs': torch.randint(0, 3, (B, 8, 8)),
             'finding': torch.randint(-1, 3, (B,)), 'age': torch.randn(B, 1), 'csi': torch.randint(-1, 5, (B, 6)),
             'lungs_valid': torch.arange(B) % 2 == 0, 'age_valid': torch.arange(B) < 5}
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = None
    for _ in range(60):
        out = {k: m(feats).reshape(B, *shape[k]) for k, m in model.items()}
        total, parts = mt(out, batch)
        assert set(parts) == set(shape) and torch.isfinite(total)
        first = first if first is not None else total.item()
        opt.zero_grad(); total.backward(); opt.step()
    assert total.item() < first / 2

def test_config_rejects_bad_loss_params():
    with pytest.raises(ConfigError, match="Did you mean 'gamma'"):
        validate_config({'heads': [{'name': 'a', 'kind': 'cls', 'classes': ['x', 'y'],
                                    'loss': {'_target_': 'medseg.losses.FocalLoss', 'params': {'gama': 2}}}]})

def test_head_loss_defaults():
    kinds = [(HeadConfig(name='s', kind='seg'), 'DiceBCELoss'), (HeadConfig(name='m', kind='seg', classes=['a', 'b'], multiclass=True), 'DiceCELoss'),
             (HeadConfig(name='c', kind='cls', classes=['a', 'b']), 'CrossEntropyLoss'),
             (HeadConfig(name='t', kind='cls', classes=['a', 'b'], multilabel=True), 'BCEWithLogitsLoss'),
             (HeadConfig(name='o', kind='cls', classes=['pneumonia']), 'BCEWithLogitsLoss'),
             (HeadConfig(name='r', kind='reg'), 'MSELoss'), (HeadConfig(name='z', kind='zones', zones=2, classes=['unknown', '0', '1']), 'ZoneLoss')]
    for h, cls in kinds: assert type(head_loss(h)).__name__ == cls
    assert head_loss(HeadConfig(name='z', kind='zones', zones=2, classes=['unknown', '0', '1'])).unknown_index == 0

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_losses_on_gpu_match_cpu():
    for name, form in CASES:
        loss = build_loss(name, kind='seg', multiclass=form == 'index')
        for x, y in batches(form):
            close(loss.cuda()(x.cuda(), y.cuda()).cpu(), loss.cpu()(x, y), 1e-4)
