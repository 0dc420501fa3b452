"Samplers under DDP: every rank draws its own share of one seeded draw; Lightning keeps medseg's sampler."
import json, sys, textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import run
from medseg.config import DataConfig, HeadConfig
from medseg.data import MedDataModule
from medseg.synthetic import make_synthetic

TAGS = HeadConfig(name='tags', kind='cls', multilabel=True, classes=['round', 'elongated'])


@pytest.fixture(scope='module')
def syn(tmp_path_factory):
    d = tmp_path_factory.mktemp('syn'); make_synthetic(d, n=40, size=32, seed=0); return d


def rank_ids(syn, world, rank, **kw):
    "The training ids rank `rank` of `world` sees in one epoch (a stand-in trainer tells the DataModule its rank)."
    dm = MedDataModule(DataConfig(data_dir=syn, im_size=32, batch_size=4, train_augs=[], **kw), [TAGS], seed=3)
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)
    dl = dm.train_dataloader()
    return [i for b in dl for i in b['id']], dl.sampler


@pytest.mark.parametrize('kw', [dict(), dict(train_samples=30),
                                dict(sampler='train_weighted_val_sequential', train_samples=50),
                                dict(equal_source_sampling=True, train_samples=26)])
def test_ranks_take_disjoint_shares_of_one_draw(syn, kw):
    world = 3
    one, s1 = rank_ids(syn, 1, 0, **kw)
    shares = [rank_ids(syn, world, r, **kw) for r in range(world)]
    per = -(-len(one) // world)
    assert all(len(ids) == per for ids, _ in shares)  # equal work per rank
    # rank r takes positions r, r + world, ... of the single-process draw (padded by wrapping)
    draw = one + one[:per * world - len(one)]
    for r, (ids, _) in enumerate(shares): assert ids == draw[r::world]
    assert rank_ids(syn, world, 1, **kw)[0] == shares[1][0]  # deterministic under the seed
    s = rank_ids(syn, world, 0, **kw)[1]; e0 = list(s); s.set_epoch(1)
    assert list(s) != e0  # a new epoch draws anew


def test_random_shares_cover_the_training_set_once(syn):
    ids = [rank_ids(syn, 2, r)[0] for r in range(2)]
    assert not set(ids[0]) & set(ids[1])
    dm = MedDataModule(DataConfig(data_dir=syn), [TAGS]); assert sorted(ids[0] + ids[1]) == sorted(dm.dataset('train').s.ids)


SCRIPT = '''
import json, os, sys
import lightning as L, torch
from medseg.config import DataConfig, HeadConfig
from medseg.data import MedDataModule

class Probe(L.LightningModule):
    def __init__(self):
        super().__init__(); self.w = torch.nn.Parameter(torch.zeros(1)); self.seen = []
    def training_step(self, batch, i):
        self.seen += batch['id']; return (self.w * batch['image'].mean()).sum()
    def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)
    def on_train_end(self):
        with open(os.path.join(sys.argv[2], f'rank{self.global_rank}.json'), 'w') as f:
            json.dump({'ids': self.seen, 'sampler': type(self.trainer.train_dataloader.sampler).__name__}, f)

if __name__ == '__main__':
    L.seed_everything(0, verbose=False)
    dm = MedDataModule(DataConfig(data_dir=sys.argv[1], im_size=32, batch_size=4, train_augs=[]), [HeadConfig(name='tags', kind='cls', multilabel=True, classes=['round', 'elongated'])], seed=3)
    t = L.Trainer(accelerator='cpu', devices=2, strategy='ddp', max_epochs=1, limit_val_batches=0, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t.fit(Probe(), datamodule=dm)
'''


@pytest.mark.slow
def test_lightning_ddp_keeps_the_sampler_and_splits_the_epoch(syn, tmp_path):
    (tmp_path/'ddp_probe.py').write_text(SCRIPT)
    r = run([sys.executable, str(tmp_path/'ddp_probe.py'), str(syn), str(tmp_path)], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = [json.loads((tmp_path/f'rank{k}.json').read_text()) for k in range(2)]
    assert [g['sampler'] for g in got] == ['MedSampler', 'MedSampler']  # not wrapped by Lightning
    expect = [rank_ids(syn, 2, k)[0] for k in range(2)]
    assert [g['ids'] for g in got] == expect
    assert not set(got[0]['ids']) & set(got[1]['ids'])
