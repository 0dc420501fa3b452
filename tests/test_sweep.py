"""`medseg sweep` runs tiny train.ipynb jobs with papermill: two CPU slots at once, a failing job recorded beside one that
completes, re-runs that skip what is done, and a SIGTERM during the third job that leaves no orphan and resumes."""
import os, signal, subprocess, sys, time
from datetime import datetime

import pandas as pd
import psutil
import pytest
import yaml
from conftest import ROOT, run

from medseg.sweep import load_sweep, plan_jobs, read_state

pytestmark = pytest.mark.slow

TINY = ['data.n_images=16', 'data.im_size=32']  # with epochs=1: a job of ~15 s on one core, most of it kernel start and imports

def sweep_file(tmp_path, name, **kw):
    "A CPU sweep of tiny train.ipynb jobs sharing one synthetic data folder."
    d = {'output': str(tmp_path/name), 'devices': 'cpu',
         'parameters': {'epochs': 1, 'data_dir': str(tmp_path/'data'), 'overrides': TINY}, **kw}
    p = tmp_path/f'{name}.yaml'
    p.write_text(yaml.safe_dump(d))
    return p

def medseg_sweep(path, *args):
    return run([sys.executable, '-m', 'medseg.sweep', str(path), *args])

def summary(out):
    return pd.read_csv(out/'summary.csv')

def show(r): return r.stdout[-3000:] + r.stderr[-3000:]

def test_two_slots_then_skip(tmp_path):
    f = sweep_file(tmp_path, 'two', grid={'decoder': ['Unet', 'FPN']}, slots=2)
    r = medseg_sweep(f)
    assert r.returncode == 0, show(r)
    df = summary(tmp_path/'two')
    assert len(df) == 2 and set(df.status) == {'done'} and set(df.decoder) == {'Unet', 'FPN'}, df
    assert df.val_mask_dice.notna().all() and df.test_mask_dice.notna().all()
    assert list(df.val_mask_dice) == sorted(df.val_mask_dice, reverse=True)  # sorted by the runs' monitor, best first
    jobs = plan_jobs(load_sweep(f))
    starts = [datetime.fromisoformat(read_state(j)['started']) for j in jobs]
    assert abs((starts[0] - starts[1]).total_seconds()) <= 3  # both slots busy at once
    for j in jobs:  # each job: its executed notebook, its own run folder, which kept the notebook
        assert j.notebook_out.is_file() and (j.run_dir/'summary.json').is_file() and (j.run_dir/'notebook.ipynb').is_file()
    assert len({j.run_dir for j in jobs}) == 2
    assert {'summary.csv', 'summary.md', 'summary.png'} <= {p.name for p in (tmp_path/'two').iterdir()}
    assert 'val_mask_dice' in (tmp_path/'two'/'summary.md').read_text()
    r = medseg_sweep(f)  # again: nothing left to run
    assert r.returncode == 0 and '2 done already, 0 to run' in r.stdout, show(r)
    assert [read_state(j)['attempt'] for j in jobs] == [1, 1]

def test_failing_job_recorded_other_completes(tmp_path):
    f = sweep_file(tmp_path, 'fail', runs=[{'model.encodr': 'resnet18'}, {'encoder': 'resnet18'}], slots=2)  # the first: a misspelt override
    r = medseg_sweep(f)
    assert r.returncode == 1, show(r)  # some job failed
    df = summary(tmp_path/'fail')
    assert len(df) == 2
    bad, good = df[df.status == 'failed'].iloc[0], df[df.status == 'done'].iloc[0]
    assert good.encoder == 'resnet18' and good.val_mask_dice > 0
    assert bad.error.startswith('ConfigError: ') and 'model.encodr: unknown key' in bad.error, bad.error
    state = read_state(plan_jobs(load_sweep(f))[0])
    assert state['status'] == 'failed' and state['error']['exec_count'] and 'load_config' in state['error']['cell']
    r = medseg_sweep(f)  # again: the done job is skipped, the failed one retried
    assert r.returncode == 1 and '1 done already, 1 to run' in r.stdout, show(r)
    assert [read_state(j)['attempt'] for j in plan_jobs(load_sweep(f))] == [2, 1]

