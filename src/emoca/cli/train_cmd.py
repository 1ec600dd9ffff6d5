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
import dataclasses
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STAGES = ("emotion", "coarse", "detail", "emomlp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=STAGES)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. data.cache=DIR optimizer.lr=1e-5")
    p.add_argument("--config", help="YAML file (keys it sets replace the defaults)")
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


# ---------------------------------------------------------------------- model loading


def load_emoca(name_or_path: str, assets: str | None, with_expression: bool = False) -> Any:
    """An Emoca (released name, official folder, deca_model.tar or our saved folder),
    with a new expression encoder added when asked and the model has none (DECA)."""
    from emoca.model.emoca_model import Emoca
    from emoca.nets.encoders import expression_encoder

    model = Emoca.from_pretrained(name_or_path, assets=assets)
    if not with_expression or model.E_expression is not None:
        return model
    arch = dataclasses.replace(model.config.arch, expression_encoder=True)
    nets = dict(model.networks)
    nets["E_expression"] = expression_encoder(arch.expression_dim)
    config = dataclasses.replace(model.config, name="EMOCA-trained", arch=arch,
                                 detail_normals="emoca")
    new = Emoca(nets, model.flame, model.albedo_model, model.renderer,
                model.uv_face_eye_mask, model.fixed_uv_dis, config)
    new.face_paths = model.face_paths
    return new


def load_emotion_net(path: str | None, assets: str | None) -> Any:
    """EmotionNet from our saved folder (``config.json``) or the official ResNet50 folder
    (``None`` or ``"official"``: the one in the assets)."""
    import torch

    from emoca.model.weights import CONFIG_NAME, load_pretrained, materialize
    from emoca.nets import EmotionNet

    if path == "official":
        path = None
    if path is not None and (Path(path) / CONFIG_NAME).is_file():
        cfg, states = load_pretrained(path)
        if cfg.get("kind") != "emotion_net":
            raise ValueError(f"{path}: not an emotion network (kind {cfg.get('kind')!r})")
        with torch.device("meta"):
            net = EmotionNet(num_expressions=int(cfg["num_expressions"]))
        return materialize(net, states["emotion_net"], "cpu", "emotion_net", str(path)).eval()
    from emoca.model.emotion import EmotionRecognizer

    return EmotionRecognizer.from_pretrained(path, assets=assets).net.eval()


def load_emomlp(path: str) -> tuple[Any, list[str]]:
    """(EmoMLP, its input names) from our saved folder or an official EmoDECA folder."""
    import torch

    from emoca.model.weights import CONFIG_NAME, load_pretrained, materialize
    from emoca.nets import EmoMLP

    if (Path(path) / CONFIG_NAME).is_file():
        cfg, states = load_pretrained(path)
        if cfg.get("kind") != "emomlp":
            raise ValueError(f"{path}: not an EmoMLP (kind {cfg.get('kind')!r})")
        with torch.device("meta"):
            mlp = EmoMLP(in_dim=int(cfg["in_dim"]), hidden_dim=int(cfg["hidden_dim"]),
                         num_layers=int(cfg["num_layers"]),
                         num_expressions=int(cfg["num_expressions"]))
        return materialize(mlp, states["mlp"], "cpu", "mlp", str(path)).eval(), \
            list(cfg["inputs"])
    from emoca.model.emotion import ParameterEmotionRecognizer

    rec = ParameterEmotionRecognizer.from_folder(path)
    names = {"shape": "shape", "exp": "exp", "global_pose": "global_pose",
             "jaw_pose": "jaw_pose"}
    unsupported = [i for i in rec.inputs if i not in names]
    if unsupported:
        raise ValueError(f"{path}: EmoMLP inputs {unsupported} are not supported here")
    return rec.mlp.eval(), [names[i] for i in rec.inputs]


def codes_for(cfg_data: dict[str, Any], which: str, emoca_ref: str | None,
              assets: str | None, out_dir: Path, device: str) -> dict[str, Any] | None:
    """Codes arrays of the training (``which='train'``) or validation set: a given .npz, or
    the crop cache encoded by an EMOCA model (cached as ``<out>/codes_<which>.npz``)."""
    from emoca.data import FaceCropDataset
    from emoca.train.data import extract_codes, load_codes, save_codes

    codes_key, cache_key = ("codes", "cache") if which == "train" else ("val_codes",
                                                                        "val_cache")
    if cfg_data.get(codes_key):
        return load_codes(cfg_data[codes_key])
    if not cfg_data.get(cache_key):
        if which == "train":
            raise ValueError("emomlp needs data.codes (an .npz) or data.cache with "
                             "model.emoca (the model whose codes to learn from)")
        return None
    target = out_dir / f"codes_{which}.npz"
    if target.exists():
        return load_codes(target)
    if not emoca_ref:
        raise ValueError("data.cache given without model.emoca: which model's codes?")
    import torch

    model = load_emoca(emoca_ref, assets).to(device).eval()
    arrays = extract_codes(lambda x: model.encode(x, detail=False),
                           FaceCropDataset(cfg_data[cache_key]), device=device,
                           batch_size=int(cfg_data.get("val_batch_size") or 32),
                           progress=True)
    model.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    save_codes(target, arrays)
    return arrays


