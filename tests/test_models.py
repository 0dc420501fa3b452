"Model factory integration: freezing and unfreezing inside a Lightning fit, weights from a real run, config round trip."
import warnings
import pytest, torch
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

from medseg.config import ConfigError, HeadConfig, ModelConfig, load_config, save_config
from medseg.models import (UnfreezeEncoder, build_model, build_multitask, load_weights, model_parts, offline_mode,
                           param_groups)

warnings.filterwarnings('ignore')
HEADS = [HeadConfig(name='lungs', kind='seg'), HeadConfig(name='tags', kind='cls', classes=list('abc'), multilabel=True),
         HeadConfig(name='age', kind='reg')]

class Tiny(L.LightningModule):
    "A minimal task: squared outputs as the loss, one optimizer group per model part."
    def __init__(self, model, mults):
        super().__init__(); self.model, self.mults = model, mults
    def training_step(self, batch, i):
        return sum(v.float().pow(2).mean() for v in self.model(batch[0]).values())
    def configure_optimizers(self):
        return torch.optim.AdamW(param_groups(self.model, 1e-2, self.mults), weight_decay=0.1)

class Snapshots(L.Callback):
    "The encoder's first conv and a head's weight after every epoch."
    def __init__(self): self.enc, self.head = [], []
    def on_train_epoch_end(self, trainer, pl_module):
        self.enc.append(pl_module.model.encoder.conv1.weight.detach().clone())
        self.head.append(pl_module.model.heads['tags'].fc.weight.detach().clone())

def test_freeze_then_unfreeze_in_a_fit():
    L.seed_everything(0, verbose=False)
    cfg = ModelConfig(encoder='resnet18', freeze_encoder=True, unfreeze_epoch=1, lr_mults={'encoder': 0.1})
    model = build_multitask(cfg, HEADS, 'cls_seg')
    enc0 = model.encoder.conv1.weight.detach().clone()
    head0 = model.heads['tags'].fc.weight.detach().clone()
    snaps = Snapshots()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[UnfreezeEncoder(cfg.unfreeze_epoch), snaps])
    trainer.fit(Tiny(model, cfg.lr_mults), DataLoader(TensorDataset(torch.randn(4, 1, 32, 32)), batch_size=2))
    assert torch.equal(snaps.enc[0], enc0)  # frozen in epoch 0: untouched, even by weight decay
    assert not torch.equal(snaps.head[0], head0)  # the heads trained
    assert not torch.equal(snaps.enc[1], enc0)  # unfrozen at epoch 1, and the same optimizer trains it
    lrs = {g['name']: g['lr'] for g in trainer.optimizers[0].param_groups}
    assert lrs == pytest.approx({'encoder': 1e-3, 'decoder': 1e-2, 'heads': 1e-2})

def test_weights_from_a_real_run(tiny):
    from medseg.run import train
    r = train(load_config(overrides=tiny + ['trainer.max_epochs=1', 'paths.run_name=w']))
    m = build_model(ModelConfig(weights=str(r.best_ckpt)))
    ref = r.task.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    with pytest.raises(ConfigError, match=r"'encoder.conv1.weight'.*has shape \(64, 1, 7, 7\) but the model's has shape \(64, 3, 7, 7\)"):
        build_model(ModelConfig(in_channels=3, weights=str(r.best_ckpt)))
    rep = load_weights(build_model(ModelConfig(in_channels=3)), r.best_ckpt, strict=False)
    assert [k for k, *_ in rep.mismatched] == ['encoder.conv1.weight'] and rep.prefix == 'model.'

def test_model_config_round_trip(tmp_path):
    c = load_config(overrides={'model.family': 'timm', 'model.arch': 'resnet18', 'model.freeze_encoder': 0.25,
                               'model.lr_mults': {'encoder': 0.1}, 'model.zone_grid': [3, 2], 'model.params': {'drop_rate': 0.1},
                               'model.weights': 'w.ckpt', 'model.strict': False})
    assert load_config(save_config(c, tmp_path/'c.yaml')) == c
    assert c.model.zone_grid == (3, 2)

def test_offline_mode_restores_everything():
    import huggingface_hub.constants as hc, torch.hub
    before = hc.HF_HUB_OFFLINE, hc.HF_HUB_CACHE, torch.hub.get_dir(), torch.hub.download_url_to_file
    with offline_mode():
        assert hc.HF_HUB_OFFLINE and torch.hub.download_url_to_file is not before[3]
    assert (hc.HF_HUB_OFFLINE, hc.HF_HUB_CACHE, torch.hub.get_dir(), torch.hub.download_url_to_file) == before

def test_every_part_is_trained_once():
    for cfg, heads in [(ModelConfig(), HEADS), (ModelConfig(family='timm', arch='resnet18', classes=3), ()),
                       (ModelConfig(family='plain', arch='PlainCNN', classes=3), ())]:
        m = build_model(cfg, heads=heads)
        ids = [id(p) for ps in model_parts(m).values() for p in ps]
        assert len(ids) == len(set(ids)) == len(list(m.parameters()))
