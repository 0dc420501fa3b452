"Runs that start together on one data folder (DDP ranks, a papermill sweep) generate the synthetic set once, intact."
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from PIL import Image

import medseg.synthetic as syn


def _ensure(args):
    "One process: time its call and report the manifest and whether it was the one that wrote the data."
    data_dir, go = args
    while time.time() < go: time.sleep(0.001)  # start together
    calls = []
    orig = syn.make_synthetic
    syn.make_synthetic = lambda *a, **k: calls.append(1) or orig(*a, **k)
    man = syn.ensure_synthetic(data_dir, n=48, size=64, seed=3)
    return str(man), len(calls)


def test_parallel_runs_generate_once(tmp_path):
    ref = tmp_path/'ref'; syn.make_synthetic(ref, n=48, size=64, seed=3)
    shared = tmp_path/'data'/'synthetic'
    go = time.time() + 2.0
    with mp.get_context('spawn').Pool(4) as pool:
        out = pool.map(_ensure, [(shared, go)] * 4)
    assert {m for m, _ in out} == {str(shared/'manifest.csv')}
    assert sum(c for _, c in out) == 1  # one process wrote, three waited and reused
    assert syn.folder_digest(shared) == syn.folder_digest(ref)  # byte-identical to a lone run
    for p in (shared/'images').glob('*.png'): np.asarray(Image.open(p))  # every file decodes