# ---------------------------------------------------------------------------- stages


def build_stage(cfg: dict[str, Any], assets: str | None, out_dir: Path,
                resuming: bool) -> tuple[Any, Any, dict[str, Any]]:
    """(LightningModule, DataModule, export config) for ``cfg['stage']``."""
    from emoca.train.data import CodesDataModule, CodesDataset, CropDataModule

    stage, data, mcfg = cfg["stage"], cfg["data"], cfg["model"]
    seed = int(cfg["trainer"].get("seed") or 0)
    lr = float(cfg["optimizer"]["lr"])

    def crops(require: tuple[str, ...] = (), sampler: str | None = None,
              k: int = 1) -> CropDataModule:
        if not data.get("cache"):
            raise ValueError("set data.cache (a folder written by emoca prepare)")
        return CropDataModule(data["cache"], data.get("val_cache"), data["val_fraction"],
                              batch_size=int(data["batch_size"]) * k,
                              val_batch_size=int(data["val_batch_size"]),
                              sampler=sampler or data["sampler"], images_per_identity=k,
                              require=require, num_workers=int(data["num_workers"]),
                              seed=seed)

    if stage == "emotion":
        from emoca.nets import EmotionNet
        from emoca.train.emotion import EmotionModule

        net = load_emotion_net(mcfg["init"], assets).train() if mcfg["init"] else \
            EmotionNet(num_expressions=int(mcfg["num_expressions"]))
        module = EmotionModule(net, "image", cfg["loss"], lr=lr, seed=seed)
        export = {"kind": "emotion_net", "num_expressions": int(net.num_expressions)}
        return module, crops(), export
    if stage == "emomlp":
        from emoca.nets import EmoMLP
        from emoca.train.emotion import EmotionModule

        device = "cuda" if _cuda_wanted(cfg) else "cpu"
        train = codes_for(data, "train", mcfg["emoca"], assets, out_dir, device)
        val = codes_for(data, "val", mcfg["emoca"], assets, out_dir, device)
        inputs = list(mcfg["inputs"])
        train_ds = CodesDataset(train, inputs)  # type: ignore[arg-type]
        val_ds = CodesDataset(val, inputs) if val is not None else None
        net = EmoMLP(in_dim=train_ds.in_dim, hidden_dim=int(mcfg["hidden_dim"]),
                     num_layers=int(mcfg["num_layers"]),
                     num_expressions=int(mcfg["num_expressions"]))
        module = EmotionModule(net, "codes", cfg["loss"], lr=lr, seed=seed)
        dm = CodesDataModule(train_ds, val_ds, data["val_fraction"],
                             batch_size=int(data["batch_size"]),
                             val_batch_size=int(data["val_batch_size"]),
                             sampler=data["sampler"], num_workers=int(data["num_workers"]),
                             seed=seed)
        export = {"kind": "emomlp", "in_dim": train_ds.in_dim,
                  "hidden_dim": int(mcfg["hidden_dim"]), "num_layers": int(mcfg["num_layers"]),
                  "num_expressions": int(mcfg["num_expressions"]), "inputs": inputs}
        return module, dm, export
    if stage == "coarse":
        from emoca.train.coarse import CoarseStage

        model = load_emoca(mcfg["emoca"], assets, with_expression=True).train()
        emotion = load_emotion_net(mcfg["emotion_net"], assets)
        module = CoarseStage(model, emotion, cfg["loss"], lr=lr,
                             init_expression=bool(mcfg["init_expression_from_flame"])
                             and not resuming)
        return module, crops(), {"kind": "emoca"}
    if stage == "detail":
        from emoca.train.detail import DetailStage

        if not mcfg["emoca"]:
            raise ValueError("set model.emoca (the coarse-stage model, e.g. runs/coarse/model)")
        model = load_emoca(mcfg["emoca"], assets).train()
        loss = cfg["loss"]
        k = int(data["images_per_identity"]) if loss["detail_exchange"] else 1
        module = DetailStage(model, loss, lr=lr, images_per_identity=k, seed=seed)
        dm = crops(sampler="group" if k > 1 else None, k=k)
        return module, dm, {"kind": "emoca"}
    raise ValueError(f"unknown stage {stage!r}")


def _cuda_wanted(cfg: dict[str, Any]) -> bool:
    import torch

    acc = str(cfg["trainer"].get("accelerator", "auto"))
    return torch.cuda.is_available() and acc in ("auto", "gpu", "cuda")


def export_model(module: Any, export: dict[str, Any], best: str | None, out: Path) -> Path:
    """Load the best checkpoint's weights (if any) and save in our safetensors format."""
    import torch

    from emoca.model.weights import save_pretrained

    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    target = out / "model"
    if export["kind"] == "emoca":
        module.model.save_pretrained(target)
    else:
        save_pretrained(target, module.export_modules(), export)
    return target


def run(args: argparse.Namespace) -> int:
    import yaml

    from emoca.train.config import load_config
    from emoca.train.runner import build_trainer, fit, resolve_resume

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
    try:
        return run(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"emoca train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
