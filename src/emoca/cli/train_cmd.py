"""``emoca train STAGE``: train the emotion network, EMOCA's coarse or detail stage, or EmoMLP.

Examples::

    emoca prepare data/affectnet --affectnet training.csv --images Manually_Annotated_Images
    emoca train emotion --config configs/emotion.yaml data.cache=data/affectnet
    emoca train coarse --config configs/coarse.yaml data.cache=data/affectnet --devices 4 \\
        --strategy ddp --precision 16-mixed
    emoca train detail --config configs/detail.yaml data.cache=data/faces \\
        model.emoca=runs/coarse/model
    emoca train emomlp --config configs/emomlp.yaml data.cache=data/affectnet \\
        model.emoca=runs/detail/model
    emoca train coarse ... --resume last          # continue exactly where it stopped

Settings: the stage's official defaults, then ``--config FILE``, then ``key=value``
overrides, then the Lightning flags (``--devices`` etc.; see
:mod:`emoca.train.runner`). The run folder gets ``config.yaml`` (what was used),
``checkpoints/`` (Lightning, for ``--resume``), ``logs/`` (CSV) and ``model/`` (the trained
networks in the project's safetensors format: ``Emoca.from_pretrained(out/model)`` for the
coarse/detail stages; ``emoca evaluate --emotion-net / --emomlp out/model``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

STAGES = ("emotion", "coarse", "detail", "emomlp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=STAGES)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. data.cache=DIR optimizer.lr=1e-5")
    p.add_argument("--config", help="YAML file (keys it sets replace the defaults)")
    p.add_argument("--print-config", action="store_true",
                   help="print the stage's official settings as commented YAML and exit")
    p.add_argument("--out", help="run folder (default: the config's out_dir)")
    p.add_argument("--resume", help="'last' or a Lightning checkpoint to continue from")
    p.add_argument("--assets", help="assets folder (FLAME, DECA/EMOCA and emotion-net files)")
    g = p.add_argument_group("Lightning (one GPU, many GPUs, many nodes, precision)")
    g.add_argument("--accelerator", help="cpu, gpu, auto (trainer.accelerator)")
    g.add_argument("--devices", help="devices per node: a number, a list or auto")
    g.add_argument("--num-nodes", type=int, help="nodes (multi-node DDP)")
    g.add_argument("--strategy", help="auto, ddp, ddp_spawn, fsdp, ...")
    g.add_argument("--precision", help="32-true, 16-mixed, bf16-mixed")
    g.add_argument("--max-steps", type=int)
    g.add_argument("--max-epochs", type=int)


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for flag, key in (("accelerator", "accelerator"), ("devices", "devices"),
                      ("num_nodes", "num_nodes"), ("strategy", "strategy"),
                      ("precision", "precision"), ("max_steps", "max_steps"),
                      ("max_epochs", "max_epochs")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"trainer.{key}={value}")
    return out


def run(args: argparse.Namespace) -> int:
    import yaml

    from emoca.train.assemble import build_stage, export_model
    from emoca.train.config import load_config
    from emoca.train.runner import build_trainer, fit, resolve_resume

    if args.print_config:
        from emoca.train.config import packaged_config

        print(packaged_config(args.stage).read_text(encoding="utf-8"), end="")
        return 0
    cfg = load_config(args.stage, args.config, list(args.overrides) + _flag_overrides(args))
    out = Path(args.out or cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    ckpt = resolve_resume(args.resume, out)
    module, dm, export = build_stage(cfg, args.assets, out, resuming=ckpt is not None)
    trainer = build_trainer(cfg["trainer"], out)
    if trainer.is_global_zero:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    best = fit(module, dm, trainer, ckpt_path=ckpt, seed=cfg["trainer"].get("seed"))
    if not trainer.is_global_zero:
        return 0
    target = export_model(module, export, best, out)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    print(f"stage {args.stage}: {trainer.global_step} steps, {trainer.current_epoch} epochs; "
          f"world size {trainer.world_size}")
    for k in sorted(metrics):
        print(f"  {k} = {metrics[k]:.6g}")
    print(f"best checkpoint: {best}")
    print(f"model saved to: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``emoca train`` as ``python -m emoca.cli.train_cmd`` (also what Lightning's DDP
    launcher re-executes for the other processes)."""
    import sys

    parser = argparse.ArgumentParser(prog="emoca train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from emoca.cli.main import user_message

    try:
        return run(args)
    except Exception as exc:
        msg = user_message(exc)
        if msg is None:
            raise
        print(f"emoca train: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
