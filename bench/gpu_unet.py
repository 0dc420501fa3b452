#!/usr/bin/env python
"""Training-step throughput of smp Unet/resnet34 in four cumulative configurations, with model FLOPs utilisation.

What `trainer.precision: bf16-mixed`, `model.channels_last: true` and `model.compile: true` give a medseg user,
measured on the raw training step (forward + Dice/BCE loss + backward + AdamW step) on random data on the device:

    fp32 eager                 the default (on a GPU, cuDNN convolutions already use TF32: torch's default)
    bf16 autocast              torch.autocast(device, dtype=torch.bfloat16), what Lightning's `bf16-mixed` does
    + channels_last            model and input batches in channels-last memory format (`model.channels_last`)
    + torch.compile            the network compiled in place (`model.compile`)

The network is built by medseg itself (`medseg.models.build_model` with a `ModelConfig`, then
`medseg.task.prepare_model`, as `medseg.run.build_task` does), the loss is `medseg.losses.DiceBCELoss`, the
optimizer AdamW with medseg's default parameters. FLOPs per training step (forward + backward, the
convolutions and matrix products) are counted once with `torch.utils.flop_counter.FlopCounterMode`; the
reference peak is a large bf16 matrix product timed in the same run, and MFU = model FLOP/s / that.

    python bench/gpu_unet.py                                   # GPU: --size 256 --batch 64; CPU: toy sizes
    python bench/gpu_unet.py --size 256 --batch 64 --steps 30 --warmup 5 --encoder resnet34
    python bench/gpu_unet.py --size 64 --batch 2 --steps 2 --warmup 1 --no-compile   # a CPU check

Each row is printed as it finishes (with its warm-up time: the compile time for the last), then a table, and
the raw table ends with `ratio: <best images/s / fp32 eager images/s>`. A compilation that fails is skipped with a
note; `--no-compile` skips it (on a CPU it needs a C++ compiler and takes minutes).

With `--fit`, the same configurations also run through `medseg.run.train` (Lightning `Trainer.fit` with medseg's
default callbacks, validation off) on synthetic images, by the config overrides `trainer.precision`,
`model.channels_last` and `model.compile`: a second group of rows after the raw table's `ratio:` line, ending
with `ratio (fit):`. `--fit-only` runs only that group (`bench/gpu.sh` runs it last, with the time left).
"""
import argparse, contextlib, io, math, sys, tempfile, time, warnings

import torch

from medseg.config import ModelConfig
from medseg.losses import DiceBCELoss
from medseg.models import build_model
from medseg.task import prepare_model

CONFIGS = [  # name, bf16 autocast, channels_last, compile: cumulative
    ('fp32 eager', False, False, False),
    ('bf16 autocast', True, False, False),
    ('+ channels_last', True, True, False),
    ('+ torch.compile', True, True, True),
]

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; the first name found in the device name wins.
VENDOR_BF16 = [('GH200', 989.4), ('H200', 989.4), ('H100 PCIe', 756.0), ('H100 NVL', 835.0), ('H100', 989.4), ('H800', 989.4),
               ('B200', 2250.0), ('B100', 1750.0), ('A100', 312.0), ('A800', 312.0), ('L40S', 362.1), ('L40', 181.0),
               ('L4', 121.0), ('A10G', 70.0), ('A10', 125.0), ('RTX 4090', 165.2), ('RTX 6000 Ada', 364.2)]


def vendor_peak(name:str):
    "The data-sheet dense bf16 TFLOP/s of a device, or None when it is not in the table."
    return next((p for k, p in VENDOR_BF16 if k in name), None)


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def matmul_tflops(device, n:int, reps:int=10, warmup:int=3) -> float:
    "Achieved TFLOP/s of an n x n x n bf16 matrix product on `device` (mean of `reps` after `warmup`)."
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    for _ in range(warmup): a @ b
    sync(device); t0 = time.perf_counter()
    for _ in range(reps): a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def make_model(a, device, channels_last=False, compile=False):
    "The network as medseg builds it for `model.arch: Unet`, `model.encoder`, and `model.channels_last`/`model.compile`."
    torch.manual_seed(0)
    cfg = ModelConfig(arch='Unet', encoder=a.encoder, encoder_weights=None, in_channels=a.in_channels, classes=1,
                      channels_last=channels_last, compile=compile)
    return prepare_model(build_model(cfg).to(device), cfg.channels_last, cfg.compile)


