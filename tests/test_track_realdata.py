"Tracking real flies end to end (SLEAP labels + 1024x1024 mp4): train a GTR on two_flies frames 0-100, track held-out frames and other videos, check MOTA, IDF1 and identity switches."
import json, warnings
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA
FLIES = SHARED_DATA/'sleap_flies'
pytestmark = [pytest.mark.skipif(not (FLIES/'two_flies.slp').exists(), reason=f'{FLIES} is absent (the real fly videos)'),
              pytest.mark.slow, pytest.mark.realdata]

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "The run of configs/gtr_flies.yaml (motion-only GTR, about 10 s of training on 2 cores) and its scores on every fly video."
    import torch; torch.set_num_threads(1)
    from medseg.track.config import load_track_config
    from medseg.track.data import read_sleap
    from medseg.track.task import TrackDataModule, fit_track
    cfg = load_track_config(Path(__file__).parents[1]/'configs'/'gtr_flies.yaml', [f'paths.out_dir={tmp_path_factory.mktemp("runs")}'])
    r = fit_track(cfg)
    rows = {'two_flies 100-128': r.task.scores['test'].iloc[-1]}
    for n in ['three_flies', 'single_fly', 'two_flies_noisy_detections']:
        frames = read_sleap(FLIES/f'{n}.slp', video=FLIES/'two_flies.mp4' if 'noisy' in n else None)
        dm = TrackDataModule(cfg.data.model_copy(update={'path': FLIES/f'{n}.slp', 'frames': None}), frames)
        rows[n] = r.task.track_and_score(frames, 'test', dm.crop_cache).iloc[-1]
    table = pd.DataFrame(rows).T[['mota', 'idf1', 'num_switches', 'num_false_positives', 'num_misses', 'num_frames']]
    print('\n' + table.round(3).to_string())
    return cfg, r, table

def test_held_out_two_flies(trained):
    cfg, r, t = trained
    row = t.loc['two_flies 100-128']
    assert row.num_frames == 28 and row.mota >= 0.95 and row.num_switches <= 1 * row.num_frames / 100 + 1e-9, row
    summary = json.loads((r.run_dir/'summary.json').read_text())
    assert summary['test']['test_mota'] == pytest.approx(row.mota) and summary['monitor'] == 'val_loss'
    assert (r.run_dir/'checkpoints'/'last.ckpt').exists() and Path(summary['best_ckpt']).exists()

def test_single_fly_has_no_switch(trained):
    row = trained[2].loc['single_fly']
    assert row.num_switches == 0 and row.mota == 1.0, row

def test_other_videos(trained):
    t = trained[2]
    three, noisy = t.loc['three_flies'], t.loc['two_flies_noisy_detections']
    assert three.mota >= 0.95 and three.num_switches <= 1.28, three  # at most one switch per 100 frames here too
    assert noisy.num_false_positives == 3 and noisy.num_switches <= 1 and noisy.mota >= 0.95, noisy  # its 3 spurious detections are the only errors

def test_predict_writes_tracked_slp(trained, tmp_path):
    import sleap_io as sio
    from medseg.track.task import predict_track
    cfg, r, _ = trained
    c = cfg.model_copy(update={'predict': cfg.predict.model_copy(update={'input': FLIES/'single_fly.slp', 'max_animation_frames': 10})})
    written = predict_track(c, r.best_ckpt)
    tracks = pd.read_csv(written['csv'])
    assert len(tracks) == 128 and tracks.track_id.nunique() == 1
    labels = sio.load_slp(str(written['slp:single_fly']))
    assert len(labels.tracks) == 1 and all(i.track is labels.tracks[0] for lf in labels.labeled_frames for i in lf.instances)
    assert (r.run_dir/'plots'/'tracks.gif').exists() and (r.run_dir/'plots'/'trajectories.png').exists()
