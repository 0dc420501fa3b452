"""The ready configs in configs/: each one loads, names the command that runs it, maps its source system's keys onto
medseg keys that exist, and runs as `medseg fit -c configs/<name>.yaml` (one short epoch) on the built-in synthetic
data, leaving a run folder with its config, checkpoints, metrics, test scores and plots. The tracking config runs on
the real fly videos where they are."""
import inspect, json, re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, ROOT, SHARED_DATA, run

from medseg.config import Config, config_sections, load_config, read_yaml
from medseg.run import MODES, TOOLS

CONFIGS = sorted((ROOT/'configs').glob('*.yaml'))
ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'WANDB_SILENT': 'true'}
SHORT = ['data.n_images=24', 'data.batch_size=4', 'trainer.max_epochs=1', 'trainer.limit_train_batches=2',
         'trainer.limit_val_batches=1', 'trainer.limit_test_batches=1', 'trainer.enable_progress_bar=false']  # one short epoch

def is_track(path) -> bool: return read_yaml(path).get('task') == 'track'

def load_any(path, overrides=()):
    "A medseg or a tracking config, validated."
    if is_track(path):
        from medseg.track.config import load_track_config
        return load_track_config(path, list(overrides))
    return load_config(path, list(overrides))

def on_generated_data(path) -> bool:
    "Whether `medseg fit -c path` writes its own data: the built-in synthetic set (a manifest layout with `data.generate`)."
    if is_track(path): return False
    d = load_config(path).data
    return d.generate and d.layout == 'manifest' and d.target is None and d.manifest == 'manifest.csv'

GENERATED = [p for p in CONFIGS if on_generated_data(p)]
ids = lambda ps: [p.stem for p in ps]

def test_the_ready_configs_are_there():
    names = {p.stem for p in CONFIGS}
    assert {'cxr_multitask', 'lite_classification', 'bead_segmentation', 'csi_zones', 'gtr_flies'} <= names, names
    assert {'cxr_multitask', 'lite_classification', 'bead_segmentation', 'csi_zones'} <= set(ids(GENERATED))

@pytest.mark.parametrize('path', CONFIGS, ids=ids(CONFIGS))
def test_config_loads_and_names_its_command(path):
    cfg = load_any(path)
    assert f'medseg fit -c configs/{path.name}' in path.read_text(), f"{path.name}: its header should say how to run it"
    if path in GENERATED: assert not Path(str(cfg.data.data_dir)).is_absolute()  # under the project, like the default data

# ---- the comment block that maps the source system's keys to medseg's ----

MAPPING = re.compile(r'^#\s{3}(?P<src>\S.*?)\s+->\s+(?P<dst>.+)$')

def mapping(path) -> list[tuple[str, list[str], bool]]:
    "`(source key, [medseg keys and commands in backticks], whether the line is only a note)` for each `#   source -> medseg` comment line."
    out = []
    for line in path.read_text().splitlines():
        m = MAPPING.match(line)
        if m: out.append((m['src'], re.findall(r'`([^`]+)`', m['dst'].split('   (')[0]), m['dst'].startswith('(')))
    return out

def schema_keys(model) -> dict:
    "Every dotted key of a config class (`heads[]` for one entry of a list): its field, or for a section the names of its keys."
    keys = {f"{path}.{f.alias or n}".lstrip('.'): f for path, m, _ in config_sections(model) for n, f in m.model_fields.items()}
    return {**keys, **{path: [f.alias or n for n, f in m.model_fields.items()] for path, m, _ in config_sections(model) if path}}

def trainer_args() -> set:
    from lightning import Trainer
    return set(inspect.signature(Trainer.__init__).parameters) - {'self'}

def key_problem(key:str, cfg, keys:dict) -> str|None:
    "Why `key` is not a key of `cfg`'s schema, or None when it is (a free mapping such as `optimizer.params` takes any key below it)."
    heads = {h.name for h in getattr(cfg, 'heads', [])}
    for name in re.findall(r'heads\[(\w+)\]', key):
        if name not in heads: return f"{key}: the config has no head {name!r} ({', '.join(sorted(heads))})"
    k = re.sub(r'heads\[\w+\]', 'heads[]', key)
    parts = k.split('.')
    if k in keys: return None
    if parts[0] == 'trainer' and len(parts) == 2 and parts[1] in trainer_args(): return None  # any Trainer argument
    for i in range(len(parts) - 1, 0, -1):
        pre, f = '.'.join(parts[:i]), keys.get('.'.join(parts[:i]))
        if isinstance(f, list): return f"{key}: no such config key ({pre} has {', '.join(f)})"  # a section
        if f is not None: return None if 'dict' in str(f.annotation) else f"{key}: {pre} takes no keys below it"  # a free mapping (params) or a value
    return f"{key}: no such config key"