def batch(a, device, channels_last=False):
    "One random batch: images (float32, as `dm.finish` makes them) and 0/1 masks, on the device."
    g = torch.Generator(device='cpu').manual_seed(0)
    x = torch.randn(a.batch, a.in_channels, a.size, a.size, generator=g).to(device)
    y = (torch.rand(a.batch, 1, a.size, a.size, generator=g) > 0.7).float().to(device)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)  # as `MultiTask.forward` does with `model.channels_last`
    return x, y


def make_step(model, opt, loss_fn, device, bf16):
    "One training step: forward and loss under autocast (as Lightning's `bf16-mixed` wraps `training_step`), backward, AdamW."
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with ctx(): loss = loss_fn(model(x), y)
        loss.backward(); opt.step()
        return loss
    return step


def count_flops(a, device) -> float:
    "FLOPs of one training step's forward + backward (fp32 eager; precision and compilation do not change the count)."
    from torch.utils.flop_counter import FlopCounterMode
    model, (x, y) = make_model(a, device), batch(a, device)
    with FlopCounterMode(display=False) as fc:
        DiceBCELoss()(model(x), y).backward()
    return float(fc.get_total_flops())


def time_config(a, device, bf16, channels_last, compile):
    "Seconds per training step (warm-up steps excluded) and the seconds the warm-up took."
    model = make_model(a, device, channels_last, compile)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)  # medseg's default optimizer
    step, (x, y) = make_step(model, opt, DiceBCELoss().to(device), device, bf16), batch(a, device, channels_last)
    model.train()
    sync(device); t0 = time.perf_counter()
    for _ in range(max(1, a.warmup)): step(x, y)  # the first step compiles; later warm-ups settle caches and the allocator
    sync(device); warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(a.steps): loss = step(x, y)
    sync(device)
    dt = (time.perf_counter() - t0) / a.steps
    if not torch.isfinite(loss): raise FloatingPointError(f"non-finite loss {loss.item()}")
    del model, opt, step
    if device.type == 'cuda': torch.cuda.empty_cache()
    return dt, warm


def fit_step_times(a, device, names, flops, peak):
    """Seconds per training step of `medseg.run.train` (Lightning `Trainer.fit`, medseg's default callbacks, validation off)
    for each configuration, through config overrides; the first epoch (warm-up, compilation) excluded."""
    import lightning as L
    import medseg.run as run
    from medseg.config import load_config
    from medseg.synthetic import make_synthetic
    class StepTimer(L.Callback):  # epoch time of every epoch after the first, divided by its steps
        def __init__(self): self.times = []
        def on_train_epoch_start(self, trainer, *_): sync(device); self.t0 = time.perf_counter()
        def on_train_epoch_end(self, trainer, *_):
            sync(device); self.times.append((time.perf_counter() - self.t0) / trainer.num_training_batches)
            if len(self.times) == 1: self.first = time.perf_counter() - self.t0
    import logging
    for k in ('lightning.pytorch', 'lightning.fabric'): logging.getLogger(k).setLevel(logging.ERROR)  # no banners between the tables
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        n = math.ceil(a.batch * a.fit_batches / 0.9) + a.batch  # 90% train: at least `fit_batches` full batches
        make_synthetic(f'{tmp}/data', n=n, size=a.size, seed=0)
        base = [f'data.data_dir={tmp}/data', f'data.n_images={n}', f'data.im_size={a.size}', f'data.batch_size={a.batch}',
                f'data.num_workers={a.workers}', 'data.split_ratios=[0.9,0.1]', 'data.drop_last=true', f'trainer.limit_train_batches={a.fit_batches}',
                'data.cache=true', 'data.check_data=exists',
                f'data.pin_memory={device.type == "cuda"}', f'model.encoder={a.encoder}', f'model.in_channels={a.in_channels}',
                f'trainer.max_epochs={a.fit_epochs}', 'trainer.limit_val_batches=0', 'trainer.test_after_fit=false',
                f'paths.out_dir={tmp}/runs']
        for i, (name, bf16, cl, comp) in enumerate(CONFIGS):
            if name not in names: continue
            over = base + [f'paths.run_name=fit-{i}', f'trainer.precision={"bf16-mixed" if bf16 else "32-true"}',
                           f'model.channels_last={str(cl).lower()}', f'model.compile={str(comp).lower()}']
            timer, orig = StepTimer(), run.build_callbacks
            run.build_callbacks = lambda *x, **k: orig(*x, **k) + [timer]
            try:
                with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # quiet: Lightning's notes between the tables
                    warnings.simplefilter('ignore'); run.train(load_config(overrides=over))
                out[name] = dt = sum(timer.times[1:]) / len(timer.times[1:])
                print(f"fit: {name:<16} {a.batch / dt:9.1f} images/s  {dt * 1e3:8.1f} ms/step  {flops / dt / 1e12:7.2f} TFLOP/s  "
                      f"MFU {flops / dt / 1e12 / peak:6.1%}  (first epoch {timer.first:.1f} s)", flush=True)
            except Exception as e:
                print(f"note: fit with {name} failed, row skipped ({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})")
            finally: run.build_callbacks = orig
    return out


