"The medseg command, bad input at the shell, and a killed run that resumes."
import json, os, signal, subprocess, sys, time
from conftest import BIN, ROOT, run

def test_cli_bad_config_is_one_clear_line(tmp_path):
    r = run([str(BIN/'medseg'), 'fit', 'model.encodr=resnet34'])
    assert r.returncode == 2
    assert "model.encodr: unknown key. Did you mean 'encoder'" in r.stderr and 'Traceback' not in r.stderr
    (tmp_path/'bad.yaml').write_text('trainer:\n  max_epochs: 2\n bad: [\n')
    r = run([str(BIN/'medseg'), 'fit', '--config', str(tmp_path/'bad.yaml')])
    assert r.returncode == 2 and 'YAML syntax error' in r.stderr and 'line 3' in r.stderr
    r = run([str(BIN/'medseg'), 'fit', 'loss._target_=os.system'])
    assert r.returncode == 2 and 'not on the allowlist' in r.stderr
    r = run([str(BIN/'medseg'), 'fit', '--config', str(tmp_path/'missing.yaml')])
    assert r.returncode == 2 and 'config file not found' in r.stderr

def test_cli_fit_and_killed_run_resumes(tmp_path, tiny):
    "SIGKILL a run after its first checkpoint; the same command resumes from last.ckpt and finishes."
    args = [str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=kill', 'trainer.max_epochs=6', 'data.n_images=32']
    run_dir = tmp_path/'runs'/'kill'
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            if (run_dir/'checkpoints'/'last.ckpt').exists() and (run_dir/'metrics.csv').exists(): break
            time.sleep(0.2)
        assert p.poll() is None, "the run finished before it could be killed; make it longer"
        time.sleep(0.5)
        os.killpg(p.pid, signal.SIGKILL); p.wait()
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert not (run_dir/'summary.json').exists()
    r = run(args)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((run_dir/'summary.json').read_text())
    assert summary['resumed_from'].endswith('last.ckpt') and summary['epochs'] == 6
    import pandas as pd
    m = pd.read_csv(run_dir/'metrics.csv')
    assert sorted(m.dropna(subset=['val_mask_dice']).epoch.unique()) == list(range(6))

def test_different_run_in_same_folder_is_refused(tmp_path, tiny):
    ok = run([str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=x', 'trainer.max_epochs=1'])
    assert ok.returncode == 0, ok.stderr[-2000:]
    r = run([str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=x', 'model.encoder=resnet34'])
    assert r.returncode == 2 and 'already holds a different run' in r.stderr

def test_missing_data_dir(tmp_path):
    r = run([str(BIN/'medseg'), 'fit', f'data.data_dir={tmp_path}/nowhere', 'data.generate=false', f'paths.out_dir={tmp_path}'])
    assert r.returncode == 2 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr
