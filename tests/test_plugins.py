"""Plug-in points: a lab's own package (a `.pair` Dataset, a metric, a callback) trained by medseg, a lab's LightningDataModule,
and every bad plug-in stopped before any training with one line naming its key.

`test_lab_package_with_medseg_fit` runs `medseg fit` itself: it needs `medseg.run.build_task` to build its data module with
`medseg.plugins.build_datamodule` and `medseg.run.build_callbacks` to add `medseg.plugins.user_callbacks`. The other tests build
the same pieces directly."""
import json, os, sys, textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, ROOT, run

from medseg.config import ConfigError, validate_config
from medseg.io import DataError
from medseg.plugins import build_datamodule, user_callbacks, write_example_lab

BAD_LAB = '''
import torch
from torch.utils.data import Dataset
class Items(Dataset):
    "16 train / 4 val items of 32 x 32; `drop`, `mask_shape` and `count_dtype` spoil them the way a lab's code might."
    def __init__(self, split, drop=None, mask_shape=(1, 32, 32), count_dtype='int64'):
        self.n, self.drop, self.mask_shape, self.count_dtype = {'train': 16, 'val': 4, 'test': 0}[split], drop, mask_shape, count_dtype
    def __len__(self): return self.n
    def __getitem__(self, i):
        item = {'image': torch.rand(1, 32, 32), 'mask': torch.zeros(self.mask_shape), 'count': torch.tensor(i % 2, dtype=getattr(torch, self.count_dtype))}
        item.pop(self.drop, None)
        return item
'''

@pytest.fixture
def lab(tmp_path):
    "The example lab package and its `.pair` files under `tmp_path`, importable, and a config for them (plus `badlab`, datasets that break the contract)."
    write_example_lab(tmp_path/'lab')
    (tmp_path/'lab'/'badlab.py').write_text(BAD_LAB)
    sys.path.insert(0, str(tmp_path/'lab'))
    from labkit.pairs import write_demo_pairs
    pairs = write_demo_pairs(tmp_path/'pairs', {'train': 16, 'val': 8, 'test': 8}, size=40)
    cfg = {'seed': 0, 'allow_modules': ['labkit', 'badlab'],
           'data': {'target': {'_target_': 'labkit.pairs.PairDataset', 'params': {'root': str(pairs)}}, 'im_size': 32, 'batch_size': 8,
                    'cache': True, 'view_batch': True},
           'model': {'encoder': 'resnet18', 'params': {'decoder_channels': [16, 8, 8, 8, 8]}},
           'heads': [{'name': 'mask', 'kind': 'seg', 'metrics': ['labkit.metrics.AreaError']}],
           'callbacks': [{'_target_': 'labkit.callbacks.EpochLog'}],
           'optimizer': {'_target_': 'adamw', 'params': {'lr': 0.01}},
           'trainer': {'max_epochs': 2, 'accelerator': 'cpu'},
           'paths': {'out_dir': str(tmp_path/'runs'), 'run_name': 'lab'}}
    yield tmp_path, cfg
    sys.path.remove(str(tmp_path/'lab'))
    for m in [m for m in sys.modules if m.split('.')[0] in ('labkit', 'badlab')]: del sys.modules[m]

def one_line(e) -> str:
    "The line of a medseg error that names the problem (a config error's lines after `invalid config:`, one per problem)."
    lines = str(e).splitlines()
    assert len(lines) <= 2 and (len(lines) == 1 or lines[0] == 'invalid config:'), str(e)
    return lines[-1]

def bad_items(cfg, **params):
    "The lab config with `badlab.Items(**params)` as its data and a mask and a count head."
    return {**cfg, 'data': {**cfg['data'], 'target': {'_target_': 'badlab.Items', 'params': params}},
            'heads': [{'name': 'mask', 'kind': 'seg'}, {'name': 'count', 'kind': 'cls', 'classes': ['even', 'odd']}]}

