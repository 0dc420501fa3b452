"Multi-task and classification runs from a YAML config, end to end through the `medseg` command."
import json
import pandas as pd
import pytest
from conftest import BIN, ROOT, SHARED_DATA, run

MULTI = """
heads:
  - {name: mask, kind: seg}
  - {name: tags, kind: cls, classes: [round, elongated], multilabel: true}
  - {name: age, kind: reg, alpha: 0.01, loss: {_target_: rmse}}
trainer: {max_epochs: 2}
checkpoint: {monitor: val_tags_f1}
model: {lr_mults: {encoder: 0.5}}
"""

def test_multitask_fit_from_yaml(tmp_path, tiny):
    (tmp_path/'mt.yaml').write_text(MULTI)
    r = run([str(BIN/'medseg'), 'fit', '--config', str(tmp_path/'mt.yaml'), *tiny, 'paths.run_name=mt', 'data.n_images=24'])
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path/'runs'/'mt'
    summary = json.loads((run_dir/'summary.json').read_text())
    assert summary['monitor'] == 'val_tags_f1' and 0 <= summary['best_score'] <= 1
    m = pd.read_csv(run_dir/'metrics.csv')
    assert {'val_mask_dice', 'val_tags_f1', 'val_tags_auroc', 'val_age_rmse', 'val_age_loss', 'lr-AdamW/encoder'} <= set(m.columns)

def test_recipe_selects_heads(tmp_path, tiny):
    (tmp_path/'mt.yaml').write_text(MULTI.replace('monitor: val_tags_f1', 'monitor: val_mask_dice'))
    r = run([str(BIN/'medseg'), 'fit', '--config', str(tmp_path/'mt.yaml'), *tiny, 'paths.run_name=seg_age', 'recipe=seg_age',
             'trainer.max_epochs=1'])
    assert r.returncode == 0, r.stderr[-3000:]
    cols = set(pd.read_csv(tmp_path/'runs'/'seg_age'/'metrics.csv').columns)
    assert 'val_age_mae' in cols and 'val_mask_dice' in cols and not any(c.startswith('val_tags') for c in cols)

def test_monitor_that_is_never_logged_is_refused_up_front(tmp_path, tiny):
    (tmp_path/'mt.yaml').write_text(MULTI.replace('monitor: val_tags_f1', 'monitor: val_tag_f1'))
    r = run([str(BIN/'medseg'), 'fit', '--config', str(tmp_path/'mt.yaml'), *tiny, 'paths.run_name=bad'])
    assert r.returncode == 2 and "checkpoint.monitor: this run logs no 'val_tag_f1'. Did you mean 'val_tags_f1'" in r.stderr
    assert not (tmp_path/'runs'/'bad').exists()

@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED_DATA/'pneumoniamnist').exists(), reason='../shared/data/pneumoniamnist is absent')
def test_pneumoniamnist_classification_learns(tmp_path):
    "Real chest X-rays (MedMNIST npz): a small CNN trained for 2 epochs beats chance clearly on the val split."
    r = run([str(BIN/'medseg'), 'fit', f'data.data_dir={SHARED_DATA/"pneumoniamnist"}', 'data.layout=npz',
             'data.npz_file=pneumoniamnist_balanced.npz', 'data.generate=false', 'data.im_size=32', 'data.batch_size=64',
             'data.train_augs=[]', 'model.family=plain', 'model.arch=PlainCNN', 'trainer.max_epochs=2',
             f'paths.out_dir={tmp_path}', 'paths.run_name=pneu'])
    assert r.returncode == 0, r.stderr[-3000:]
    m = pd.read_csv(tmp_path/'pneu'/'metrics.csv')
    auroc = [c for c in m.columns if c.startswith('val_') and c.endswith('auroc')]
    assert auroc, list(m.columns)
    assert m[auroc[0]].dropna().max() > 0.85, m[auroc[0]].dropna().tolist()

@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED_DATA/'pneumoniamnist').exists(), reason='../shared/data/pneumoniamnist is absent')
def test_pneumoniamnist_official_test_split_matches_the_published_baseline(tmp_path):
    "configs/pneumoniamnist.yaml, judged on the official test split (624 images): MedMNIST v2's ResNet-18 (28 px) reaches AUROC 0.944, accuracy 0.854."
    r = run([str(BIN/'medseg'), 'fit', '-c', str(ROOT/'configs'/'pneumoniamnist.yaml'), f'data.data_dir={SHARED_DATA/"pneumoniamnist"}',
             f'paths.out_dir={tmp_path}'], timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    test = json.loads((tmp_path/'pneumoniamnist'/'summary.json').read_text())['test']
    assert test['test_label_auroc'] >= 0.944 and test['test_label_acc'] >= 0.854, test
