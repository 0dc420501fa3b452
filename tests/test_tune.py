"""`medseg tune` on tiny synthetic runs: a 6-trial study with pruning killed (SIGKILL) after its third trial and run again
ends with 6 finished trials and a best_params.yaml; two worker processes share one SQLite study without a trial too many or
twice; a W&B sweep file runs locally; `medseg fit --best-of STUDY` and `medseg tune` through the `medseg` command."""
import os, signal, subprocess, sys, time

import optuna
import pytest
import yaml
from conftest import ROOT, run

from medseg.tune import best_overrides, trials_table, tune_main, write_results

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)

ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
FINISHED = ('COMPLETE', 'PRUNED')

def study_config(tmp_path, name, **optuna_section):
    "A config file: tiny synthetic runs (16 images of 32x32) and an `optuna` section."
    d = {'data': {'data_dir': str(tmp_path/'data'), 'n_images': 16, 'im_size': 32},
         'trainer': {'max_epochs': optuna_section.pop('epochs', 2)}, 'paths': {'out_dir': str(tmp_path/'runs')},
         'optuna': {'search_spaces': {'optimizer.params.lr': {'distribution': 'loguniform', 'low': 1e-4, 'high': 3e-2}}, **optuna_section}}
    p = tmp_path/f'{name}.yaml'
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p

def tune_process(cfg, log, *args):
    "`python -m medseg.tune -c cfg` in the background, one thread, output to `log`."
    return subprocess.Popen([sys.executable, '-m', 'medseg.tune', '-c', str(cfg), *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **ENV})

def load(folder, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder/'study.db'}")

