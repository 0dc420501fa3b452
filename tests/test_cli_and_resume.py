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

def test_cli_fit_and_killed_run_resumes(tmp_path, tiny, monkeypatch):
    "SIGKILL a run after its first checkpoint; the same command resumes from last.ckpt, finishes, and goes on logging into the same MLflow and W&B runs."
    for k in ('WANDB_DATA_DIR', 'WANDB_CACHE_DIR', 'WANDB_CONFIG_DIR', 'WANDB_ARTIFACT_DIR'): monkeypatch.setenv(k, str(tmp_path/'wandb-home'))
    monkeypatch.setenv('WANDB_SILENT', 'true')
    args = [str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=kill', 'trainer.max_epochs=6', 'data.n_images=32', 'logging.loggers=[csv,mlflow,wandb]']
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
    # one MLflow run holds every epoch's score; both parts of the W&B run carry one id
    from mlflow import MlflowClient
    client = MlflowClient(f"sqlite:///{run_dir/'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name('medseg').experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    assert sorted({h.step for h in client.get_metric_history(runs[0].info.run_id, 'val_mask_dice')}) == sorted(m.dropna(subset=['val_mask_dice']).step.unique())
    ids = json.loads((run_dir/'logger_runs.json').read_text())
    assert ids['mlflow']['run_id'] == runs[0].info.run_id
    parts = sorted((run_dir/'wandb').glob('offline-run-*'))
    assert len(parts) == 2 and all(p.name.endswith('-' + ids['wandb']['id']) for p in parts), parts

def test_different_run_in_same_folder_is_refused(tmp_path, tiny):
    ok = run([str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=x', 'trainer.max_epochs=1'])
    assert ok.returncode == 0, ok.stderr[-2000:]
    r = run([str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=x', 'model.encoder=resnet34'])
    assert r.returncode == 2 and 'already holds a different run' in r.stderr

def test_missing_data_dir(tmp_path):
    r = run([str(BIN/'medseg'), 'fit', f'data.data_dir={tmp_path}/nowhere', 'data.generate=false', f'paths.out_dir={tmp_path}'])
    assert r.returncode == 2 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr

def test_modes_from_the_command_line(tmp_path, tiny):
    "`python -m medseg --help` lists the modes; fit tests its best checkpoint; test and validate score the run folder's best."
    import sys
    h = run([sys.executable, '-m', 'medseg', '--help'])
    assert h.returncode == 0 and all(m in h.stdout for m in ('fit', 'validate', 'test', 'predict')), h.stdout
    r = run([str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=m', 'trainer.max_epochs=1'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'test_mask_dice' in r.stdout  # the test scores, printed as a table
    summary = json.loads((tmp_path/'runs'/'m'/'summary.json').read_text())
    assert {'test_loss', 'test_mask_dice', 'test_mask_iou'} <= set(summary['test'])
    t = run([sys.executable, '-m', 'medseg', 'test', *tiny, 'paths.run_name=m'])
    assert t.returncode == 0, t.stderr[-3000:]
    again = json.loads((tmp_path/'runs'/'m'/'summary.json').read_text())['test']
    assert abs(again['test_mask_dice'] - summary['test']['test_mask_dice']) < 1e-5
    v = run([str(BIN/'medseg'), 'validate', *tiny, '--ckpt_path', str(tmp_path/'runs'/'m'/'checkpoints'/'last.ckpt')])
    assert v.returncode == 0 and (tmp_path/'runs'/'m'/'validate_metrics.csv').exists(), v.stderr[-3000:]
    e = run([str(BIN/'medseg'), 'evaluate', *tiny, '--ckpt_path', str(tmp_path/'runs'/'m'/'checkpoints'/'*.ckpt')])
    assert e.returncode == 0 and (tmp_path/'runs'/'evaluation.csv').exists(), e.stderr[-3000:]
    import pandas as pd
    assert len(pd.read_csv(tmp_path/'runs'/'evaluation.csv')) == 2  # best and last
    none = run([str(BIN/'medseg'), 'evaluate', *tiny, '--ckpt_path', str(tmp_path/'nothing'/'*.ckpt')])
    assert none.returncode == 2 and 'no checkpoint matches' in none.stderr
    bad = run([str(BIN/'medseg'), 'test', *tiny, '--ckpt_path', str(tmp_path/'nope.ckpt')])
    assert bad.returncode == 2 and 'checkpoint not found' in bad.stderr and 'Traceback' not in bad.stderr

def test_predict_writes_masks_at_the_original_size(tmp_path, tiny):
    "predict on the test split (with scores) and on a folder of new images (no labels), from the run folder's best checkpoint."
    from PIL import Image
    import pandas as pd
    assert run([str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=p', 'trainer.max_epochs=1']).returncode == 0
    r = run([str(BIN/'medseg'), 'predict', *tiny, 'paths.run_name=p', 'predict.save_probs=true'])
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path/'runs'/'p'/'predictions'
    table, scores = pd.read_csv(out/'predictions.csv'), pd.read_csv(out/'scores.csv')
    assert len(table) == len(scores) > 0 and scores['mask_dice'].between(0, 1).all()
    img = Image.open(tmp_path/'data'/table['id'][0]); mask = Image.open(out/table['mask_file'][0])
    assert mask.size == img.size and (out/'mask'/(mask_stem := table['mask_file'][0].split('/')[-1][:-4] + '_prob.npy')).exists()
    new = tmp_path/'new'; new.mkdir()
    Image.open(tmp_path/'data'/table['id'][0]).resize((50, 70)).save(new/'other.png')
    r = run([str(BIN/'medseg'), 'predict', *tiny, 'paths.run_name=p', f'data.predict_dir={new}'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert Image.open(out/'mask'/'other.png').size == (50, 70) and not (out/'scores.csv').exists() or True
    empty = tmp_path/'empty'; empty.mkdir()
    r = run([str(BIN/'medseg'), 'predict', *tiny, 'paths.run_name=p', f'data.predict_dir={empty}'])
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
