"""CSI zone scoring end to end: per-zone reports, CSI averages and severity classes checked by hand, against the
CSI system's own definitions (`compute_csi_average_metrics`, `compute_ahf_classification_metrics`, re-stated
here from its documented behaviour), against scikit-learn, and through the predictions CSV a run writes."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from medseg.config import HeadConfig
from medseg.io import DataError
from medseg.metrics import (CSI_ZONE_COLUMNS, csi_average, csi_average_metrics, csi_averages, head_metrics, read_csi_truth,
                            severity, write_zone_tables, zone_confusion, zone_confusion_table, zone_report, zones_from_table)
from medseg.predict import predictions_table

CLASSES = ['0', '1', '2', '3', 'unknown']
HEAD = HeadConfig(name='csi', kind='zones', zones=6, classes=CLASSES)


def close(a, b, eps=1e-6):
    a, b = float(a), float(b)
    assert abs(a - b) < eps or (np.isnan(a) and np.isnan(b)), (a, b)


def table(pred, true=None, ids=None, name='csi'):
    "A predictions table as `predictions_table` writes it, from N x Z class indices (-1 in `true`: no label)."
    ids = ids or [f'images/{i:04d}.png' for i in range(len(pred))]
    cols = {'id': ids}
    for z in range(pred.shape[1]):
        cols[f'{name}_zone{z}'] = [CLASSES[k] for k in pred[:, z]]
        if true is not None: cols[f'{name}_zone{z}_true'] = [CLASSES[k] if k >= 0 else None for k in true[:, z]]
    return pd.DataFrame(cols)


# ---- by hand -------------------------------------------------------------------------------------------------------

def test_averages_and_severity_by_hand(tmp_path):
    pred = np.array([[0, 0, 1, 1, 2, 2],    # 6 graded: 6 / 6 = 1.0 -> mild (0)
                     [1, 1, 2, 4, 4, 4],    # unknown left out: 4 / 3 = 1.333 -> moderate (1)
                     [3, 3, 3, 2, 2, 4],    # 13 / 5 = 2.6 -> severe (2)
                     [2, 2, 2, 3, 2, 4]])   # 11 / 5 = 2.2 exactly -> moderate (1), the bound belongs to the lower class
    # the truth as the CSI system's label CSV has it: ';'-separated, FileIDs with leading zeros, zones empty when unknown
    truth = pd.DataFrame({'FileID': ['0000', '0001', '0002', '0003', '0099'],
                          'right_sup': ['1', '1', '', '2', '0'], 'left_sup': ['1', '2', '3', '2', '0'], 'right_mid': ['2', '', '3', '2', '0'],
                          'left_mid': ['1', '', '3', '2', '0'], 'right_inf': ['1', '', '3', '2', '0'], 'left_inf': ['2', '', '2', '3', '0']})
    truth.to_csv(tmp_path/'labels.csv', sep=';', index=False)
    # true averages: 8/6 = 1.333 (1), 3/2 = 1.5 (1), 14/5 = 2.8 (2), 13/6 = 2.167 (1)
    t = read_csi_truth(tmp_path/'labels.csv', sep=';')
    np.testing.assert_allclose(t[['0000', '0001', '0002', '0003']].to_numpy(), [8 / 6, 1.5, 2.8, 13 / 6])
    table(pred).to_csv(tmp_path/'predictions.csv', index=False)
    av = csi_averages(tmp_path/'predictions.csv', tmp_path/'labels.csv', sep=';')
    assert av['truth_id'].tolist() == ['0000', '0001', '0002', '0003']  # `images/0000.png` is `0000` by file name stem
    np.testing.assert_allclose(av['average_pred'], [1.0, 4 / 3, 2.6, 2.2])
    assert av['severity_pred'].tolist() == [0, 1, 2, 1] and av['severity_true'].tolist() == [1, 1, 2, 1]
    r = csi_average_metrics(tmp_path/'predictions.csv', tmp_path/'labels.csv', sep=';')
    d = np.array([1.0 - 8 / 6, 4 / 3 - 1.5, 2.6 - 2.8, 2.2 - 13 / 6])  # -1/3, -1/6, -0.2, 1/30
    close(r['score_mae'], np.abs(d).mean()); close(r['score_rmse'], np.sqrt((d ** 2).mean()))
    close(r['pred_mean'], (1 + 4 / 3 + 2.6 + 2.2) / 4); close(r['true_mean'], (8 / 6 + 1.5 + 2.8 + 13 / 6) / 4)
    close(r['severity_acc'], 3 / 4)  # only the first image's class is off (0 for 1)
    assert r['severity_confusion'] == [[0, 0, 0], [1, 2, 0], [0, 0, 1]]
    assert (r['n_images'], r['n_matched'], r['n_scored'], r['n_truth_unused']) == (4, 4, 4, 1)


def test_thresholds_at_the_bounds():
    # 1.3 and 2.2 belong to the lower class (the CSI system: <= 1.3 -> 0, <= 2.2 -> 1, else 2); NaN has none
    assert severity(torch.tensor([1.3, 1.3001, 2.2, 2.2001, float('nan')])).tolist() == [0, 1, 1, 2, -1]
    assert severity(torch.tensor([1.0, 2.0, 3.0]), (1.5, 2.5)).tolist() == [0, 1, 2]
    truth = pd.DataFrame({'FileID': ['a', 'b'], 'csi': [1.3, 2.2]})
    av = csi_averages(table(np.array([[1] * 6, [2] * 6]), ids=['a', 'b']), truth)
    assert av['severity_true'].tolist() == [0, 1]
    # a head's own thresholds
    h = HeadConfig(name='csi', kind='zones', zones=6, classes=CLASSES, severity_thresholds=[0.5, 1.5])
    assert csi_averages(table(np.array([[1] * 6, [2] * 6]), ids=['a', 'b']), truth, head=h)['severity_pred'].tolist() == [1, 2]


def test_no_graded_zone_has_no_average():
    # all zones predicted unknown: no average (the CSI system would put 0, calling the image mild)
    av = csi_averages(table(np.array([[4] * 6, [1] * 6]), true=np.array([[1] * 6, [4, 4, 4, 4, 4, -1]])))
    assert np.isnan(av['average_pred'][0]) and av['severity_pred'].isna().tolist() == [True, False]
    assert np.isnan(av['average_true'][1])
    r = csi_average_metrics(table(np.array([[4] * 6, [1] * 6, [2] * 6]), true=np.array([[1] * 6, [4] * 6, [2] * 6])))
    assert (r['n_scored'], r['n_no_grade_pred'], r['n_no_grade_true']) == (1, 1, 1)
    assert np.isnan(r['score_pearson'])  # one image: no correlation
    assert r['score_mae'] == 0


def test_zone_report_by_hand():
    pred = torch.tensor([[2, 0], [2, 3], [1, 4], [0, 0]])
    true = torch.tensor([[2, 0], [1, 3], [1, 1], [4, -1]])
    rep = zone_report(pred, true, CLASSES, zone_names=['upper', 'lower']).set_index(['zone', 'class'])
    # upper: (true, pred) = (2,2) (1,2) (1,1); image 3's unknown truth is masked (its prediction 0 counts nowhere)
    assert rep.loc[('upper', '2'), ['precision', 'recall', 'support', 'predicted']].tolist() == [0.5, 1.0, 1, 2]
    assert rep.loc[('upper', '1'), ['precision', 'recall', 'support', 'predicted']].tolist() == [1.0, 0.5, 2, 1]
    assert np.isnan(rep.loc[('upper', '0'), 'precision'])  # never predicted on a graded zone
    # lower: (0,0) (3,3) (1,unknown): a graded zone predicted unknown is a miss of class 1
    assert rep.loc[('lower', '1'), ['recall', 'support', 'predicted']].tolist() == [0.0, 1, 0]
    close(rep.loc[('all', '1'), 'recall'], 1 / 3)
    cm = zone_confusion(pred, true, 5)
    assert cm[0, 4, 0] == 1 and cm[1, 1, 4] == 1 and cm.sum() == 7  # the unknown row / column kept; -1 left out
    t = zone_confusion_table(pred, true, CLASSES, ['upper', 'lower'])
    assert t.query("zone == 'lower' and true == '1' and predicted == 'unknown'")['count'].item() == 1


# ---- against references --------------------------------------------------------------------------------------------

def source_reference(pred_classes, truth):
    """The CSI system's CSV comparison, from its documented behaviour: the predicted average leaves out zones predicted
    unknown (class 4), the true one is the CSV's `csi`; severity <= 1.3 -> 0, <= 2.2 -> 1, else 2; scores over the matched ids."""
    pa = np.array([p[p != 4].mean() for p in pred_classes])
    ta = truth['csi'].to_numpy(float)
    ahf = lambda s: np.where(s <= 1.3, 0, np.where(s <= 2.2, 1, 2))
    return {'mae': np.abs(pa - ta).mean(), 'rmse': np.sqrt(((pa - ta) ** 2).mean()), 'corr': np.corrcoef(pa, ta)[0, 1],
            'acc': (ahf(pa) == ahf(ta)).mean(), 'cm': skm.confusion_matrix(ahf(ta), ahf(pa), labels=[0, 1, 2]).tolist(),
            'p': skm.precision_score(ahf(ta), ahf(pa), labels=[0, 1, 2], average=None, zero_division=0),
            'r': skm.recall_score(ahf(ta), ahf(pa), labels=[0, 1, 2], average=None, zero_division=0)}


@pytest.mark.parametrize('seed', range(4))
def test_csv_comparison_matches_the_source_definition(seed, tmp_path):
    rng = np.random.default_rng(seed)
    n = 40
    pred = rng.integers(0, 5, (n, 6)); pred[:, 0] = rng.integers(0, 4, n)  # every image has a graded predicted zone
    zones = rng.integers(0, 5, (n, 6)).astype(float); zones[:, 1] = rng.integers(0, 4, n)
    zones[zones == 4] = np.nan  # the label CSV: unknown zones empty
    ids = [f'{1000 + i}' for i in range(n)]
    truth = pd.DataFrame({'FileID': ids, **{c: zones[:, z] for z, c in enumerate(CSI_ZONE_COLUMNS)}, 'csi': np.nanmean(zones, 1)})
    truth = truth.sample(frac=1, random_state=seed)  # any row order
    truth.to_csv(tmp_path/'labels.csv', index=False)
    table(pred, ids=[f'scans/{i}.nii.gz' for i in ids]).to_csv(tmp_path/'predictions.csv', index=False)
    r = csi_average_metrics(tmp_path/'predictions.csv', tmp_path/'labels.csv')
    ref = source_reference(pred, truth.set_index('FileID').loc[ids])
    close(r['score_mae'], ref['mae']); close(r['score_rmse'], ref['rmse']); close(r['score_pearson'], ref['corr'], 1e-5)
    close(r['severity_acc'], ref['acc']); assert r['severity_confusion'] == ref['cm']
    for c in range(3): close(r[f'severity_precision_{c}'], ref['p'][c], 1e-5); close(r[f'severity_recall_{c}'], ref['r'][c], 1e-5)
    # the averages from the zone columns instead of `csi` give the same
    r2 = csi_average_metrics(tmp_path/'predictions.csv', truth.drop(columns='csi'))
    close(r2['score_mae'], r['score_mae']); assert r2['severity_confusion'] == r['severity_confusion']