def command_problem(cmd:str, cfg, keys:dict) -> str|None:
    "Why a `medseg MODE ...` in the mapping would not run: an unknown mode, or an override of an unknown key."
    words = cmd.split()
    if words[1] not in {*MODES, *TOOLS}: return f"{cmd}: no mode {words[1]!r}"
    return next((p for w in words[2:] if '=' in w and not w.startswith('-') for p in [key_problem(w.split('=')[0], cfg, keys)] if p), None)

@pytest.mark.parametrize('path', [p for p in CONFIGS if mapping(p)], ids=ids([p for p in CONFIGS if mapping(p)]))
def test_mapping_names_real_keys(path):
    "Every medseg key (or command) the comment block maps a source key to exists in the schema of this config."
    cfg = load_any(path)
    keys = schema_keys(type(cfg))
    rows = mapping(path)
    assert len(rows) >= 10, f"{path.name}: only {len(rows)} mapping lines"
    problems = []
    for src, targets, note in rows:
        if not targets and not note: problems.append(f"{src}: maps to no `key` (or a note in parentheses)")
        for t in targets:
            p = command_problem(t, cfg, keys) if t.startswith('medseg ') else key_problem(t, cfg, keys)
            if p: problems.append(f"{src} -> {p}")
    assert not problems, f"{path.name}:\n" + '\n'.join(problems)

def test_mapping_check_catches_wrong_keys():
    cfg = load_config(ROOT/'configs'/'cxr_multitask.yaml'); keys = schema_keys(Config)
    assert key_problem('heads[tags].f_beta', cfg, keys) is None and key_problem('optimizer.params.lr', cfg, keys) is None
    assert key_problem('trainer.check_val_every_n_epoch', cfg, keys) is None
    assert 'no such config key' in key_problem('callbacks.early_stopping.restore_best_weights', cfg, keys)
    assert "no head 'nodules'" in key_problem('heads[nodules].alpha', cfg, keys)
    assert 'takes no keys below it' in key_problem('data.im_size.x', cfg, keys)
    assert "no mode 'train'" in command_problem('medseg train -c CONFIG', cfg, keys)
    assert 'data.predict_folder: no such config key' in command_problem('medseg predict -c CONFIG data.predict_folder=DIR', cfg, keys)

def test_lite_classification_study_keys_apply():
    "The `optuna:` block of lite_classification searches keys the config takes, at both ends of each range."
    from medseg.tune import check_search_spaces
    cfg = load_config(ROOT/'configs'/'lite_classification.yaml')
    check_search_spaces(cfg)
    assert cfg.optuna.metric == cfg.checkpoint.monitor == 'val_tags_f1' and cfg.optimizer.target == 'torch.optim.Adam'

# ---- running them ----

def prepare_data_writes(kind:str, tmp_path) -> bool:
    "Whether the data module writes the synthetic set that `data.synthetic` names."
    from medseg.config import DataConfig
    from medseg.data import MedDataModule
    from medseg.synthetic import synthetic_kind
    d = tmp_path/f'probe_{kind}'
    MedDataModule(DataConfig(data_dir=d, synthetic=kind, n_images=4, im_size=32)).prepare_data()
    return synthetic_kind(d/'manifest.csv') == kind

def test_data_module_writes_the_chest_set(tmp_path):
    assert prepare_data_writes('chest', tmp_path) and prepare_data_writes('blobs', tmp_path)
    from medseg.config import ConfigError, DataConfig
    from medseg.data import MedDataModule
    with pytest.raises(ConfigError, match="holds the 'blobs' synthetic set, not 'chest'"):  # a folder of the other kind is refused, not read
        MedDataModule(DataConfig(data_dir=tmp_path/'probe_blobs', synthetic='chest', n_images=4, im_size=32)).prepare_data()

@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    "W&B's caches and staging folders in `tmp_path` (not under ~)."
    for k in ('WANDB_DATA_DIR', 'WANDB_CACHE_DIR', 'WANDB_CONFIG_DIR', 'WANDB_ARTIFACT_DIR'): monkeypatch.setenv(k, str(tmp_path/'wandb-home'))

def fit_config(path, tmp_path, extra=()):
    "`medseg fit -c path` for one short epoch, its data and runs in `tmp_path`; returns the config and the run folder."
    over = [*SHORT, f'data.data_dir={tmp_path}/data', f'paths.out_dir={tmp_path}/runs', *extra]
    cfg = load_config(path, over)
    r = run([str(BIN/'medseg'), 'fit', '-c', str(path), *over], env=ENV)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return cfg, tmp_path/'runs'/cfg.paths.run_name, r.stdout

