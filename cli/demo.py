"""`lookalike demo`: the whole job on an embedded dataset, in a few minutes on a laptop CPU.

Train an encoder -> export the bundle -> build an index -> start the service -> send real
/search and /verify requests -> print the answers and the curl commands to try by hand.
Without --data it uses scikit-learn's handwritten digits (1,797 real 8x8 scans that ship
inside scikit-learn: no download), written out as a class-per-folder image tree.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from lookalike.cli.launcher import start_server, stop_server
from lookalike.images import is_image_file
from lookalike.index import build_index
from lookalike.training import TrainConfig, train


def configure(demo: argparse.ArgumentParser) -> None:
    demo.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    demo.add_argument("--data", type=Path, help="your own class-per-folder images (default: sklearn digits)")
    demo.add_argument("--work", type=Path, default=Path("demo"), help="where data, run and index are written")
    demo.add_argument("--epochs", type=int, default=8)
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the service running after the demo requests (default: when run in a terminal)",
    )
    demo.set_defaults(handler=run_demo)


def write_digits(root: Path) -> Path:
    """scikit-learn's digits as 32x32 PNGs, one folder per digit."""
    digits = load_digits()
    for n, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        path = root / f"digit{label}" / f"{n:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), mode="L")
            image.resize((32, 32), Image.Resampling.BICUBIC).save(path)
    return root


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    work = args.work
    data = args.data or write_digits(work / "digits")
    step(f"1/4 training on {data}")
    cfg = TrainConfig(
        data=data,
        out=work / "run",
        backbone="resnet10t",
        image_size=32,
        embedding_size=64,
        classes_per_batch=4 if args.data is None else 8,
        samples_per_class=8 if args.data is None else 4,
        epochs=args.epochs,
        lr=2e-3,
        train_fraction=0.6,
        workers=1,
    )
    summary = train(cfg)
    print(json.dumps(summary, indent=2))

    step("2/4 building the index")
    # One image per class stays out of the gallery, so the queries below are unseen photos.
    classes = sorted(p for p in data.iterdir() if p.is_dir())
    images = {c: sorted(p for p in c.iterdir() if p.is_file() and is_image_file(p)) for c in classes}
    queries = {c: files[-1] for c, files in images.items()}
    manifest = work / "gallery.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([p.resolve(), c.name] for c, files in images.items() for p in files[:-1])
    bundle, index_root = work / "run" / "bundle", work / "index"
    built = build_index(bundle, manifest, index_root)
    print(f"{built.size} images of {built.manifest.labels} labels in {built.directory}")

    step("3/4 starting the service")
    server, base = start_server(bundle, index_root, port=args.port)
    try:
        print(f"serving on {base} (docs: {base}/docs)")

        step("4/4 asking it questions")
        query, same, other = queries[classes[-1]], images[classes[-1]][0], images[classes[0]][0]
        answer = httpx.post(f"{base}/search?k=5", files={"image": (query.name, query.read_bytes())}).json()
        print(f"POST /search  {query}")
        print(
            f"  top identities: {[(i['label'], round(i['score'], 3)) for i in answer['identities']]}, "
            f"unknown={answer['unknown']}"
        )
        for a, b in ((query, same), (query, other)):
            verdict = httpx.post(
                f"{base}/verify", files={"image_a": (a.name, a.read_bytes()), "image_b": (b.name, b.read_bytes())}
            ).json()
            print(
                f"POST /verify  {a.parent.name}/{a.name} vs {b.parent.name}/{b.name}: same={verdict['same']} "
                f"score={verdict['score']:.3f} (threshold {verdict['threshold']:.3f})"
            )
        print("\nTry it yourself:")
        print(f"  curl -F image=@{query} '{base}/search?k=5'")
        print(f"  curl -F image_a=@{query} -F image_b=@{same} {base}/verify")
        keep = args.serve if args.serve is not None else sys.stdin.isatty()
        if keep:
            print("\nThe service keeps running; press Ctrl-C to stop it.")
            server.wait()
        else:
            print(f"\n(serving stopped; run it again with: lookalike serve --bundle {bundle} --index {index_root})")
    finally:
        stop_server(server)
    return 0
