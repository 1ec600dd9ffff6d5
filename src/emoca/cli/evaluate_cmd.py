"""``emoca evaluate``: Table-1 metrics of emotion from images and from 3D codes, side by side.

Examples::

    # the paper's comparison on AffectNet's validation set (prepared with emoca prepare)
    emoca evaluate data/affectnet_val -o eval/ --emotion-net official \\
        --emomlp EmotionRecognition/face_reconstruction_based/EMOCA-emorec --emoca EMOCA
    # models trained with emoca train
    emoca evaluate data/val -o eval/ --emotion-net runs/emotion/model \\
        --emomlp runs/emomlp/model --emoca runs/detail/model

Writes ``report.md``, ``metrics.csv``, ``metrics.json``, ``confusion_<route>.png`` and
``predictions_<route>.csv`` into the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROUTE_IMAGE = "image (emotion net)"
ROUTE_CODES = "3D codes (EmoMLP)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="labelled crop cache (emoca prepare)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--emotion-net", help="'official' (assets) or a folder: image route")
    p.add_argument("--emomlp", help="EmoMLP folder (ours or EmoDECA): 3D-code route")
    p.add_argument("--emoca", help="model whose codes the EmoMLP reads (name or folder)")
    p.add_argument("--codes", help="codes .npz for the EmoMLP instead of running --emoca")
    p.add_argument("--assets", help="assets folder")
    p.add_argument("--name", help="dataset name for the report title")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from emoca.data import FaceCropDataset
    from emoca.train.assemble import load_emoca, load_emomlp, load_emotion_net
    from emoca.train.data import CodesDataset, extract_codes, load_codes
    from emoca.train.evaluate import EvaluationReport, predict_emotion

    if not args.emotion_net and not args.emomlp:
        raise ValueError("give --emotion-net and/or --emomlp (the routes to evaluate)")
    device = torch.device(args.device)
    progress = not args.no_progress
    crops = FaceCropDataset(args.data)
    if len(crops) == 0:
        raise ValueError(f"{args.data}: no crops")
    predictions = {}
    if args.emotion_net:
        ref = None if args.emotion_net == "official" else args.emotion_net
        net = load_emotion_net(ref, args.assets).to(device).eval()
        predictions[ROUTE_IMAGE] = predict_emotion(net, crops, "image", args.batch_size,
                                                   device, progress=progress)
        del net
    if args.emomlp:
        mlp, inputs = load_emomlp(args.emomlp)
        if args.codes:
            arrays = load_codes(args.codes)
        elif args.emoca:
            model = load_emoca(args.emoca, args.assets).to(device).eval()
            arrays = extract_codes(lambda x: model.encode(x, detail=False), crops,
                                   args.batch_size, device, progress=progress)
        else:
            raise ValueError("the EmoMLP route needs --emoca (to encode the crops) or --codes")
        predictions[ROUTE_CODES] = predict_emotion(mlp.to(device), CodesDataset(arrays, inputs),
                                                   "codes", args.batch_size, device,
                                                   progress=progress)
    report = EvaluationReport.from_predictions(predictions, dataset=args.name or
                                               Path(args.data).name)
    paths = report.write(args.out)
    for route, pred in predictions.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in route)
        pred.write_csv(Path(args.out) / f"predictions_{safe}.csv")
    print(report.to_markdown())
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0