def test_sigterm_during_third_job_then_resume(tmp_path):
    f = sweep_file(tmp_path, 'kill', grid={'lr': [0.001, 0.002, 0.003, 0.004]}, slots=1)
    out, jobs = tmp_path/'kill', plan_jobs(load_sweep(f))
    with open(tmp_path/'sweep.log', 'w') as log:
        p = subprocess.Popen([sys.executable, '-m', 'medseg.sweep', str(f)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, 'PYTHONUNBUFFERED': '1'})
        try:
            deadline = time.time() + 400
            while True:  # until the third job's kernel runs
                assert p.poll() is None and time.time() < deadline, (tmp_path/'sweep.log').read_text()[-3000:]
                if read_state(jobs[2]).get('status') == 'running':
                    tree = psutil.Process(p.pid).children(recursive=True)
                    if any('ipykernel' in ' '.join(k.cmdline()) for k in tree if k.is_running()): break
                time.sleep(0.2)
            time.sleep(3)  # let the kernel get into the notebook
            tree = psutil.Process(p.pid).children(recursive=True)
            assert len(tree) >= 2  # papermill and its kernel
            p.send_signal(signal.SIGTERM)
            assert p.wait(60) == 130, (tmp_path/'sweep.log').read_text()[-3000:]
        finally:
            if p.poll() is None: p.kill()
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not [a for a in alive if a.is_running() and a.status() != psutil.STATUS_ZOMBIE], alive  # no orphan papermill or kernel
    assert [read_state(j)['status'] for j in jobs] == ['done', 'done', 'interrupted', 'pending']
    assert list(summary(out).status.sort_values()) == ['done', 'done', 'interrupted', 'pending']
    assert not list(out.glob('.*.tmp'))  # no half-written file
    r = medseg_sweep(f)
    assert r.returncode == 0 and '2 done already, 2 to run' in r.stdout, show(r)
    df = summary(out)
    assert len(df) == 4 and set(df.status) == {'done'}, df
    assert [read_state(j)['attempt'] for j in jobs] == [1, 1, 2, 1]  # only the interrupted and the pending job ran again


def test_wandb_sweep_file_runs_locally(tmp_path):
    "A W&B sweep file (grid, a nested parameter, a constant, metric goal) runs as a papermill sweep; `--wandb` offline is one line, exit 2."
    d = {'method': 'grid', 'metric': {'name': 'test_loss', 'goal': 'minimize'}, 'output': str(tmp_path/'wb'), 'devices': 'cpu', 'slots': 2,
         'parameters': {'epochs': {'value': 1}, 'data_dir': {'value': str(tmp_path/'data')}, 'overrides': {'value': TINY},
                        'model': {'parameters': {'arch': {'values': ['Unet', 'FPN']}}}}}
    f = tmp_path/'wandb.yaml'; f.write_text(yaml.safe_dump(d))
    r = medseg_sweep(f)
    assert r.returncode == 0, show(r)
    df = summary(tmp_path/'wb')
    assert len(df) == 2 and set(df.status) == {'done'}, df
    assert sorted(df.overrides) == sorted(' '.join([*TINY, f'model.arch={a}']) for a in ('Unet', 'FPN'))  # the nested name is a config override
    assert list(df.test_loss) == sorted(df.test_loss)  # W&B's metric and goal sort the summary (the runs' own monitor is val_mask_dice, max)
    r = run([sys.executable, '-m', 'medseg.sweep', str(f), '--wandb'], env={'WANDB_BASE_URL': 'http://127.0.0.1:9'})  # nothing listens: no network
    assert r.returncode == 2 and r.stderr.strip().count('\n') == 0, show(r)
    assert r.stderr.startswith('medseg sweep: --wandb: cannot reach W&B at http://127.0.0.1:9'), r.stderr

TRACK_TINY = ['data.synthetic={n_frames: 32, n_objects: 3, size: 64}', 'data.crop_size=16', 'data.clip_length=8',
              'data.frames={train: [0, 20], val: [20, 26], test: [26, null]}', 'model.d_model=32', 'model.nhead=2',
              'model.use_vis_feats=false', 'predict.max_animation_frames=4']

def test_tracking_notebook_sweep(tmp_path):
    "The tracking notebook is swept like the training one: a grid over a tracker key, each job a tracking run folder, one summary with their MOT scores."
    d = {'notebook': str(ROOT/'nbs'/'track.ipynb'), 'output': str(tmp_path/'trk'), 'devices': 'cpu', 'slots': 2,
         'parameters': {'epochs': 1, 'overrides': TRACK_TINY}, 'grid': {'tracker.window_size': [2, 4]}}
    f = tmp_path/'track.yaml'; f.write_text(yaml.safe_dump(d))
    r = medseg_sweep(f)
    assert r.returncode == 0, show(r)
    df = summary(tmp_path/'trk')
    assert len(df) == 2 and set(df.status) == {'done'}, df
    assert df.val_loss.notna().all() and df.test_mota.notna().all() and df.test_idf1.notna().all(), df.columns.tolist()  # the monitor (val_loss), MOT scores
    for j in plan_jobs(load_sweep(f)):
        cfg = yaml.safe_load((j.run_dir/'config.yaml').read_text())
        assert cfg['task'] == 'track' and (j.run_dir/'predictions'/'tracks.csv').is_file() and (j.run_dir/'notebook.ipynb').is_file()
    assert sorted(yaml.safe_load((j.run_dir/'config.yaml').read_text())['tracker']['window_size'] for j in plan_jobs(load_sweep(f))) == [2, 4]