def states(study): return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_killed_after_third_trial_then_resumed(tmp_path):
    "The acceptance test: 6 trials with pruning, SIGKILL after the third finished, run again: 6 finished trials, best_params.yaml."
    cfg = study_config(tmp_path, 'kill', n_trials=6, epochs=3, sampler={'name': 'tpe', 'seed': 0, 'params': {'n_startup_trials': 3}},
                       pruner={'name': 'median', 'params': {'n_startup_trials': 2}},
                       search_spaces={'optimizer.params.lr': {'distribution': 'loguniform', 'low': 1e-4, 'high': 3e-2}, 'model.arch': ['Unet', 'FPN']})
    folder = tmp_path/'runs'/'studies'/'kill'
    with open(tmp_path/'first.log', 'w') as log:
        p = tune_process(cfg, log)
        try:
            deadline = time.time() + 240
            while True:  # until three trials have finished and the fourth runs with its values drawn
                assert p.poll() is None and time.time() < deadline, (tmp_path/'first.log').read_text()[-3000:]
                try: trials = load(folder, 'kill').get_trials(deepcopy=False)
                except Exception: trials = []  # the study is not created yet
                # the running trial must have drawn its values: killed before that, there is nothing to queue again
                if sum(t.state.name in FINISHED for t in trials) >= 3 and any(t.params for t in trials if t.state.name == 'RUNNING'): break
                time.sleep(0.2)
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        finally:
            if p.poll() is None: p.kill()
    before = load(folder, 'kill').get_trials(deepcopy=False)
    running = [t.number for t in before if t.state.name == 'RUNNING']
    finished = sum(t.state.name in FINISHED for t in before)
    assert 3 <= finished <= 4 and running, states(load(folder, 'kill'))  # killed during the trial after the third
    assert not (folder/'optimization_history.png').exists()  # the killed worker never got to the end

    r = run([sys.executable, '-m', 'medseg.tune', '-c', str(cfg)], env=ENV)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert f'{finished} of 6 trials finished (continuing)' in out, out[-3000:]
    assert f"trial {running[0]:>3}  failed    its worker stopped while it ran; its values are queued again" in out, out[-3000:]
    study = load(folder, 'kill')
    trials = study.get_trials(deepcopy=False)
    assert sum(t.state.name in FINISHED for t in trials) == 6, states(study)
    assert [t.number for t in trials if t.state.name == 'FAIL'] == running  # only the trial the kill cut short
    assert not [t for t in trials if t.state.name in ('RUNNING', 'WAITING')]
    killed = trials[running[0]]
    retry = [t for t in trials if t.user_attrs.get('retry_of') == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state.name in FINISHED  # its values ran again
    best = yaml.safe_load((folder/'best_params.yaml').read_text())
    assert set(best) == {'optimizer.params.lr', 'model.arch'} and best == study.best_trial.user_attrs['overrides']
    assert {'trials.csv', 'optimization_history.png', 'parallel_coordinate.png', 'param_importances.png'} <= {p.name for p in folder.iterdir()}
    for t in trials:
        if t.state.name in FINISHED: assert (folder/'trials'/f'trial-{t.number:04d}'/'config.yaml').is_file()
    pruned = [t for t in trials if t.state.name == 'PRUNED']
    for t in pruned: assert 'pruned' in yaml.safe_load((folder/'trials'/f'trial-{t.number:04d}'/'summary.json').read_text())
    assert '| trial | state | val_mask_dice |' in r.stdout and 'best: trial' in r.stdout

def test_two_workers_one_storage(tmp_path):
    "Two `medseg tune` processes on one SQLite study: n_trials trials in all, each run once, both workers busy, no values drawn twice."
    cfg = study_config(tmp_path, 'two', n_trials=4, epochs=1, sampler='random', pruner='none')
    logs = [open(tmp_path/f'worker{i}.log', 'w') for i in range(2)]
    procs = [tune_process(cfg, log) for log in logs]
    try:
        for p in procs: p.wait(300)
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
        for log in logs: log.close()
    texts = [(tmp_path/f'worker{i}.log').read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], [t[-2000:] for t in texts]
    study = load(tmp_path/'runs'/'studies'/'two', 'two')
    trials = study.get_trials(deepcopy=False)
    assert states(study) == ['COMPLETE'] * 4, states(study)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert len({t.params['optimizer.params.lr'] for t in trials}) == 4  # no two trials drew the same values
    assert len({t.user_attrs['run_dir'] for t in trials}) == 4
    assert len({t.user_attrs['worker']['pid'] for t in trials}) == 2  # both workers ran trials
    for i, text in enumerate(texts):  # each worker printed the trials it ran
        mine = [t.number for t in trials if t.user_attrs['worker']['pid'] == procs[i].pid]
        assert all(f"trial {n:>3}  complete" in text for n in mine), text[-2000:]

def test_wandb_sweep_runs_locally(tmp_path, capsys):
    "A W&B grid sweep file (with a fixed parameter and W&B's nested form) runs as an Optuna grid study, offline."
    cfg = study_config(tmp_path, 'base', pruner='none')
    sweep = tmp_path/'sweep.yaml'
    sweep.write_text(yaml.safe_dump({'name': 'arch-grid', 'method': 'grid', 'metric': {'name': 'val_loss', 'goal': 'minimize'},
                                     'parameters': {'model': {'parameters': {'arch': {'values': ['Unet', 'FPN']}}},
                                                    'trainer.max_epochs': {'value': 1}},
                                     'program': 'train.py'}))
    assert tune_main(['-c', str(cfg), '--wandb-sweep', str(sweep), 'optuna.sampler.seed=1']) == 0
    out = capsys.readouterr().out
    folder = tmp_path/'runs'/'studies'/'arch-grid'
    study = load(folder, 'arch-grid')
    assert study.direction.name == 'MINIMIZE' and study.user_attrs['medseg']['metric'] == 'val_loss'
    df = trials_table(study, 'val_loss')
    assert list(df.state) == ['complete', 'complete'] and sorted(df['model.arch']) == ['FPN', 'Unet'], df
    assert all(yaml.safe_load((folder/'trials'/f'trial-{n:04d}'/'config.yaml').read_text())['trainer']['max_epochs'] == 1 for n in df.trial)
    assert 'minimize val_loss over model.arch; 0 of 2 trials finished' in out and '| trial | state | val_loss |' in out
    assert list(yaml.safe_load((folder/'best_params.yaml').read_text())) == ['model.arch']

def _made_up_study(tmp_path):
    "A study folder with two complete trials (no training): the best has lr 0.002 and arch FPN."
    folder = tmp_path/'runs'/'studies'/'made'
    folder.mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{folder/'study.db'}", study_name='made', direction='maximize')
    dist = {'optimizer.params.lr': optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
            'model.arch': optuna.distributions.CategoricalDistribution(['Unet', 'FPN'])}
    for lr, arch, v in [(0.002, 'FPN', 0.8), (0.0005, 'Unet', 0.6)]:
        study.add_trial(optuna.trial.create_trial(value=v, params={'optimizer.params.lr': lr, 'model.arch': arch}, distributions=dist,
                                                  user_attrs={'overrides': {'optimizer.params.lr': lr, 'model.arch': arch}}))
    write_results(study, folder, 'val_mask_dice')
    return folder

def test_fit_best_of(tmp_path, capsys):
    "`medseg fit --best-of STUDY` trains with the study's best values; the command line's own overrides still win."
    from medseg.__main__ import main
    folder = _made_up_study(tmp_path)
    assert best_overrides(folder) == ['optimizer.params.lr=0.002', 'model.arch=FPN']
    cfg = study_config(tmp_path, 'fit')
    assert main(['fit', '-c', str(cfg), '--best-of', str(folder), 'paths.run_name=best', 'model.arch=Unet', 'trainer.max_epochs=1']) == 0
    saved = yaml.safe_load((tmp_path/'runs'/'best'/'config.yaml').read_text())
    assert saved['optimizer']['params']['lr'] == 0.002 and saved['model']['arch'] == 'Unet'
    assert main(['fit', '-c', str(cfg), '--best-of', 'made']) == 0  # a study's name, under paths.out_dir/studies
    assert main(['fit', '-c', str(cfg), '--best-of', 'nosuch']) == 2
    assert "--best-of: no study 'nosuch'" in capsys.readouterr().err

def test_medseg_tune_command(tmp_path):
    "`medseg tune` is a command of `medseg`: a bad search space is one line and exit 2."
    cfg = study_config(tmp_path, 'cmd')
    r = run([sys.executable, '-m', 'medseg', 'tune', '-c', str(cfg), 'optuna.search_spaces={optimizer.params.lrr: [0.1]}'], env=ENV)
    assert r.returncode == 2 and r.stderr.startswith("medseg tune: optuna.search_spaces.optimizer.params.lrr: "), r.stderr[-2000:]
    assert 'tune' in run([sys.executable, '-m', 'medseg', '--help'], env=ENV).stdout