def check_run_folder(cfg, rd:Path, test_metrics) -> dict:
    "The run folder of a fit: resolved config, versions, checkpoints, metrics, test scores and plots; returns summary.json."
    saved = load_config(rd/'config.yaml')
    assert [h.name for h in saved.heads] == [h.name for h in cfg.heads] and saved.model == cfg.model
    assert (rd/'versions.json').exists() and (rd/'checkpoints'/'last.ckpt').exists()
    s = json.loads((rd/'summary.json').read_text())
    monitors = cfg.checkpoint.monitor if isinstance(cfg.checkpoint.monitor, list) else [cfg.checkpoint.monitor]
    assert s['monitor'] == monitors[0] and Path(s['best_ckpt']).exists() and set(s['best']) == set(monitors), s
    m = pd.read_csv(rd/'metrics.csv')
    assert set(monitors) <= set(m.columns), sorted(m.columns)
    missing = [k for k in test_metrics if k not in s['test']]
    assert not missing, f"test scores lack {missing}: {sorted(s['test'])}"
    assert (rd/'test_metrics.csv').exists()
    plots = sorted(p.name for p in (rd/'plots').glob('*.png'))
    assert plots and all((rd/'plots'/p).stat().st_size > 1000 for p in plots), plots
    return s

@pytest.mark.slow
def test_cxr_multitask_runs(tmp_path):
    cfg, rd, out = fit_config(ROOT/'configs'/'cxr_multitask.yaml', tmp_path)
    s = check_run_folder(cfg, rd, ['test_tags_fbeta', 'test_tags_f1', 'test_lungs_dice', 'test_lungs_dice_right_lung', 'test_age_mae'])
    assert s['monitor'] == 'val_tags_fbeta' and 'test_tags_fbeta' in out  # the test table is printed
    man = pd.read_csv(tmp_path/'data'/'manifest.csv')
    assert 'zones' in man.columns and len(man) == 24  # the chest set, written where data.data_dir says

@pytest.mark.slow
def test_csi_zones_runs(tmp_path):
    cfg, rd, _ = fit_config(ROOT/'configs'/'csi_zones.yaml', tmp_path)
    check_run_folder(cfg, rd, ['test_csi_f1', 'test_csi_f1_zone5', 'test_csi_score_mae', 'test_csi_severity_acc'])
    assert cfg.callbacks.early_stopping.min_delta == 0.001 and cfg.model.encoder == 'tu-densenet121'
    assert (rd/'plots'/'csi_zones.png').exists()

@pytest.mark.slow
def test_lite_classification_runs(tmp_path):
    cfg, rd, _ = fit_config(ROOT/'configs'/'lite_classification.yaml', tmp_path)
    check_run_folder(cfg, rd, ['test_tags_f1', 'test_tags_auroc'])

@pytest.mark.slow
def test_bead_segmentation_runs_with_wandb_offline(tmp_path, wandb_home):
    pytest.importorskip('wandb')
    from medseg.loggers import wandb_history
    cfg, rd, _ = fit_config(ROOT/'configs'/'bead_segmentation.yaml', tmp_path)
    s = check_run_folder(cfg, rd, ['test_beads_dice', 'test_beads_iou'])
    assert cfg.logging.wandb_mode == 'offline' and s['monitor'] == 'val_loss'
    assert 'val_loss' in wandb_history(rd).columns  # the W&B run, offline, in the run folder

FLIES = SHARED_DATA/'sleap_flies'

@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not (FLIES/'two_flies.slp').exists(), reason=f'{FLIES} is absent (the real fly videos that gtr_flies.yaml trains on)')
def test_gtr_flies_runs(tmp_path):
    "`medseg fit -c configs/gtr_flies.yaml`, two epochs: the tracking run folder with its MOT scores on the held-out frames."
    r = run([str(BIN/'medseg'), 'fit', '-c', str(ROOT/'configs'/'gtr_flies.yaml'), f'paths.out_dir={tmp_path}/runs', 'trainer.max_epochs=2',
             'trainer.enable_progress_bar=false'], env=ENV)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rd = tmp_path/'runs'/'gtr_flies'
    s = json.loads((rd/'summary.json').read_text())
    assert s['monitor'] == 'val_loss' and {'test_mota', 'test_idf1'} <= set(s['test']) and (rd/'checkpoints'/'last.ckpt').exists()
    assert yaml.safe_load((rd/'config.yaml').read_text())['task'] == 'track'