def test_a_class_outside_the_allowlist(lab):
    _, cfg = lab
    for key, d in {'data.target': {**cfg, 'allow_modules': []},
                   'heads.mask.metrics[0]': {**cfg, 'allow_modules': [], 'data': {**cfg['data'], 'target': None}, 'callbacks': []},
                   'callbacks.extra[0]': {**cfg, 'allow_modules': [], 'data': {**cfg['data'], 'target': None}, 'heads': []},
                   'recipe': {'recipe': 'labkit.recipes.lungs'}}.items():
        with pytest.raises(ConfigError) as e: validate_config(d)
        assert f"{key}._target_: `_target_` '" in one_line(e.value) and 'is not on the allowlist' in one_line(e.value)

def test_a_metric_that_is_no_torchmetrics_metric(lab):
    _, cfg = lab
    with pytest.raises(ConfigError) as e: validate_config({**cfg, 'heads': [{'name': 'mask', 'kind': 'seg', 'metrics': ['labkit.callbacks.EpochLog']}]})
    assert one_line(e.value) == ("(config): heads.mask.metrics[0]._target_: labkit.callbacks.EpochLog is a class deriving from "
                                 "lightning.pytorch.callbacks.callback.Callback, not a torchmetrics Metric (subclass torchmetrics.Metric)")

def test_a_callback_that_is_no_lightning_callback(lab):
    _, cfg = lab
    with pytest.raises(ConfigError) as e: validate_config({**cfg, 'callbacks': ['labkit.metrics.AreaError']})
    assert one_line(e.value) == ("(config): callbacks.extra[0]._target_: labkit.metrics.AreaError is a class deriving from "
                                 "torchmetrics.metric.Metric, not a Lightning Callback (subclass lightning.pytorch.Callback)")
    assert [type(c).__name__ for c in user_callbacks(validate_config(cfg))] == ['EpochLog']

def test_a_dataset_whose_items_lack_image(lab):
    _, cfg = lab
    with pytest.raises(DataError) as e: build_datamodule(validate_config(bad_items(cfg, drop='image'))).load()
    assert one_line(e.value).startswith("data.target badlab.Items(split='train') item 0: no 'image' (keys: 'mask', 'count')")

def test_a_label_of_the_wrong_shape(lab):
    _, cfg = lab
    with pytest.raises(DataError) as e: build_datamodule(validate_config(bad_items(cfg, mask_shape=[32, 32]))).load()
    assert one_line(e.value).startswith("data.target badlab.Items(split='train') item 0: 'mask' has shape (32, 32) and dtype float32; "
                                        "the seg head 'mask' expects shape (1, 32, 32)")

def test_a_label_of_the_wrong_dtype(lab):
    _, cfg = lab
    with pytest.raises(DataError) as e: build_datamodule(validate_config(bad_items(cfg, count_dtype='float32'))).load()
    assert one_line(e.value) == ("data.target badlab.Items(split='train') item 0: 'count' has shape () and dtype float32; "
                                 "the cls head 'count' expects shape () (a class index, -1 unknown), dtype integer")
    build_datamodule(validate_config(bad_items(cfg))).load()  # unspoilt, the same items pass

def test_lab_pieces_train_in_process(lab):
    "The lab's Dataset, metric and callback in a Lightning fit, built by medseg.plugins (what `medseg fit` does once wired)."
    import lightning as L
    from medseg.models import build_model
    from medseg.task import MultiTask
    tmp, d = lab
    cfg = validate_config(d)
    dm = build_datamodule(cfg); dm.prepare_data(); dm.load()
    extra = tuple(cfg.allow_modules)
    task = MultiTask(build_model(cfg.model, extra, dm.heads), dm.heads, cfg.optimizer, extra_allowed=extra)
    trainer = L.Trainer(max_epochs=2, accelerator='cpu', default_root_dir=tmp/'fit', logger=L.pytorch.loggers.CSVLogger(tmp/'fit', name='', version=''),
                        callbacks=user_callbacks(cfg), enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=dm)
    m = pd.read_csv(tmp/'fit'/'metrics.csv').groupby('epoch').last()
    assert list(m.index) == [0, 1] and m['val_mask_area_error'].between(0, 1).all()
    assert (tmp/'fit'/'epochs.txt').read_text().count('\n') == 2

