"""Training-loop overhead: medseg's `train` (Lightning, checkpoints, CSV logging, metrics) against a plain
PyTorch loop over the same files, model, loss and optimizer, measured side by side in one run.

    python bench/train_loop.py [--epochs 3] [--n 96] [--size 64] [--batch 8] [--encoder resnet18] [--workers 0]

Validation is switched off in both so that the figure is the cost of the training loop itself. Runs on
CUDA when available (the device is printed). Ends with `ratio: <plain s/epoch / medseg s/epoch>`
(1.0 = no overhead; above 0.9 is the target).
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


def medseg_loop(cfg, epochs):
    "medseg's `train`; seconds per epoch from its per-epoch timing callback (first epoch excluded)."
    import lightning as L
    class EpochTimer(L.Callback):
        def __init__(self): self.times = []
        def on_train_epoch_start(self, *a): self.t0 = time.perf_counter()
        def on_train_epoch_end(self, trainer, *a):
            if torch.cuda.is_available(): torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t0)
    timer = EpochTimer()
    import medseg.run as run
    orig = run.build_callbacks
    run.build_callbacks = lambda *a, **k: orig(*a, **k) + [timer]
    try: train(cfg)
    finally: run.build_callbacks = orig
    return sum(timer.times[1:]) / len(timer.times[1:])


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
        cfg = load_config(overrides=[f'data.data_dir={tmp}/data', f'data.n_images={a.n}', f'data.im_size={a.size}',
                                     f'data.batch_size={a.batch}', f'data.num_workers={a.workers}', f'model.encoder={a.encoder}', f'trainer.max_epochs={a.epochs}',
                                     'trainer.limit_val_batches=0', f'paths.out_dir={tmp}/runs', 'paths.run_name=bench'])
        plain = plain_loop(cfg, device, a.epochs)
        ours = medseg_loop(cfg, a.epochs)
    print(f"device: {name}")
    print(f"job: smp Unet/{a.encoder}, {a.n} images {a.size}px, batch {a.batch}, {a.workers} workers, {a.epochs} epochs (first excluded)")
    print(f"plain PyTorch loop: {plain:.3f} s/epoch")
    print(f"medseg train:       {ours:.3f} s/epoch")
    print(f"ratio: {plain / ours:.2f}")


if __name__ == '__main__':
    main()
