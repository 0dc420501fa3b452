"""`medseg fit` under DDP on the CPU (gloo, two ranks): synchronised metrics, the weighted sampler's shards, one run folder
written by rank 0 alone, and the same result as one process; DDP started from inside a papermill notebook."""
import json, os, sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, ROOT, run

import medseg.run

pytestmark = pytest.mark.slow

PROBE = '''
"A callback that records what one DDP rank sees, and a small network without batch norm."
import json
from pathlib import Path
import lightning as L
from torch import nn

class RankProbe(L.Callback):
    "Per rank: the training ids of every epoch, the train sampler, the metrics after each epoch and after testing, the run folder."
    def __init__(self, out): self.out, self.ids, self.val, self.test, self.sampler = Path(out), {}, {}, {}, {}
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.ids.setdefault(trainer.current_epoch, []).extend(batch['id'])
    def on_train_epoch_end(self, trainer, pl_module):
        self.val[trainer.current_epoch] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith('val_')}
        s = trainer.train_dataloader.sampler
        self.sampler = dict(type=type(s).__name__, mode=getattr(s, 'mode', None), replicas=getattr(s, 'num_replicas', None), rank=getattr(s, 'rank', None))
    def on_test_end(self, trainer, pl_module):
        self.test = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith('test_')}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out/f'rank{trainer.global_rank}.json').write_text(json.dumps(dict(
            rank=trainer.global_rank, world=trainer.world_size, ids=self.ids, val=self.val, test=self.test, sampler=self.sampler,
            root=str(trainer.default_root_dir), ckpt_dir=str(trainer.checkpoint_callback.dirpath))))

class TinySeg(nn.Module):
    "Two convolutions and a 1x1 output, no batch norm: a step on 2 ranks x 4 images is the step on 8 images in one process."
    def __init__(self, in_channels=1, width=8):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, 1, 1))
    def forward(self, x): return self.net(x)
'''

DDP = ['trainer.strategy=ddp', 'trainer.devices=2', 'trainer.accelerator=cpu']
TINY = ['data.n_images=24', 'data.im_size=32', 'trainer.max_epochs=2']


def config(tmp, name, batch_size):
    "A run whose DDP and single-process versions see the same images in every optimizer step (2 x 4 = 8)."
    d = {'seed': 0,
         'data': {'data_dir': str(tmp/'data'), 'batch_size': batch_size, 'train_augs': [],
                  'equal_source_sampling': True},  # each scanner half the draws: the weighted sampler
         'heads': [{'name': 'mask', 'kind': 'seg', 'loss': {'_target_': 'medseg.losses.DiceBCELoss', 'params': {'dice_weight': 0}}}],
         'optimizer': {'_target_': 'sgd', 'params': {'lr': 0.5}},  # SGD, unlike Adam, sees the gradient's scale: a sum over ranks would show
         'model': {'target': {'_target_': 'ddp_probe.TinySeg'}},
         'callbacks': [{'_target_': 'ddp_probe.RankProbe', 'params': {'out': str(tmp/f'probe_{name}')}}],
         'allow_modules': ['ddp_probe'],
         'trainer': {'enable_progress_bar': False},
         'paths': {'out_dir': str(tmp/f'runs_{name}')}}
    p = tmp/f'{name}.yaml'; p.write_text(yaml.safe_dump(d)); return p


