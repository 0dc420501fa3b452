"""`medseg tune` on a real PostgreSQL server that the tests start for themselves (initdb + pg_ctl on a free port, password
authentication): two worker processes share one study, one is killed (SIGKILL) in the middle of a trial, and a trial left
running by a worker "on another machine" is found by its heartbeat; every trial ends finished, pruned or failed, the
finished ones number `n_trials`, each failed trial's values ran again, `best_params.yaml` is the study's best trial, and
no password reaches a file or the console. Skipped, with the reason, where no server can be started (no PostgreSQL
binaries, no database driver)."""
import glob, importlib.util, os, pwd, shutil, signal, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT, run

optuna = pytest.importorskip('optuna')
from medseg.tune import ServerLock, best_overrides, database_url, open_storage, write_results

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")]
optuna.logging.set_verbosity(optuna.logging.WARNING)

ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
PASSWORD = 'pg-s3cret-9'  # must never be printed or saved
FINISHED = ('COMPLETE', 'PRUNED')


def pg_bindir():
    "PostgreSQL's server programs (initdb, pg_ctl): `$PG_BINDIR`, the folder of `pg_ctl` on PATH, or Debian's /usr/lib/postgresql/<version>/bin."
    which = shutil.which('pg_ctl')
    for d in (os.environ.get('PG_BINDIR'), which and str(Path(which).resolve().parent), *sorted(glob.glob('/usr/lib/postgresql/*/bin'), reverse=True)):
        if d and all((Path(d)/p).is_file() for p in ('initdb', 'pg_ctl', 'postgres')): return Path(d)
    return None

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def world_traversable(p:Path) -> bool:
    "Whether another user can reach `p` (every folder above it lets others pass)."
    return all(os.stat(q).st_mode & 0o001 for q in p.parents)

@pytest.fixture(scope='module')
def postgres():
    "A PostgreSQL server for this module: user `medseg`, password `PASSWORD`, database `studies`, on 127.0.0.1 and a free port."
    bindir = pg_bindir()
    if bindir is None: pytest.skip("no PostgreSQL server programs (initdb, pg_ctl): apt-get install postgresql, or set PG_BINDIR")
    if not any(importlib.util.find_spec(d) for d in ('psycopg', 'psycopg2')):
        pytest.skip("no PostgreSQL driver for SQLAlchemy: pip install 'psycopg[binary]' (part of medseg[tune])")
    as_user, owner = {}, None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as an unprivileged user
        owner = next((u for u in map(_user, ('postgres', 'nobody')) if u), None)
        if owner is None: pytest.skip("running as root, and no unprivileged user (postgres, nobody) to run PostgreSQL as")
        as_user = {'user': owner.pw_uid, 'group': owner.pw_gid, 'extra_groups': []}
    base = Path(tempfile.mkdtemp(prefix='medseg-pg-'))
    if owner and not world_traversable(base): shutil.rmtree(base); base = Path(tempfile.mkdtemp(prefix='medseg-pg-', dir='/tmp'))
    (base/'pw').write_text(PASSWORD + '\n')
    if owner:
        for p in (base, base/'pw'): os.chown(p, owner.pw_uid, owner.pw_gid)
    env = {**os.environ, 'LC_ALL': 'C', 'LANG': 'C'}
    pg = lambda *a, **kw: subprocess.run([str(bindir/a[0]), *a[1:]], capture_output=True, text=True, env=env, timeout=120, **as_user, **kw)
    port, data = free_port(), base/'data'
    try:
        r = pg('initdb', '-D', str(data), '-U', 'medseg', '--pwfile', str(base/'pw'), '--auth', 'scram-sha-256', '-E', 'UTF8', '--locale', 'C', '--no-sync')
        if r.returncode: pytest.skip(f"PostgreSQL's initdb failed: {(r.stderr or r.stdout).strip()[-500:]}")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        r = pg('pg_ctl', '-D', str(data), '-l', str(base/'server.log'), '-w', '-t', '60', '-o', opts, 'start')
        if r.returncode:
            log = (base/'server.log').read_text()[-500:] if (base/'server.log').exists() else ''
            pytest.skip(f"the PostgreSQL server did not start: {(r.stderr or r.stdout).strip()[-300:]} {log}")
        import sqlalchemy
        admin = sqlalchemy.create_engine(database_url(f'postgresql://medseg:{PASSWORD}@127.0.0.1:{port}/postgres'), isolation_level='AUTOCOMMIT')
        with admin.connect() as c: c.execute(sqlalchemy.text('CREATE DATABASE studies'))
        admin.dispose()
        url = f'postgresql://medseg@127.0.0.1:{port}/studies'  # what a config file holds: the server, not the password
        yield SimpleNamespace(port=port, url=url, secret_url=url.replace('medseg@', f'medseg:{PASSWORD}@'))
    finally:
        pg('pg_ctl', '-D', str(data), '-m', 'immediate', '-w', 'stop')
        shutil.rmtree(base, ignore_errors=True)

