"""A fit that is not tested afterwards (no test split, or `trainer.test_after_fit: false`) still hands back the
best checkpoint's weights, not the last epoch's: the plots and the caller see the model the run chose
(the source systems' "EarlyStopping, best weights restored")."""
import torch
from medseg.config import load_config
from medseg.run import train

def test_untested_fit_returns_the_best_weights(tiny):
    cfg = load_config(overrides=[*tiny, 'trainer.max_epochs=4', 'trainer.test_after_fit=false', 'checkpoint.monitor=val_loss'])
    r = train(cfg)
    assert r.best_ckpt is not None and r.best_ckpt.is_file()
    best = torch.load(r.best_ckpt, map_location='cpu', weights_only=False)['state_dict']
    last = torch.load(r.run_dir/'checkpoints'/'last.ckpt', map_location='cpu', weights_only=False)['state_dict']
    own = r.task.state_dict()
    assert all(torch.equal(own[k].cpu(), best[k]) for k in best)
    if 'epoch=03' not in r.best_ckpt.name:  # the best was an earlier epoch: the last weights differ from what came back
        assert any(not torch.equal(own[k].cpu(), last[k]) for k in last if last[k].is_floating_point())