def fit(tmp, *args):
    env = {'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join([str(tmp), os.environ.get('PYTHONPATH', '')])}
    r = run([str(BIN/'medseg'), 'fit', *args], env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def probes(tmp, name):
    return [json.loads(p.read_text()) for p in sorted((tmp/f'probe_{name}').glob('rank*.json'))]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "One DDP fit (2 ranks x 4 images a batch) and one single-process fit (8 images a batch) of the same run."
    tmp = tmp_path_factory.mktemp('ddp')
    (tmp/'ddp_probe.py').write_text(PROBE)
    ddp = fit(tmp, '-c', str(config(tmp, 'ddp', 4)), *DDP, *TINY)
    one = fit(tmp, '-c', str(config(tmp, 'one', 8)), 'trainer.accelerator=cpu', 'trainer.devices=1', *TINY)
    return tmp, ddp, one


def test_metrics_synchronised(runs):
    tmp, _, _ = runs
    r0, r1 = probes(tmp, 'ddp')
    assert (r0['rank'], r1['rank'], r0['world']) == (0, 1, 2)
    assert r0['val'].keys() == {'0', '1'} and 'val_mask_dice' in r0['val']['0'] and 'val_loss' in r0['val']['0']
    assert r0['val'] == r1['val']  # every logged epoch value (losses through sync_dist, Dice/IoU through torchmetrics) is the same on both ranks
    assert r0['test'] == r1['test'] and 'test_loss' in r0['test']


def test_one_run_folder_written_by_rank_zero(runs):
    tmp, ddp, _ = runs
    folders = list((tmp/'runs_ddp').iterdir())
    assert len(folders) == 1, folders  # rank 1 wrote no folder of its own
    r0, r1 = probes(tmp, 'ddp')
    assert r0['root'] == r1['root'] == str(folders[0]) and r0['ckpt_dir'] == r1['ckpt_dir']  # the same name in every rank
    run_dir = folders[0]
    assert {'config.yaml', 'versions.json', 'summary.json', 'metrics.csv', 'test_metrics.csv'} <= {p.name for p in run_dir.iterdir()}
    s = json.loads((run_dir/'summary.json').read_text())
    assert s['epochs'] == 2 and s['test']['test_loss'] == pytest.approx(r0['test']['test_loss'])
    assert ddp.stdout.count('medseg fit: done') == 1  # one end table, from rank 0


def test_weighted_sampler_shards(runs):
    tmp, _, _ = runs
    ddp, (one,) = probes(tmp, 'ddp'), probes(tmp, 'one')
    assert [p['sampler'] for p in ddp] == [dict(type='MedSampler', mode='weighted', replicas=2, rank=r) for r in (0, 1)]
    assert one['sampler'] == dict(type='MedSampler', mode='weighted', replicas=1, rank=0)
    for e in ('0', '1'):
        draw = one['ids'][e]  # the single process's draw of the epoch
        assert len(draw) == 16 and len(set(draw)) < 16  # 16 draws with replacement
        assert [p['ids'][e] for p in ddp] == [draw[0::2], draw[1::2]]  # rank r: every other draw, starting at r
    assert one['ids']['0'] != one['ids']['1']  # Lightning sets the epoch: a new draw


def test_matches_single_process(runs):
    """Without batch norm, augmentations or a batch-wide Dice term, the two runs compute the same steps: the same 8 images
    (2 ranks x 4, or 8), a per-pixel mean loss (DDP averages the ranks' gradients: the mean over the 8), the same seed and
    initial weights. Only the order of float32 sums differs (~1e-7 relative a step; measured: <= 6e-8 after 4 steps), so
    1e-5 leaves a margin and still catches a wrong share, an unsynchronised metric or gradients summed instead of averaged."""
    tmp, _, _ = runs
    (r0, _), (one,) = probes(tmp, 'ddp'), probes(tmp, 'one')
    for e in ('0', '1'):
        for k in ('val_loss', 'val_mask_dice', 'val_mask_iou'):
            assert r0['val'][e][k] == pytest.approx(one['val'][e][k], rel=1e-5, abs=1e-5), (e, k, r0['val'][e][k], one['val'][e][k])
    for k in ('test_loss', 'test_mask_dice'):
        assert r0['test'][k] == pytest.approx(one['test'][k], rel=1e-5, abs=1e-5), k


def test_torchrun_recipe(tmp_path):
    "The docs' torchrun recipe on one machine: torchrun starts both ranks (RANK, WORLD_SIZE); Lightning uses them, rank 0 writes the one run folder."
    r = run([str(BIN/'torchrun'), '--standalone', '--nproc-per-node', '2', '-m', 'medseg', 'fit', *DDP, *TINY, 'trainer.enable_progress_bar=false',
             f'data.data_dir={tmp_path}/data', f'paths.out_dir={tmp_path}/runs', 'paths.run_name=tr'], env={'OMP_NUM_THREADS': '1'}, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'GLOBAL_RANK: 1, MEMBER: 2/2' in r.stdout + r.stderr
    assert [p.name for p in (tmp_path/'runs').iterdir()] == ['tr']
    s = json.loads((tmp_path/'runs'/'tr'/'summary.json').read_text())
    assert s['epochs'] == 2 and 'test_mask_dice' in s['test']
    assert r.stdout.count('medseg fit: done') == 1


def papermill(nb, out, params, cwd=ROOT):
    return run([sys.executable, '-m', 'papermill', str(nb), str(out), '-y', yaml.safe_dump(params), '--log-output', '--no-progress-bar'],
               cwd=cwd, env={'OMP_NUM_THREADS': '1'}, timeout=900)


NOTEBOOK_DDP = [*DDP, *TINY, 'trainer.enable_progress_bar=false']


def test_notebook_launches_ddp_in_a_child(tmp_path):
    "A papermill notebook trains with DDP by running `medseg fit` in a child process (`medseg.sweep.fit_subprocess`)."
    import nbformat
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    par = nbformat.v4.new_code_cell("overrides = []"); par.metadata['tags'] = ['parameters']
    nb.cells = [par, nbformat.v4.new_code_cell(
        "from medseg.config import load_config\nfrom medseg.run import fit_subprocess\n"
        "result = fit_subprocess(load_config(None, overrides))\nprint('best', result.monitor, result.best_score, 'in', result.run_dir)")]
    nbformat.write(nb, tmp_path/'ddp.ipynb')
    r = papermill(tmp_path/'ddp.ipynb', tmp_path/'out.ipynb',
                  {'overrides': [*NOTEBOOK_DDP, f'data.data_dir={tmp_path}/data', f'paths.out_dir={tmp_path}/runs']})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = (tmp_path/'out.ipynb').read_text()
    assert 'GLOBAL_RANK: 1, MEMBER: 2/2' in out  # the child's output, shown in the notebook
    (run_dir,) = (tmp_path/'runs').iterdir()
    s = json.loads((run_dir/'summary.json').read_text())
    assert s['epochs'] == 2 and s['best_score'] is not None and f"best val_mask_dice {s['best_score']}" in out
    assert len(pd.read_csv(run_dir/'metrics.csv').dropna(subset=['val_loss'])) == 2  # the training curves are kept


def test_train_notebook_ddp_notebook(tmp_path):
    "papermill runs train.ipynb with `trainer.strategy=ddp_notebook`: train() runs it as DDP in a child `medseg fit`; the run folder is complete."
    overrides = ['trainer.strategy=ddp_notebook', 'trainer.devices=2', 'trainer.accelerator=cpu', 'data.n_images=24', 'data.im_size=32',
                 'trainer.enable_progress_bar=false']
    r = papermill(ROOT/'nbs'/'train.ipynb', tmp_path/'out.ipynb', {'epochs': 2, 'data_dir': str(tmp_path/'data'), 'out_dir': str(tmp_path/'runs'), 'overrides': overrides})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = (tmp_path/'out.ipynb').read_text()
    assert 'GLOBAL_RANK: 1, MEMBER: 2/2' in out
    (run_dir,) = (tmp_path/'runs').iterdir()
    s = json.loads((run_dir/'summary.json').read_text())
    assert s['epochs'] == 2 and s['best_score'] is not None and 'test_mask_dice' in s['test']
    assert yaml.safe_load((run_dir/'config.yaml').read_text())['trainer']['strategy'] == 'ddp'
    assert (run_dir/'notebook.ipynb').is_file() and (run_dir/'plots'/'curves.png').is_file()