@pytest.mark.parametrize('seed', range(3))
def test_zone_report_against_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    logits, true = torch.randn(60, 6, 5, generator=g), torch.randint(-1, 5, (60, 6), generator=g)
    rep, pred = zone_report(logits, true, CLASSES), logits.argmax(-1).numpy()
    cm = zone_confusion(logits, true, 5)
    for z in range(6):
        k = (true[:, z] >= 0).numpy()
        np.testing.assert_array_equal(cm[z].numpy(), skm.confusion_matrix(true[k, z].numpy(), pred[k, z], labels=range(5)))
        g_ = k & (true[:, z] != 4).numpy()  # the unknown class masked
        P, R, F, S = skm.precision_recall_fscore_support(true[g_, z].numpy(), pred[g_, z], labels=range(4), zero_division=np.nan)
        got = rep[rep['zone'] == f'zone{z}']
        np.testing.assert_allclose(got['precision'], P, atol=1e-6); np.testing.assert_allclose(got['recall'], R, atol=1e-6)
        assert got['support'].tolist() == S.tolist()


def test_predictions_csv_agrees_with_the_logged_metrics(tmp_path):
    "The table path (predictions.csv with `_true` columns) and the zones head's logged metrics are one definition."
    g = torch.Generator().manual_seed(3)
    logits, y = torch.randn(50, 6, 5, generator=g), torch.randint(0, 5, (50, 6), generator=g)
    y[torch.rand(50, 6, generator=g) < .15] = -1
    valid = torch.rand(50, generator=g) > .2
    preds = {'id': [f'img{i}' for i in range(50)], 'outputs': {'csi': logits}, 'labels': {'csi': y, 'csi_valid': valid}}
    predictions_table(preds, [HEAD]).to_csv(tmp_path/'predictions.csv', index=False)
    r = csi_average_metrics(tmp_path/'predictions.csv', head=HEAD)
    m = head_metrics(HEAD); m.update(logits, y, valid); logged = m.compute()
    for k in ('score_mae', 'score_rmse', 'score_pearson', 'severity_acc', 'severity_f1'): close(r[k], logged[f'val_{k}'], 1e-5)
    _, p, t = zones_from_table(tmp_path/'predictions.csv', HEAD)
    assert (p == logits.argmax(-1)).all() and (t == torch.where(valid[:, None], y, -1)).all()