def _user(name):
    try: return pwd.getpwnam(name)
    except KeyError: return None


def study_config(tmp_path, name, storage, **optuna_section):
    "A config file: tiny synthetic runs (16 images of 32x32, 2 epochs) and an `optuna` section on `storage`."
    d = {'data': {'data_dir': str(tmp_path/'data'), 'n_images': 16, 'im_size': 32}, 'trainer': {'max_epochs': 2},
         'paths': {'out_dir': str(tmp_path/'runs')},
         'optuna': {'study_name': name, 'storage': storage,
                    'search_spaces': {'optimizer.params.lr': {'distribution': 'loguniform', 'low': 1e-4, 'high': 3e-2}, 'model.arch': ['Unet', 'FPN']},
                    **optuna_section}}
    p = tmp_path/f'{name}.yaml'
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p

def worker(cfg, log, **env):
    "`medseg tune -c cfg` in the background, one thread, its output to `log`."
    return subprocess.Popen([sys.executable, '-m', 'medseg', 'tune', '-c', str(cfg)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **ENV, **env})

def texts_under(folder:Path):
    "(path, text) of every text file under `folder`."
    for p in folder.rglob('*'):
        if p.is_file() and p.suffix in ('.yaml', '.yml', '.csv', '.log', '.json', '.txt', ''):
            yield p, p.read_text(errors='replace')


def test_two_workers_one_killed(postgres, tmp_path):
    "Two workers on one PostgreSQL study, one killed mid-trial, one trial lost on 'another machine': n_trials finished, nothing left running."
    name, n_trials = 'pg-kill', 4
    cfg = study_config(tmp_path, name, postgres.url, n_trials=n_trials, heartbeat_interval=1, sampler={'name': 'random', 'seed': 0},
                       pruner={'name': 'median', 'params': {'n_startup_trials': 1}})
    storage = open_storage(postgres.secret_url, heartbeat_interval=1)
    # a worker on another machine took a trial and went silent: only its heartbeat can tell
    study = optuna.create_study(storage=storage, study_name=name, direction='maximize')
    lost = study.ask()
    lost.suggest_float('optimizer.params.lr', 1e-4, 3e-2, log=True); lost.suggest_categorical('model.arch', ['Unet', 'FPN'])
    lost.set_user_attr('worker', {'host': 'gpu-node-7', 'pid': 4242, 'started': 0.0})
    storage.record_heartbeat(lost._trial_id)

    logs = [open(tmp_path/f'worker{i}.log', 'w') for i in range(2)]
    # the password from the environment: medseg's variable (a), or libpq's own beside a URL without one (b)
    a = worker(cfg, logs[0], MEDSEG_OPTUNA_STORAGE=postgres.secret_url)
    b = worker(cfg, logs[1], PGPASSWORD=PASSWORD)
    read = lambda i: (tmp_path/f'worker{i}.log').read_text()
    try:
        deadline, killed = time.time() + 180, None
        while killed is None:  # until worker a runs a trial
            assert a.poll() is None and time.time() < deadline, f"worker a ended or never took a trial:\n{read(0)[-3000:]}\n{read(1)[-2000:]}"
            mine = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                    if t.user_attrs.get('worker', {}).get('pid') == a.pid and t.params]  # its values drawn: there is something to queue again
            if mine: killed = mine[0].number
            else: time.sleep(0.1)
        a.send_signal(signal.SIGKILL); a.wait(30)
        b.wait(300)
    finally:
        for p in (a, b):
            if p.poll() is None: p.kill()
        for log in logs: log.close()
    assert b.returncode == 0, read(1)[-3000:]
    trials = study.get_trials(deepcopy=False)
    states = {t.number: t.state.name for t in trials}
    assert set(states.values()) <= {'COMPLETE', 'PRUNED', 'FAIL'}, states  # none left running or waiting
    assert sum(s in FINISHED for s in states.values()) == n_trials, states
    assert sorted(n for n, s in states.items() if s == 'FAIL') == sorted({lost.number, killed}), states
    for n in (lost.number, killed):  # each failed trial's values ran again (a retry that was killed in turn, again) until one finished
        while states[n] == 'FAIL':
            retry = [t for t in trials if t.user_attrs.get('retry_of') == n]
            assert len(retry) == 1 and retry[0].params == trials[n].params, (n, states)
            n = retry[0].number
    fresh = [t.params['optimizer.params.lr'] for t in trials if 'retry_of' not in t.user_attrs]
    assert len(set(fresh)) == len(fresh)  # the workers took turns (the server lock): no values drawn twice
    out = read(1)
    for n in (lost.number, killed):  # said by the worker that found it (b, for the trial of a)
        assert f"trial {n:>3}  failed    its worker stopped while it ran; its values are queued again" in read(0) + out, out[-3000:]

    folder = tmp_path/'runs'/'studies'/name
    best = study.best_trial
    text = (folder/'best_params.yaml').read_text()
    assert yaml.safe_load(text) == best.user_attrs['overrides'] and f"trial {best.number}," in text, (text, best.number)
    for t in trials:
        if t.state.name in FINISHED: assert (folder/'trials'/f'trial-{t.number:04d}'/'config.yaml').is_file()
    # where the study is, the password masked; nowhere a password
    assert f"storage postgresql://medseg:***@127.0.0.1:{postgres.port}/studies (from MEDSEG_OPTUNA_STORAGE)" in read(0), read(0)[:2000]
    assert f"storage {postgres.url} (from optuna.storage)" in out, out[:2000]
    for p, t in [*texts_under(tmp_path/'runs'), (tmp_path/'worker0.log', read(0)), (tmp_path/'worker1.log', out)]:
        assert PASSWORD not in t, p

