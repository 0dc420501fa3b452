"""Training-loop overhead: medseg's `train` (Lightning, checkpoints, CSV logging, metrics) against a plain
PyTorch loop over the same files, model, loss and optimizer, measured side by side in one run.

    python bench/train_loop.py [--epochs 3] [--n 96] [--size 64] [--batch 8] [--encoder resnet18] [--workers 0]

Two medseg measurements:

- **bare**: validation switched off in both, so that the figure is the cost of the training loop itself
  (medseg's default callbacks that need no validation stay on: `last.ckpt`, the learning-rate monitor, CSV
  logging, the non-finite loss guard `callbacks.nan_guard`);
- **default callbacks**: `fit` as `medseg fit` runs it, every default callback on: validation each epoch, so the
  best checkpoint by `val_mask_dice` is written as well as `last.ckpt`, the learning-rate monitor, CSV logging,
  the nan guard, plus the progress bar (`trainer.enable_progress_bar`, off in medseg's defaults since it clutters
  notebook outputs; on here, its output discarded). Early stopping and the gradient check are off by default.
  The validation loop itself is not counted (the plain loop has none); everything else in the epoch is,
  checkpoint writing included. (The test of the best checkpoint after `fit` is switched off: not a training step.)

Runs on CUDA when available (the device is printed). Prints seconds per epoch and milliseconds per step (first
epoch excluded) and ends with `ratio (default callbacks): <plain / medseg>` and `ratio: <plain / medseg bare>`
(1.0 = no overhead; the target for both: within 5% of the plain loop, a ratio of 0.95 or more).
"""
import argparse, tempfile, time
from pathlib import Path

import torch

from medseg.config import load_config, seed_everything
from medseg.data import MedDataModule
from medseg.losses import DiceBCELoss
from medseg.models import build_model
from medseg.run import train


def plain_loop(cfg, device, epochs):
    "The same job as a hand-written PyTorch loop; returns seconds per epoch (first epoch excluded)."
    seed_everything(cfg.seed)
    dm = MedDataModule(cfg.data, None, in_channels=cfg.model.in_channels, seed=cfg.seed); dm.prepare_data(); dm.setup('fit')
    model = build_model(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), **cfg.optimizer.params)
    loss_fn, times, dl = DiceBCELoss(), [], dm.train_dataloader()  # one loader: workers persist, as in Lightning
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for b in dl:
            b = dm.finish({k: b[k].to(device, non_blocking=True) for k in ('image', 'mask')})  # uint8 -> float on the device
            x, y = b['image'], b['mask']
            opt.zero_grad(set_to_none=True); loss = loss_fn(model(x), y); loss.backward(); opt.step()
        if device.type == 'cuda': torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / len(times[1:])


def medseg_loop(cfg, epochs, quiet=False):
    """medseg's `train`; seconds per epoch from its per-epoch timing callback (first epoch excluded), less the time
    of any validation loop inside the epoch (Lightning validates before `on_train_epoch_end`); also the steps per
    epoch and the callbacks the Trainer ran. `quiet` discards the progress bar's output."""
    import contextlib, io
    import lightning as L
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    class EpochTimer(L.Callback):
        def __init__(self): self.times, self.steps, self.callbacks = [], 0, []
        def on_fit_start(self, trainer, *a): self.callbacks = [type(c).__name__ for c in trainer.callbacks if c is not self]
        def on_train_epoch_start(self, *a): self.val = 0.0; self.t0 = time.perf_counter()
        def on_validation_start(self, trainer, *a):
            if not trainer.sanity_checking: sync(); self.v0 = time.perf_counter()
        def on_validation_end(self, trainer, *a):  # runs before ModelCheckpoint's (Lightning orders checkpoints last): saving is counted
            if not trainer.sanity_checking: sync(); self.val += time.perf_counter() - self.v0
        def on_train_epoch_end(self, trainer, *a):
            sync()
            self.times.append(time.perf_counter() - self.t0 - self.val); self.steps = trainer.num_training_batches
    timer = EpochTimer()
    import medseg.run as run
    orig = run.build_callbacks
    run.build_callbacks = lambda *a, **k: orig(*a, **k) + [timer]
    try:
        with contextlib.ExitStack() as quieted:
            if quiet:  # the progress bar writes to stdout (Lightning's TQDMProgressBar), its notes to stderr
                quieted.enter_context(contextlib.redirect_stdout(io.StringIO())); quieted.enter_context(contextlib.redirect_stderr(io.StringIO()))
            train(cfg)
    finally: run.build_callbacks = orig
    return sum(timer.times[1:]) / len(timer.times[1:]), timer.steps, timer.callbacks


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--epochs', type=int, default=3); p.add_argument('--n', type=int, default=96)
    p.add_argument('--size', type=int, default=64); p.add_argument('--batch', type=int, default=8)
    p.add_argument('--encoder', default='resnet18')
    p.add_argument('--workers', type=int, default=0, help='DataLoader workers (the same loader feeds both loops)')
    a = p.parse_args(argv)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    with tempfile.TemporaryDirectory() as tmp:
        common = [f'data.data_dir={tmp}/data', f'data.n_images={a.n}', f'data.im_size={a.size}', f'data.batch_size={a.batch}',
                  f'data.num_workers={a.workers}', f'model.encoder={a.encoder}', f'trainer.max_epochs={a.epochs}', f'paths.out_dir={tmp}/runs']
        cfg = load_config(overrides=common + ['trainer.limit_val_batches=0', 'paths.run_name=bench'])
        plain = plain_loop(cfg, device, a.epochs)
        ours, steps, _ = medseg_loop(cfg, a.epochs)
        full_cfg = load_config(overrides=common + ['trainer.enable_progress_bar=true', 'trainer.test_after_fit=false', 'paths.run_name=bench-defaults'])
        full, _, cbs = medseg_loop(full_cfg, a.epochs, quiet=True)
    ms = lambda t: f"{t / steps * 1e3:.1f} ms/step"
    print(f"device: {name}")
    print(f"job: smp Unet/{a.encoder}, {a.n} images {a.size}px, batch {a.batch} ({steps} steps/epoch), {a.workers} workers, {a.epochs} epochs (first excluded)")
    print(f"plain PyTorch loop:                 {plain:.3f} s/epoch  {ms(plain)}")
    print(f"medseg train (bare, no validation): {ours:.3f} s/epoch  {ms(ours)}")
    print(f"medseg train, default callbacks:    {full:.3f} s/epoch  {ms(full)}  (validation loop excluded; callbacks: {', '.join(cbs)}; nan guard on)")
    print(f"ratio (default callbacks): {plain / full:.2f}")
    print(f"ratio: {plain / ours:.2f}")


if __name__ == '__main__':
    main()
