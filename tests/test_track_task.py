"Tracking runs end to end on synthetic clips (no ../shared needed): fit, test, resume, predict, and the errors a user can cause."
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medseg.core import ConfigError
from medseg.track.config import load_track_config

SMALL = ['data.layout=synthetic', 'data.synthetic={n_frames: 40, n_objects: 3, size: 64, seed: 2}', 'data.crop_size=16', 'data.clip_length=8',
         'data.frames={train: [0, 24], val: [24, 32], test: [32, null]}', 'model.d_model=32', 'model.nhead=2',
         'model.encoder_cfg.model_name=test_efficientnet', 'trainer.max_epochs=1', 'trainer.log_every_n_steps=1']

@pytest.fixture(autouse=True)
def one_thread():
    import torch; n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)

def cfg_for(tmp_path, *extra): return load_track_config(None, SMALL + [f'paths.out_dir={tmp_path}', 'paths.run_name=run'] + list(extra))

def test_fit_writes_a_run_folder_with_test_mot_metrics(tmp_path):
    from medseg.track.task import fit_track
    r = fit_track(cfg_for(tmp_path, 'checkpoint.monitor=val_mota'))
    run = r.run_dir
    for p in ['config.yaml', 'versions.json', 'metrics.csv', 'summary.json', 'test_metrics.csv', 'checkpoints/last.ckpt', 'plots/test_paths.png']:
        assert (run/p).exists(), p
    s = json.loads((run/'summary.json').read_text())
    assert s['monitor'] == 'val_mota' and Path(s['best_ckpt']).exists()
    for k in ['test_mota', 'test_idf1', 'test_num_switches', 'test_majority_share', 'test_loss', 'test_asso_acc']: assert k in s['test'], k
    assert s['test']['test_num_frames'] == 8 and 0 <= s['test']['test_idf1'] <= 1
    m = pd.read_csv(run/'metrics.csv')
    assert {'train_loss', 'val_loss', 'val_asso_acc', 'val_mota', 'val_idf1', 'val_num_switches'} <= set(m.columns)
    assert load_track_config(run/'config.yaml').model.encoder_cfg.in_chans == 1  # taken from the data

def test_resume_continues_the_run(tmp_path):
    from medseg.track.task import fit_track
    fit_track(cfg_for(tmp_path))
    r = fit_track(cfg_for(tmp_path, 'trainer.max_epochs=2'))
    s = json.loads((r.run_dir/'summary.json').read_text())
    assert s['resumed_from'].endswith('last.ckpt') and s['epochs'] == 2
    assert r.metrics.epoch.tolist() == [0, 1] and r.metrics.val_loss.notna().all()  # the first run's epoch, then the resumed one
    with pytest.raises(ConfigError, match='already holds a different run'): fit_track(cfg_for(tmp_path, 'model.d_model=16'))

def test_test_and_predict_from_the_run(tmp_path):
    from medseg.track.metrics import track_eval
    from medseg.track.task import TrackDataModule, fit_track, predict_track, test_track
    cfg = cfg_for(tmp_path, 'trainer.test_after_fit=false', 'model.use_vis_feats=false', 'trainer.max_epochs=2')
    r = fit_track(cfg)
    scores = test_track(cfg)  # the best checkpoint of paths.run_name
    assert json.loads((r.run_dir/'summary.json').read_text())['test']['test_mota'] == scores['test_mota']
    written = predict_track(cfg)
    tracks = pd.read_csv(written['csv'])
    assert list(tracks.columns[:4]) == ['frame', 'track_id', 'x', 'y'] and len(tracks) == 24 and (tracks.track_id >= 0).all()
    gt = TrackDataModule(cfg.data).split('test')
    pd.DataFrame([dict(track_id=i.gt_id, t=f.frame_idx, y=i.centroid[1], x=i.centroid[0]) for f in gt for i in f.instances]).to_csv(tmp_path/'gt.csv', index=False)
    ev = track_eval(tmp_path/'gt.csv', written['csv'], max_dist=1.0)
    saved = pd.read_csv(written['metrics'], index_col=0)
    assert ev.iloc[0].mota == pytest.approx(saved.iloc[-1].mota) and ev.iloc[0].num_frames == 8
    assert (r.run_dir/'plots'/'tracks.gif').exists() and (r.run_dir/'plots'/'trajectories.png').exists()
    assert json.loads((r.run_dir/'summary.json').read_text())['predict']['instances'] == 24