def test_credentials_best_of_and_lock(postgres, tmp_path, monkeypatch):
    "A wrong password is one line, masked; `--best-of URL#study` with libpq's PGPASSWORD; the server lock is one holder at a time; saved configs masked."
    cfg = study_config(tmp_path, 'pg-cred', postgres.url, n_trials=1)
    wrong = postgres.secret_url.replace(PASSWORD, 'not-the-pw')
    r = run([sys.executable, '-m', 'medseg', 'tune', '-c', str(cfg)], env={**ENV, 'MEDSEG_OPTUNA_STORAGE': wrong})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert r.stderr.startswith(f"medseg tune: MEDSEG_OPTUNA_STORAGE: cannot open postgresql://medseg:***@127.0.0.1:{postgres.port}/studies: OperationalError")
    assert 'not-the-pw' not in r.stderr + r.stdout

    # a finished study read back by its URL, the password from libpq's environment
    storage = open_storage(postgres.secret_url)
    study = optuna.create_study(storage=storage, study_name='pg-made', direction='maximize')
    dist = {'optimizer.params.lr': optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for lr, v in [(0.002, 0.8), (0.0005, 0.6)]:
        study.add_trial(optuna.trial.create_trial(value=v, params={'optimizer.params.lr': lr}, distributions=dist, user_attrs={'overrides': {'optimizer.params.lr': lr}}))
    write_results(study, tmp_path/'made', 'val_mask_dice')
    monkeypatch.setenv('PGPASSWORD', PASSWORD)
    assert best_overrides(f'{postgres.url}#pg-made') == best_overrides(tmp_path/'made') == ['optimizer.params.lr=0.002']

    # the study's lock on the server: a second holder waits for the first
    other = open_storage(postgres.secret_url)
    first, second, order = ServerLock(storage.engine, 'pg-made'), ServerLock(other.engine, 'pg-made'), []
    def take():
        with second: order.append('second')
    with first:
        th = threading.Thread(target=take); th.start(); time.sleep(1.0)
        order.append('first')
    th.join(10)
    assert order == ['first', 'second']
    with ServerLock(storage.engine, 'pg-made'), ServerLock(other.engine, 'another study'): pass  # other studies do not wait

    # a config naming the password is saved masked into a run folder, and that run folder reopens
    from medseg.config import load_config
    from medseg.run import prepare_run_dir
    c = load_config(overrides=[f'optuna.storage={postgres.secret_url}', f'paths.out_dir={tmp_path}/runs', 'paths.run_name=masked'])
    run_dir, _ = prepare_run_dir(c)
    saved = (run_dir/'config.yaml').read_text()
    assert PASSWORD not in saved and f'postgresql://medseg:***@127.0.0.1:{postgres.port}/studies' in saved
    assert prepare_run_dir(c)[0] == run_dir  # the same run: its masked config.yaml still matches
