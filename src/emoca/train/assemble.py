"""Training assembly: the models a stage starts from, its Lightning module and data, and
the export of the trained networks (used by ``emoca train`` and ``emoca evaluate``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["build_stage", "codes_for", "export_model", "load_emoca", "load_emomlp",
           "load_emotion_net"]


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

    from emoca.model.weights import save_pretrained

    if best:
        from emoca.io.safe_pickle import load_torch

        # Lightning checkpoints are pickles: read them through the restricted unpickler.
        state = load_torch(best, map_location="cpu")["state_dict"]
        module.load_state_dict(state)
    target = out / "model"
    if export["kind"] == "emoca":
        module.model.save_pretrained(target)
    else:
        save_pretrained(target, module.export_modules(), export)
    return target
