"Every logger writes the run's metrics where its reader finds them: read the final value back from each."
import json, struct
from pathlib import Path
import pandas as pd
import pytest
from medseg.config import load_config
from medseg.loggers import clearml_scalars, wandb_artifacts, wandb_history
from medseg.run import train

def tb_scalars(folder:Path) -> dict:
    "{tag: [(step, value)]} from the TensorBoard event files under `folder` (TFRecord framing, Event protos)."
    from tensorboardX.proto import event_pb2
    out = {}
    for f in sorted(folder.rglob('events.out.tfevents.*')):
        data, i = f.read_bytes(), 0
        while i + 12 <= len(data):
            n = struct.unpack('<Q', data[i:i + 8])[0]
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n]); i += 12 + n + 4
            for v in ev.summary.value: out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out

def test_csv_tensorboard_and_mlflow_hold_the_same_final_score(tmp_path, tiny):
    pytest.importorskip('tensorboardX'); pytest.importorskip('mlflow')
    cfg = load_config(overrides=tiny + ['paths.run_name=log', 'trainer.max_epochs=2', 'logging.loggers=[csv, tensorboard, mlflow]',
                                        'trainer.test_after_fit=false'])
    r = train(cfg)
    final = float(pd.read_csv(r.run_dir/'metrics.csv').dropna(subset=['val_mask_dice'])['val_mask_dice'].iloc[-1])
    tb = tb_scalars(r.run_dir/'tensorboard')
    assert 'val_mask_dice' in tb, sorted(tb)
    assert tb['val_mask_dice'][-1][1] == pytest.approx(final, abs=1e-6)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{r.run_dir/'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name('medseg').experiment_id])
    hist = client.get_metric_history(runs[0].info.run_id, 'val_mask_dice')
    assert sorted(hist, key=lambda m: m.step)[-1].value == pytest.approx(final, abs=1e-6)

@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    "W&B's caches and staging folder in `tmp_path` (not under ~)."
    for k in ('WANDB_DATA_DIR', 'WANDB_CACHE_DIR', 'WANDB_CONFIG_DIR', 'WANDB_ARTIFACT_DIR'): monkeypatch.setenv(k, str(tmp_path/'wandb-home'))

def final_dice(run:Path) -> float:
    return float(pd.read_csv(run/'metrics.csv').dropna(subset=['val_mask_dice'])['val_mask_dice'].iloc[-1])

def test_wandb_offline_holds_the_final_score_the_best_checkpoint_and_the_plots(tiny, wandb_home):
    pytest.importorskip('wandb')
    cfg = load_config(overrides=tiny + ['paths.run_name=wb', 'trainer.max_epochs=2', 'logging.loggers=[csv, wandb]', 'logging.log_model=true',
                                        'trainer.test_after_fit=false'])
    r = train(cfg)
    assert wandb_history(r.run_dir)['val_mask_dice'].dropna().iloc[-1] == pytest.approx(final_dice(r.run_dir), abs=1e-6)
    arts = wandb_artifacts(r.run_dir)
    best = [a for a in arts if a['type'] == 'model' and 'best' in a['aliases']]
    assert len(best) == 1, arts
    assert best[0]['metadata']['original_filename'] == r.best_ckpt.name and best[0]['files'] == ['model.ckpt']
    assert best[0]['metadata']['score'] == pytest.approx(r.best_score, abs=1e-6)
    plots = sorted(p.relative_to(r.run_dir).as_posix() for p in (r.run_dir/'plots').glob('*.png'))
    assert plots and [a['files'] for a in arts if a['type'] == 'predictions'] == [plots]

def test_clearml_offline_holds_the_final_score_the_test_scores_and_the_run_files(tiny, wandb_home):
    pytest.importorskip('clearml')
    cfg = load_config(overrides=tiny + ['paths.run_name=cml', 'trainer.max_epochs=2', 'logging.loggers=[csv, clearml]', 'logging.log_model=true'])
    r = train(cfg)
    sessions = sorted((r.run_dir/'clearml'/'offline').glob('*/task.json'))
    assert len(sessions) == 1 and sessions[0].parent.with_suffix('.zip').is_file()  # the task was closed
    s = clearml_scalars(r.run_dir/'clearml')
    assert s.query("series == 'val_mask_dice'").sort_values('step')['value'].iloc[-1] == pytest.approx(final_dice(r.run_dir), abs=1e-6)
    test = pd.read_csv(r.run_dir/'test_metrics.csv').set_index('metric')['value']['test_mask_dice']  # logged after `fit` finalized the loggers
    assert s.query("series == 'test_mask_dice'")['value'].iloc[-1] == pytest.approx(test, abs=1e-6)
    task = json.loads(sessions[0].read_text())
    assert [a['key'] for a in task['execution']['artifacts']] == ['best_checkpoint']
    assert task['execution']['artifacts'][0]['content_size'] == r.best_ckpt.stat().st_size
    plots = {p.stem for p in (r.run_dir/'plots').glob('*.png')}
    assert plots and {p.parent.name for p in sessions[0].parent.glob('data/**/metrics/plots/*/*.png')} == plots