def test_predict_untracked_points_input(tmp_path):
    "Detections without identities (a points CSV beside a frames folder) are tracked; no metrics without ground truth."
    from PIL import Image
    from medseg.track.data import synthetic_clip
    from medseg.track.task import fit_track, predict_track
    cfg = cfg_for(tmp_path, 'model.use_vis_feats=false', 'trainer.test_after_fit=false')
    r = fit_track(cfg)
    clip = synthetic_clip(n_frames=6, n_objects=2, size=64, seed=5)
    (tmp_path/'dets').mkdir(); rows = []
    for f in clip:
        Image.fromarray((f.image[..., 0] * 255).astype(np.uint8)).save(tmp_path/'dets'/f'{f.frame_idx:03d}.png')
        rows += [dict(t=f.frame_idx, y=i.centroid[1], x=i.centroid[0]) for i in f.instances]
    pd.DataFrame(rows).to_csv(tmp_path/'dets.csv', index=False)
    c = load_track_config(None, SMALL + [f'paths.out_dir={tmp_path}', 'paths.run_name=run', 'model.use_vis_feats=false', 'trainer.test_after_fit=false',
                                         'data.layout=points', f'data.path={tmp_path}/dets.csv', 'data.synthetic={}', 'data.frames=null',
                                         f'predict.input={tmp_path}/dets.csv', 'predict.outputs=[csv, plot]'])
    written = predict_track(c, r.best_ckpt)
    tracks = pd.read_csv(written['csv'])
    assert len(tracks) == 12 and tracks.track_id.nunique() == 2 and 'metrics' not in written

def test_bad_config_keys_are_named():
    with pytest.raises(ConfigError, match=r"model\.d_modl: unknown key\. Did you mean 'd_model'\?"): load_track_config(None, ['model.d_modl=8'])
    with pytest.raises(ConfigError, match="checkpoint.monitor: a tracking run logs no 'val_motaa'"): load_track_config(None, ['checkpoint.monitor=val_motaa'])
    with pytest.raises(ConfigError, match="metrics.test"): load_track_config(None, ['metrics.test=[mota, idf3]'])

def test_in_chans_that_contradicts_the_data(tmp_path):
    from medseg.track.task import fit_track
    with pytest.raises(ConfigError, match=r"model.encoder_cfg.in_chans: 3, but the crops of synthetic have 1 channel"):
        fit_track(cfg_for(tmp_path, 'model.encoder_cfg.in_chans=3'))
    assert not (tmp_path/'run').exists()  # refused before the run folder is made

@pytest.mark.slow
def test_papermill_track_notebook(tmp_path):
    "papermill runs nbs/track.ipynb: one parameters cell, a run folder with the executed notebook kept, a log without library noise."
    from conftest import BIN, ROOT, run
    out = tmp_path/'out.ipynb'
    small = [o for o in SMALL if not o.startswith(('trainer.max_epochs', 'trainer.log_every'))] + ['model.use_vis_feats=false', 'predict.max_animation_frames=4']
    r = run([str(BIN/'papermill'), 'nbs/track.ipynb', str(out), '-p', 'epochs', '1', '-p', 'out_dir', str(tmp_path/'runs'), '-p', 'run_name', 'pm',
             '-y', 'overrides: [' + ', '.join(f'"{o}"' for o in small) + ']'], cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_dir = tmp_path/'runs'/'pm'
    assert {'config.yaml', 'summary.json', 'notebook.ipynb', 'predictions', 'plots', 'checkpoints'} <= {p.name for p in run_dir.iterdir()}
    assert 'test_mota' in json.loads((run_dir/'summary.json').read_text())['test']
    executed = json.loads(out.read_text())
    after_imports = [c for c in executed['cells'] if c['cell_type'] == 'code' and not ''.join(c['source']).startswith('import ')]  # (importing may warn)
    text = ''.join(''.join(o.get('text', '')) for c in after_imports for o in c.get('outputs', []))
    assert 'site-packages' not in text and 'IDF1' in text and 'epoch 1/1' in text, text[-2000:]

def test_medseg_command_runs_a_tracking_config(tmp_path):
    "`medseg fit -c x.yaml` with `task: track` in the file trains a tracker, ending with the mode's table; `medseg test` scores it."
    import yaml
    from conftest import BIN, run
    (tmp_path/'track.yaml').write_text(yaml.safe_dump({'task': 'track'}))
    args = ['-c', str(tmp_path/'track.yaml'), *SMALL, f'paths.out_dir={tmp_path}', 'paths.run_name=cli', 'model.use_vis_feats=false']
    r = run([str(BIN/'medseg'), 'fit', *args], env={'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    table = r.stdout[r.stdout.index('medseg fit: done'):]
    for row in ('run folder', 'best checkpoint', 'val_loss (best)', 'test_mota', 'wall time'): assert row in table, table
    t = run([str(BIN/'medseg'), 'test', *args], env={'OMP_NUM_THREADS': '1'})
    assert t.returncode == 0 and 'medseg test: done' in t.stdout and 'test_mota' in t.stdout, t.stdout[-2000:] + t.stderr[-2000:]
    bad = run([str(BIN/'medseg'), 'fit', *args, 'tracker.windw_size=3'])
    assert bad.returncode == 2 and "tracker.windw_size: unknown key. Did you mean 'window_size'?" in bad.stderr, bad.stderr  # as medseg's own configs say it
    assert 'Traceback' not in bad.stderr and len(bad.stderr.strip().splitlines()) == 2, bad.stderr