def test_lab_datamodule_trains(lab):
    "A lab's LightningDataModule (`data.target`) behind `WrappedDataModule`: its own loaders feed a fit."
    import lightning as L
    from medseg.models import build_model
    from medseg.task import MultiTask
    tmp, d = lab
    (tmp/'lab'/'labdm.py').write_text(textwrap.dedent('''
        import lightning as L, torch
        from labkit.pairs import PairDataset
        class Pairs(L.LightningDataModule):
            def __init__(self, root, batch_size=4): super().__init__(); self.root, self.batch_size = root, batch_size
            def setup(self, stage=None): self.sets = {sp: PairDataset(self.root, sp) for sp in ('train', 'val', 'test')}
            def _dl(self, sp, **kw): return torch.utils.data.DataLoader(self.sets[sp], batch_size=self.batch_size, **kw)
            def train_dataloader(self): return self._dl('train', shuffle=True)
            def val_dataloader(self): return self._dl('val')
            def test_dataloader(self): return self._dl('test')
        '''))
    from labkit.pairs import write_demo_pairs
    pairs = write_demo_pairs(tmp/'pairs32', {'train': 16, 'val': 8, 'test': 8}, size=32)  # the lab's loaders do not resize: the size the network takes
    cfg = validate_config({**d, 'allow_modules': ['labkit', 'labdm'], 'data': {'target': {'_target_': 'labdm.Pairs', 'params': {'root': str(pairs)}}},
                           'callbacks': []})
    dm = build_datamodule(cfg)
    assert type(dm).__name__ == 'WrappedDataModule'
    dm.prepare_data(); s = dm.load()
    assert sorted(set(s.split)) == ['test', 'train', 'val'] and len(s) == 32
    task = MultiTask(build_model(cfg.model.model_copy(update={'params': {}}), (), dm.heads), dm.heads, extra_allowed=tuple(cfg.allow_modules))
    trainer = L.Trainer(max_epochs=1, accelerator='cpu', default_root_dir=tmp/'dmfit', logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2)
    trainer.fit(task, datamodule=dm)
    assert 'val_mask_area_error' in trainer.callback_metrics and 'val_mask_dice' in trainer.callback_metrics
    assert set(dm.dataset('test')[0]) == {'image', 'mask', 'id'}  # predictions and plots read the items one by one

def test_lab_package_with_medseg_fit(lab):
    "The notebook's demo as a command: `medseg fit --config lab.yaml` with the lab package on PYTHONPATH. Needs the run.py wiring."
    tmp, d = lab
    (tmp/'lab.yaml').write_text(yaml.safe_dump(d, sort_keys=False))
    env = {'PYTHONPATH': os.pathsep.join([str(tmp/'lab'), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep), 'OMP_NUM_THREADS': '1'}
    r = run([str(BIN/'medseg'), 'fit', '--config', str(tmp/'lab.yaml')], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rd = tmp/'runs'/'lab'
    m = pd.read_csv(rd/'metrics.csv').groupby('epoch').last()
    assert {'val_mask_dice', 'val_mask_area_error'} <= set(m.columns) and m['val_mask_area_error'].notna().sum() == 2
    assert [l.split()[:2] for l in (rd/'epochs.txt').read_text().splitlines()] == [['epoch', '0'], ['epoch', '1']]  # the lab's callback
    summary = json.loads((rd/'summary.json').read_text())
    assert 0 <= summary['test']['test_mask_area_error'] <= 1 and 'test_mask_area_error' in r.stdout
    assert (rd/'plots'/'batch.png').exists()  # view_batch with the lab's data
    assert yaml.safe_load((rd/'config.yaml').read_text())['callbacks']['extra'][0]['_target_'] == 'labkit.callbacks.EpochLog'
    # a data set that breaks the contract stops `medseg fit` before any training: one line, no run folder
    (tmp/'bad.yaml').write_text(yaml.safe_dump({**bad_items(d, drop='image'), 'paths': {'out_dir': str(tmp/'runs'), 'run_name': 'bad'}}))
    r = run([str(BIN/'medseg'), 'fit', '--config', str(tmp/'bad.yaml')], env=env)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("medseg: data.target badlab.Items(split='train') item 0: no 'image'"), r.stderr[-2000:]
    assert 'Traceback' not in r.stderr and not (tmp/'runs'/'bad').exists()
