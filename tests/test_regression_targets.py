"Regression heads learn standardised targets; checkpoints, predictions and exported models speak the original units."
import warnings
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from medseg.config import load_config
from medseg.run import build_task, load_checkpoint, predict, train

HEADS = 'heads=[{name: mask, kind: seg}, {name: age, kind: reg}]'

@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('reg')
    ov = [f'data.data_dir={tmp}/data', 'data.n_images=24', 'data.im_size=32', f'paths.out_dir={tmp}/runs', 'paths.run_name=age',
          'trainer.max_epochs=2', 'trainer.test_after_fit=false', HEADS]
    return train(load_config(overrides=ov)), ov, tmp

def _age_outputs(task, dm):
    x = next(iter(dm.test_dataloader()))
    x = dm.finish(x)['image']
    task.eval()
    with torch.no_grad(): return task(x)['age'].squeeze(1), x

def test_statistics_go_into_config_and_checkpoint(run):
    r, ov, tmp = run
    m = pd.read_csv(tmp/'data'/'manifest.csv')
    ages = m[m.split == 'train'].age
    age = next(h for h in yaml.safe_load((r.run_dir/'config.yaml').read_text())['heads'] if h['name'] == 'age')
    assert age['standardize'] and age['target_mean'] == pytest.approx(ages.mean(), rel=1e-6)
    assert age['target_std'] == pytest.approx(ages.std(ddof=0), rel=1e-6)
    sd = torch.load(r.best_ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert sd['model.target_scale.mean'].item() == pytest.approx(ages.mean(), rel=1e-5)

def test_reloaded_checkpoint_predicts_original_units(run):
    r, ov, tmp = run
    ref, x = _age_outputs(r.task.cpu(), r.datamodule)
    # a fresh task that would not standardise at all: the checkpoint's statistics still rule
    task, dm = build_task(load_config(overrides=ov + ['heads=[{name: mask, kind: seg}, {name: age, kind: reg, standardize: false}]']))
    load_checkpoint(task, r.best_ckpt)
    task.eval()
    with torch.no_grad(): got = task(x)['age'].squeeze(1)
    torch.testing.assert_close(got, ref)
    assert 20 < got.mean().item() < 200  # years, not standard deviations
    written = predict(load_config(overrides=ov))
    t = pd.read_csv(written['predictions.csv'][0])
    assert {'age', 'age_true'} <= set(t.columns) and 20 < t.age.mean() < 200

def test_exported_onnx_model_predicts_original_units(run, tmp_path):
    pytest.importorskip('onnxruntime')
    from medseg.export import export, load_exported
    r, ov, tmp = run
    model = r.task.model.cpu().eval()
    x = torch.randn(2, 1, 32, 32)
    p = export(model, tmp_path/'age.onnx', example=x)
    with torch.no_grad(): ref = model(x)['age']
    got = load_exported(p)(x)['age']
    torch.testing.assert_close(torch.as_tensor(got), ref, atol=1e-3, rtol=1e-4)
    assert ref.abs().mean() > 10  # the file includes the scaling back to years

def test_checkpoint_without_statistics_loads_as_raw(run, tmp_path):
    r, ov, tmp = run
    ck = torch.load(r.best_ckpt, map_location='cpu', weights_only=False)
    ck['state_dict'] = {k: v for k, v in ck['state_dict'].items() if 'target_scale' not in k}
    old = tmp_path/'old.ckpt'; torch.save(ck, old)
    task, dm = build_task(load_config(overrides=ov))
    with pytest.warns(UserWarning, match='no target statistics'): load_checkpoint(task, old)
    assert task.model.target_scale.mean.item() == 0 and task.model.target_scale.std.item() == 1

README_HEADS = ('heads=[{name: mask, kind: seg}, {name: tags, kind: cls, classes: [round, elongated], multilabel: true}, '
                '{name: age, kind: reg, alpha: 0.01, loss: {_target_: rmse}}]')

@pytest.mark.slow
def test_readme_multitask_example_learns_age_in_six_epochs(tmp_path):
    "The README's example, unchanged (6 epochs): the age head reads pooled decoder features; R2 measured 0.53-0.86 over seeds 0, 1, 2, 42 (0.857 on the default 42), checked >= 0.45."
    r = train(load_config(overrides=[f'data.data_dir={tmp_path}/data', f'paths.out_dir={tmp_path}/runs', 'paths.run_name=readme',
                                     'checkpoint.monitor=val_tags_f1', 'trainer.test_after_fit=false', README_HEADS]))
    last = r.metrics.dropna(subset=['val_age_r2']).iloc[-1]
    assert last.epoch == 5
    assert last.val_age_r2 >= 0.45, last  # 0.05 below the slowest seed measured, for run-to-run spread; it was -7.8 with raw targets, -0.30 standardised alone
    assert last.val_age_pearson >= 0.8 and last.val_mask_dice >= 0.94 and last.val_tags_f1 >= 0.78, last  # the other heads lose nothing (seed 42: Dice 0.963, F1 0.870)
