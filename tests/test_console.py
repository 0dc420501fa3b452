"What a person sees: a progress bar in a terminal, a line per epoch elsewhere, no library noise unless --verbose."
import os
import pytest
from conftest import BIN, ROOT, run

def _env():
    env = {k: v for k, v in os.environ.items() if k != 'MEDSEG_VERBOSE'}
    return {**env, 'OMP_NUM_THREADS': env.get('OMP_NUM_THREADS', '2'), 'PYTHONUNBUFFERED': '1'}

def _args(tiny, name, epochs=2):
    return ['fit', *tiny, f'paths.run_name={name}', f'trainer.max_epochs={epochs}']

def test_terminal_shows_a_progress_bar_and_no_library_lines(tiny):
    pexpect = pytest.importorskip('pexpect')
    child = pexpect.spawn(str(BIN/'medseg'), _args(tiny, 'tty'), cwd=str(ROOT), env=_env(), dimensions=(40, 150),
                          encoding='utf-8', timeout=300)
    child.expect(pexpect.EOF); child.close()
    out = child.before
    assert child.exitstatus == 0, out[-3000:]
    assert 'Epoch 1: 100%|' in out and 'it/s' in out, out[-3000:]  # Lightning's bar, each epoch's left on screen
    assert 'val_mask_dice=' in out and 'loss=' in out  # the loss and the monitored metric ride on the bar
    assert 'site-packages' not in out, [l for l in out.splitlines() if 'site-packages' in l]
    assert 'GPU available' not in out and 'Tip:' not in out
    assert 'medseg fit: done' in out and 'wall time' in out

def test_pipe_gets_one_line_per_epoch(tiny):
    r = run([str(BIN/'medseg'), *_args(tiny, 'pipe')], env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith('epoch ')]
    assert [l.split('  ')[0] for l in lines] == ['epoch 1/2', 'epoch 2/2'], r.stdout
    assert all('train_loss' in l and 'val_mask_dice' in l and '(best ' in l for l in lines), lines
    assert 'it/s' not in r.stdout + r.stderr  # no bar where nobody watches a terminal
    assert 'site-packages' not in r.stdout + r.stderr, r.stderr
    table = r.stdout[r.stdout.index('medseg fit: done'):]
    for row in ('run folder', 'best checkpoint', 'val_mask_dice (best)', 'test_mask_dice', 'wall time'): assert row in table, table

@pytest.mark.parametrize('how', ['flag', 'env'])
def test_verbose_brings_the_silenced_messages_back(tiny, how):
    args = _args(tiny, f'verbose-{how}', 1)
    cmd = [str(BIN/'medseg'), args[0], '--verbose', *args[1:]] if how == 'flag' else [str(BIN/'medseg'), *args]
    r = run(cmd, env={**_env(), **({'MEDSEG_VERBOSE': '1'} if how == 'env' else {})})
    assert r.returncode == 0, r.stderr[-3000:]
    both = r.stdout + r.stderr
    assert 'GPU available' in both and 'Experiment logs directory' in both, both[-3000:]
