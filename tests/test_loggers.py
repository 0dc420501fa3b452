"Every logger writes the run's metrics where its reader finds them: read the final value back from each."
import struct
from pathlib import Path
import pandas as pd
import pytest
from medseg.config import load_config
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