def raw_rows(a, device, flops, peak):
    "(config, seconds per step) of the raw training step, printed as each finishes; a failing compilation is skipped with a note."
    rows = []
    for cname, bf16, cl, comp in CONFIGS:
        if comp and a.no_compile: print(f"note: {cname} skipped (--no-compile)"); continue
        try: dt, warm = time_config(a, device, bf16, cl, comp)
        except Exception as e:
            if not comp: raise
            msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ''
            print(f"note: {cname} skipped: compilation failed ({type(e).__name__}: {msg})"); continue
        rows.append((cname, dt))
        print(f"{cname:<16} {a.batch / dt:9.1f} images/s  {dt * 1e3:8.1f} ms/step  {flops / dt / 1e12:7.2f} TFLOP/s  "
              f"MFU {flops / dt / 1e12 / peak:6.1%}  (warm-up {warm:.1f} s)", flush=True)
    return rows


def table(rows, flops, peak, vendor, batch, base):
    "The results as a Markdown table; `rows` are (config, seconds per step)."
    head = ['config', 'images/s', 'step ms', 'model TFLOP/s', 'MFU (matmul)'] + (['MFU (data sheet)'] if vendor else []) + ['vs fp32 eager']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    for name, dt in rows:
        tf = flops / dt / 1e12
        cells = [name, f'{batch / dt:.0f}' if batch / dt >= 100 else f'{batch / dt:.1f}', f'{dt * 1e3:.1f}', f'{tf:.2f}', f'{tf / peak:.1%}'] + ([f'{tf / vendor:.1%}'] if vendor else [])
        lines.append('| ' + ' | '.join(cells + [f'{base / dt:.2f}x' if base else '-']) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=None, help='image side (default: 256 on a GPU, 64 on a CPU)')
    p.add_argument('--batch', type=int, default=None, help='batch size (default: 64 on a GPU, 4 on a CPU)')
    p.add_argument('--steps', type=int, default=None, help='timed steps per configuration (default: 50 on a GPU, 3 on a CPU)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps first (default: 5 on a GPU, 1 on a CPU)')
    p.add_argument('--encoder', default='resnet34')
    p.add_argument('--in-channels', type=int, default=3, choices=[1, 3])
    p.add_argument('--matmul-n', type=int, default=None, help='side of the reference bf16 matrix product (default: 8192 on a GPU, 1024 on a CPU)')
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile configuration')
    p.add_argument('--cudnn-benchmark', action='store_true', help='set torch.backends.cudnn.benchmark (off by default, as in a Lightning Trainer)')
    p.add_argument('--fit', action='store_true', help='also run each configuration through medseg.run.train (Lightning Trainer.fit)')
    p.add_argument('--fit-only', action='store_true', help='only the --fit rows (the matmul and the FLOP count still run: MFU needs them)')
    p.add_argument('--fit-epochs', type=int, default=3, help='--fit: epochs per run (the first excluded)')
    p.add_argument('--fit-batches', type=int, default=8, help='--fit: batches per epoch')
    p.add_argument('--workers', type=int, default=0, help='--fit: DataLoader workers')
    a = p.parse_args(argv)
    if (a.fit or a.fit_only) and a.fit_epochs < 2: p.error('--fit-epochs must be at least 2 (the first is not timed)')
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    gpu = device.type == 'cuda'
    for k, g, c in (('size', 256, 64), ('batch', 64, 4), ('steps', 50, 3), ('warmup', 5, 1), ('matmul_n', 8192, 1024)):
        if getattr(a, k) is None: setattr(a, k, g if gpu else c)
    if a.cudnn_benchmark: torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if gpu else f'CPU ({torch.get_num_threads()} threads)'
    vendor = vendor_peak(name) if gpu else None

    print(f"device: {name}" + (f", {torch.cuda.get_device_properties(0).multi_processor_count} SMs" if gpu else '')
          + f"; torch {torch.__version__}" + (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if gpu else ''))
    if gpu: print(f"fp32 settings: cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} (convolutions in TF32), "
                  f"matmul precision {torch.get_float32_matmul_precision()!r}, cudnn.benchmark={torch.backends.cudnn.benchmark}")
    print(f"job: smp Unet/{a.encoder} (medseg build_model), {a.in_channels}-channel {a.size}x{a.size}, batch {a.batch}, "
          f"Dice+BCE, AdamW" + ('' if a.fit_only else f"; {a.warmup} warm-up + {a.steps} timed steps per configuration"))
    peak = matmul_tflops(device, a.matmul_n)
    print(f"bf16 matmul {a.matmul_n}^3: {peak:.1f} TFLOP/s measured" + (f" ({peak / vendor:.0%} of the data sheet's {vendor:g} dense)" if vendor else ''))
    flops = count_flops(a, device)
    print(f"FLOPs per training step (forward + backward, FlopCounterMode): {flops / 1e9:.1f} GFLOP ({flops / a.batch / 1e9:.2f} per image)")

    rows = [] if a.fit_only else raw_rows(a, device, flops, peak)
    if rows:
        base = dict(rows).get('fp32 eager')
        print(f"\nraw training step on {name}, {a.batch} x {a.in_channels}x{a.size}x{a.size}; MFU against the bf16 matmul measured above "
              f"({peak:.1f} TFLOP/s)" + (f" and the data sheet's {vendor:g}" if vendor else ''))
        print(table(rows, flops, peak, vendor, a.batch, base))
        best_name, best = min(rows, key=lambda r: r[1])
        full = dict(rows).get('+ torch.compile')
        print(f"best: {best_name}, {a.batch / best:.1f} images/s, MFU {flops / best / 1e12 / peak:.1%}" + (f" (targets on an H100/H200: "
              f"bf16 + channels_last + compile >= 2x fp32 eager, MFU >= 30%)" if gpu else ''))
        if full: print(f"ratio (bf16 + channels_last + compile): {base / full:.2f}")
        print(f"ratio: {base / best:.2f}", flush=True)  # before the --fit rows, so that a time limit during them keeps it

    if a.fit or a.fit_only:
        names = [c[0] for c in CONFIGS if not (c[3] and a.no_compile)]
        fit = fit_step_times(a, device, names, flops, peak)
        fb = fit.get('fp32 eager')
        print(f"\nmedseg.run.train (Lightning Trainer.fit, medseg's default callbacks, validation off) on {name}: {a.fit_batches} batch(es) "
              f"of {a.batch} synthetic {a.size}px images per epoch (cache: true, {a.workers} workers), {a.fit_epochs} epochs, the first "
              f"excluded; overrides trainer.precision=bf16-mixed, model.channels_last=true, model.compile=true")
        print(table([(f'fit: {k}', v) for k, v in fit.items()], flops, peak, vendor, a.batch, fb))
        if len(fit) > 1 and fb: print(f"ratio (fit): {fb / min(fit.values()):.2f}")
        if not fit: return 1
    return 0 if rows or a.fit_only else 1


if __name__ == '__main__':
    sys.exit(main())