def test_write_zone_tables(tmp_path):
    pred, true = np.array([[1] * 6, [2] * 6, [4] * 6]), np.array([[1] * 6, [3] * 6, [-1] * 6])
    w = write_zone_tables(tmp_path, table(pred, true), HEAD)
    assert sorted(w) == ['csi_averages.csv', 'csi_confusion.csv', 'csi_per_zone.csv']
    zones = pd.read_csv(tmp_path/'csi_per_zone.csv', dtype={'class': str})
    assert zones.query("zone == 'all' and `class` == '3'")[['recall', 'support']].values.tolist() == [[0.0, 6]]
    conf = pd.read_csv(tmp_path/'csi_confusion.csv', dtype={'true': str, 'predicted': str})
    assert conf['count'].sum() == 12 and len(conf) == 6 * 25
    assert write_zone_tables(tmp_path/'nolabels', table(pred), HEAD).keys() == {'csi_averages.csv'}


# ---- errors -------------------------------------------------------------------------------------------------------

def test_errors_name_the_file_and_what_is_wrong(tmp_path):
    p, t = tmp_path/'predictions.csv', tmp_path/'labels.csv'
    table(np.ones((3, 6), int), ids=['x1', 'x2', 'x3']).to_csv(p, index=False)
    pd.DataFrame({'FileID': ['1', '2'], 'csi': [1, 2]}).to_csv(t, index=False)
    with pytest.raises(DataError, match=rf"{t}: none of its 2 ids \(FileID: '1', '2', \.\.\.\) matches an id of {p} \('x1', 'x2', 'x3', \.\.\.\)"):
        csi_average_metrics(p, t)
    with pytest.raises(DataError, match=rf"{tmp_path/'nope.csv'}: truth file not found"): csi_average_metrics(p, tmp_path/'nope.csv')
    with pytest.raises(DataError, match=rf"{t}: no id column 'image'"): csi_average_metrics(p, t, id_column='image')
    pd.DataFrame({'FileID': ['x1', 'x1'], 'csi': [1, 2]}).to_csv(t, index=False)
    with pytest.raises(DataError, match=rf"{t}: FileID x1 appears on more than one row"): csi_average_metrics(p, t)
    pd.DataFrame({'FileID': ['x1', 'x2'], 'right_sup': ['1', 'severe']}).to_csv(t, index=False)
    with pytest.raises(DataError, match=rf"{t}: no column 'csi' and no zone column left_sup, right_mid"): csi_average_metrics(p, t)
    with pytest.raises(DataError, match=rf"{t} line 3, column right_sup: 'severe' is not a zone class"):
        csi_average_metrics(p, t, zone_columns=['right_sup'])
    table(np.ones((3, 6), int), ids=['x1', 'x2', 'x3']).drop(columns='csi_zone5').to_csv(p, index=False)
    with pytest.raises(DataError, match=rf"{p}: no column csi_zone5 of zones head 'csi'"): csi_average_metrics(p, head=HEAD)
    with pytest.raises(DataError, match=rf"{p}: no column lungs_zone0 of zones head 'lungs'"): csi_average_metrics(p, head='lungs')
    table(np.ones((2, 6), int), np.ones((2, 6), int)).drop(columns='csi_zone2_true').to_csv(p, index=False)
    with pytest.raises(DataError, match=rf"{p}: has 5 of the 6 truth columns of zones head 'csi'; missing csi_zone2_true"): csi_average_metrics(p)
    table(np.ones((2, 6), int)).to_csv(p, index=False)
    with pytest.raises(DataError, match='has no `average_true`'): csi_average_metrics(p)
    with pytest.raises(ValueError, match="match: 'name'"): csi_averages(p, pd.DataFrame({'FileID': ['1'], 'csi': [1.]}), match='name')
