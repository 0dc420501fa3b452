"""Papermill sweep throughput: the same train.ipynb jobs on 2 CPU slots and one after another, in one run.

    python bench/sweep.py [--jobs 4] [--slots 2] [--epochs 3] [--n 64] [--size 64]

Both runs are `medseg.sweep.run_sweep` over the same jobs (a grid of learning rates on one synthetic data folder,
generated before any clock starts), each into a folder of its own so that nothing is skipped:

- **serial**: one slot, each job with every core (`OMP_NUM_THREADS` = the cores);
- **sweep**: `--slots` slots, each job with its share of the cores.

Then papermill's per-job overhead (kernel start, notebook I/O, the notebook's own cells): the first job's wall time
in the serial run against the same job run as `medseg fit -c config.yaml` (one process, the same config, the
same threads), timed from outside. Prints both wall times and the overhead, and ends with
`ratio: <sweep wall time / serial wall time>` (target: 0.6 or less with 4 jobs on 2 slots).
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

import yaml

from medseg.config import project_root
from medseg.sweep import SweepConfig, cpu_cores, plan_jobs, read_state, run_sweep
from medseg.synthetic import ensure_synthetic


def sweep_config(out:Path, a, slots:int) -> SweepConfig:
    lrs = [round(1e-3 * (i + 1), 6) for i in range(a.jobs)]
    return SweepConfig(output=out, devices='cpu', slots=slots, grid={'lr': lrs},
                       parameters={'epochs': a.epochs, 'data_dir': str(out.parent/'data'),
                                   'overrides': [f'data.n_images={a.n}', f'data.im_size={a.size}']})


def timed_sweep(cfg:SweepConfig) -> float:
    t0 = time.perf_counter()
    df = run_sweep(cfg, live=False)
    wall = time.perf_counter() - t0
    if (df.status != 'done').any(): sys.exit(f"bench: a job failed:\n{df[['job', 'status', 'error']]}")
    return wall


def timed_fit(job, tmp:Path) -> float:
    "The sweep's first job as `medseg fit -c config.yaml`, one process, all cores."
    p = job.params
    cfg = {'data': {'data_dir': p['data_dir']}, 'trainer': {'max_epochs': p['epochs']}, 'optimizer': {'params': {'lr': p['lr']}},
           'paths': {'out_dir': str(tmp/'fit'), 'run_name': 'fit'}}
    (tmp/'fit.yaml').write_text(yaml.safe_dump(cfg))
    cli = Path(sys.executable).parent/'medseg'
    cmd = [str(cli)] if cli.exists() else [sys.executable, '-m', 'medseg']
    env = {**os.environ, 'OMP_NUM_THREADS': str(cpu_cores()), 'MKL_NUM_THREADS': str(cpu_cores())}
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, 'fit', '-c', str(tmp/'fit.yaml'), *p['overrides']], cwd=project_root(), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode: sys.exit(f"bench: medseg fit failed:\n{r.stderr[-3000:]}")
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--jobs', type=int, default=4); ap.add_argument('--slots', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=3); ap.add_argument('--n', type=int, default=64); ap.add_argument('--size', type=int, default=64)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ensure_synthetic(tmp/'data', n=a.n, size=a.size, seed=42)  # data generation is not part of any measurement
        serial_cfg, sweep_cfg = sweep_config(tmp/'serial', a, 1), sweep_config(tmp/'sweep', a, a.slots)
        print(f"{a.jobs} jobs: train.ipynb, {a.epochs} epochs, {a.n} images of {a.size} px, {cpu_cores()} cores")
        serial = timed_sweep(serial_cfg)
        swept = timed_sweep(sweep_cfg)
        first = plan_jobs(serial_cfg)[0]
        job = read_state(first)['wall_s']
        fit = timed_fit(first, tmp)
        print(f"serial (1 slot, {cpu_cores()} threads a job): {serial:.1f} s")
        n = max(1, cpu_cores() // a.slots)
        print(f"sweep ({a.slots} slots, {n} thread{'s' * (n != 1)} a job): {swept:.1f} s")
        print(f"one job: papermill {job:.1f} s, medseg fit {fit:.1f} s, papermill overhead {job - fit:.1f} s a job")
        print(f"ratio: {swept / serial:.3f}")


if __name__ == '__main__':
    main()
