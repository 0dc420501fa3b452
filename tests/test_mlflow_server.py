"""A real MLflow tracking server (`mlflow server`, SQLite backend, artifacts served by it) on a free localhost port:
`medseg fit` logs to it and everything reads back (the final scores of summary.json, the flattened config as parameters,
the run folder and git commit as tags, the best checkpoint, which downloads and loads, the plots); a server that does not
answer stops the fit in one line before training; a server killed mid-run leaves the fit running to its end, with
metrics.csv complete and mlflow_unsent.json naming what the server missed."""
import hashlib, json, os, shutil, signal, socket, subprocess, time, urllib.request
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import BIN, ROOT, run

pytestmark = pytest.mark.slow
ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def stop(p:subprocess.Popen, sig=signal.SIGTERM):
    "Stop the process group of `p` (the server and its uvicorn workers)."
    if p.poll() is None:
        try: os.killpg(p.pid, sig)
        except ProcessLookupError: pass
        try: p.wait(timeout=20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()

@pytest.fixture
def mlflow_server(tmp_path):
    "`mlflow server` on a free localhost port: SQLite backend in `tmp_path/server.db`, artifacts served from `tmp_path/artifacts`."
    pytest.importorskip('mlflow')
    exe = shutil.which('mlflow', path=str(BIN)) or shutil.which('mlflow')
    if exe is None: pytest.skip('the mlflow command is not installed (pip install "medseg[mlflow]")')
    port, db = free_port(), tmp_path/'server.db'
    uri = f'http://127.0.0.1:{port}'
    with open(tmp_path/'server.log', 'w') as log:
        p = subprocess.Popen([exe, 'server', '--backend-store-uri', f'sqlite:///{db}', '--artifacts-destination', str(tmp_path/'artifacts'),
                              '--host', '127.0.0.1', '--port', str(port), '--workers', '1'],
                             cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **ENV})
    try:
        deadline = time.time() + 120  # ~9 s alone; much longer beside other work
        while True:
            try:
                with urllib.request.urlopen(f'{uri}/health', timeout=2) as r:
                    if r.status == 200: break
            except OSError: pass
            if p.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not answer at {uri}: {(tmp_path/'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield SimpleNamespace(uri=uri, process=p, db=db)
    finally: stop(p)

def fit_args(tiny, name, uri, *more):
    return [str(BIN/'medseg'), 'fit', *tiny, f'paths.run_name={name}', 'logging.loggers=[csv, mlflow]', f'logging.mlflow_uri={uri}', *more]

def sha256(p) -> str: return hashlib.sha256(open(p, 'rb').read()).hexdigest()

def the_run(client, name):
    "The one MLflow run of experiment `medseg` named `name`."
    exp = client.get_experiment_by_name('medseg')
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.runName` = '{name}'") if exp else []
    assert len(runs) <= 1, runs
    return runs[0] if runs else None

def test_fit_logs_to_the_server_and_everything_reads_back(tmp_path, tiny, mlflow_server):
    import mlflow, torch
    from mlflow.tracking import MlflowClient
    from medseg.config import load_config
    from medseg.loggers import run_params
    from medseg.run import build_task, load_checkpoint
    r = run(fit_args(tiny, 'srv', mlflow_server.uri, 'trainer.max_epochs=2'), env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path/'runs'/'srv'
    summary = json.loads((run_dir/'summary.json').read_text())
    assert not (run_dir/'mlflow_unsent.json').exists() and not (run_dir/'mlflow.db').exists()  # all went to the server, nothing local
    client = MlflowClient(mlflow_server.uri)
    found = the_run(client, 'srv')
    assert found is not None
    rid, data = found.info.run_id, found.data
    # metrics: every epoch's, and the final ones equal the run folder's
    mlflow.set_tracking_uri(mlflow_server.uri)
    df = mlflow.search_runs(experiment_names=['medseg'])
    assert len(df) == 1 and df['metrics.test_mask_dice'].iloc[0] == pytest.approx(summary['test']['test_mask_dice'], abs=1e-6)
    monitor = summary['monitor']
    hist = sorted(client.get_metric_history(rid, monitor), key=lambda m: m.step)
    csv = pd.read_csv(run_dir/'metrics.csv').dropna(subset=[monitor])
    assert [m.value for m in hist] == pytest.approx(csv[monitor].tolist(), abs=1e-6) and len(hist) == 2  # one per epoch
    assert max(m.value for m in hist) == pytest.approx(summary['best_score'], abs=1e-6)
    # parameters: the resolved config, flattened to dotted keys
    cfg = load_config(run_dir/'config.yaml')
    params = run_params(run_dir)
    assert {'model.arch', 'model.encoder', 'trainer.max_epochs', 'optimizer.params.lr', 'logging.mlflow_uri'} <= set(data.params)
    assert data.params['model.arch'] == cfg.model.arch and data.params['trainer.max_epochs'] == '2'
    assert {k: data.params.get(k) for k in params} == params
    # tags: the run folder, and the project's git commit when there is one
    assert data.tags['mlflow.runName'] == 'srv' and data.tags['medseg.run_dir'] == str(run_dir.resolve())
    git = json.loads((run_dir/'versions.json').read_text())['git']
    if git: assert data.tags['mlflow.source.git.commit'] == git['commit']
    # artifacts: the best checkpoint (downloads and loads) and the plots
    best = summary['best_ckpt']
    assert [a.path for a in client.list_artifacts(rid, 'checkpoints')] == [f"checkpoints/{os.path.basename(best)}"]
    got = client.download_artifacts(rid, f"checkpoints/{os.path.basename(best)}", str(tmp_path/'download'))
    assert sha256(got) == sha256(best)
    task, _ = build_task(cfg)
    load_checkpoint(task, got)
    want = torch.load(best, map_location='cpu', weights_only=False)['state_dict']
    assert all(torch.equal(v, want[k]) for k, v in task.state_dict().items() if k in want)
    plots = sorted(f"plots/{p.name}" for p in (run_dir/'plots').glob('*.png'))
    assert plots and [a.path for a in client.list_artifacts(rid, 'plots')] == plots

def test_a_server_that_does_not_answer_stops_the_fit_before_training(tmp_path, tiny):
    pytest.importorskip('mlflow')
    port = free_port()  # nothing listens there
    uri = f'http://127.0.0.1:{port}'
    for name, args, env in (('down', fit_args(tiny, 'down', uri), ENV),  # the config's URI
                            ('env', [str(BIN/'medseg'), 'fit', *tiny, 'paths.run_name=env', 'logging.loggers=[csv, mlflow]'],
                             {**ENV, 'MLFLOW_TRACKING_URI': uri})):  # MLflow's own variable
        r = run([*args, 'trainer.max_epochs=50'], env=env)
        assert r.returncode == 2, r.stderr[-3000:]
        lines = [l for l in r.stderr.splitlines() if uri in l]
        assert len(lines) == 1 and lines[0].startswith(f"medseg: logging.mlflow_uri: no MLflow server answers at {uri} (Connection refused)"), r.stderr[-3000:]
        assert 'Traceback' not in r.stderr
        run_dir = tmp_path/'runs'/name
        assert not (run_dir/'checkpoints').exists() and not (run_dir/'metrics.csv').exists()  # no training

def test_a_server_killed_mid_run_leaves_the_fit_running_and_says_what_it_missed(tmp_path, tiny, mlflow_server):
    from mlflow.tracking import MlflowClient
    epochs = 12
    args = fit_args(tiny, 'kill', mlflow_server.uri, f'trainer.max_epochs={epochs}', 'data.n_images=32')
    client = MlflowClient(mlflow_server.uri)
    with open(tmp_path/'fit.log', 'w') as log:
        p = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **ENV})
    try:
        deadline, rid = time.time() + 300, None
        while time.time() < deadline and p.poll() is None:  # until the server holds the first epoch's validation score
            found = the_run(client, 'kill')
            if found and client.get_metric_history(found.info.run_id, 'val_mask_dice'): rid = found.info.run_id; break
            time.sleep(0.3)
        assert p.poll() is None and rid, f"the fit ended before the server could be killed; make it longer: {(tmp_path/'fit.log').read_text()[-2000:]}"
        stop(mlflow_server.process, signal.SIGKILL)  # the server dies
        rc = p.wait(timeout=600)
    finally: stop(p, signal.SIGKILL)
    out = (tmp_path/'fit.log').read_text()
    assert rc == 0, out[-3000:]
    run_dir = tmp_path/'runs'/'kill'
    csv = pd.read_csv(run_dir/'metrics.csv').dropna(subset=['val_mask_dice'])
    assert sorted(csv.epoch.unique()) == list(range(epochs))  # the CSV record is complete
    report = json.loads((run_dir/'mlflow_unsent.json').read_text())
    assert report['uri'] == mlflow_server.uri and report['run_id'] == rid and report['error'] == 'Connection refused'
    assert {'val_mask_dice', 'test_mask_dice'} <= set(report['metrics'])
    assert any(k.startswith('artifact checkpoints/') for k in report['other']) and 'run status' in report['other']
    held = MlflowClient(f'sqlite:///{mlflow_server.db}').get_metric_history(rid, 'val_mask_dice')  # the dead server's own database
    assert len(held) >= 1 and len(held) + report['metrics']['val_mask_dice']['values'] == len(csv), (len(held), report['metrics']['val_mask_dice'])
    assert sum(f'MLflow at {mlflow_server.uri} failed (Connection refused); training goes on' in l for l in out.splitlines()) == 1
    said = [l for l in out.splitlines() if 'did not get' in l]  # one line says what the server missed, and where the list is
    assert len(said) == 1 and f'MLflow at {mlflow_server.uri} did not get ' in said[0] and 'metrics (' in said[0], said
    assert 'files' in said[0] and said[0].endswith(f"the list: {run_dir/'mlflow_unsent.json'}"), said
